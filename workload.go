package oauth2server

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
)

// WorkloadIssuer is a platform whose workload tokens (a Kubernetes
// service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID)
// workloads exchange for access tokens with the jwt-bearer grant, without
// a secret of this server (workload identity federation).
type WorkloadIssuer struct {
	// A name for the issuer: lowercase letters, digits and '-'. A
	// workload's tokens here name it <name>:<its sub>.
	Name string `json:"name"`
	// The iss of its tokens (https; plain http only on loopback).
	Issuer string `json:"issuer"`
	// Where its signing keys are. Default: the jwks_uri of its metadata
	// (<issuer>/.well-known/oauth-authorization-server, then
	// /.well-known/openid-configuration).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// A file holding its public keys as a JWK Set, read at load (for an
	// issuer whose keys are not published, e.g. a cluster's
	// service-account signing key).
	JWKSFile string `json:"jwks_file,omitempty"`
	// The aud its tokens must carry. Default: this server's issuer (the
	// token endpoint URL is accepted too).
	Audience string `json:"audience,omitempty"`
	// Claims the token must have, all of them: each equal to (or, an
	// array, containing) one of the values; a value ending in '*' matches
	// any string it begins. At least one: an issuer such as GitHub
	// Actions signs tokens for every repository there is.
	AllowClaims []WorkloadClaimRule `json:"allow_claims"`
	// The most a workload of this issuer may get. Default: the catalogue.
	Scopes []string `json:"scopes,omitempty"`

	jwks []byte // what JWKSFile holds, read by validate
}

// WorkloadClaimRule is one allow_claim of a workload issuer.
type WorkloadClaimRule struct {
	// The claim, e.g. `sub` or `repository`.
	Claim string `json:"claim"`
	// The values it may have.
	Values []string `json:"values"`
}

var workloadIssuerOptions = []string{"issuer", "jwks_uri", "jwks_file", "audience", "allow_claim", "scopes"}

func (h *Handler) unmarshalWorkloadIssuer(d *caddyfile.Dispenser) error {
	var wl WorkloadIssuer
	if !d.Args(&wl.Name) || d.NextArg() {
		return d.Err("workload_issuer: expected a name followed by a block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "allow_claim" {
			return d.Errf("workload_issuer %s: %s already specified", wl.Name, opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "issuer":
			err = oneArg(d, &wl.Issuer)
		case "jwks_uri":
			err = oneArg(d, &wl.JWKSURI)
		case "jwks_file":
			err = oneArg(d, &wl.JWKSFile)
		case "audience":
			err = oneArg(d, &wl.Audience)
		case "scopes":
			err = someArgs(d, &wl.Scopes)
		case "allow_claim":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("workload_issuer %s: allow_claim: expected a claim name and one or more values", wl.Name)
			}
			wl.AllowClaims = append(wl.AllowClaims, WorkloadClaimRule{Claim: args[0], Values: args[1:]})
		default:
			return d.Errf("workload_issuer %s: %s", wl.Name, unknownOption(opt, workloadIssuerOptions))
		}
		if err != nil {
			return err
		}
	}
	h.WorkloadIssuers = append(h.WorkloadIssuers, wl)
	return nil
}

// validateWorkloadIssuers checks the workload issuers and reads their
// jwks_file.
func (h *Handler) validateWorkloadIssuers() error {
	names, issuers := map[string]bool{}, map[string]bool{}
	for i := range h.WorkloadIssuers {
		wl := &h.WorkloadIssuers[i]
		where := "workload_issuer " + wl.Name
		switch {
		case !loginName.MatchString(wl.Name):
			return fmt.Errorf("%s: the name must be lowercase letters, digits and '-'", where)
		case names[wl.Name]:
			return fmt.Errorf("workload_issuer %q is defined twice", wl.Name)
		case wl.Issuer == "":
			return fmt.Errorf("%s: issuer is required", where)
		case issuers[wl.Issuer]:
			return fmt.Errorf("%s: issuer %q is another workload_issuer's too", where, wl.Issuer)
		case wl.JWKSURI != "" && wl.JWKSFile != "":
			return fmt.Errorf("%s: use jwks_uri or jwks_file, not both", where)
		case len(wl.AllowClaims) == 0:
			return fmt.Errorf("%s: needs at least one allow_claim (an issuer such as GitHub Actions or a shared cluster signs tokens for workloads that are not yours)", where)
		}
		names[wl.Name], issuers[wl.Issuer] = true, true
		if err := checkServerURL(where+": issuer", wl.Issuer); err != nil {
			return err
		}
		if wl.JWKSURI != "" {
			if err := checkServerURL(where+": jwks_uri", wl.JWKSURI); err != nil {
				return err
			}
		}
		for _, rule := range wl.AllowClaims {
			if rule.Claim == "" || len(rule.Values) == 0 {
				return fmt.Errorf("%s: allow_claim needs a claim name and one or more values", where)
			}
		}
		if err := checkScopes(where+": scopes", wl.Scopes); err != nil {
			return err
		}
		if wl.JWKSFile != "" {
			raw, err := readSmallFile(wl.JWKSFile)
			if err != nil {
				return fmt.Errorf("%s: jwks_file: %w", where, err)
			}
			if err := endpoints.CheckKeySet(raw); err != nil {
				return fmt.Errorf("%s: jwks_file: %w", where, err)
			}
			wl.jwks = raw
		}
	}
	return nil
}

// workloadIssuers are the issuers as the endpoints take them.
func (h *Handler) workloadIssuers() []endpoints.WorkloadIssuer {
	var out []endpoints.WorkloadIssuer
	for _, wl := range h.WorkloadIssuers {
		e := endpoints.WorkloadIssuer{Name: wl.Name, Issuer: wl.Issuer, JWKS: wl.jwks, JWKSURI: wl.JWKSURI, Audience: wl.Audience, Scopes: wl.Scopes}
		for _, r := range wl.AllowClaims {
			e.AllowClaims = append(e.AllowClaims, endpoints.WorkloadClaimRule{Claim: r.Claim, Values: r.Values})
		}
		out = append(out, e)
	}
	return out
}

// readSmallFile reads a file of at most 64 KiB (a key set of a few
// public keys is a few KiB).
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(raw) > 64<<10 {
		return nil, errors.New(path + " is larger than 64 KiB")
	}
	return raw, nil
}
