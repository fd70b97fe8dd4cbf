package endpoints

import (
	"context"
	"net/http"
)

// guardCredential is one way a request to a protected path shows what it
// may do (Bearer today; sender-constrained tokens and browser sessions
// plug in beside it). The guard asks each enabled credential in turn
// whether the request carries it; the first that does authenticates the
// request to a principal, and the steps after it read only the principal.
type guardCredential interface {
	// read returns what the request carries of the credential: "" when
	// nothing, an error when what it carries is malformed (400).
	read(r *http.Request) (string, error)
	// authenticate verifies what read returned: the principal, or why not
	// (errRevocationUnknown when that cannot be decided now: 503).
	authenticate(ctx context.Context, r *http.Request, raw string) (principal, error)
	// challenge is its WWW-Authenticate challenge with the parameters
	// every challenge carries (resource_metadata, scope, error).
	challenge(params string) string
}

// principal is who a request acts for and how it showed it.
type principal struct {
	// scheme is the scheme of the credential that established it.
	scheme string
	// token is the verified access token: who (its subject: a user, or
	// the client itself), the client, its scopes and claims, and the
	// placeholder values, made once per token (see prepare).
	token *accessTokenClaims
	// fresh: the guard sees the token for the first time.
	fresh bool
}
