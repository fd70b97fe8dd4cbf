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
func bearerToken(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("more than one Authorization header")
	}
	scheme, token, found := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", nil // another scheme: no bearer token
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
// (RFC 6750), verified against the signing keys and the revocations.
type bearerCredential struct{ s *issuer }

func (bearerCredential) read(r *http.Request) (string, error) { return bearerToken(r.Header) }

// authenticate verifies the token (once per token: see verifyCached); a
// node whose revocations are not current cannot decide.
func (b bearerCredential) authenticate(ctx context.Context, _ *http.Request, raw string) (principal, error) {
	if !b.s.synced() {
		return principal{}, errRevocationUnknown
	}
	claims, fresh, err := b.s.verifyCached(ctx, raw, true)
	if err != nil {
		return principal{}, err
	}
	return principal{scheme: "Bearer", token: claims, fresh: fresh}, nil
}

func (bearerCredential) challenge(params string) string { return "Bearer " + params }
