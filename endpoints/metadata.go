package endpoints

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// authorizationServer is the RFC 8414 document. Optional fields are
// omitted, never null or empty: several MCP clients reject either.
type authorizationServer struct {
	Issuer                                    string   `json:"issuer"`
	AuthorizationEndpoint                     string   `json:"authorization_endpoint"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	RegistrationEndpoint                      string   `json:"registration_endpoint,omitempty"`
	JWKSURI                                   string   `json:"jwks_uri"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
	ResponseModesSupported                    []string `json:"response_modes_supported"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	CodeChallengeMethodsSupported             []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	// The algorithms of private_key_jwt assertions, at each endpoint.
	TokenEndpointAuthSigningAlgValuesSupported         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	ScopesSupported                                    []string `json:"scopes_supported,omitempty"`
	// The assertion profiles the jwt-bearer grant accepts (the ID-JAG's).
	AuthorizationGrantProfilesSupported []string `json:"authorization_grant_profiles_supported,omitempty"`
	// The algorithms of DPoP proofs (RFC 9449 §5.1).
	DPoPSigningAlgValuesSupported              []string `json:"dpop_signing_alg_values_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported,omitempty"`
}

// protectedResourceMetadata is the RFC 9728 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
	// DPoP (RFC 9449 §7.1 and RFC 9728 §2).
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported"`
	DPoPRequired    bool     `json:"dpop_bound_access_tokens_required,omitempty"`
}

var codeChallengeMethods = []string{"S256"}

func (s *Server) authorizationServerMetadata() ([]byte, error) {
	methods := authMethodNames(nil)
	doc := authorizationServer{
		Issuer:                                             s.cfg.Issuer,
		AuthorizationEndpoint:                              s.endpoint("/oauth/authorize"),
		TokenEndpoint:                                      s.endpoint("/oauth/token"),
		RevocationEndpoint:                                 s.endpoint("/oauth/revoke"),
		IntrospectionEndpoint:                              s.endpoint("/oauth/introspect"),
		JWKSURI:                                            s.endpoint("/.well-known/jwks.json"),
		ResponseTypesSupported:                             []string{"code"},
		ResponseModesSupported:                             []string{"query"},
		GrantTypesSupported:                                s.grants.names(),
		CodeChallengeMethodsSupported:                      codeChallengeMethods,
		TokenEndpointAuthMethodsSupported:                  methods,
		RevocationEndpointAuthMethodsSupported:             methods,
		IntrospectionEndpointAuthMethodsSupported:          authMethodNames(func(m *authMethod) bool { return m.kind.confidential() }),
		TokenEndpointAuthSigningAlgValuesSupported:         assertionAlgNames(),
		RevocationEndpointAuthSigningAlgValuesSupported:    assertionAlgNames(),
		IntrospectionEndpointAuthSigningAlgValuesSupported: assertionAlgNames(),
		ScopesSupported:                                    s.cfg.Scopes,
		DPoPSigningAlgValuesSupported:                      dpopAlgNames(),
		AuthorizationResponseIssParameterSupported:         true,
		ClientIDMetadataDocumentSupported:                  s.cfg.Clients.ClientIDMetadataDocuments,
	}
	if s.cfg.Clients.DynamicRegistration {
		doc.RegistrationEndpoint = s.endpoint("/oauth/register")
	}
	if len(s.cfg.Grants.EnterpriseIDPs) > 0 {
		doc.AuthorizationGrantProfilesSupported = []string{idJAGProfile}
	}
	return json.Marshal(doc)
}

func (s *Server) protectedResource(id string) (resource, error) {
	u, err := url.Parse(id)
	if err != nil {
		return resource{}, fmt.Errorf("parsing resource %q: %v", id, err)
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	doc, err := json.Marshal(protectedResourceMetadata{
		Resource:               id,
		AuthorizationServers:   []string{s.cfg.Issuer},
		ScopesSupported:        resourceScopes(s.cfg.Scopes),
		BearerMethodsSupported: []string{"header"},
		ResourceName:           s.cfg.ResourceName,
		DPoPSigningAlgs:        dpopAlgNames(),
		DPoPRequired:           s.cfg.Guard.RequireDPoP,
	})
	if err != nil {
		return resource{}, err
	}
	return resource{
		id:           id,
		path:         path,
		metadataPath: "/.well-known/oauth-protected-resource" + path,
		metadata:     doc,
	}, nil
}

// MetadataURL is the absolute URL of a resource's RFC 9728 document
// (the path-inserted form for a resource with a path).
func (r resource) MetadataURL() string {
	u, _ := url.Parse(r.id) // validated at load
	return u.Scheme + "://" + u.Host + r.metadataPath
}

// WellKnown reports whether a path is under /.well-known/: a discovery
// path that is not one of this server's (or public) is answered 404,
// never with a challenge, so that clients probing for documents (ChatGPT
// asks for /.well-known/oauth-authorization-server/mcp when the issuer has
// no path) fall back to the next place they know.
func WellKnown(path string) bool {
	return strings.HasPrefix(path, "/.well-known/")
}

// NoDocument answers a /.well-known/ path that is not this server's.
func NoDocument(w http.ResponseWriter, r *http.Request) {
	allowCORS(w)
	writeError(w, http.StatusNotFound, "not_found", "no document at this path")
}

// serveDocument answers GET/HEAD with a fixed JSON document that any
// origin may read, and answers CORS preflight.
func serveDocument(body []byte) http.HandlerFunc {
	return serveDocumentFunc(func() []byte { return body })
}

// serveDocumentFunc is serveDocument for a document that may change (the
// JWKS, across key rotations).
func serveDocumentFunc(document func() []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body := document()
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			writePreflight(w, r, "GET, HEAD, OPTIONS")
			return
		default:
			h.Set("Allow", "GET, HEAD, OPTIONS")
			writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	}
}
