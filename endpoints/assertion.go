package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// A third-party JWT presented to this server (a client's private_key_jwt
// assertion; later an identity provider's grant or a workload's token)
// is checked here, by one set of rules: parsed once, its signer found
// from its unverified iss, then verified with the signer's keys and
// checked claim by claim, each failure naming the check (never the
// assertion). Using it up (its jti, once) is the caller's, through
// storage.AssertionStore.

// assertionAlgs are the signature algorithms accepted on assertions:
// asymmetric only (never none, never HMAC with a shared secret).
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// assertionAlgNames are assertionAlgs as metadata lists them.
func assertionAlgNames() []string { return algNames(assertionAlgs) }

// algNames are algorithms as metadata and challenges list them.
func algNames(algs []jose.SignatureAlgorithm) []string {
	out := make([]string, len(algs))
	for i, a := range algs {
		out[i] = string(a)
	}
	return out
}

// maxAssertionLifetime bounds how long an assertion may be valid: its exp
// is at most this long after its iat (or after now, without iat).
const maxAssertionLifetime = 5 * time.Minute

// maxJTILength bounds a jti (it is stored hashed, but a longer one is no
// one's honest identifier).
const maxJTILength = 256

// parsedAssertion is a JWT whose syntax and algorithm are acceptable,
// not yet verified.
type parsedAssertion struct {
	token *jwt.JSONWebToken
	// iss and sub as the JWT claims them, unverified: used only to find
	// the keys it must be signed with.
	iss, sub string
	// typ is its header's typ, lower-case, without "application/".
	typ string
}

// parseAssertion parses a compact JWS JWT signed with one of
// assertionAlgs whose header typ is one of typs ("" for none; compared
// as media types: without case, "application/" optional), so that a JWT
// made for another purpose (an access token, a DPoP proof) is not taken
// for this one.
func parseAssertion(raw string, typs ...string) (*parsedAssertion, error) {
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil {
		return nil, fmt.Errorf("not a JWT signed with %s", strings.Join(assertionAlgNames(), ", "))
	}
	h := tok.Headers[0]
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	typ = strings.TrimPrefix(strings.ToLower(typ), "application/")
	if !slices.Contains(typs, typ) {
		return nil, fmt.Errorf("the JWT's typ is not %s", strings.Join(slices.DeleteFunc(slices.Clone(typs), func(t string) bool { return t == "" }), " or "))
	}
	if h.JSONWebKey != nil || h.ExtraHeaders["jku"] != nil || h.ExtraHeaders["x5u"] != nil {
		return nil, errors.New("the JWT must not name its own key (jwk, jku, x5u)")
	}
	var claims struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, errors.New("the JWT's claims are not a JSON object of the registered types")
	}
	return &parsedAssertion{token: tok, iss: claims.Issuer, sub: claims.Subject, typ: typ}, nil
}

// assertionRules are what one kind of assertion must claim.
type assertionRules struct {
	// issuer is the required iss.
	issuer string
	// audiences are the accepted values of aud; the JWT names exactly one.
	audiences []string
	// skew is the clock skew allowed on exp, iat and nbf.
	skew time.Duration
	// maxLifetime bounds exp after iat (or now); 0: maxAssertionLifetime.
	maxLifetime time.Duration
}

// verify checks the signature against keys (the signer's set) and the
// claims against rules at now; it fills extra (more claim structs) from
// the verified payload.
func (p *parsedAssertion) verify(keys []jose.JSONWebKey, rules assertionRules, now time.Time, extra ...any) (*jwt.Claims, error) {
	var claims jwt.Claims
	if err := p.verifySignature(keys, append([]any{&claims}, extra...)); err != nil {
		return nil, err
	}
	switch {
	case claims.Issuer != rules.issuer:
		return nil, errors.New("iss is not the expected issuer")
	case len(claims.Audience) != 1 || !slices.Contains(rules.audiences, claims.Audience[0]):
		return nil, fmt.Errorf("aud must be this server alone (%s)", strings.Join(rules.audiences, " or "))
	case claims.Expiry == nil:
		return nil, errors.New("exp is missing")
	case claims.ID == "":
		return nil, errors.New("jti is missing")
	case len(claims.ID) > maxJTILength:
		return nil, errors.New("jti is too long")
	}
	exp := claims.Expiry.Time()
	maxLifetime := cmp.Or(rules.maxLifetime, maxAssertionLifetime)
	switch {
	case !now.Before(exp.Add(rules.skew)):
		return nil, errors.New("the JWT has expired (exp)")
	case claims.NotBefore != nil && now.Add(rules.skew).Before(claims.NotBefore.Time()):
		return nil, errors.New("the JWT is not valid yet (nbf)")
	case claims.IssuedAt != nil && now.Add(rules.skew).Before(claims.IssuedAt.Time()):
		return nil, errors.New("the JWT was issued in the future (iat)")
	case claims.IssuedAt != nil && exp.Sub(claims.IssuedAt.Time()) > maxLifetime,
		exp.Sub(now) > maxLifetime+rules.skew:
		return nil, fmt.Errorf("the JWT is valid for longer than %s (exp)", maxLifetime)
	}
	return &claims, nil
}

// verifySignature finds the key that signed the JWT, by kid when the
// header names one, and decodes the claims into out.
func (p *parsedAssertion) verifySignature(keys []jose.JSONWebKey, out []any) error {
	h := p.token.Headers[0]
	tried := 0
	for _, k := range keys {
		if h.KeyID != "" && k.KeyID != h.KeyID || k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		tried++
		if err := p.token.Claims(k.Key); err != nil {
			continue
		}
		// Verified: the payload is the one just checked.
		if err := p.token.UnsafeClaimsWithoutVerification(out...); err != nil {
			return errors.New("the JWT's claims are not a JSON object of the registered types")
		}
		return nil
	}
	if tried == 0 {
		if h.KeyID != "" {
			return errKeyNotFound
		}
		return fmt.Errorf("no key of the signer is for %s", h.Algorithm)
	}
	return errors.New("the signature does not verify with the signer's keys")
}

// errKeyNotFound: the JWT names a kid the signer's key set does not have
// (a key set fetched from a URL is then fetched again, at most once a
// minute).
var errKeyNotFound = errors.New("the signer has no key with the JWT's kid")

// keyID is the kid of the JWT's header.
func (p *parsedAssertion) keyID() string { return p.token.Headers[0].KeyID }

// errAssertionReplayed: an assertion's jti was used before.
var errAssertionReplayed = errors.New("this assertion (its jti) was used before")

// useUp records the jti of an assertion of signer, verified as claims,
// once until it expires (clock skew included), on every node:
// errAssertionReplayed when it was used before; a storage failure as it
// is.
func (s *core) useUp(ctx context.Context, signer string, claims *jwt.Claims, now time.Time) error {
	err := s.cfg.Storage.Store.UseAssertion(ctx, signer, claims.ID, claims.Expiry.Time().Add(s.cfg.Tokens.ClockSkew), now)
	if errors.Is(err, storage.ErrReplayed) {
		return errAssertionReplayed
	}
	return err
}
