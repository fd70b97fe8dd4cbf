package endpoints

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// utf16Body encodes s as UTF-16 in the byte order asked, with a
// byte-order mark when bom.
func utf16Body(s string, bigEndian, bom bool) string {
	var b bytes.Buffer
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xFEFF}, units...)
	}
	for _, u := range units {
		if bigEndian {
			b.WriteByte(byte(u >> 8))
			b.WriteByte(byte(u))
		} else {
			b.WriteByte(byte(u))
			b.WriteByte(byte(u >> 8))
		}
	}
	return b.String()
}

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.String()
}

// auditedMCPServer is an MCP test server whose audit events are observed.
func auditedMCPServer(t *testing.T) (*Server, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	return mcpServer(t, func(c *Config) { c.Audit = zap.New(core) }), logs
}

// TestGuardMCPJudgesWhatTheUpstreamDecodes: a body the upstream would
// inflate, strip of a byte-order mark or decode from another charset is
// refused, never passed on unjudged, and every refusal is audited.
func TestGuardMCPJudgesWhatTheUpstreamDecodes(t *testing.T) {
	s, logs := auditedMCPServer(t)
	read := mcpToken(t, s, "alice", "mcp:read")
	drop := call(1, "drop_all")
	const (
		encoding = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"a Content-Encoding is not accepted under an MCP resource: send the JSON-RPC body unencoded"}}`
		charset  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"only charset=utf-8 is accepted under an MCP resource"}}`
		bom      = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body starts with a byte-order mark: send UTF-8 JSON without one"}}`
		notJSON  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body is not a JSON-RPC message (a JSON object or array)"}}`
		invalid  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body is not valid JSON"}}`
		notUTF8  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body is not UTF-8"}}`
	)
	for _, tc := range []struct {
		name, body  string
		headers     []string
		contentType string // replaces application/json
		status      int
		answer      string
		reason      string
	}{
		{"gzip", gzipped(drop), []string{"Content-Encoding: gzip"}, "", 415, encoding, "content_encoding"},
		{"deflate", drop, []string{"Content-Encoding: deflate"}, "", 415, encoding, "content_encoding"},
		{"br", drop, []string{"Content-Encoding: br"}, "", 415, encoding, "content_encoding"},
		{"GZIP, identity", drop, []string{"Content-Encoding: identity, GZIP"}, "", 415, encoding, "content_encoding"},
		{"two Content-Encoding headers", drop, []string{"Content-Encoding: identity", "Content-Encoding: gzip"}, "", 415, encoding, "content_encoding"},
		{"UTF-8 BOM", "\xef\xbb\xbf" + drop, nil, "", 400, bom, "byte_order_mark"},
		{"UTF-16LE with BOM", utf16Body(drop, false, true), nil, "", 400, bom, "byte_order_mark"},
		{"UTF-16BE with BOM", utf16Body(drop, true, true), nil, "", 400, bom, "byte_order_mark"},
		{"UTF-16LE under its charset", utf16Body(drop, false, false), nil, "application/json; charset=utf-16le", 415, charset, "charset"},
		{"UTF-16BE under its charset", utf16Body(drop, true, false), nil, "application/json; charset=UTF-16BE", 415, charset, "charset"},
		{"UTF-16 with BOM under its charset", utf16Body(drop, false, true), nil, "application/json; charset=utf-16", 415, charset, "charset"},
		{"latin-1", drop, nil, "application/json; charset=iso-8859-1", 415, charset, "charset"},
		{"UTF-16LE, no BOM, no charset", utf16Body(drop, false, false), nil, "", 400, invalid, "not_json"},
		{"UTF-16BE, no BOM, no charset", utf16Body(drop, true, false), nil, "", 400, notJSON, "not_json"},
		{"not UTF-8", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_all` + "\xff" + `"}}`, nil, "", 400, notUTF8, "not_utf8"},
		{"a NUL before the JSON", "\x00" + drop, nil, "", 400, notJSON, "not_json"},
		{"form-encoded", "method=tools/call", nil, "", 400, notJSON, "not_json"},
		{"two Content-Type headers", drop, []string{"Content-Type: application/json"}, "", 415, "", "content_type"},
		{"malformed Content-Type", drop, nil, "application/json; charset", 415, "", "content_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(logs.FilterMessage(eventMCPRefused).All())
			w, r := mcpPost(t, read, tc.body, tc.headers...)
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			check(t, s, w, r, tc.status, tc.answer)
			events := logs.FilterMessage(eventMCPRefused).All()
			if len(events) != before+1 {
				t.Fatalf("%d refusal events, want one more than %d", len(events), before)
			}
			if f := events[len(events)-1].ContextMap(); f["reason"] != tc.reason || f["resource"] != "https://auth.test/mcp" {
				t.Errorf("event %v", f)
			}
		})
	}
	// What passes: identity, UTF-8 under any spelling of its charset.
	for _, h := range []string{"Content-Encoding: identity", "Content-Type: application/json; charset=utf-8", "Content-Type: application/json; charset=UTF8"} {
		w, r := mcpPost(t, read, call(1, "search"), h)
		if strings.HasPrefix(h, "Content-Type:") {
			r.Header.Set("Content-Type", strings.TrimPrefix(h, "Content-Type: "))
		}
		check(t, s, w, r, http.StatusNoContent, "")
	}
}

// check runs the guard and checks its answer; a refused request must not
// reach the upstream.
func check(t *testing.T, s *Server, rec *httptest.ResponseRecorder, r *http.Request, status int, answer string) {
	t.Helper()
	up := &recorder{}
	if err := s.Guard(rec, r, up); err != nil {
		t.Fatal(err)
	}
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if answer != "" && rec.Body.String() != answer {
		t.Errorf("body\n got %s\nwant %s", rec.Body, answer)
	}
	if status != http.StatusNoContent && up.body != nil {
		t.Errorf("the upstream was called with %q", up.body)
	}
}

// TestGuardMCPMemberSpellings: a member a case-insensitive decoder would
// read as a protocol member, or a repeated protocol member, is refused.
func TestGuardMCPMemberSpellings(t *testing.T) {
	s := mcpServer(t)
	admin := mcpToken(t, s, "alice", "notes:admin")
	spelling := func(m string) string {
		return `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the JSON-RPC message has a member spelled like ` + m + ` but not exactly"}}`
	}
	repeated := func(m string) string {
		return `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the JSON-RPC message repeats its ` + m + ` member"}}`
	}
	for _, tc := range []struct{ name, body, answer string }{
		{"METHOD", `{"method":"tools/list","METHOD":"tools/call","params":{"name":"drop_db"}}`, spelling("method")},
		{"Method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"tools/list"}`, spelling("method")},
		{"ID", `{"jsonrpc":"2.0","ID":1,"method":"tools/list"}`, spelling("id")},
		{"paramſ (long s)", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"paramſ":{"name":"drop_db"}}`, spelling("params")},
		{"jſonrpc", `{"jſonrpc":"2.0","id":1,"method":"tools/list"}`, spelling("jsonrpc")},
		{"Name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"drop_db"}}`, spelling("name")},
		{"NAME", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"drop_db"}}`, spelling("name")},
		{"URI", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"notes://x","uri":"notes://y"}}`, spelling("uri")},
		{"two methods", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"drop_db"}}`, repeated("method")},
		{"two ids", `{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}`, repeated("id")},
		{"two params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"params":{"name":"drop_db"}}`, repeated("params")},
		{"two names", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"drop_db"}}`, repeated("name")},
		{"escaped name of a member", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","n\u0061me":"drop_db"}}`, repeated("name")},
		{"in a batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"METHOD":"tools/call"}]`, spelling("method")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := mcpPost(t, admin, tc.body)
			check(t, s, w, r, http.StatusBadRequest, tc.answer)
		})
	}
	// Other members are the server's business, whatever their spelling.
	w, r := mcpPost(t, admin, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"Name":"x","name":"y"},"_meta":{}},"Extra":1,"extra":2}`)
	check(t, s, w, r, http.StatusNoContent, "")
}

// TestGuardMCPBodiesOnOtherMethods: under an MCP resource a body is
// judged with POST only; any other method carrying one is refused.
func TestGuardMCPBodiesOnOtherMethods(t *testing.T) {
	s := mcpServer(t)
	read := mcpToken(t, s, "alice", "mcp:read")
	const want = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"under an MCP resource a request body is accepted only with POST"}}`
	for _, method := range []string{"PUT", "PATCH", "DELETE", "GET", "put", "PROPFIND"} {
		body := call(1, "drop_all")
		w, r := rawRequest(t, method+" /mcp HTTP/1.1\r\nHost: auth.test\r\nContent-Type: application/json\r\nAuthorization: Bearer "+read+
			"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		check(t, s, w, r, http.StatusMethodNotAllowed, want)
		if got := w.Header().Get("Allow"); got != "GET, POST, DELETE, OPTIONS" {
			t.Errorf("%s: Allow %q", method, got)
		}
		w, r = rawRequest(t, method+" /mcp HTTP/1.1\r\nHost: auth.test\r\nAuthorization: Bearer "+read+"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		check(t, s, w, r, http.StatusMethodNotAllowed, want)
	}
	// Without a body, GET (the SSE stream) and DELETE (the end of a
	// session) pass.
	for _, method := range []string{"GET", "DELETE"} {
		w, r := rawRequest(t, method+" /mcp HTTP/1.1\r\nHost: auth.test\r\nAuthorization: Bearer "+read+"\r\n\r\n")
		check(t, s, w, r, http.StatusNoContent, "")
	}
}

// TestGuardMCPBatchLimit: a batch of 100 messages is judged; 101 are
// refused.
func TestGuardMCPBatchLimit(t *testing.T) {
	s := mcpServer(t)
	read := mcpToken(t, s, "alice", "mcp:read")
	batch := func(n int) string {
		calls := make([]string, n)
		for i := range calls {
			calls[i] = call(i, "search")
		}
		return "[" + strings.Join(calls, ",") + "]"
	}
	w, r := mcpPost(t, read, batch(100))
	check(t, s, w, r, http.StatusNoContent, "")
	w, r = mcpPost(t, read, batch(101))
	check(t, s, w, r, http.StatusBadRequest, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"a JSON-RPC batch may hold at most 100 messages"}}`)
}

// TestGuardMCPAuditWithoutToken: a batch of tool calls without a valid
// token writes one audit event, not one per call, and long tool names are
// cut.
func TestGuardMCPAuditWithoutToken(t *testing.T) {
	s, logs := auditedMCPServer(t)
	long := strings.Repeat("x", 5000)
	calls := make([]string, 100)
	for i := range calls {
		calls[i] = call(i, long)
	}
	w, r := mcpPost(t, "", "["+strings.Join(calls, ",")+"]")
	check(t, s, w, r, http.StatusUnauthorized, "")
	events := logs.FilterMessage(eventToolCall).All()
	if len(events) != 1 {
		t.Fatalf("%d tool call events, want 1", len(events))
	}
	f := events[0].ContextMap()
	if f["tool"] != strings.Repeat("x", maxLoggedName)+"…" || f["tool_calls"] != int64(100) || f["outcome"] != "refused" || f["reason"] != decisionMissingToken {
		t.Errorf("event %v", f)
	}
}
