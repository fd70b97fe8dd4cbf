package endpoints

import (
	"cmp"
	"net/http"
	"net/url"
)

// kindCode is the kind of pending authorization of the authorization code
// flow (and of records stored before kinds existed).
const kindCode = "code"

// completion ends an authorization once the user has answered it on the
// consent page, or when it needed no answer: one per kind of pending
// authorization, so that another kind (a device-flow approval) ends its
// own way without a fork of the consent handler.
type completion interface {
	// allow delivers what the user allowed. code is the one-time value
	// the answer yields; repeated: the same answer came again (a double
	// click) and was delivered already.
	allow(w http.ResponseWriter, r *http.Request, req *authorizeRequest, user identity, code string, repeated bool) error
	// deny tells the client that the user refused.
	deny(w http.ResponseWriter, r *http.Request, req *authorizeRequest)
}

// completionOf is the completion of a kind of pending authorization.
func (s *authorization) completionOf(kind string) (completion, bool) {
	c, ok := s.completions[cmp.Or(kind, kindCode)]
	return c, ok
}

// codeCompletion ends the code flow: the authorization code, or
// access_denied, redirected to the client.
type codeCompletion struct{ s *authorization }

func (c codeCompletion) allow(w http.ResponseWriter, r *http.Request, req *authorizeRequest, user identity, code string, repeated bool) error {
	if repeated { // the code is stored already
		c.s.redirectToClient(w, r, req, url.Values{"code": {code}})
		return nil
	}
	return c.s.issueCode(w, r, req, user, code)
}

func (c codeCompletion) deny(w http.ResponseWriter, r *http.Request, req *authorizeRequest) {
	c.s.redirectToClient(w, r, req, url.Values{"error": {"access_denied"}, "error_description": {"the user denied the request"}})
}
