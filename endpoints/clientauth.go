package endpoints

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// clientKind is the kind of credential a client registered: it decides
// which authentication methods it may use (see authMethods).
type clientKind uint8

const (
	// publicClient proves nothing but its client_id (method none).
	publicClient clientKind = iota
	// secretClient presents a shared secret (client_secret_basic or
	// client_secret_post: both send the same secret, so either will do).
	secretClient
	// keyClient signs an assertion with one of its keys (private_key_jwt).
	keyClient
)

// kindOf is the kind of a client's registration: the one place that
// reads it from the record.
func kindOf(c *storage.Client) clientKind {
	switch {
	case len(c.SecretHash) > 0:
		return secretClient
	case len(c.JWKS) > 0 || c.JWKSURI != "":
		return keyClient
	}
	return publicClient
}

// confidential reports whether clients of the kind authenticate (RFC 6749
// §2.1), as opposed to public clients.
func (k clientKind) confidential() bool { return k != publicClient }

func (k clientKind) String() string {
	switch k {
	case secretClient:
		return "client that has a secret"
	case keyClient:
		return "client that has keys"
	}
	return "public client"
}

// wants says what a client of the kind must present.
func (k clientKind) wants() string {
	switch k {
	case secretClient:
		return "this client authenticates with its client secret (client_secret_basic or client_secret_post)"
	case keyClient:
		return "this client authenticates with an assertion signed by its key (private_key_jwt)"
	}
	return "this client is public: it authenticates with its client_id alone (none)"
}

// clientCredential is what a request presents to prove which client it is.
type clientCredential struct {
	clientID  string
	secret    string
	assertion *parsedAssertion // private_key_jwt's, not yet verified
}

// authMethod is one client authentication method (a
// token_endpoint_auth_method), a row of authMethods.
type authMethod struct {
	name string
	// kind is the kind of client that uses the method.
	kind clientKind
	// read returns the method's credential when the request carries it
	// (ok), or why what it carries is malformed.
	read func(a authRequest) (cred clientCredential, ok bool, err error)
	// verify checks a credential against the client's registration: nil
	// when it holds, else why not (a storage failure marked as such). It
	// may use what the clients part holds (the key sets, say).
	verify func(ctx context.Context, s *clients, c *storage.Client, cred clientCredential) error
}

// authMethods are the client authentication methods, strongest last.
// none is also what a request presents when it carries no other method:
// its client_id in the form.
var authMethods = []authMethod{
	{name: "none", kind: publicClient, read: readBasicNone, verify: verifyNone},
	{name: "client_secret_basic", kind: secretClient, read: readBasicSecret, verify: verifySecret},
	{name: "client_secret_post", kind: secretClient, read: readPostSecret, verify: verifySecret},
	{name: "private_key_jwt", kind: keyClient, read: readAssertion, verify: verifyAssertion},
}

// authMethodNamed is the method called name, or nil.
func authMethodNamed(name string) *authMethod {
	for i := range authMethods {
		if m := &authMethods[i]; m.name == name {
			return m
		}
	}
	return nil
}

// authMethodNames are the methods for which keep reports true
// (every one, with keep nil).
func authMethodNames(keep func(*authMethod) bool) []string {
	var out []string
	for i := range authMethods {
		if m := &authMethods[i]; keep == nil || keep(m) {
			out = append(out, m.name)
		}
	}
	return out
}

// methodsOfKind are the methods of clients of kind k.
func methodsOfKind(k clientKind) []string {
	return authMethodNames(func(m *authMethod) bool { return m.kind == k })
}

// authRequest is what the methods read: the form, and the Basic
// credentials, decoded once.
type authRequest struct {
	form     url.Values
	basic    clientCredential
	hasBasic bool
	basicErr error
}

func newAuthRequest(r *http.Request, form url.Values) authRequest {
	a := authRequest{form: form}
	id, secret, ok := r.BasicAuth()
	if !ok {
		return a
	}
	// RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
	var err1, err2 error
	a.hasBasic = true
	a.basic.clientID, err1 = url.QueryUnescape(id)
	a.basic.secret, err2 = url.QueryUnescape(secret)
	if err1 != nil || err2 != nil {
		a.basic, a.basicErr = clientCredential{}, errors.New("malformed Basic credentials")
	}
	return a
}

// readBasicNone: a Basic user name with an empty password is a client_id
// alone (golang.org/x/oauth2 sends that for a public client).
func readBasicNone(a authRequest) (clientCredential, bool, error) {
	return a.basic, a.hasBasic && (a.basicErr != nil || a.basic.secret == ""), a.basicErr
}

// readBasicSecret: a Basic password is a secret (malformed Basic
// credentials are none's to report).
func readBasicSecret(a authRequest) (clientCredential, bool, error) {
	return a.basic, a.hasBasic && a.basicErr == nil && a.basic.secret != "", nil
}

func readPostSecret(a authRequest) (clientCredential, bool, error) {
	secret := a.form.Get("client_secret")
	return clientCredential{clientID: a.form.Get("client_id"), secret: secret}, secret != "", nil
}

func verifyNone(context.Context, *clients, *storage.Client, clientCredential) error { return nil }

func verifySecret(_ context.Context, _ *clients, c *storage.Client, cred clientCredential) error {
	if !equalSecretHash(cred.secret, c.SecretHash) {
		return errors.New("wrong client secret")
	}
	return nil
}

// errTwoMethods refuses a request carrying two authentication methods.
var errTwoMethods = errors.New("use one client authentication method per request (RFC 6749 §2.3)")

// presentedMethod finds the one method a request carries (two:
// errTwoMethods, whether or not they are well formed): none, with the
// form's client_id, when it carries no other.
func presentedMethod(a authRequest) (*authMethod, clientCredential, error) {
	var found *authMethod
	var cred clientCredential
	var malformed error
	for i := range authMethods {
		m := &authMethods[i]
		c, ok, err := m.read(a)
		switch {
		case !ok:
			continue
		case found != nil:
			return nil, clientCredential{}, errTwoMethods
		}
		found, cred, malformed = m, c, err
	}
	switch {
	case malformed != nil:
		return nil, clientCredential{}, malformed
	case found == nil:
		return &authMethods[0], clientCredential{clientID: a.form.Get("client_id")}, nil
	}
	return found, cred, nil
}

// authenticateClient identifies the client of a token-endpoint style
// request (token, revocation, introspection).
//
// It finds the one method the request carries (two: 400 invalid_request,
// RFC 6749 §2.3) and enforces the kind of credential the client
// registered: a client with a secret presents it by either secret method
// (a Caddyfile client's token_endpoint_auth_method, when the operator
// set one, allows only that method); a public client presents its
// client_id alone; a method of another kind is refused. An Authorization
// header of another scheme (an MCP client's expired Bearer token) is not
// client authentication and is ignored. Any other failure answers 401
// invalid_client (real MCP clients take that as "register again"). On
// failure it returns the error code it answered with.
func (s *clients) authenticateClient(w http.ResponseWriter, r *http.Request, form url.Values) (*storage.Client, string) {
	a := newAuthRequest(r, form)
	id := form.Get("client_id")
	fail := func(description string) (*storage.Client, string) {
		if a.hasBasic {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.cfg.Issuer+`", charset="UTF-8"`)
		}
		s.cfg.Logger.Debug("client authentication failed", zap.String("client_id", id), zap.String("reason", description))
		writeError(w, http.StatusUnauthorized, "invalid_client", description)
		return nil, "invalid_client"
	}
	method, cred, err := presentedMethod(a)
	switch {
	case err == errTwoMethods:
		s.cfg.Logger.Debug("client authentication refused: two methods", zap.String("client_id", id))
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return nil, "invalid_request"
	case err != nil:
		return fail(err.Error())
	}
	if id != "" && id != cred.clientID {
		return fail("client_id does not match the client of the " + method.name + " credentials")
	}
	id = cred.clientID
	if id == "" {
		return fail("client authentication is required")
	}
	client, err := s.lookupClient(r.Context(), id)
	if storageDown(err) {
		s.unavailable(w, "client authentication", err)
		return nil, "temporarily_unavailable"
	}
	if err != nil {
		return fail("unknown client")
	}
	if kind := kindOf(client); method.kind != kind {
		return fail(kind.wants() + ", not with " + method.name)
	}
	if pinned := s.pinnedMethod(client); pinned != "" && pinned != method.name {
		return fail("this client authenticates with " + pinned + ", not " + method.name)
	}
	if err := method.verify(r.Context(), s, client, cred); storageDown(err) {
		s.unavailable(w, "client authentication", err)
		return nil, "temporarily_unavailable"
	} else if err != nil {
		return fail(err.Error())
	}
	return client, ""
}

// pinnedMethod is the one method a client must use: the one an operator
// set on a Caddyfile client; "" (any of its kind) for every other.
func (s *clients) pinnedMethod(c *storage.Client) string {
	if _, static := s.staticClients[c.ID]; static {
		return c.TokenEndpointAuthMethod
	}
	return ""
}

// clientAuthMethods are the methods a client may use now (see
// authenticateClient).
func (s *clients) clientAuthMethods(c *storage.Client) []string {
	if pinned := s.pinnedMethod(c); pinned != "" {
		return []string{pinned}
	}
	return methodsOfKind(kindOf(c))
}
