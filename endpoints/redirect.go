package endpoints

import (
	"net/url"
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
