// Package endpoints implements the authorization server's HTTP endpoints
// (discovery, JWKS, authorize, login, consent, token, revoke, register,
// introspect) and the bearer guard. It knows nothing of Caddy's config
// machinery (the module builds a Server from the parsed config and hands
// it requests), but it runs inside Caddy's HTTP server and uses its
// runtime: the guard is a caddyhttp.Handler that sets placeholders on the
// request's caddy.Replacer, client addresses come from Caddy's resolved
// client IP and trusted-proxy variables, responses are wrapped with
// caddyhttp.ResponseWriterWrapper, path rules are caddyhttp.MatchPath, and
// user passwords are checked with caddyauth's bcrypt and argon2id hashes.
package endpoints

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Server answers the protocol routes. It is composed of parts, each
// holding what it needs (see docs/architecture.md); what they all share is
// the core.
type Server struct {
	*core
	*issuer
	*custody
	*guard
	*pages
	*clients
	*tokenEndpoints
	*operator
	*signIn
	*authorization
	routes    routeTable
	closeOnce sync.Once
}

// core is what every part of the server shares: the configuration, the
// metrics and the audit log.
type core struct {
	cfg          Config
	issuerPath   string // the issuer's URL path, without a trailing slash
	issuerOrigin string // its scheme://host:port (CheckOrigin, DPoP's htu)
	metrics      *serverMetrics
	audit        *auditor
	scopes       scopeCatalogue
	resources    []resource    // the protected resources; the first is the default
	stop         chan struct{} // closed by Close: background work ends
}

// resource is one protected resource and where its metadata lives.
type resource struct {
	id           string // canonical identifier, also the token audience
	path         string // URL path of the resource ("" for an origin)
	metadataPath string // path of its RFC 9728 document
	metadata     []byte
}

// New builds a Server; cfg must already be validated.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Audit == nil {
		cfg.Audit = cfg.Logger.Named("audit")
	}
	issuerPath, err := urlPath(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		core: &core{cfg: cfg, issuerPath: issuerPath, issuerOrigin: originOf(cfg.Issuer), metrics: newServerMetrics(cfg.Issuer, cfg.Resources),
			audit: newAuditor(cfg.Audit), stop: make(chan struct{})},
		routes: routeTable{},
	}
	if s.scopes, err = NewScopeCatalogue(cfg.Scopes, cfg.ScopeDefinitions); err != nil {
		return nil, err
	}
	if s.pages, err = loadPages(s.core, cfg.SignIn.TemplatesDir); err != nil {
		return nil, err
	}
	s.issuer = newIssuer(s.core, cfg.Signing.Keys)
	s.clients = newClients(s.core, &cfg)
	s.tokenEndpoints = &tokenEndpoints{core: s.core, issuer: s.issuer, clients: s.clients, trusted: newTrustedIssuers(&cfg),
		replays: newDPoPReplays()}
	s.custody = newCustody(s.core, cfg.SignIn.Providers)
	s.guard = newGuard(s.core, s.issuer, s.custody)
	s.operator = &operator{core: s.core, issuer: s.issuer, clients: s.clients}
	s.signIn = newSignIn(s.core, s.pages, s.custody, s.operator)
	s.authorization = newAuthorization(s.core, s.pages, s.clients, s.custody, s.signIn)

	asMetadata, err := s.authorizationServerMetadata()
	if err != nil {
		return nil, err
	}
	serveAS := serveDocument(asMetadata)
	for _, p := range []string{
		"/.well-known/oauth-authorization-server" + issuerPath, // RFC 8414 §3.1
		"/.well-known/openid-configuration" + issuerPath,
		issuerPath + "/.well-known/openid-configuration", // OpenID Connect Discovery §4
		"/.well-known/oauth-authorization-server",
		"/.well-known/openid-configuration",
	} {
		s.routes[p] = serveAS
	}

	for _, id := range cfg.Resources {
		r, err := s.protectedResource(id)
		if err != nil {
			return nil, err
		}
		s.resources = append(s.resources, r)
		s.routes[r.metadataPath] = serveDocument(r.metadata)
	}
	// Clients probe the root document first; unless an origin resource
	// owns it, it describes the default resource.
	if _, taken := s.routes["/.well-known/oauth-protected-resource"]; !taken {
		s.routes["/.well-known/oauth-protected-resource"] = serveDocument(s.resources[0].metadata)
	}

	for _, part := range []interface{ mount(routeTable) }{s.issuer, s.authorization, s.tokenEndpoints, s.clients, s.signIn} {
		part.mount(s.routes)
	}
	if cfg.HealthPath != "" {
		s.routes[cfg.HealthPath] = s.health
	}
	go s.audit.watch(s.stop)
	if cfg.Signing.StoredKeys {
		go s.maintainKeys()
	}
	return s, nil
}

// Close stops the server's background work (the watch for unused
// grants); closing again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.stop) })
}

// Route returns the handler of a protocol path, or nil when the path is
// not one of the server's.
func (s *Server) Route(path string) http.HandlerFunc {
	if h, ok := s.routes[path]; ok {
		return h
	}
	if h := s.clients.route(path); h != nil {
		return h
	}
	return s.signIn.route(path)
}

// routeTable is the protocol routes by path; each part mounts its own.
type routeTable map[string]http.HandlerFunc

// at mounts h at path under the issuer and, when root is set and
// root_aliases is on, at the root too (Claude.ai's web client builds
// /authorize, /token and /register at the MCP origin itself).
func (c *core) at(m routeTable, path string, h http.HandlerFunc, root bool) {
	m[c.issuerPath+path] = h
	if root && c.cfg.RootAliases {
		m[strings.TrimPrefix(path, "/oauth")] = h
	}
}

// Store is the server's storage.
func (s *Server) Store() storage.Store { return s.cfg.Storage.Store }

// urlPath returns u's path without a trailing slash.
func urlPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %v", raw, err)
	}
	return strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// endpoint is the absolute URL of a route under the issuer.
func (s *core) endpoint(path string) string {
	return strings.TrimSuffix(s.cfg.Issuer, "/") + path
}

// registrationOff answers the registration route while dynamic
// registration is switched off.
func registrationOff(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "invalid_request", "dynamic client registration is not enabled")
}
