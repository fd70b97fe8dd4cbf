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
