package endpoints

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestCheckOrigin: a protocol request reaching the site at another origin
// than the issuer's is logged once per issuer; a trusted proxy's
// X-Forwarded-Proto and X-Forwarded-Host count, an untrusted one's do not.
func TestCheckOrigin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		issuer  string
		url     string
		tls     bool
		headers map[string]string
		trusted bool
		warn    bool
	}{
		{"same origin", "https://auth.test", "https://auth.test/oauth/token", true, nil, false, false},
		{"default port written out", "https://auth.test", "https://auth.test:443/oauth/token", true, nil, false, false},
		{"https issuer, http site", "https://localhost:8091", "http://localhost:8091/.well-known/oauth-authorization-server", false, nil, false, true},
		{"another port", "http://localhost:8080", "http://localhost:8081/oauth/token", false, nil, false, true},
		{"another host", "https://auth.test", "https://other.test/oauth/token", true, nil, false, true},
		{"TLS ends at a trusted proxy", "https://auth.test", "http://auth.test/oauth/token", false, map[string]string{"X-Forwarded-Proto": "https"}, true, false},
		{"an untrusted proxy's word", "https://auth.test", "http://auth.test/oauth/token", false, map[string]string{"X-Forwarded-Proto": "https"}, false, true},
		{"a trusted proxy's host", "https://auth.test", "http://internal:9000/oauth/token", false, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "auth.test"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			s := newTestServer(t, func(c *Config) { c.Issuer = tc.issuer; c.Logger = zap.New(core) })
			warnedOrigins.Delete(tc.issuer)
			defer warnedOrigins.Delete(tc.issuer)
			for range 3 {
				r := httptest.NewRequest("GET", tc.url, nil)
				if tc.tls {
					r.TLS = &tls.ConnectionState{}
				} else {
					r.TLS = nil
				}
				for k, v := range tc.headers {
					r.Header.Set(k, v)
				}
				ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
				ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: tc.trusted})
				s.CheckOrigin(r.WithContext(ctx))
			}
			if n := logs.Len(); n != map[bool]int{true: 1, false: 0}[tc.warn] {
				t.Fatalf("%d warnings, want warn=%v: %v", n, tc.warn, logs.All())
			}
		})
	}
}
