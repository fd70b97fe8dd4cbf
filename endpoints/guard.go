package endpoints

import (
	"net/http"
	"strings"
)

// Challenge answers a request for a protected path with 401 and an
// RFC 6750 / RFC 9728 challenge naming the resource's metadata URL.
//
// Bearer verification is not implemented yet, so every protected request
// is refused: secure by default until then.
func (s *Server) Challenge(w http.ResponseWriter, r *http.Request) {
	res := s.resourceFor(r.URL.Path)
	h := w.Header()
	h.Set("WWW-Authenticate", `Bearer resource_metadata="`+res.MetadataURL()+`"`)
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	writeError(w, http.StatusUnauthorized, "unauthorized", "an access token is required")
}

// resourceFor returns the resource whose path is the longest prefix of
// path on a segment boundary, or the default resource.
func (s *Server) resourceFor(path string) resource {
	best := s.resources[0]
	bestLen := -1
	for _, r := range s.resources {
		if (path == r.path || strings.HasPrefix(path, r.path+"/") || r.path == "") && len(r.path) > bestLen {
			best, bestLen = r, len(r.path)
		}
	}
	return best
}
