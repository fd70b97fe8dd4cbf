package endpoints

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// EnterpriseIDP is a company identity provider whose ID-JAGs (Identity
// Assertion JWT Authorization Grants, draft-ietf-oauth-identity-assertion-authz-grant;
// the MCP enterprise-managed authorization extension) the jwt-bearer
// grant redeems.
type EnterpriseIDP struct {
	// Name is the provider's name here: the token's idp claim.
	Name string
	// Issuer is the iss of its ID-JAGs.
	Issuer string
	// JWKSURI is where its keys are; "" to discover it from its metadata.
	JWKSURI string
	// Clients may redeem its ID-JAGs; none: any confidential client.
	Clients []string
	// Subject is the claim that names the user here: "sub" or "email".
	Subject string
}

// idJAGType is the typ of an ID-JAG's header.
const idJAGType = "oauth-id-jag+jwt"

// idJAGProfile is what authorization_grant_profiles_supported says.
const idJAGProfile = "urn:ietf:params:oauth:grant-profile:id-jag"

// Limits of what is fetched from an identity provider.
const (
	maxProviderDocumentBytes = 64 << 10
	providerFetchTimeout     = 5 * time.Second
)

// trustedIssuers are the identity providers and workload platforms the
// jwt-bearer grant trusts, and their keys. An operator configured them, so they are fetched with a
// plain HTTP client (a provider on the company network is fine), https
// (or loopback http), no redirects, bounded in time and size.
type trustedIssuers struct {
	idps      []EnterpriseIDP
	workloads []WorkloadIssuer
	client    *http.Client
	keys      *keySets // by jwks_uri
	mu        sync.Mutex
	found     map[string]string    // issuer -> discovered jwks_uri
	failed    map[string]time.Time // issuer -> when discovery last failed
	typs      []string             // the assertion typ values of those trusted
}

func newTrustedIssuers(cfg *Config) *trustedIssuers {
	t := &trustedIssuers{idps: cfg.Grants.EnterpriseIDPs, workloads: cfg.Grants.WorkloadIssuers, found: map[string]string{}, failed: map[string]time.Time{},
		client: &http.Client{
			Timeout:       providerFetchTimeout,
			Transport:     &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{RootCAs: testRootCAs, MinVersion: tls.VersionTLS12}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") },
		}}
	t.keys = newKeySets(t.fetchKeys)
	if len(t.idps) > 0 {
		t.typs = append(t.typs, idJAGType)
	}
	if len(t.workloads) > 0 {
		t.typs = append(t.typs, workloadTypes...)
	}
	return t
}

// enterpriseIDP is the provider whose issuer is iss, or nil.
func (t *trustedIssuers) enterpriseIDP(iss string) *EnterpriseIDP {
	for i := range t.idps {
		if t.idps[i].Issuer == iss {
			return &t.idps[i]
		}
	}
	return nil
}

// providerKeys are the signing keys of a provider; kid is the key an
// assertion names (see keySets.fetched).
func (t *trustedIssuers) providerKeys(ctx context.Context, issuer, jwksURI, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	if jwksURI == "" {
		var err error
		if jwksURI, err = t.discover(ctx, issuer); err != nil {
			return nil, err
		}
	}
	return t.keys.fetched(ctx, jwksURI, kid, now)
}

// discover finds a provider's jwks_uri in its metadata (RFC 8414, then
// OpenID Connect Discovery), whose issuer must be the one configured; a
// failed discovery is not tried again for keySetRefetchFloor, so that
// assertions naming a provider that is down cost it one request a minute.
func (t *trustedIssuers) discover(ctx context.Context, issuer string) (string, error) {
	t.mu.Lock()
	uri, ok := t.found[issuer]
	failed := t.failed[issuer]
	t.mu.Unlock()
	switch {
	case ok:
		return uri, nil
	case time.Since(failed) < keySetRefetchFloor:
		return "", fmt.Errorf("the metadata of %s could not be fetched a moment ago", issuer)
	}
	uri, err := t.fetchMetadata(ctx, issuer)
	t.mu.Lock()
	if err != nil {
		t.failed[issuer] = time.Now()
	} else {
		t.found[issuer] = uri
	}
	t.mu.Unlock()
	return uri, err
}

// fetchMetadata reads a provider's jwks_uri from its metadata.
func (t *trustedIssuers) fetchMetadata(ctx context.Context, issuer string) (string, error) {
	base := strings.TrimSuffix(issuer, "/")
	var last error
	for _, doc := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		body, err := t.get(ctx, base+doc)
		if err != nil {
			last = err
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		switch err := json.Unmarshal(body, &md); {
		case err != nil:
			last = fmt.Errorf("the metadata of %s is not JSON", issuer)
			continue
		case md.Issuer != issuer:
			return "", fmt.Errorf("the metadata of %s names another issuer", issuer)
		case !strings.HasPrefix(md.JWKSURI, "https://") && !strings.HasPrefix(md.JWKSURI, "http://"):
			return "", fmt.Errorf("the metadata of %s has no jwks_uri", issuer)
		}
		return md.JWKSURI, nil
	}
	return "", last
}

// fetchKeys gets a provider's key set: its signing keys of the algorithms
// accepted here (a provider's set may hold others, which are skipped).
func (t *trustedIssuers) fetchKeys(ctx context.Context, uri string) ([]jose.JSONWebKey, error) {
	body, err := t.get(ctx, uri)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the key set at %s is not a JWK Set", uri)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if checkPublicKey(k) == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("the key set at %s has no signing key for %s", uri, strings.Join(assertionAlgNames(), ", "))
	}
	return keys, nil
}

// get fetches a JSON document of a provider.
func (t *trustedIssuers) get(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %d, not 200", uri, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" && !strings.HasSuffix(mt, "+json") {
		return nil, fmt.Errorf("fetching %s: not JSON (Content-Type)", uri)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", uri, err)
	}
	if len(body) > maxProviderDocumentBytes {
		return nil, fmt.Errorf("fetching %s: larger than %d KiB", uri, maxProviderDocumentBytes>>10)
	}
	return body, nil
}
