package endpoints

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// clients is the part that knows the clients: the Caddyfile's, the
// registered ones and those of metadata documents; how they authenticate
// (clientauth.go), what they may be (clientpolicy.go, grants.go) and
// registration (register.go, cimd.go).
type clients struct {
	*core
	staticClients map[string]*storage.Client
	grants        grantTable       // the grants the server offers
	fetcher       *metadataFetcher // nil unless client ID metadata documents are on
	keySets       *keySets         // the keys of private_key_jwt clients
	registerLimit *keyedLimiter    // registrations per IP; nil when off
}

func newClients(c *core, cfg *Config) *clients {
	cl := &clients{core: c, staticClients: map[string]*storage.Client{}, grants: offeredGrants(cfg)}
	for i := range cfg.Clients.Static {
		cl.staticClients[cfg.Clients.Static[i].ID] = &cfg.Clients.Static[i]
	}
	safe := newSafeFetcher(testAllowedHosts, testRootCAs)
	cl.keySets = clientKeySets(safe)
	if cfg.Clients.ClientIDMetadataDocuments {
		cl.fetcher = &metadataFetcher{safeFetcher: safe, cache: map[string]cachedClient{}}
	}
	if cfg.Clients.DynamicRegistration && cfg.Clients.RegistrationRateLimit > 0 {
		cl.registerLimit = newKeyedLimiter(cfg.Clients.RegistrationRateLimit, cfg.Clients.RegistrationRateWindow)
		cl.registerLimit.shareAcrossNodes(c, "register")
	}
	return cl
}

// mount serves dynamic registration (RFC 7591), or says it is off.
func (s *clients) mount(m routeTable) {
	register := registrationOff
	if s.cfg.Clients.DynamicRegistration {
		register = s.register
	}
	s.at(m, "/oauth/register", register, true)
}

// route serves a registered client's configuration endpoint (RFC 7592).
func (s *clients) route(path string) http.HandlerFunc {
	id, ok := strings.CutPrefix(path, s.issuerPath+"/oauth/register/")
	if !ok || !s.cfg.Clients.DynamicRegistration || id == "" || strings.Contains(id, "/") {
		return nil
	}
	return func(w http.ResponseWriter, r *http.Request) { s.registrationClient(w, r, id) }
}

// fetchAllowed are the test-only host:port pairs the fetcher may reach
// (see testAllowedHosts): none in a release build.
func (s *clients) fetchAllowed() map[string]bool {
	if s.fetcher != nil {
		return s.fetcher.allowed
	}
	return testAllowedHosts
}

// lookupClient finds a client configured in the Caddyfile, then a
// registered one (including the clients of metadata documents seen at
// the authorization endpoint). It never fetches anything.
func (s *clients) lookupClient(ctx context.Context, id string) (*storage.Client, error) {
	if c, ok := s.staticClients[id]; ok {
		return c, nil
	}
	return s.cfg.Storage.Store.GetClient(ctx, id, time.Now())
}

// resolveClient is lookupClient for the authorization endpoint: an https
// client_id is (re)fetched as a client ID metadata document when its
// cached copy is stale, and kept in storage for the token endpoint.
func (s *clients) resolveClient(ctx context.Context, id string) (*storage.Client, error) {
	if _, static := s.staticClients[id]; static || s.fetcher == nil || !isMetadataDocumentURL(id) {
		return s.lookupClient(ctx, id)
	}
	c, cached, err := s.fetchMetadataClient(ctx, id)
	switch {
	case err != nil:
		s.metrics.metadataFetches.WithLabelValues("refused").Inc()
		return nil, err
	case cached:
		s.metrics.metadataFetches.WithLabelValues("cached").Inc()
	default:
		s.metrics.metadataFetches.WithLabelValues("fetched").Inc()
	}
	if err := s.cfg.Storage.Store.PutClient(ctx, c); err != nil {
		return nil, fmt.Errorf("storing the client: %w", err)
	}
	return c, nil
}

// documentHost is the host publishing a client's metadata document, or ""
// for a registered or configured client.
func documentHost(c *storage.Client) string {
	if !isMetadataDocumentURL(c.ID) {
		return ""
	}
	u, err := url.Parse(c.ID)
	if err != nil {
		return ""
	}
	return u.Host
}

// mayActAlone reports whether a client may get tokens for itself
// (client_credentials): a client alone gets nothing unless an operator
// made it — in the Caddyfile, through the admin API or by an import — or
// it registered with the initial access token while the operator allows
// that. A client that registered itself openly, or a metadata document,
// never does, whatever its record says.
func (s *clients) mayActAlone(c *storage.Client) bool {
	if !kindOf(c).confidential() || !allowsGrant(c, grantClientCredentials) {
		return false
	}
	if _, static := s.staticClients[c.ID]; static {
		return true
	}
	switch storage.ClientOrigin(c) {
	case storage.OriginAdmin, storage.OriginImported:
		return true
	case storage.OriginRegistered:
		return c.RegisteredWithToken && s.cfg.Clients.RegisteredClientCredentials
	}
	return false
}

// DropUntrustedMachineGrants takes client_credentials from the stored
// clients that hold it but may not act alone (see mayActAlone): clients
// that registered themselves before the rule existed, or whose
// registration the operator no longer allows to. It logs a warning with
// their number and returns it.
func (s *clients) DropUntrustedMachineGrants(ctx context.Context) (int, error) {
	clients, err := s.cfg.Storage.Store.Clients(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing clients: %w", err)
	}
	dropped := 0
	for i := range clients {
		c := &clients[i]
		if !allowsGrant(c, grantClientCredentials) || s.mayActAlone(c) {
			continue
		}
		if _, static := s.staticClients[c.ID]; static {
			continue
		}
		c.GrantTypes = slices.DeleteFunc(c.GrantTypes, func(g string) bool { return g == grantClientCredentials })
		if err := s.cfg.Storage.Store.PutClient(ctx, c); err != nil {
			return dropped, fmt.Errorf("storing client %s: %w", c.ID, err)
		}
		dropped++
	}
	if dropped > 0 {
		s.cfg.Logger.Warn("took client_credentials from clients that registered themselves: a client alone gets nothing; create machine clients with `caddy oauth2 clients add` or in the Caddyfile",
			zap.Int("clients", dropped))
	}
	return dropped, nil
}
