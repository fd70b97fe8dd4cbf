package endpoints

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// warnedOrigins are the issuers whose disagreement with the site has been
// logged, once each per process.
var warnedOrigins sync.Map

// CheckOrigin warns, once per issuer and process, when a request to a
// protocol route reaches the site by another scheme, host or port than the
// issuer's: every client then fails to validate the documents (issuer
// https://… on an http:// site is the common one, seen by clients as
// "fetch failed"). Behind a proxy Caddy trusts (trusted_proxies), the
// proxy's X-Forwarded-Proto and X-Forwarded-Host say how the client
// reached the site.
func (s *Server) CheckOrigin(r *http.Request) {
	if _, done := warnedOrigins.Load(s.cfg.Issuer); done {
		return
	}
	origin := requestOrigin(r)
	if origin == s.issuerOrigin {
		return
	}
	if _, done := warnedOrigins.LoadOrStore(s.cfg.Issuer, true); done {
		return
	}
	s.cfg.Logger.Warn("a request reached the authorization server at another origin than its issuer: clients will fail to validate its documents (often seen as \"fetch failed\"); make the issuer the URL clients use, or the site serve it",
		zap.String("issuer", s.cfg.Issuer), zap.String("request_origin", origin))
}

// requestOrigin is the scheme://host:port a client sent r to: behind a
// proxy Caddy trusts (trusted_proxies), as its X-Forwarded-Proto and
// X-Forwarded-Host say.
func requestOrigin(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p != "" {
			scheme = strings.ToLower(p)
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	return scheme + "://" + hostPort(host, scheme)
}

// originOf is an issuer's scheme://host:port, as CheckOrigin compares it
// (empty for an issuer that does not parse, which NewServer refuses).
func originOf(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + hostPort(u.Host, u.Scheme)
}

// firstValue is the first of a comma-separated header's values.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// hostPort is a host with its port, the scheme's default when it has none,
// lower-cased.
func hostPort(host, scheme string) string {
	host = strings.ToLower(host)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}
