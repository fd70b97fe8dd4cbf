package endpoints

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// private_key_jwt (RFC 7523 §2.2, draft-ietf-oauth-rfc7523bis): the client
// proves itself with a JWT it signed with one of the keys it registered
// (jwks or jwks_uri), used once.

// jwtBearerAssertionType is the client_assertion_type of private_key_jwt.
const jwtBearerAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientAssertionTypes are the typ values a client assertion may carry:
// none (most clients send none), JWT, or rfc7523bis's explicit type.
var clientAssertionTypes = []string{"", "jwt", "client-authentication+jwt"}

// readAssertion reads private_key_jwt's credential: the assertion, parsed
// but not verified, naming its client by iss and sub.
func readAssertion(a authRequest) (clientCredential, bool, error) {
	typ, raw := a.form["client_assertion_type"], a.form["client_assertion"]
	switch {
	case len(typ) == 0 && len(raw) == 0:
		return clientCredential{}, false, nil
	case len(typ) != 1 || typ[0] != jwtBearerAssertionType:
		return clientCredential{}, true, errors.New("client_assertion_type must be " + jwtBearerAssertionType)
	case len(raw) != 1 || raw[0] == "":
		return clientCredential{}, true, errors.New("client_assertion is missing")
	}
	p, err := parseAssertion(raw[0], clientAssertionTypes...)
	if err != nil {
		return clientCredential{}, true, errors.New("client_assertion: " + err.Error())
	}
	if p.iss == "" || p.iss != p.sub {
		return clientCredential{}, true, errors.New("client_assertion: iss and sub must both be the client_id")
	}
	return clientCredential{clientID: p.sub, assertion: p}, true, nil
}

// verifyAssertion verifies a client assertion with the client's keys and
// uses its jti up, on every node.
func verifyAssertion(ctx context.Context, s *clients, c *storage.Client, cred clientCredential) error {
	now := time.Now()
	p := cred.assertion
	keys, err := s.keySets.clientKeys(ctx, c, p.keyID(), now)
	if err != nil {
		return err
	}
	claims, err := p.verify(keys, assertionRules{
		issuer: c.ID,
		// The issuer identifier (rfc7523bis); the token endpoint URL, which
		// RFC 7523 clients send.
		audiences: []string{s.cfg.Issuer, s.endpoint("/oauth/token")},
		skew:      s.cfg.Tokens.ClockSkew,
	}, now)
	if err == nil {
		err = s.useUp(ctx, c.ID, claims, now)
	}
	if err != nil && !storageDown(err) {
		return errors.New("client_assertion: " + err.Error())
	}
	return err
}
