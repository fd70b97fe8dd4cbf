package endpoints

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// prompt is what an authorization request says of the user interaction
// (OpenID Connect Core §3.1.2.1): prompt=none, login or consent, and
// max_age. Other prompt values (select_account, create) are ignored.
type prompt struct {
	none, login, consent bool
	maxAge               time.Duration // < 0: none given
}

// parsePrompt reads prompt and max_age; none with another value, or a
// max_age that is not a non-negative whole number, is invalid_request.
func parsePrompt(q url.Values) (prompt, *authorizeError) {
	p := prompt{maxAge: -1}
	values := strings.Fields(q.Get("prompt"))
	p.none, p.login, p.consent = slices.Contains(values, "none"), slices.Contains(values, "login"), slices.Contains(values, "consent")
	if p.none && len(values) > 1 {
		return p, redirectError("invalid_request", "prompt=none cannot be combined with other prompt values")
	}
	if raw, given := q["max_age"]; given {
		secs, err := strconv.ParseUint(raw[0], 10, 31)
		if err != nil {
			return p, redirectError("invalid_request", "max_age must be a whole number of seconds")
		}
		p.maxAge = time.Duration(secs) * time.Second
	}
	return p, nil
}

// fresh reports whether a signed-in user's sign-in answers the request:
// not when it asks for a new one (prompt=login), nor when the sign-in is
// older than max_age. An identity from user_from is always fresh: another
// handler vouches for it on every request.
func (p prompt) fresh(user identity, now time.Time) bool {
	if user.fromHeader {
		return true
	}
	return !p.login && (p.maxAge < 0 || now.Sub(user.authTime) <= p.maxAge)
}

// afterSignIn is the authorization request to come back to after a new
// sign-in: without prompt=login and max_age, which a sign-in answers (they
// would ask again and again).
func afterSignIn(r *http.Request) string {
	q := r.URL.Query()
	q.Del("max_age")
	if values := strings.Fields(q.Get("prompt")); slices.Contains(values, "login") {
		values = slices.DeleteFunc(values, func(v string) bool { return v == "login" })
		if len(values) == 0 {
			q.Del("prompt")
		} else {
			q.Set("prompt", strings.Join(values, " "))
		}
	}
	if len(q) == 0 {
		return r.URL.EscapedPath()
	}
	return r.URL.EscapedPath() + "?" + q.Encode()
}

// interactionRequired answers a prompt=none request that would need the
// user: error redirected to the client, with state and iss. A client
// anyone could have registered is not redirected to before the user has
// signed in here (RFC 9700 §4.11.2), so without a session it gets a page.
func (s *authorization) interactionRequired(w http.ResponseWriter, r *http.Request, req *authorizeRequest, signedIn bool, code, description string) {
	if !signedIn && !s.configuredClient(req.client) {
		s.renderError(w, http.StatusBadRequest, "Sign-in required", "The application asked to connect without showing you a sign-in page, but you are not signed in here. Start again from the application.")
		return
	}
	s.redirectToClient(w, r, req, url.Values{"error": {code}, "error_description": {description}})
}
