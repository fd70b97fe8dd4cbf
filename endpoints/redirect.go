package endpoints

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// matchRedirectURI reports whether presented is one of the registered
// redirect URIs: an exact string match, except that for a registered http
// URI on a loopback host (127.0.0.1, [::1], localhost) the port may differ
// (RFC 8252 §7.3); scheme, host, path and query stay exact.
func matchRedirectURI(registered []string, presented string) bool {
	for _, r := range registered {
		if r == presented || loopbackMatch(r, presented) {
			return true
		}
	}
	return false
}

func loopbackMatch(registered, presented string) bool {
	ru, err := url.Parse(registered)
	if err != nil || ru.Scheme != "http" || !isLoopbackHostname(ru.Hostname()) {
		return false
	}
	pu, err := url.Parse(presented)
	if err != nil || pu.Scheme != "http" || pu.User != nil || pu.Fragment != "" || strings.Contains(presented, "#") {
		return false
	}
	if pu.Port() != "" && !allDigits(pu.Port()) {
		return false
	}
	return pu.Hostname() == ru.Hostname() &&
		pu.EscapedPath() == ru.EscapedPath() &&
		pu.RawQuery == ru.RawQuery && pu.ForceQuery == ru.ForceQuery
}

// IsLoopbackHost reports whether host is localhost, a name under
// .localhost (RFC 6761) or a loopback IP address.
func IsLoopbackHost(host string) bool {
	host = strings.ToLower(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isLoopbackHostname is where a registered loopback redirect URI may vary
// its port (RFC 8252 §7.3).
func isLoopbackHostname(h string) bool {
	return h == "127.0.0.1" || h == "::1" || h == "localhost"
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// nativeRedirects reports whether every redirect URI is on a loopback
// host or uses a private-use scheme: the client runs on the user's
// device, where any program could claim the port or the scheme.
func nativeRedirects(uris []string) bool {
	return everyURI(uris, func(u *url.URL, web bool) bool { return !web || IsLoopbackHost(u.Hostname()) })
}

// loopbackRedirects reports whether every redirect URI is http(s) on a
// loopback host.
func loopbackRedirects(uris []string) bool {
	return everyURI(uris, func(u *url.URL, web bool) bool { return web && IsLoopbackHost(u.Hostname()) })
}

// everyURI reports whether there are URIs and each one parses and passes
// ok (told whether it is http or https).
func everyURI(uris []string, ok func(u *url.URL, web bool) bool) bool {
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || !ok(u, u.Scheme == "http" || u.Scheme == "https") {
			return false
		}
	}
	return len(uris) > 0
}

// withParams appends params to a redirect URI that may already carry a
// query (RFC 6749 §3.1.2: its query component must be kept).
func withParams(redirectURI string, params url.Values) string {
	sep := "?"
	if strings.Contains(redirectURI, "?") {
		sep = "&"
		if strings.HasSuffix(redirectURI, "?") || strings.HasSuffix(redirectURI, "&") {
			sep = ""
		}
	}
	return redirectURI + sep + params.Encode()
}

// redirectHost is what the consent page shows of a redirect URI: its host,
// or the scheme of a native app's private-use URI.
func redirectHost(redirectURI string) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	switch {
	case u.Host != "" && (u.Scheme == "http" || u.Scheme == "https"):
		return u.Host
	case u.Host != "":
		return u.Scheme + "://" + u.Host
	default:
		return u.Scheme + ":"
	}
}

// ValidateRedirectURI accepts https, http on a loopback host, and private-use
// schemes of native apps; it refuses relative URIs, fragments, userinfo,
// wildcards and script-bearing schemes.
func ValidateRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return errors.New("must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("must not have a fragment")
	}
	if u.User != nil {
		return errors.New("must not carry user information")
	}
	if strings.Contains(raw, "*") {
		return errors.New("must not contain wildcards")
	}
	switch scheme := strings.ToLower(u.Scheme); scheme {
	case "https":
		if u.Host == "" {
			return errors.New("must name a host")
		}
	case "http":
		if !IsLoopbackHost(u.Hostname()) {
			return errors.New("plain http is allowed only for localhost, *.localhost, 127.0.0.0/8 and [::1]")
		}
	case "javascript", "data", "file", "blob", "vbscript", "about", "ws", "wss", "ftp":
		return fmt.Errorf("scheme %q is not allowed", scheme)
	default:
		if !privateUseScheme.MatchString(scheme) {
			return fmt.Errorf("scheme %q is not allowed", scheme)
		}
	}
	return nil
}

// privateUseScheme is an RFC 3986 scheme of a native app (RFC 8252 §7.1),
// such as cursor or com.example.app.
var privateUseScheme = regexp.MustCompile(`^[a-z][a-z0-9+.\-]*$`)
