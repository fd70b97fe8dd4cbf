package endpoints

import "net/http"

// corsAllowHeaders are the request headers browser-hosted clients send.
const corsAllowHeaders = "Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"

// corsExposeHeaders are the response headers browser-hosted clients read.
const corsExposeHeaders = "WWW-Authenticate, Mcp-Session-Id"

// writePreflight answers a CORS preflight for any origin, without credentials.
func writePreflight(w http.ResponseWriter, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// acceptPOST starts an API endpoint that browser-hosted clients call: it
// allows any origin, answers preflight, and refuses methods other than
// POST. It reports whether the request should be handled.
func acceptPOST(w http.ResponseWriter, r *http.Request) bool {
	allowCORS(w)
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		writePreflight(w, "POST, OPTIONS")
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
	}
	return false
}

// allowCORS lets browser-hosted clients call an endpoint from any origin,
// without credentials, and read the WWW-Authenticate header.
func allowCORS(w http.ResponseWriter) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Access-Control-Expose-Headers", corsExposeHeaders)
}
