package oauth2server

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// validateCaddyfile adapts a Caddyfile and loads it as `caddy validate`
// does (every module provisioned, nothing started).
func validateCaddyfile(t *testing.T, src string) error {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// TestPlacement: a configuration in which a handler answers protected
// requests before oauth2_server is refused at load, with a message saying
// how to order it; configurations where nothing does load.
func TestPlacement(t *testing.T) {
	block := func() string {
		return `oauth2_server {
			issuer http://localhost:9999
			resource http://localhost:9999/mcp
			storage ` + filepath.Join(t.TempDir(), "oauth.db") + `
			public /healthz
		}`
	}
	site := func(body string) string {
		return "{\n\tadmin off\n\tpersist_config off\n}\nhttp://localhost:9999 {\n" + body + "\n}\n"
	}
	refused := []struct{ name, src, what string }{
		{"reverse_proxy before it in a route block", site("route {\n reverse_proxy 127.0.0.1:9000\n " + block() + "\n}"), "reverse_proxy (server srv0, route 0, subroute, route 0"},
		{"order oauth2_server after reverse_proxy", "{\n\tadmin off\n\torder oauth2_server after reverse_proxy\n}\nhttp://localhost:9999 {\n reverse_proxy 127.0.0.1:9000\n " + block() + "\n}\n", "reverse_proxy"},
		{"respond before it", site("route {\n respond \"hello\"\n " + block() + "\n}"), "static_response (respond)"},
		{"file_server before it", site("route {\n file_server\n " + block() + "\n}"), "file_server"},
		{"php_fastcgi before it", site("route {\n php_fastcgi 127.0.0.1:9001\n " + block() + "\n}"), "reverse_proxy"},
		{"a proxy for a path of the resource", site("route {\n reverse_proxy /mcp/* 127.0.0.1:9000\n " + block() + "\n}"), "reverse_proxy"},
		{"a proxy for a glob reaching into it", site("route {\n reverse_proxy /m* 127.0.0.1:9000\n " + block() + "\n}"), "reverse_proxy"},
		{"a proxy for websocket upgrades", site("@ws header Connection *Upgrade*\nroute {\n reverse_proxy @ws 127.0.0.1:9000\n " + block() + "\n}"), "reverse_proxy"},
		{"handle for the resource, then the guard", site("handle /mcp* {\n reverse_proxy 127.0.0.1:9000\n}\nhandle {\n " + block() + "\n respond 404\n}"), "same group"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			err := validateCaddyfile(t, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.what) ||
				!strings.Contains(err.Error(), "runs before oauth2_server (issuer http://localhost:9999) for the requests it protects, so they would reach the upstream without a token: put oauth2_server first") {
				t.Fatalf("loaded or refused for another reason: %v", err)
			}
		})
	}
	loaded := []struct{ name, src string }{
		{"the directive's own order", site(block() + "\n reverse_proxy 127.0.0.1:9000")},
		{"oauth2_server first in a route block", site("route {\n " + block() + "\n reverse_proxy 127.0.0.1:9000\n}")},
		{"a proxy for another path first", site("route {\n reverse_proxy /other/* 127.0.0.1:9000\n " + block() + "\n reverse_proxy 127.0.0.1:9000\n}")},
		{"a public path first", site("route {\n respond /healthz \"ok\"\n " + block() + "\n reverse_proxy 127.0.0.1:9000\n}")},
		{"forward_auth first", site("forward_auth 127.0.0.1:9002 {\n uri /auth\n}\n" + block() + "\nreverse_proxy 127.0.0.1:9000")},
		{"another site first", "{\n\tadmin off\n}\nhttp://other.localhost:9999 {\n reverse_proxy 127.0.0.1:9000\n}\n" + "http://localhost:9999 {\n" + block() + "\n reverse_proxy 127.0.0.1:9000\n}\n"},
		{"two sites of one issuer", "{\n\tadmin off\n}\nhttp://a.localhost:9999 {\n" + strings.Replace(block(), "resource http://localhost:9999/mcp", "resource http://a.localhost:9999/mcp", 1) +
			"\n reverse_proxy 127.0.0.1:9000\n}\nhttp://b.localhost:9999 {\n" + strings.Replace(block(), "resource http://localhost:9999/mcp", "resource http://b.localhost:9999/mcp", 1) + "\n reverse_proxy 127.0.0.1:9000\n}\n"},
		{"handle for another path first", site("handle /docs/* {\n file_server\n}\nhandle {\n " + block() + "\n reverse_proxy 127.0.0.1:9000\n}")},
	}
	for _, tc := range loaded {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateCaddyfile(t, tc.src); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}
