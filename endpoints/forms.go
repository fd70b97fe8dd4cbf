package endpoints

import (
	"mime"
	"net/http"
	"net/url"
)

// maxFormBytes caps every form body this server reads.
const maxFormBytes = 64 << 10

// formType is the media type of the forms OAuth clients send.
const formType = "application/x-www-form-urlencoded"

// parseForm reads an application/x-www-form-urlencoded body (only the
// body: parameters in the URL query are ignored). It reports false for any
// other content type, an oversized body or malformed encoding.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if ct := r.Header.Get("Content-Type"); ct != formType { // the usual spelling needs no parsing
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != formType {
			return nil, false
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, false
	}
	return r.PostForm, true
}
