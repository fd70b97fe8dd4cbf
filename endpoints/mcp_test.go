package endpoints

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// mcpServer is a test server with the MCP policy: write implies
// read, admin implies write; delete_* needs write, search and resources/*
// need read; three tool patterns allowed.
func mcpServer(t testing.TB, mutate ...func(*Config)) *Server {
	return newTestServer(t, append([]func(*Config){func(c *Config) {
		c.Scopes = []string{"mcp:read", "mcp:write", "notes:admin"}
		c.ScopeDefinitions = []ScopeDefinition{
			{Name: "mcp:read", Description: "Read your notes"},
			{Name: "mcp:write", Description: "Create and delete notes", Implies: []string{"mcp:read"}},
			{Name: "notes:admin", Implies: []string{"mcp:write"}},
		}
		c.Guard.MCPRules = []MCPScopeRule{
			{Tool: "delete_*", Scopes: []string{"mcp:write"}},
			{Tool: "search", Scopes: []string{"mcp:read"}},
			{Method: "resources/*", Scopes: []string{"mcp:read"}},
		}
		c.Guard.AllowTools = []string{"search", "fetch_*", "delete_note"}
	}}, mutate...)...)
}

func mcpToken(t *testing.T, s *Server, sub, scope string) string {
	t.Helper()
	at, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: sub, scope: scope, resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return at.token
}

// rawRequest parses a request as net/http's server does (header names
// canonicalised) and prepares it as Caddy does.
func rawRequest(t *testing.T, raw string) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r.URL.Scheme, r.URL.Host = "https", "auth.test"
	w := httptest.NewRecorder()
	return w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
}

// mcpPost is a POST to /mcp with a token, headers ("Name: value") and a body.
func mcpPost(t *testing.T, token, body string, headers ...string) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	var b strings.Builder
	b.WriteString("POST /mcp HTTP/1.1\r\nHost: auth.test\r\nContent-Type: application/json\r\n")
	if token != "" {
		b.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return rawRequest(t, b.String())
}

// recorder records the body the upstream received.
type recorder struct{ body []byte }

func (u *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.body, _ = io.ReadAll(r.Body)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func call(id int, tool string) string {
	return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
}

const modern = "MCP-Protocol-Version: 2026-07-28"

// TestGuardMCPToolScopes: per-tool and per-method requirements, the scope
// hierarchy, allow_tools, from headers or from the body.
func TestGuardMCPToolScopes(t *testing.T) {
	s := mcpServer(t)
	read, write, admin := mcpToken(t, s, "alice", "mcp:read"), mcpToken(t, s, "alice", "mcp:write"), mcpToken(t, s, "alice", "notes:admin")
	metadata := s.resources[0].MetadataURL()
	stepUp := func(scope string) string {
		return `Bearer resource_metadata="` + metadata + `", scope="` + scope + `", error="insufficient_scope", error_description="the access token lacks a required scope"`
	}
	for _, tc := range []struct {
		name      string
		token     string
		body      string
		headers   []string
		status    int
		challenge string // WWW-Authenticate, exactly
		answer    string // body, exactly (when set)
	}{
		{"read token, read tool, headers", read, call(1, "search"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusNoContent, "", ""},
		{"read token, write tool, headers", read, call(1, "delete_note"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: delete_note"}, http.StatusForbidden, stepUp("mcp:write"),
			`{"error":"insufficient_scope","error_description":"the access token lacks a required scope","scope":"mcp:write"}`},
		{"write token, write tool", write, call(1, "delete_note"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: delete_note"}, http.StatusNoContent, "", ""},
		{"write implies read", write, call(1, "search"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusNoContent, "", ""},
		{"admin implies write implies read", admin, `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"notes://1"}}`, []string{modern, "Mcp-Method: resources/read", "Mcp-Name: notes://1"}, http.StatusNoContent, "", ""},
		{"2026-07-28: headers that disagree with the body are refused", read, call(1, "delete_note"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"the Mcp-Method or Mcp-Name header does not match the request body"}}`},
		{"2026-07-28: the body is judged too", read, call(1, "delete_note"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: delete_note"}, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"Mcp-Name alone must agree", read, call(1, "delete_note"), []string{"Mcp-Name: search"}, http.StatusBadRequest, "", ""},
		{"headers with a batch", read, "[" + call(1, "search") + "]", []string{modern, "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusBadRequest, "", ""},
		{"repeated Mcp-Method", read, call(1, "search"), []string{modern, "Mcp-Method: tools/call", "Mcp-Method: tools/list", "Mcp-Name: search"}, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the Mcp-Method header is repeated"}}`},
		{"repeated Mcp-Name", read, call(1, "search"), []string{"Mcp-Method: tools/call", "Mcp-Name: search", "Mcp-Name: delete_note"}, http.StatusBadRequest, "", ""},
		{"repeated MCP-Protocol-Version", read, call(1, "search"), []string{modern, "MCP-Protocol-Version: 2025-06-18"}, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the Mcp-Protocol-Version header is repeated"}}`},
		{"an unknown later version: the body decides", read, call(1, "delete_note"), []string{"MCP-Protocol-Version: 9999-12-31", "Mcp-Method: tools/call", "Mcp-Name: delete_note"}, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"an unknown version with lying headers", write, call(3, "delete_note"), []string{"MCP-Protocol-Version: 9999-12-31", "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusBadRequest, "", ""},
		{"lower-case header names", read, call(1, "search"), []string{"mcp-protocol-version: 2026-07-28", "mcp-method: tools/call", "mcp-name: delete_note"}, http.StatusBadRequest, "", ""},
		{"tool outside allow_tools, headers", write, call(1, "delete_all"), []string{modern, "Mcp-Method: tools/call", "Mcp-Name: delete_all"}, http.StatusForbidden, "",
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"tool \"delete_all\" is not allowed through this gateway"}}`},
		{"tool outside allow_tools, body", admin, call(7, "drop_db"), nil, http.StatusForbidden, "",
			`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"tool \"drop_db\" is not allowed through this gateway"}}`},
		{"no headers: the body decides", read, call(1, "delete_note"), nil, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"older version: the body decides", read, call(1, "delete_note"), []string{"MCP-Protocol-Version: 2025-11-25"}, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"older version, headers match", read, call(1, "search"), []string{"MCP-Protocol-Version: 2025-06-18", "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusNoContent, "", ""},
		{"older version, headers disagree", write, call(3, "delete_note"), []string{"MCP-Protocol-Version: 2025-06-18", "Mcp-Method: tools/call", "Mcp-Name: search"}, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":3,"error":{"code":-32020,"message":"the Mcp-Method or Mcp-Name header does not match the request body"}}`},
		{"older version, method disagrees", write, call(3, "search"), []string{"Mcp-Method: tools/list"}, http.StatusBadRequest, "", ""},
		{"batch: the union in one challenge", read, "[" + call(1, "search") + "," + `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"x"}}` + "," + call(3, "delete_note") + "]", nil,
			http.StatusForbidden, stepUp("mcp:read mcp:write"), ""},
		{"batch with write token", write, "[" + call(1, "search") + "," + call(2, "delete_note") + "]", nil, http.StatusNoContent, "", ""},
		{"batch with a refused tool", admin, "[" + call(1, "search") + "," + call(2, "delete_all") + "]", nil, http.StatusForbidden, "",
			`[{"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"tool \"delete_all\" is not allowed through this gateway"}}]`},
		{"a notification is judged too", read, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_note"}}`, nil, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"a notification of a refused tool", admin, `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"drop_db"}}`, nil, http.StatusForbidden, "",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"tool \"drop_db\" is not allowed through this gateway"}}`},
		{"notifications/initialized passes", read, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, []string{modern, "Mcp-Method: notifications/initialized"}, http.StatusNoContent, "", ""},
		{"a response follows the path rules", read, `{"jsonrpc":"2.0","id":1,"result":{}}`, nil, http.StatusNoContent, "", ""},
		{"not JSON is refused", read, `hello`, nil, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body is not a JSON-RPC message (a JSON object or array)"}}`},
		{"an empty body passes (the server refuses it)", read, ``, nil, http.StatusNoContent, "", ""},
		{"a tool name that is not a string", admin, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":["drop_db"]}}`, nil, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"params must be an object whose name is a string"}}`},
		{"params by position", admin, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":["drop_db"]}`, nil, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"params must be an object whose name is a string"}}`},
		{"broken JSON is refused", read, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_note"`, nil, http.StatusBadRequest, "",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"the request body is not valid JSON"}}`},
		{"a second value after the first is refused", read, call(1, "search") + call(2, "delete_note"), nil, http.StatusBadRequest, "", ""},
		{"no jsonrpc member: judged all the same", read, `{"id":1,"method":"tools/call","params":{"name":"delete_note"}}`, nil, http.StatusForbidden, stepUp("mcp:write"), ""},
		{"no token: the challenge names the tool's scope", "", call(1, "delete_note"), nil, http.StatusUnauthorized,
			`Bearer resource_metadata="` + metadata + `", scope="mcp:write"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := mcpPost(t, tc.token, tc.body, tc.headers...)
			up := &recorder{}
			if err := s.Guard(w, r, up); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate\n got %s\nwant %s", got, tc.challenge)
			}
			if tc.answer != "" && w.Body.String() != tc.answer {
				t.Errorf("body\n got %s\nwant %s", w.Body, tc.answer)
			}
			if tc.status == http.StatusNoContent && string(up.body) != tc.body {
				t.Errorf("the upstream received %q, want the body unchanged", up.body)
			}
		})
	}
}

// TestGuardMCPMethodSpelling: a POST spelled in lower case is judged as
// a POST (a lenient upstream might take it as one).
func TestGuardMCPMethodSpelling(t *testing.T) {
	s := mcpServer(t)
	w, r := mcpPost(t, mcpToken(t, s, "alice", "mcp:read"), call(1, "delete_note"))
	r.Method = "post"
	s.Guard(w, r, okNext)
	if w.Code != http.StatusForbidden {
		t.Fatalf("lower-case post: %d", w.Code)
	}
}

// TestGuardMCPBodyLimit: a body the guard must read is read up to 1 MiB
// and passed on whole; beyond it, 413.
func TestGuardMCPBodyLimit(t *testing.T) {
	s := mcpServer(t)
	token := mcpToken(t, s, "alice", "mcp:read")
	pad := func(n int) string {
		c := call(1, "search")
		return c[:len(c)-1] + `,"pad":"` + strings.Repeat("x", n-len(c)-9) + `"}`
	}
	exact := pad(maxMCPBody)
	if len(exact) != maxMCPBody {
		t.Fatalf("padding made %d bytes", len(exact))
	}
	w, r := mcpPost(t, token, exact)
	up := &recorder{}
	s.Guard(w, r, up)
	if w.Code != http.StatusNoContent || !bytes.Equal(up.body, []byte(exact)) {
		t.Fatalf("1 MiB: %d, upstream got %d bytes", w.Code, len(up.body))
	}
	w, r = mcpPost(t, token, pad(maxMCPBody+1))
	s.Guard(w, r, up)
	want := `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"the request body is larger than 1 MiB"}}`
	if w.Code != http.StatusRequestEntityTooLarge || w.Body.String() != want {
		t.Fatalf("1 MiB + 1: %d %s", w.Code, w.Body)
	}
	// With the headers of 2026-07-28 the body is read all the same.
	w, r = mcpPost(t, token, pad(maxMCPBody+1), modern, "Mcp-Method: tools/call", "Mcp-Name: search")
	s.Guard(w, r, up)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("headers, 1 MiB + 1: %d", w.Code)
	}
}

// TestGuardMCPWithoutRules: a server without MCP rules never reads bodies
// and judges by paths alone.
func TestGuardMCPWithoutRules(t *testing.T) {
	s := newTestServer(t)
	token := mcpToken(t, s, "alice", "mcp:read")
	w, r := mcpPost(t, token, call(1, "delete_everything"))
	r.Body = io.NopCloser(failingReader{})
	if err := s.Guard(w, r, okNext); err != nil || w.Code != http.StatusNoContent {
		t.Fatalf("%d %v", w.Code, err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { panic("the guard read the body") }

// TestGuardRateLimitPerUser: rate_limit_per_user counts per user across
// clients; beyond it, 429 with Retry-After and a JSON-RPC error.
func TestGuardRateLimitPerUser(t *testing.T) {
	s := mcpServer(t, func(c *Config) { c.Guard.RateLimitPerUser, c.Guard.RateLimitPerUserWindow = 3, time.Minute })
	alice, bob := mcpToken(t, s, "alice", "mcp:read"), mcpToken(t, s, "bob", "mcp:read")
	for i := range 3 {
		w, r := mcpPost(t, alice, call(i, "search"))
		s.Guard(w, r, okNext)
		if w.Code != http.StatusNoContent {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
	}
	w, r := mcpPost(t, alice, call(9, "search"))
	s.Guard(w, r, okNext)
	want := `{"jsonrpc":"2.0","id":9,"error":{"code":-32000,"message":"too many requests for this user; retry later"}}`
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "20" || w.Body.String() != want {
		t.Fatalf("fourth: %d Retry-After %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	w, r = guardRequest(alice)
	s.Guard(w, r, okNext)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), `"error":"rate_limited"`) {
		t.Fatalf("a GET over the limit: %d %s", w.Code, w.Body)
	}
	// Another client of alice's is over the same limit.
	other, err := s.mintAccessToken(randomID(), grant{clientID: "multi", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w, r = mcpPost(t, other.token, call(10, "search"))
	s.Guard(w, r, okNext)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("alice through another client: %d", w.Code)
	}
	w, r = mcpPost(t, bob, call(1, "search"))
	s.Guard(w, r, okNext)
	if w.Code != http.StatusNoContent {
		t.Fatalf("another user: %d", w.Code)
	}
}

// TestGuardMCPAuditAndMetrics: one audit event per tools/call with who,
// which tool and the outcome; metrics by method and listed tool only.
func TestGuardMCPAuditAndMetrics(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := mcpServer(t, func(c *Config) { c.Audit = zap.New(core) })
	read := mcpToken(t, s, "alice", "mcp:read")
	counter := func(method, tool, outcome string) float64 {
		return testutil.ToFloat64(metrics.mcp.WithLabelValues("https://auth.test/mcp", method, tool, outcome))
	}
	before := []float64{counter("tools/call", "search", "allowed"), counter("tools/call", "delete_*", "insufficient_scope"),
		counter("tools/call", "other", "tool_not_allowed"), counter("other", "", "allowed")}
	for _, body := range []string{call(1, "search"), call(2, "delete_note"), call(3, "rm_rf"), `{"jsonrpc":"2.0","id":4,"method":"x/secret-method-name"}`} {
		w, r := mcpPost(t, read, body)
		s.Guard(w, r, okNext)
	}
	after := []float64{counter("tools/call", "search", "allowed"), counter("tools/call", "delete_*", "insufficient_scope"),
		counter("tools/call", "other", "tool_not_allowed"), counter("other", "", "allowed")}
	for i := range before {
		if after[i]-before[i] != 1 {
			t.Errorf("counter %d moved by %v, want 1", i, after[i]-before[i])
		}
	}
	events := logs.FilterMessage(eventToolCall).All()
	if len(events) != 3 {
		t.Fatalf("%d tool call events, want 3", len(events))
	}
	want := []map[string]any{
		{"tool": "search", "outcome": "allowed", "sub": "alice", "client_id": "pub1"},
		{"tool": "delete_note", "outcome": "refused", "reason": "insufficient_scope", "detail": "missing mcp:write"},
		{"tool": "rm_rf", "outcome": "refused", "reason": "tool_not_allowed"},
	}
	for i, e := range events {
		fields := e.ContextMap()
		for k, v := range want[i] {
			if fields[k] != v {
				t.Errorf("event %d: %s = %v, want %v", i, k, fields[k], v)
			}
		}
		if strings.Contains(jsonString(fields), read) {
			t.Errorf("event %d carries the token", i)
		}
	}
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestScopeCatalogue: implies is transitive; cycles and unknown scopes
// are refused with messages naming them.
func TestScopeCatalogue(t *testing.T) {
	c, err := NewScopeCatalogue([]string{"a", "b", "c", "d"}, []ScopeDefinition{{Name: "a", Implies: []string{"b"}}, {Name: "b", Implies: []string{"c"}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := c.missing(c.effective([]string{"a"}), []string{"b", "c", "d"}); len(m) != 1 || m[0] != "d" {
		t.Fatalf("missing %v, want [d]", m)
	}
	if m := c.missing(c.effective([]string{"c"}), []string{"a"}); len(m) != 1 {
		t.Fatalf("a narrower scope satisfied a broader one: %v", m)
	}
	for defs, want := range map[*[]ScopeDefinition]string{
		{{Name: "a", Implies: []string{"b"}}, {Name: "b", Implies: []string{"a"}}}: "implies itself (",
		{{Name: "a", Implies: []string{"a"}}}:                                      "scope a: implies itself (a -> a)",
		{{Name: "a", Implies: []string{"zzz"}}}:                                    "scope a: implies zzz, which is not in the scope catalogue",
		{{Name: "a"}, {Name: "a"}}:                                                 "scope a: defined twice",
	} {
		if _, err := NewScopeCatalogue([]string{"a", "b"}, *defs); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want %q", *defs, err, want)
		}
	}
}

// FuzzParseJSONRPC: whatever the body, the parser never panics, refuses
// with a JSON-RPC error code, or returns only messages with a method, and
// at most 100 of them.
func FuzzParseJSONRPC(f *testing.F) {
	f.Add([]byte(call(1, "search")))
	f.Add([]byte("[" + call(1, "a") + "," + call(2, "b") + "]"))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///etc"}}`))
	f.Add([]byte(`[1,2,{"jsonrpc":"2.0"}]`))
	f.Add([]byte(`{"method":"tools/list","METHOD":"tools/call","params":{"name":"drop_all"}}`))
	f.Add([]byte("\xef\xbb\xbf" + call(1, "a")))
	f.Add([]byte(`{"id":1,"method":"tools/call","paramſ":{"name":"x"},"params":{"name":"y"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseJSONRPC(body)
		if err != nil {
			if r, ok := err.(*mcpRefusal); !ok || r.code >= -32000 || r.status < 400 {
				t.Fatalf("refusal %#v", err)
			}
			return
		}
		if len(c.requests) > maxBatch {
			t.Fatalf("%d messages", len(c.requests))
		}
		for _, req := range c.requests {
			if req.method == "" {
				t.Fatalf("a message without method from %q", body)
			}
		}
	})
}

// BenchmarkGuardMCPToolCall times the guard on a GET and on a tools/call
// with the headers of 2026-07-28 and without (the body is judged either
// way):
//
//	go test ./endpoints -run '^$' -bench GuardMCP -benchmem
func BenchmarkGuardMCPToolCall(b *testing.B) {
	for _, bc := range []struct {
		name, method string
		headers      http.Header
	}{
		{"GET, path rules only", http.MethodGet, http.Header{}},
		{"headers", http.MethodPost, http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"search"}}},
		{"body", http.MethodPost, http.Header{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := mcpServer(b)
			s.cfg.Audit = zap.NewNop()
			s.audit = newAuditor(zap.NewNop())
			at, err := s.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", scope: "mcp:read", resource: "https://auth.test/mcp"}, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			body := []byte(call(1, "search"))
			w := &statusWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				var rb io.Reader
				if bc.method == http.MethodPost {
					rb = bytes.NewReader(body)
				}
				r := httptest.NewRequest(bc.method, "https://auth.test/mcp", rb)
				for k, v := range bc.headers {
					r.Header[k] = v
				}
				r.Header.Set("Authorization", "Bearer "+at.token)
				w.code = 0
				s.Guard(w, r, okNext)
				if w.code != http.StatusNoContent {
					b.Fatalf("guard: %d", w.code)
				}
			}
		})
	}
}
