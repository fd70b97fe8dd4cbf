package endpoints

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// metadataFetcher fetches client ID metadata documents with a
// safeFetcher and caches the clients they describe.
type metadataFetcher struct {
	*safeFetcher
	mu    sync.Mutex
	cache map[string]cachedClient
}

type cachedClient struct {
	client *storage.Client
	until  time.Time
}

func newMetadataFetcher(allowed map[string]bool, roots *x509.CertPool) *metadataFetcher {
	return &metadataFetcher{safeFetcher: newSafeFetcher(allowed, roots), cache: map[string]cachedClient{}}
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
	body, header, err := f.getJSON(ctx, u, maxMetadataBytes, "the metadata document")
	if cause := errors.Unwrap(err); cause != nil {
		// The cause goes to the log, not to the person looking at the
		// error page.
		s.cfg.Logger.Debug("client ID metadata document: fetch failed", zap.String("client_id", id), zap.Error(cause))
	}
	if err != nil {
		return nil, false, err
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
	f.cache[id] = cachedClient{client: client, until: now.Add(cacheLifetime(header.Get("Cache-Control")))}
	f.mu.Unlock()
	return client, false, nil
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
	method, err := documentAuthMethod(&doc)
	if err != nil {
		return nil, err
	}
	md := doc.clientMetadata
	md.TokenEndpointAuthMethod = method
	if method != "private_key_jwt" {
		md.JWKS, md.JWKSURI = nil, ""
	}
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
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		JWKS:                    md.JWKS,
		JWKSURI:                 md.JWKSURI,
		DPoPBoundAccessTokens:   md.DPoPBoundAccessTokens,
		ApplicationType:         md.ApplicationType,
		ClientURI:               md.ClientURI,
		LogoURI:                 md.LogoURI,
		CreatedAt:               now,
		ExpiresAt:               now.Add(s.cfg.Tokens.RefreshFamilyLifetime),
		Origin:                  storage.OriginDocument,
	}, nil
}

// documentMethods are the methods a metadata-document client may use,
// strongest first: this server holds no secret for it, so it proves
// itself with its keys or not at all.
var documentMethods = []string{"private_key_jwt", "none"}

// documentAuthMethod negotiates a document's client authentication
// (OpenID RP Metadata Choices): the strongest of documentMethods that the
// document supports — its token_endpoint_auth_methods_supported, and its
// token_endpoint_auth_method (none when it names neither) — and can use:
// private_key_jwt needs its keys (jwks or jwks_uri) in the document.
func documentAuthMethod(doc *metadataDocument) (string, error) {
	supported := slices.Clone(doc.TokenEndpointAuthMethodsSupported)
	if doc.TokenEndpointAuthMethod != "" || len(supported) == 0 {
		supported = append(supported, cmp.Or(doc.TokenEndpointAuthMethod, "none"))
	}
	hasKeys := len(doc.JWKS) > 0 && string(doc.JWKS) != "null" || doc.JWKSURI != ""
	for _, m := range documentMethods {
		if slices.Contains(supported, m) && (m != "private_key_jwt" || hasKeys) {
			return m, nil
		}
	}
	return "", fmt.Errorf("the metadata document supports no client authentication this server accepts for metadata documents (%s; private_key_jwt with jwks or jwks_uri)",
		strings.Join(documentMethods, ", "))
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
