package endpoints

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// bearerToken returns the token of an `Authorization: Bearer` header; ""
// when there is none. Tokens in the query string or a form body are never
// looked at.
func bearerToken(h http.Header) (string, error) { return schemeToken(h, "Bearer") }

// schemeToken returns the token of an `Authorization: <scheme>` header;
// "" when there is none, or another scheme's.
func schemeToken(h http.Header, want string) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("more than one Authorization header")
	}
	scheme, token, found := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, want) {
		return "", nil // another scheme
	}
	token = strings.TrimLeft(token, " ")
	if !found || token == "" || !validTokenSyntax(token) {
		return "", errors.New("the Authorization header is malformed")
	}
	return token, nil
}

// b64tokenChars are the characters of an RFC 6750 §2.1 b64token
// (before its trailing '=' padding).
var b64tokenChars = func() (set [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		set[c] = true
	}
	return set
}()

// validTokenSyntax checks RFC 6750 §2.1 b64token syntax.
func validTokenSyntax(t string) bool {
	end := len(t)
	for end > 0 && t[end-1] == '=' {
		end--
	}
	for i := 0; i < end; i++ {
		if !b64tokenChars[t[i]] {
			return false
		}
	}
	return end > 0
}

// bearerCredential is an access token in `Authorization: Bearer`
// (RFC 6750), verified against the signing keys and the revocations. A
// token bound to a DPoP key is refused as a bearer token; with
// requireDPoP every bearer token is (and no Bearer challenge is offered).
type bearerCredential struct {
	s           *issuer
	requireDPoP bool
}

func (bearerCredential) read(r *http.Request) (string, error) { return bearerToken(r.Header) }

// authenticate verifies the token (once per token: see verifyCached); a
// node whose revocations are not current cannot decide.
func (b bearerCredential) authenticate(ctx context.Context, _ *http.Request, raw string) (principal, error) {
	if !b.s.synced() {
		return principal{}, errRevocationUnknown
	}
	claims, fresh, err := b.s.verifyCached(ctx, raw, true)
	switch {
	case err != nil:
		return principal{}, err
	case claims.Cnf != nil:
		return principal{}, errBoundAsBearer
	case b.requireDPoP:
		return principal{}, errDPoPRequired
	}
	return principal{scheme: "Bearer", token: claims, fresh: fresh}, nil
}

func (b bearerCredential) challenge(params string) string {
	if b.requireDPoP {
		return ""
	}
	return "Bearer " + params
}
