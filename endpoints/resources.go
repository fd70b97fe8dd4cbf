package endpoints

import (
	"net/url"
	"strings"
)

// matchResource returns the configured resource that raw names: an
// absolute URI without fragment, compared with scheme and host
// case-insensitive and https://host ≡ https://host/.
func (s *core) matchResource(raw string) (string, bool) {
	canonical, ok := CanonicalResource(raw)
	if !ok {
		return "", false
	}
	for _, r := range s.resources {
		if r.id == canonical {
			return r.id, true
		}
	}
	return "", false
}

// CanonicalResource is the form in which resources are configured and
// compared: scheme and host lowercased and a bare "/" path dropped, so
// https://HOST/ and https://host name the same resource. It reports false
// for anything but an absolute URI with a host and without a fragment.
func CanonicalResource(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", false
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if u.Path == "/" && u.RawPath == "" {
		u.Path = ""
	}
	return u.String(), true
}
