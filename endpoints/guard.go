package endpoints

import (
	"cmp"
	"errors"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// ScopeRule requires scopes on the paths its matcher matches.
type ScopeRule struct {
	Paths  caddyhttp.MatchPath
	Scopes []string
}

// identityPlaceholders are set on every request passed on, empty when
// unknown, so `header_up X-User {http.auth.user.id}` never sends the
// literal placeholder text upstream.
var identityPlaceholders = []string{
	"http.auth.user.id",
	"http.oauth2.sub",
	"http.oauth2.subject_type",
	"http.oauth2.client_id",
	"http.oauth2.scope",
	"http.oauth2.aud",
	"http.oauth2.jti",
	"http.oauth2.exp",
	"http.oauth2.email",
	"http.oauth2.name",
	"http.oauth2.preferred_username",
	"http.oauth2.idp",
	"http.oauth2.dpop_jkt",
}

// ClearIdentity sets every identity placeholder to "" (public paths).
func ClearIdentity(r *http.Request) {
	setIdentity(r, nil)
	setUpstreamToken(r, "")
}

// setUpstreamToken sets {http.oauth2.upstream_access_token}: the
// identity provider's access token of the grant (pass_upstream_token),
// for `header_up Authorization "Bearer {http.oauth2.upstream_access_token}"`.
func setUpstreamToken(r *http.Request, token string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.oauth2.upstream_access_token", token)
	}
}

func setIdentity(r *http.Request, c *accessTokenClaims) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	values := noIdentity
	if c != nil {
		values = c.placeholders
	}
	for i, k := range identityPlaceholders {
		repl.Set(k, values[i])
	}
}

// noIdentity is every identity placeholder empty.
var noIdentity = func() []any {
	v := make([]any, len(identityPlaceholders))
	for i := range v {
		v[i] = ""
	}
	return v
}()

// identityValues are the placeholder values of a verified token, in the
// order of identityPlaceholders; made once per token (see prepare), so a
// cached token's request sets them without allocating.
func identityValues(c *accessTokenClaims) []any {
	user, kind := c.Subject, c.subjectType()
	if kind != "user" {
		// A machine client or a workload is nobody's user, whatever its id.
		user = ""
	}
	jkt := ""
	if c.Cnf != nil {
		jkt = c.Cnf.JKT
	}
	return []any{user, c.Subject, kind, c.ClientID, c.Scope, strings.Join(c.Audience, " "), c.ID, strconv.FormatInt(c.Expiry.Time().Unix(), 10),
		c.Email, c.Name, c.PreferredUsername, c.IDP, jkt}
}

// guard is the part in front of every protected path: it judges requests
// by the resources (the core's) and the rules of the Config's Guard
// group, with the credentials it accepts and the per-user rate limit.
type guard struct {
	*core
	*issuer                       // verifies the tokens
	*custody                      // the upstream tokens it hands on
	credentials []guardCredential // in the order it looks for them
	userLimit   *keyedLimiter     // guarded requests per (sub, client); nil when off
}

func newGuard(c *core, is *issuer, k *custody) *guard {
	g := &guard{core: c, issuer: is, custody: k, credentials: []guardCredential{
		bearerCredential{s: is, requireDPoP: c.cfg.Guard.RequireDPoP},
		dpopCredential{s: is, replays: newDPoPReplays()},
	}}
	if c.cfg.Guard.RateLimitPerUser > 0 {
		g.userLimit = newKeyedLimiter(c.cfg.Guard.RateLimitPerUser, c.cfg.Guard.RateLimitPerUserWindow)
		g.userLimit.shareAcrossNodes(c, "user")
	}
	return g
}

// guardAllowMethods are the methods a preflight may ask for.
const guardAllowMethods = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

// Guard serves a request for a protected path: it needs a valid access
// token for the resource the path belongs to, with the scopes the path
// requires. The upstream then sees the identity in placeholders, and (by
// default) no Authorization header.
//
// Its steps: a CORS preflight is answered; the target is judged (the
// resource, the MCP call, the scopes they need); a credential
// authenticates the request to a principal; the principal is authorized
// (audience, tools, scopes, rate limit); the upstream token is fetched;
// the request is passed on. Each step answers a refusal itself and
// reports whether the request goes on.
//
// With CORS on, the guard's own answers let any origin read them; on a
// passed-on request the upstream's Access-Control-Allow-Origin, when it
// sends one, is the only one (see corsWriter).
func (s *guard) Guard(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if s.cfg.Guard.CORS && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		allowCORS(w)
		writePreflight(w, r, guardAllowMethods)
		return nil
	}
	var t guardTarget
	if !s.judgeTarget(w, r, &t) {
		return nil
	}
	p, ok := s.authenticateRequest(w, r, &t)
	if !ok || !s.authorizePrincipal(w, r, &t, p) {
		return nil
	}
	upstreamToken := ""
	if s.passesUpstream(p.token.IDP) {
		var err error
		if upstreamToken, err = s.upstreamAccessToken(r.Context(), p.token); err != nil {
			s.upstreamRefused(w, t.res, t.call, p.token, t.required, err)
			return nil
		}
	}
	s.decided(t.res, t.call, p.token, decisionAllowed, "")
	if p.fresh {
		s.audit.used(cmp.Or(p.token.FamilyID, p.token.ID), time.Now())
	}
	setIdentity(r, p.token)
	setUpstreamToken(r, upstreamToken)
	if !s.cfg.Guard.PassToken {
		delete(r.Header, "Authorization")
		delete(r.Header, "Dpop") // the proof goes with its token
	}
	if s.cfg.Guard.CORS {
		w = newCORSWriter(w)
	}
	return next.ServeHTTP(w, r)
}

// guardTarget is what a request to a protected path asks for.
type guardTarget struct {
	res        resource
	inResource bool     // the path is in res (else res is the default one)
	call       *mcpCall // the JSON-RPC call it carries, if any
	required   []string // the scopes the path and the call need
}

// judgeTarget finds the resource of the path and, where MCP rules apply,
// the call in the body as the upstream will decode it (refusing what it
// cannot judge), and the scopes they need.
func (s *guard) judgeTarget(w http.ResponseWriter, r *http.Request, t *guardTarget) bool {
	view := pathView(r)
	t.res, t.inResource = s.resourceForPath(view.URL.Path)
	t.required = s.requiredScopes(view)
	switch {
	case t.inResource && s.mcpAware():
		call, err := inspectMCP(r)
		if err != nil {
			s.refuseMCP(w, r, t.res, err.(*mcpRefusal))
			return false
		}
		t.call = call
		t.required = resourceScopes(dedupe(append(t.required, s.mcpScopes(call)...)))
	case t.inResource && strings.EqualFold(r.Method, http.MethodPost): // any spelling the upstream might accept
		t.call = headerCall(r)
	}
	return true
}

// authenticateRequest finds the credential the request carries and
// authenticates it: no credential is 401 with the challenges of every
// enabled one, a malformed one 400, a bad one 401 invalid_token, one that
// cannot be judged now 503.
func (s *guard) authenticateRequest(w http.ResponseWriter, r *http.Request, t *guardTarget) (principal, bool) {
	var cred guardCredential
	raw := ""
	for _, c := range s.credentials {
		var err error
		if raw, err = c.read(r); err != nil {
			s.decided(t.res, t.call, nil, decisionInvalid, err.Error())
			s.challenge(w, http.StatusBadRequest, t.res, t.required, c, "invalid_request", err.Error())
			return principal{}, false
		}
		if raw != "" {
			cred = c
			break
		}
	}
	if cred == nil {
		s.decided(t.res, t.call, nil, decisionMissingToken, "no access token")
		s.challenge(w, http.StatusUnauthorized, t.res, t.required, nil, "", "")
		return principal{}, false
	}
	p, err := cred.authenticate(r.Context(), r, raw)
	if err == nil && (!t.inResource || !slices.Contains(p.token.Audience, t.res.id)) {
		err = errWrongAudience
	}
	badProof, isProof := err.(proofError)
	if s.cfg.Tokens.DPoPNonce && (isProof || err == nil && p.scheme == "DPoP") {
		// The nonce to use next, with the refusal or the answer.
		w.Header().Set("DPoP-Nonce", s.Keys().DPoPNonce(time.Now()))
	}
	switch {
	case err == errRevocationUnknown:
		s.guardUnavailable(w, t.res, t.call, nil, err)
		return principal{}, false
	case isProof:
		s.decided(t.res, t.call, nil, decisionInvalid, err.Error())
		s.challenge(w, http.StatusUnauthorized, t.res, t.required, cred, badProof.code(), err.Error())
		return principal{}, false
	case err != nil:
		s.decided(t.res, t.call, nil, refusalDecision(err), err.Error())
		s.cfg.Logger.Debug("guard: refused", zap.String("path", r.URL.Path), zap.String("reason", err.Error()))
		s.challenge(w, http.StatusUnauthorized, t.res, t.required, cred, "invalid_token", err.Error())
		return principal{}, false
	}
	return p, true
}

// authorizePrincipal checks what the principal may do here: the tools it
// calls, the scopes the target needs, and its rate limit.
func (s *guard) authorizePrincipal(w http.ResponseWriter, r *http.Request, t *guardTarget, p principal) bool {
	if req, refused := s.refusedTool(t.call); refused {
		s.decided(t.res, t.call, p.token, decisionToolNotAllowed, toolNotAllowed(req.name))
		s.refuseRPC(w, http.StatusForbidden, t.call, req, rpcInvalidParams, toolNotAllowed(req.name))
		return false
	}
	if missing := s.scopes.missing(p.token.satisfies, t.required); len(missing) > 0 {
		s.decided(t.res, t.call, p.token, decisionInsufficientScope, "missing "+strings.Join(missing, " "))
		s.cfg.Logger.Debug("guard: insufficient scope", zap.String("client_id", p.token.ClientID), zap.String("sub", p.token.Subject),
			zap.String("scheme", p.scheme), zap.Strings("required", t.required))
		s.challenge(w, http.StatusForbidden, t.res, t.required, nil, "insufficient_scope", "the access token lacks a required scope")
		return false
	}
	if s.userLimit != nil {
		if ok, wait := s.userLimit.take(r.Context(), limitSubject(p.token)); !ok {
			s.decided(t.res, t.call, p.token, decisionRateLimited, "rate_limit_per_user")
			s.tooManyRequests(w, t.call, wait)
			return false
		}
	}
	return true
}

// guardUnavailable fails closed without telling the client its token is
// bad: 503 with Retry-After, and the client retries the same token.
func (s *guard) guardUnavailable(w http.ResponseWriter, res resource, call *mcpCall, claims *accessTokenClaims, err error) {
	s.decided(res, call, claims, decisionUnavailable, err.Error())
	if s.cfg.Guard.CORS {
		allowCORS(w)
	}
	w.Header().Set("Retry-After", unavailableRetryAfter)
	writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
}

// upstreamRefused answers a request whose upstream token cannot be had:
// 401 invalid_token when the provider's grant is gone (the client
// authorizes again, and the user signs in at the provider again), 503
// when the provider or the storage cannot be reached now.
func (s *guard) upstreamRefused(w http.ResponseWriter, res resource, call *mcpCall, claims *accessTokenClaims, required []string, err error) {
	if err == errUpstreamUnavailable || err == errRevocationUnknown {
		s.guardUnavailable(w, res, call, claims, err)
		return
	}
	s.decided(res, call, claims, decisionInvalid, err.Error())
	s.challenge(w, http.StatusUnauthorized, res, required, nil, "invalid_token", err.Error())
}

// limitSubject is who rate_limit_per_user counts: the user, whatever
// client the token was issued to (more clients buy no more requests), the
// machine client of a client_credentials token, or the workload.
func limitSubject(c *accessTokenClaims) string {
	switch c.subjectType() {
	case "client":
		return "client:" + c.ClientID
	case gtyWorkload:
		return "workload:" + c.Subject
	}
	return "user:" + c.Subject
}

// tooManyRequests answers a request over rate_limit_per_user: 429 with
// Retry-After, and a body an MCP client can read (a JSON-RPC error for a
// JSON-RPC request, else an OAuth-style error).
func (s *guard) tooManyRequests(w http.ResponseWriter, call *mcpCall, wait time.Duration) {
	w.Header().Set("Retry-After", retryAfter(wait))
	const msg = "too many requests for this user; retry later"
	if call != nil && len(call.requests) > 0 {
		s.refuseRPC(w, http.StatusTooManyRequests, call, call.requests[0], rpcRateLimited, msg)
		return
	}
	if s.cfg.Guard.CORS {
		allowCORS(w)
	}
	writeError(w, http.StatusTooManyRequests, "rate_limited", msg)
}

// refuseMCP answers a request the guard cannot judge (see inspectMCP)
// with its JSON-RPC error, counts it and writes one audit event.
func (s *guard) refuseMCP(w http.ResponseWriter, r *http.Request, res resource, refusal *mcpRefusal) {
	s.decided(res, nil, nil, decisionInvalid, refusal.message)
	s.audit.warn(eventMCPRefused, zap.String("resource", res.id), zap.String("reason", refusal.reason), zap.String("detail", refusal.message),
		zap.String("method", truncate(r.Method, 16)), zap.String("client_ip", clientIP(r)))
	if refusal.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
	}
	s.refuseRPC(w, refusal.status, nil, mcpRequest{id: refusal.id}, refusal.code, refusal.message)
}

// refuseRPC answers with a JSON-RPC error (see writeRPCError), readable by
// any origin when CORS is on, as the guard's other answers.
func (s *guard) refuseRPC(w http.ResponseWriter, status int, call *mcpCall, req mcpRequest, code int, message string) {
	if s.cfg.Guard.CORS {
		allowCORS(w)
	}
	writeRPCError(w, status, call, req, code, message)
}

// decided counts a guard decision and, for an MCP call, its requests and
// tool calls (see mcpOutcome).
func (s *guard) decided(res resource, call *mcpCall, claims *accessTokenClaims, decision, reason string) {
	s.metrics.guardDecision(res.id, decision)
	s.mcpOutcome(res, call, claims, decision, reason)
}

// IsPublic reports whether the request's path is one of the public paths.
// Caddy's path matcher cleans the path (dot segments, doubled or encoded
// slashes); pathView first reads a backslash as a slash and drops
// ";parameters" from segments, so /docs/..\mcp and /docs/..;/mcp are judged
// as /mcp, as Windows-minded and Tomcat-style upstreams would read them.
func (s *guard) IsPublic(r *http.Request) bool {
	if len(s.cfg.Guard.Public) == 0 {
		return false
	}
	ok, err := s.cfg.Guard.Public.MatchWithError(pathView(r))
	return err == nil && ok
}

// pathView is r as the guard judges its path: a backslash (raw or %5C)
// separates segments, and ";parameters" are removed from every segment.
// The request passed upstream is not changed.
func pathView(r *http.Request) *http.Request {
	if !strings.ContainsAny(r.URL.Path, ";\\") {
		return r
	}
	segments := strings.Split(strings.ReplaceAll(r.URL.Path, "\\", "/"), "/")
	for i, seg := range segments {
		segments[i], _, _ = strings.Cut(seg, ";")
	}
	u := *r.URL
	u.Path, u.RawPath = strings.Join(segments, "/"), ""
	view := r.WithContext(r.Context())
	view.URL = &u
	return view
}

// challenge answers 401/403 with an RFC 6750 + RFC 9728 challenge and a
// JSON body; errCode "" is the no-token case (no error attribute). The
// body of a 403 names the required scopes too, as the header does.
func (s *guard) challenge(w http.ResponseWriter, status int, res resource, required []string, by guardCredential, errCode, description string) {
	if s.cfg.Guard.CORS {
		allowCORS(w)
	}
	scope := strings.Join(required, " ")
	params := `resource_metadata="` + res.MetadataURL() + `"`
	if scope != "" {
		params += `, scope="` + scope + `"`
	}
	withError := params
	if errCode != "" {
		withError += `, error="` + errCode + `", error_description="` + description + `"`
	}
	if by != nil && by.challenge(params) == "" {
		by = nil // a credential that offers no challenge: every one says why
	}
	for _, c := range s.credentials {
		p := withError
		if by != nil && c != by {
			p = params // the error is the credential's the request used
		}
		if ch := c.challenge(p); ch != "" {
			w.Header().Add("WWW-Authenticate", ch)
		}
	}
	if errCode == "" {
		// No token: no error code, in the body as in the header (RFC 6750 §3.1).
		writeJSON(w, status, struct {
			Description string `json:"error_description"`
		}{"an access token is required"})
		return
	}
	if status == http.StatusForbidden {
		writeJSON(w, status, scopeError{oauthError{Error: errCode, Description: description}, scope})
		return
	}
	writeError(w, status, errCode, description)
}

// scopeError is the body of a 403 insufficient_scope answer.
type scopeError struct {
	oauthError
	Scope string `json:"scope,omitempty"`
}

// resourceForPath returns the resource whose path is the longest
// segment-wise prefix of the (cleaned) request path. When none is, it
// returns the default resource and false.
func (s *guard) resourceForPath(p string) (resource, bool) {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	p = path.Clean(p)
	best, found := s.resources[0], false
	for _, r := range s.resources {
		if (r.path == "" || p == r.path || strings.HasPrefix(p, r.path+"/")) && (!found || len(r.path) > len(best.path)) {
			best, found = r, true
		}
	}
	return best, found
}

// requiredScopes is every scope the require_scope rules matching r demand
// (offline_access is no permission of the resource: never).
func (s *guard) requiredScopes(r *http.Request) []string {
	var out []string
	for _, rule := range s.cfg.Guard.RequireScope {
		if ok, err := rule.Paths.MatchWithError(r); ok && err == nil {
			out = append(out, rule.Scopes...)
		}
	}
	return resourceScopes(dedupe(out))
}

// errWrongAudience refuses a token of another resource.
var errWrongAudience = errors.New("the access token is not valid for this resource")

// refusalDecision is the metrics decision of a refused token.
func refusalDecision(err error) string {
	switch err {
	case errTokenExpired:
		return decisionExpired
	case errTokenRevoked:
		return decisionRevoked
	case errWrongAudience:
		return decisionWrongAudience
	}
	return decisionInvalid
}
