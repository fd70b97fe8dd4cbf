package endpoints

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Limits of the client ID metadata document fetcher.
const (
	metadataFetchTimeout = 5 * time.Second
	maxMetadataBytes     = 5 << 10
	metadataCacheFloor   = 5 * time.Minute
	metadataCacheCap     = 24 * time.Hour
	metadataCacheDefault = time.Hour
	maxCachedDocuments   = 10_000
)

// testAllowedHosts and testRootCAs are set only by test builds (the
// oauth2test build tag): host:port pairs the fetcher may reach although
// they are local, and the roots their certificates chain to. Production
// builds have no way to weaken the fetcher.
var (
	testAllowedHosts map[string]bool
	testRootCAs      *x509.CertPool
)

// metadataFetcher fetches client ID metadata documents over an
// SSRF-hardened HTTP client and caches the clients they describe.
type metadataFetcher struct {
	client  *http.Client
	allowed map[string]bool // test-only: host:port exempt from the address rules
	mu      sync.Mutex
	cache   map[string]cachedClient
}

type cachedClient struct {
	client *storage.Client
	until  time.Time
}

func newMetadataFetcher(allowed map[string]bool, roots *x509.CertPool) *metadataFetcher {
	f := &metadataFetcher{allowed: allowed, cache: map[string]cachedClient{}}
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
func (f *metadataFetcher) checkDial(network, address string, _ syscall.RawConn) error {
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

// nonPublic are the ranges a metadata fetch may never reach.
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

// isMetadataDocumentURL reports whether a client_id names a metadata
// document: an https URL with a path.
func isMetadataDocumentURL(id string) bool {
	return strings.HasPrefix(id, "https://")
}

// checkDocumentURL applies the URL rules: https, port 443, a host, a path,
// no userinfo, query or fragment.
func (f *metadataFetcher) checkDocumentURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("the client_id is not a URL")
	case u.Scheme != "https" || u.Host == "":
		return nil, errors.New("the client_id must be an https URL")
	case u.User != nil:
		return nil, errors.New("the client_id URL must not carry user information")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("the client_id URL must not have a fragment")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("the client_id URL must not have a query")
	case u.Path == "" || u.Path == "/":
		return nil, errors.New("the client_id URL must have a path")
	case u.Port() != "" && u.Port() != "443" && !f.allowed[u.Host]:
		return nil, errors.New("the client_id URL must use port 443")
	}
	return u, nil
}

// metadataDocument is what this server reads of a client's document.
type metadataDocument struct {
	clientMetadata
	ClientID                          string   `json:"client_id"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClientSecret                      *string  `json:"client_secret"`
}

// fetchMetadataClient returns the client a document URL describes, from
// the cache (cached) or freshly fetched and validated.
func (s *clients) fetchMetadataClient(ctx context.Context, id string) (client *storage.Client, cached bool, err error) {
	f := s.fetcher
	now := time.Now()
	f.mu.Lock()
	if c, ok := f.cache[id]; ok && now.Before(c.until) {
		f.mu.Unlock()
		return c.client, true, nil
	}
	f.mu.Unlock()

	u, err := f.checkDocumentURL(id)
	if err != nil {
		return nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, false, errors.New("the client_id URL cannot be fetched")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		// The cause (say, which address a name resolved to) goes to the
		// log, not to the person looking at the error page.
		s.cfg.Logger.Debug("client ID metadata document: fetch failed", zap.String("client_id", id), zap.Error(unwrapURLError(err)))
		return nil, false, errors.New("the metadata document could not be fetched")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("the metadata document answered %d, not 200", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, false, errors.New("the metadata document is not JSON (Content-Type)")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return nil, false, errors.New("reading the metadata document failed")
	}
	if len(body) > maxMetadataBytes {
		return nil, false, errors.New("the metadata document is larger than 5 KiB")
	}
	client, err = s.clientFromDocument(id, body, now)
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	if len(f.cache) >= maxCachedDocuments {
		for k, c := range f.cache {
			if !now.Before(c.until) || len(f.cache) >= maxCachedDocuments {
				delete(f.cache, k)
			}
		}
	}
	f.cache[id] = cachedClient{client: client, until: now.Add(cacheLifetime(resp.Header.Get("Cache-Control")))}
	f.mu.Unlock()
	return client, false, nil
}

// unwrapURLError keeps the cause of a failed fetch, not the URL again.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// clientFromDocument validates a metadata document for the URL id.
func (s *clients) clientFromDocument(id string, body []byte, now time.Time) (*storage.Client, error) {
	var doc metadataDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("the metadata document is not valid: %s", jsonProblem(err))
	}
	switch {
	case doc.ClientID != id:
		return nil, errors.New("the metadata document's client_id is not its own URL")
	case strings.TrimSpace(doc.ClientName) == "":
		return nil, errors.New("the metadata document has no client_name")
	case doc.ClientSecret != nil:
		return nil, errors.New("a metadata document must not carry a client_secret")
	}
	// Negotiate client authentication: this server has no key for the
	// client, so it must be able to act as a public client.
	switch {
	case doc.TokenEndpointAuthMethod == "" || doc.TokenEndpointAuthMethod == "none",
		slices.Contains(doc.TokenEndpointAuthMethodsSupported, "none"):
		doc.TokenEndpointAuthMethod = "none"
	default:
		return nil, fmt.Errorf("token_endpoint_auth_method %q is not supported for metadata documents (none)", doc.TokenEndpointAuthMethod)
	}
	md := doc.clientMetadata
	if slices.Contains(md.GrantTypes, grantClientCredentials) {
		// A document is not trusted: its client never acts alone.
		md.GrantTypes = slices.DeleteFunc(slices.Clone(md.GrantTypes), func(g string) bool { return g == grantClientCredentials })
		if len(md.GrantTypes) == 0 {
			return nil, errors.New("the metadata document asks only for client_credentials, which metadata-document clients never get")
		}
	}
	if merr := s.validateMetadata(&md); merr != nil {
		return nil, fmt.Errorf("the metadata document is not valid: %s", merr.description)
	}
	return &storage.Client{
		ID:                      id,
		Name:                    md.ClientName,
		RedirectURIs:            md.RedirectURIs,
		GrantTypes:              md.GrantTypes,
		ResponseTypes:           md.ResponseTypes,
		Scope:                   md.Scope,
		TokenEndpointAuthMethod: "none",
		ApplicationType:         md.ApplicationType,
		ClientURI:               md.ClientURI,
		LogoURI:                 md.LogoURI,
		CreatedAt:               now,
		ExpiresAt:               now.Add(s.cfg.Tokens.RefreshFamilyLifetime),
		Origin:                  storage.OriginDocument,
	}, nil
}

// cacheLifetime is how long a document is cached: its max-age, within
// 5 minutes and 24 hours (1 hour when it says nothing).
func cacheLifetime(cacheControl string) time.Duration {
	d := metadataCacheDefault
	for _, directive := range strings.Split(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(strings.ToLower(directive)), "=")
		switch name {
		case "no-store", "no-cache":
			return metadataCacheFloor
		case "max-age", "s-maxage":
			if secs, err := strconv.Atoi(strings.Trim(value, `"`)); err == nil {
				d = time.Duration(secs) * time.Second
			}
		}
	}
	return min(max(d, metadataCacheFloor), metadataCacheCap)
}
