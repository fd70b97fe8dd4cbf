package oauth2server

import (
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
)

// EnterpriseIDP is a company identity provider whose Identity Assertion
// JWT Authorization Grants (ID-JAGs, the MCP enterprise-managed
// authorization extension) this server redeems at its token endpoint:
// the provider decides which of its users may use which client here, and
// no consent screen is shown.
type EnterpriseIDP struct {
	// A name for the provider: lowercase letters, digits and '-'. It is
	// the {http.oauth2.idp} of the tokens it grants, and appears in the
	// audit log.
	Name string `json:"name"`
	// The provider's issuer identifier, the iss of its ID-JAGs (https;
	// plain http only on loopback).
	Issuer string `json:"issuer"`
	// Where its signing keys are. Default: the jwks_uri of its metadata
	// (<issuer>/.well-known/oauth-authorization-server, then
	// /.well-known/openid-configuration).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// The client_ids that may redeem its ID-JAGs. Default: any
	// confidential client of this server (the ID-JAG names the client).
	Clients []string `json:"clients,omitempty"`
	// Which claim of the ID-JAG is the user here: sub (default) or email.
	Subject string `json:"subject,omitempty"`
}

var enterpriseIDPOptions = []string{"issuer", "jwks_uri", "clients", "subject"}

func (h *Handler) unmarshalEnterpriseIDP(d *caddyfile.Dispenser) error {
	var idp EnterpriseIDP
	if !d.Args(&idp.Name) || d.NextArg() {
		return d.Err("enterprise_idp: expected a name followed by a block")
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("enterprise_idp %s: %s already specified", idp.Name, opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "issuer":
			err = oneArg(d, &idp.Issuer)
		case "jwks_uri":
			err = oneArg(d, &idp.JWKSURI)
		case "clients":
			err = someArgs(d, &idp.Clients)
		case "subject":
			err = oneArg(d, &idp.Subject)
		default:
			return d.Errf("enterprise_idp %s: %s", idp.Name, unknownOption(opt, enterpriseIDPOptions))
		}
		if err != nil {
			return err
		}
	}
	h.EnterpriseIDPs = append(h.EnterpriseIDPs, idp)
	return nil
}

// validateEnterpriseIDPs checks the enterprise identity providers.
func (h *Handler) validateEnterpriseIDPs() error {
	names, issuers := map[string]bool{}, map[string]bool{}
	for _, idp := range h.EnterpriseIDPs {
		where := "enterprise_idp " + idp.Name
		switch {
		case !loginName.MatchString(idp.Name):
			return fmt.Errorf("%s: the name must be lowercase letters, digits and '-'", where)
		case names[idp.Name]:
			return fmt.Errorf("enterprise_idp %q is defined twice", idp.Name)
		case idp.Issuer == "":
			return fmt.Errorf("%s: issuer is required", where)
		case issuers[idp.Issuer]:
			return fmt.Errorf("%s: issuer %q is another enterprise_idp's too", where, idp.Issuer)
		case idp.Subject != "" && idp.Subject != "sub" && idp.Subject != "email":
			return fmt.Errorf("%s: subject %q: sub or email", where, idp.Subject)
		}
		names[idp.Name], issuers[idp.Issuer] = true, true
		if err := checkServerURL(where+": issuer", idp.Issuer); err != nil {
			return err
		}
		if idp.JWKSURI != "" {
			if err := checkServerURL(where+": jwks_uri", idp.JWKSURI); err != nil {
				return err
			}
		}
		for _, id := range idp.Clients {
			if c := slices.IndexFunc(h.Clients, func(c Client) bool { return c.ID == id }); c >= 0 && h.Clients[c].Public {
				return fmt.Errorf("%s: client %q is public: an ID-JAG is redeemed by a client that authenticates", where, id)
			}
		}
	}
	return nil
}

// enterpriseIDPs are the providers as the endpoints take them.
func (h *Handler) enterpriseIDPs() []endpoints.EnterpriseIDP {
	var out []endpoints.EnterpriseIDP
	for _, idp := range h.EnterpriseIDPs {
		out = append(out, endpoints.EnterpriseIDP{Name: idp.Name, Issuer: idp.Issuer, JWKSURI: idp.JWKSURI, Clients: idp.Clients,
			Subject: cmpOr(idp.Subject, "sub")})
	}
	return out
}
