package endpoints

import (
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// corsAllowHeaders are the request headers browser-hosted clients send.
const corsAllowHeaders = "Authorization, DPoP, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID"

// corsExposeHeaders are the response headers browser-hosted clients read.
var corsExposeHeaders = []string{"WWW-Authenticate", "Mcp-Session-Id", "DPoP-Nonce"}

// mcpParamPrefix starts the headers into which MCP clients mirror tool
// parameters (Mcp-Param-<Name>, MCP transport 2026-07-28); a preflight
// may ask for any of them.
const mcpParamPrefix = "mcp-param-"

// writePreflight answers a CORS preflight for any origin, without
// credentials: the fixed request headers, plus every Mcp-Param-* header
// the preflight asks for.
func writePreflight(w http.ResponseWriter, r *http.Request, methods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders+mcpParamHeaders(r.Header.Values("Access-Control-Request-Headers")))
	h.Set("Access-Control-Max-Age", "86400")
	h.Add("Vary", "Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
}

// mcpParamHeaders is ", name" for every requested header name that is an
// Mcp-Param-* header (case-insensitively), as requested; names that are
// not HTTP tokens are left out.
func mcpParamHeaders(requested []string) string {
	var b strings.Builder
	for _, line := range requested {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.TrimSpace(name)
			if len(name) > len(mcpParamPrefix) && strings.EqualFold(name[:len(mcpParamPrefix)], mcpParamPrefix) && isToken(name) {
				b.WriteString(", ")
				b.WriteString(name)
			}
		}
	}
	return b.String()
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
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
		writePreflight(w, r, "POST, OPTIONS")
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
	w.Header().Set("Access-Control-Expose-Headers", strings.Join(corsExposeHeaders, ", "))
}

// corsWriter settles the CORS headers of a proxied answer when its header
// is written: the upstream's Access-Control-Allow-Origin wins when it sent
// one (with its Access-Control-Allow-Credentials), kept to a single value;
// otherwise the guard's `*` is set. Either way WWW-Authenticate and
// Mcp-Session-Id are exposed, in one Access-Control-Expose-Headers line.
type corsWriter struct {
	*caddyhttp.ResponseWriterWrapper
	settled bool
}

func newCORSWriter(w http.ResponseWriter) *corsWriter {
	return &corsWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}}
}

func (w *corsWriter) settle() {
	if w.settled {
		return
	}
	w.settled = true
	h := w.Header()
	if origins := h.Values("Access-Control-Allow-Origin"); len(origins) > 0 {
		h.Set("Access-Control-Allow-Origin", origins[0])
		if creds := h.Values("Access-Control-Allow-Credentials"); len(creds) > 1 {
			h.Set("Access-Control-Allow-Credentials", creds[0])
		}
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
		h.Del("Access-Control-Allow-Credentials") // never with *
	}
	var exposed []string
	for _, line := range h.Values("Access-Control-Expose-Headers") {
		for name := range strings.SplitSeq(line, ",") {
			if name = strings.TrimSpace(name); name != "" && !containsFold(exposed, name) {
				exposed = append(exposed, name)
			}
		}
	}
	for _, name := range corsExposeHeaders {
		if !containsFold(exposed, name) {
			exposed = append(exposed, name)
		}
	}
	h.Set("Access-Control-Expose-Headers", strings.Join(exposed, ", "))
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// WriteHeader settles the CORS headers of the final answer.
func (w *corsWriter) WriteHeader(status int) {
	if status >= 200 {
		w.settle()
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *corsWriter) Write(b []byte) (int, error) {
	w.settle()
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the wrapper's fast path, settling first.
func (w *corsWriter) ReadFrom(r io.Reader) (int64, error) {
	w.settle()
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError lets http.ResponseController flush a streamed answer (MCP
// over SSE) without writing the header unsettled.
func (w *corsWriter) FlushError() error {
	w.settle()
	return http.NewResponseController(w.ResponseWriter).Flush()
}
