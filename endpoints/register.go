package endpoints

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// maxRegistrationBytes caps a registration request body.
const maxRegistrationBytes = 16 << 10

// Length caps of displayed metadata.
const (
	maxClientNameLength = 200
	maxURILength        = 2000
	maxRedirectURIs     = 20
)

// clientMetadata is the RFC 7591 §2 metadata this server reads; unknown
// members are ignored (§3.1), known ones must have the right type.
type clientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	LogoURI                 string   `json:"logo_uri"`
	ApplicationType         string   `json:"application_type"`
	// The keys of a private_key_jwt client: a JWK Set, or where it is
	// published.
	JWKS    json.RawMessage `json:"jwks"`
	JWKSURI string          `json:"jwks_uri"`
	// DPoPBoundAccessTokens: the client always uses DPoP (RFC 9449 §5.2).
	DPoPBoundAccessTokens bool `json:"dpop_bound_access_tokens"`
}

// registrationResponse is the RFC 7591 §3.2.1 / RFC 7592 response: the
// stored metadata plus credentials. Nothing is null or an empty string,
// except client_secret for a public client when the operator asks for it.
type registrationResponse struct {
	ClientID                string          `json:"client_id"`
	ClientSecret            *string         `json:"client_secret,omitempty"`
	ClientSecretExpiresAt   *int64          `json:"client_secret_expires_at,omitempty"`
	ClientIDIssuedAt        int64           `json:"client_id_issued_at"`
	RedirectURIs            []string        `json:"redirect_uris"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types"`
	Scope                   string          `json:"scope,omitempty"`
	ClientName              string          `json:"client_name,omitempty"`
	ClientURI               string          `json:"client_uri,omitempty"`
	LogoURI                 string          `json:"logo_uri,omitempty"`
	ApplicationType         string          `json:"application_type,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	DPoPBoundAccessTokens   bool            `json:"dpop_bound_access_tokens,omitempty"`
	RegistrationAccessToken string          `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string          `json:"registration_client_uri"`
}

// metadataError is an RFC 7591 §3.2.2 error.
type metadataError struct{ code, description string }

func (e *metadataError) Error() string { return e.description }

func badMetadata(format string, args ...any) *metadataError {
	return &metadataError{"invalid_client_metadata", fmt.Sprintf(format, args...)}
}

// register serves POST /oauth/register (RFC 7591).
func (s *clients) register(w http.ResponseWriter, r *http.Request) {
	if !acceptPOST(w, r) {
		return
	}
	ip := clientIP(r)
	if iat := s.cfg.Clients.InitialAccessToken; iat != "" {
		token, _ := bearerToken(r.Header)
		if !equalSecrets(token, iat) {
			s.metrics.registrations.WithLabelValues("unauthorized").Inc()
			s.cfg.Logger.Debug("register: refused, initial access token missing or wrong", zap.String("client_ip", ip))
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="an initial access token is required to register"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", "an initial access token is required to register")
			return
		}
	}
	if s.registerLimit != nil {
		try, wait := s.registerLimit.admitShared(r.Context(), "ip:"+s.limitAddress(ip))
		if try == nil {
			s.metrics.registrations.WithLabelValues("rate_limited").Inc()
			s.cfg.Logger.Debug("register: rate limited", zap.String("client_ip", ip))
			w.Header().Set("Retry-After", retryAfter(wait))
			writeError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many registrations from this address; retry later")
			return
		}
		try.settle(true) // every attempt counts, valid or not
	}
	md, merr := readClientMetadata(w, r)
	if merr == nil && slices.Contains(md.GrantTypes, grantClientCredentials) && !s.cfg.Clients.RegisteredClientCredentials {
		// A client alone gets nothing: machine clients are the operator's.
		merr = badMetadata("grant_type client_credentials is not available to clients that register themselves; an operator creates machine clients")
	}
	if merr == nil {
		merr = s.validateMetadata(md)
	}
	if merr != nil {
		s.metrics.registrations.WithLabelValues("invalid").Inc()
		s.cfg.Logger.Debug("register: refused", zap.String("error", merr.code), zap.String("description", merr.description), zap.String("client_ip", ip))
		writeError(w, http.StatusBadRequest, merr.code, merr.description)
		return
	}

	now := time.Now()
	client := &storage.Client{
		ID:                      randomID(),
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
		ExpiresAt:               now.Add(s.cfg.Clients.UnusedClientTTL),
		Origin:                  storage.OriginRegistered,
		RegisteredWithToken:     s.cfg.Clients.InitialAccessToken != "",
	}
	secret := ""
	if authMethodNamed(md.TokenEndpointAuthMethod).kind == secretClient {
		secret = randomToken()
		client.SecretHash = storage.Hash(secret)
	}
	registrationToken := randomToken()
	client.RegistrationTokenHash = storage.Hash(registrationToken)
	if err := s.cfg.Storage.Store.PutClient(r.Context(), client); err != nil {
		s.unavailable(w, "register", err)
		return
	}
	resp := s.registrationResponse(client)
	resp.RegistrationAccessToken = registrationToken
	switch {
	case secret != "":
		zero := int64(0)
		resp.ClientSecret, resp.ClientSecretExpiresAt = &secret, &zero
	case s.cfg.Clients.AlwaysReturnClientSecret:
		resp.ClientSecret = &secret
	}
	s.metrics.registrations.WithLabelValues("registered").Inc()
	s.audit.info(eventClientRegistered, zap.String("client_id", client.ID), zap.String("client_name", client.Name),
		zap.Strings("redirect_uris", client.RedirectURIs), zap.String("token_endpoint_auth_method", client.TokenEndpointAuthMethod), zap.String("client_ip", ip))
	writeJSON(w, http.StatusCreated, resp)
}

func (s *clients) registrationResponse(c *storage.Client) registrationResponse {
	return registrationResponse{
		ClientID:                c.ID,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		RedirectURIs:            c.RedirectURIs,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		GrantTypes:              c.GrantTypes,
		ResponseTypes:           c.ResponseTypes,
		Scope:                   c.Scope,
		ClientName:              c.Name,
		ClientURI:               c.ClientURI,
		LogoURI:                 c.LogoURI,
		ApplicationType:         c.ApplicationType,
		JWKS:                    c.JWKS,
		JWKSURI:                 c.JWKSURI,
		DPoPBoundAccessTokens:   c.DPoPBoundAccessTokens,
		RegistrationClientURI:   s.endpoint("/oauth/register/" + url.PathEscape(c.ID)),
	}
}

// readClientMetadata decodes a registration body: JSON, at most 16 KiB.
func readClientMetadata(w http.ResponseWriter, r *http.Request) (*clientMetadata, *metadataError) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, badMetadata("the body must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		return nil, badMetadata("the body must be at most 16 KiB of JSON")
	}
	var md clientMetadata
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&md); err != nil {
		return nil, badMetadata("the body is not a JSON object of client metadata: %v", jsonProblem(err))
	}
	if dec.More() {
		return nil, badMetadata("the body holds more than one JSON value")
	}
	return &md, nil
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("%s has the wrong type", typeErr.Field)
	}
	return "malformed JSON"
}

// validateMetadata checks metadata and fills in the defaults.
func (s *clients) validateMetadata(md *clientMetadata) *metadataError {
	if len(md.RedirectURIs) == 0 {
		return &metadataError{"invalid_redirect_uri", "redirect_uris is required"}
	}
	if len(md.RedirectURIs) > maxRedirectURIs {
		return &metadataError{"invalid_redirect_uri", fmt.Sprintf("at most %d redirect_uris", maxRedirectURIs)}
	}
	for _, u := range md.RedirectURIs {
		if len(u) > maxURILength || !utf8.ValidString(u) {
			return &metadataError{"invalid_redirect_uri", "a redirect URI is too long or not UTF-8"}
		}
		if err := ValidateRedirectURI(u); err != nil {
			return &metadataError{"invalid_redirect_uri", fmt.Sprintf("redirect URI %q: %v", u, err)}
		}
	}

	md.TokenEndpointAuthMethod = cmp.Or(md.TokenEndpointAuthMethod, "client_secret_basic") // RFC 7591 §2 default
	kind, err := checkAuthMethod(md.TokenEndpointAuthMethod)
	if err != nil {
		return badMetadata("%v", err)
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = DefaultGrantTypes()
	}
	if string(md.JWKS) == "null" {
		md.JWKS = nil
	}
	if err := checkClientKeys(kind, md.JWKS, md.JWKSURI, s.fetchAllowed()); err != nil {
		return badMetadata("%v", err)
	}
	if err := s.grants.checkGrantTypes(md.GrantTypes, kind, len(md.RedirectURIs)); err != nil {
		return badMetadata("%v", err)
	}
	md.GrantTypes = dedupe(md.GrantTypes)
	if len(md.ResponseTypes) == 0 {
		md.ResponseTypes = []string{"code"}
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return badMetadata("response_type %q is not supported (code)", rt)
		}
	}
	md.ResponseTypes = dedupe(md.ResponseTypes)
	if s.grants.needsRedirect(md.GrantTypes) != slices.Contains(md.ResponseTypes, "code") {
		return badMetadata("grant_types and response_types disagree (RFC 7591 §2.1)")
	}

	if md.Scope == "" {
		md.Scope = joinScope(s.cfg.Scopes)
	}
	var scopes []string
	for _, sc := range splitScope(md.Scope) {
		if s.acceptedOnly(sc) {
			continue
		}
		if !ValidScopeToken(sc) || s.cfg.EnforceScopes && !slices.Contains(s.cfg.Scopes, sc) {
			return &metadataError{"invalid_client_metadata", fmt.Sprintf("scope %q is not offered by this server", sc)}
		}
		scopes = append(scopes, sc)
	}
	md.Scope = joinScope(scopes)

	switch md.ApplicationType {
	case "", "web", "native":
	default:
		return badMetadata("application_type must be web or native")
	}
	md.ClientName = strings.TrimSpace(md.ClientName)
	if utf8.RuneCountInString(md.ClientName) > maxClientNameLength || !utf8.ValidString(md.ClientName) || strings.ContainsAny(md.ClientName, "\x00\r\n") {
		return badMetadata("client_name must be at most %d characters of text", maxClientNameLength)
	}
	for name, v := range map[string]string{"client_uri": md.ClientURI, "logo_uri": md.LogoURI} {
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if len(v) > maxURILength || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return badMetadata("%s must be an https URL of at most %d characters", name, maxURILength)
		}
	}
	return nil
}

// registrationClient serves GET and DELETE on a registration_client_uri
// (RFC 7592), authenticated by the registration access token.
func (s *clients) registrationClient(w http.ResponseWriter, r *http.Request, clientID string) {
	allowCORS(w)
	switch r.Method {
	case http.MethodGet, http.MethodDelete:
	case http.MethodOptions:
		writePreflight(w, r, "GET, DELETE, OPTIONS")
		return
	default:
		w.Header().Set("Allow", "GET, DELETE, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET or DELETE")
		return
	}
	token, _ := bearerToken(r.Header)
	client, err := s.cfg.Storage.Store.GetClient(r.Context(), clientID, time.Now())
	if storageDown(err) {
		s.unavailable(w, "register", err)
		return
	}
	if err != nil || token == "" || len(client.RegistrationTokenHash) == 0 ||
		!equalSecretHash(token, client.RegistrationTokenHash) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "the registration access token is missing or wrong")
		return
	}
	if r.Method == http.MethodDelete {
		// Its refresh families and live access tokens go with it.
		now := time.Now()
		revoked, err := s.cfg.Storage.Store.DeleteClient(r.Context(), clientID, now, s.tokensExpireBy(now))
		if err != nil {
			s.unavailable(w, "register: deleting client", err)
			return
		}
		s.audit.info(eventClientDeleted, zap.String("client_id", clientID), zap.String("by", "registration access token"))
		s.grantsRevoked(revoked, revokedByClientDelete)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, s.registrationResponse(client))
}
