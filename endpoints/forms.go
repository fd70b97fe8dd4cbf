package endpoints

import (
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxFormBytes caps every form body this server reads.
const maxFormBytes = 64 << 10

// formType is the media type of the forms OAuth clients send.
const formType = "application/x-www-form-urlencoded"

// parseForm reads an application/x-www-form-urlencoded body (only the
// body: parameters in the URL query are ignored). It reports false for any
// other content type, an oversized body or malformed encoding.
func (s *core) parseForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if !isFormBody(r.Header.Values("Content-Type")) {
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	if err != nil {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	return form, err == nil
}

// isFormBody reports whether Content-Type says the body is a form. Some
// clients send a list: the MCP SDK in a browser merges its transport's
// `application/json` into its OAuth requests, giving
// `application/json, application/x-www-form-urlencoded`. A list is a form
// when it names the form type and nothing that would make the body
// ambiguous (multipart); the body is then read as a form, which a JSON body
// never is by mistake (it has no `name=value` pairs a grant would accept).
func isFormBody(values []string) bool {
	if len(values) == 1 && values[0] == formType { // the usual spelling needs no parsing
		return true
	}
	form := false
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			switch {
			case err != nil, strings.HasPrefix(mt, "multipart/"):
				return false
			case mt == formType:
				form = true
			}
		}
	}
	return form
}
