package endpoints

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// testAllowedHosts and testRootCAs are set only by test builds (the
// oauth2test build tag): host:port pairs the fetcher may reach although
// they are local, and the roots their certificates chain to. Production
// builds have no way to weaken the fetcher.
var (
	testAllowedHosts map[string]bool
	testRootCAs      *x509.CertPool
)

// safeFetcher fetches what a client or a document names on the public
// internet (client ID metadata documents, key sets) over an SSRF-hardened
// HTTP client: public addresses on port 443 only (checked on the address
// dialed, after DNS), no proxy, no redirect, a timeout on every step.
type safeFetcher struct {
	client  *http.Client
	allowed map[string]bool // test-only: host:port exempt from the address rules
}

func newSafeFetcher(allowed map[string]bool, roots *x509.CertPool) *safeFetcher {
	f := &safeFetcher{allowed: allowed}
	dialer := &net.Dialer{Timeout: metadataFetchTimeout, Control: f.checkDial}
	f.client = &http.Client{
		Timeout: metadataFetchTimeout,
		Transport: &http.Transport{
			Proxy:                  nil, // never through an environment proxy
			DialContext:            dialer.DialContext,
			TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    metadataFetchTimeout,
			ResponseHeaderTimeout:  metadataFetchTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		},
	}
	return f
}

// checkDial runs on the address actually dialed, after DNS resolution, so a
// name that resolves (or re-resolves) to an internal address is refused.
func (f *safeFetcher) checkDial(network, address string, _ syscall.RawConn) error {
	if f.allowed[address] {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("unexpected address %q", address)
	}
	if ap.Port() != 443 {
		return fmt.Errorf("port %d is not allowed (443 only)", ap.Port())
	}
	if !publicAddress(ap.Addr()) {
		return fmt.Errorf("address %s is not a public address", ap.Addr())
	}
	return nil
}

// nonPublic are the ranges a fetch may never reach.
var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
		"203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

// publicAddress reports whether a is a public unicast address. IPv4
// addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4, Teredo)
// are judged by the embedded address.
func publicAddress(a netip.Addr) bool {
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	if a.Is6() {
		b := a.As16()
		switch {
		case b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0 && b[9] == 0 && b[10] == 0 && b[11] == 0:
			return publicAddress(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})) && !a.IsUnspecified() // ::a.b.c.d
		case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b: // 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64)
			return publicAddress(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case b[0] == 0x20 && b[1] == 0x02: // 2002::/16 (6to4)
			return publicAddress(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0: // 2001::/32 (Teredo): tunnels to anywhere
			return false
		}
	}
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// fetchError is a failed fetch: what may be shown to whoever asked, and
// the cause (which address a name resolved to, say) for the log only.
type fetchError struct {
	shown string
	cause error
}

func (e *fetchError) Error() string { return e.shown }
func (e *fetchError) Unwrap() error { return e.cause }

// getJSON fetches u, a JSON document (what names it in errors) of at
// most limit bytes, answered 200.
func (f *safeFetcher) getJSON(ctx context.Context, u *url.URL, limit int, what string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, &fetchError{"the URL of " + what + " cannot be fetched", err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, &fetchError{what + " could not be fetched", unwrapURLError(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered %d, not 200", what, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, nil, fmt.Errorf("%s is not JSON (Content-Type)", what)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, nil, &fetchError{"reading " + what + " failed", err}
	}
	if len(body) > limit {
		return nil, nil, fmt.Errorf("%s is larger than %d KiB", what, limit>>10)
	}
	return body, resp.Header, nil
}

// unwrapURLError keeps the cause of a failed fetch, not the URL again.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
