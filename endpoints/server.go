// Package endpoints implements the authorization server's HTTP endpoints
// (discovery, JWKS, authorize, login, consent, token, revoke, register,
// introspect) and the bearer guard. It knows nothing of Caddy's config
// machinery: the module builds a Server and hands it requests.
package endpoints

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Config is everything the endpoints need, resolved and validated.
type Config struct {
	Issuer                    string
	Resources                 []string // canonical; the first is the default
	ResourceName              string
	Scopes                    []string
	EnforceScopes             bool
	AccessTokenLifetime       time.Duration
	RefreshTokenLifetime      time.Duration
	AuthorizationCodeLifetime time.Duration
	ClockSkew                 time.Duration
	DynamicRegistration       bool
	ClientIDMetadataDocuments bool
	Store                     storage.Store
	Keys                      *KeySet
	Logger                    *zap.Logger
}

// Server answers the protocol routes.
type Server struct {
	cfg       Config
	routes    map[string]http.HandlerFunc
	resources []resource
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
	s := &Server{cfg: cfg, routes: map[string]http.HandlerFunc{}}
	issuerPath, err := urlPath(cfg.Issuer)
	if err != nil {
		return nil, err
	}

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

	s.routes[issuerPath+"/.well-known/jwks.json"] = serveDocument(cfg.Keys.JWKS())

	for _, p := range []string{"/oauth/authorize", "/oauth/login", "/oauth/consent", "/oauth/token",
		"/oauth/revoke", "/oauth/introspect"} {
		s.routes[issuerPath+p] = notImplemented
	}
	if cfg.DynamicRegistration {
		s.routes[issuerPath+"/oauth/register"] = notImplemented
	} else {
		s.routes[issuerPath+"/oauth/register"] = registrationOff
	}
	return s, nil
}

// Route returns the handler of a protocol path, or nil when the path is
// not one of the server's.
func (s *Server) Route(path string) http.HandlerFunc {
	return s.routes[path]
}

// Store is the server's storage.
func (s *Server) Store() storage.Store { return s.cfg.Store }

// Keys is the server's signing key set.
func (s *Server) Keys() *KeySet { return s.cfg.Keys }

// urlPath returns u's path without a trailing slash.
func urlPath(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %v", raw, err)
	}
	return strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// endpoint is the absolute URL of a route under the issuer.
func (s *Server) endpoint(path string) string {
	return strings.TrimSuffix(s.cfg.Issuer, "/") + path
}

// registrationOff answers the registration route while dynamic
// registration is switched off.
func registrationOff(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "invalid_request", "dynamic client registration is not enabled")
}

// notImplemented answers routes that a later release implements.
func notImplemented(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "temporarily_unavailable", "this endpoint is not implemented yet")
}
