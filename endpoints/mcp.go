package endpoints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"

	"go.uber.org/zap"
)

// MCPScopeRule requires scopes of MCP requests: by JSON-RPC method
// (Mcp-Method), or by tool name (Mcp-Name of a tools/call). Patterns are
// path.Match globs: `delete_*`, `resources/*`.
type MCPScopeRule struct {
	Tool, Method string // exactly one is set
	Scopes       []string
}

// maxMCPBody bounds the JSON-RPC body the guard reads to learn a request's
// method and name.
const maxMCPBody = 1 << 20

// headerValidatedVersions are the MCP protocol versions whose servers
// must check Mcp-Method and Mcp-Name against the body: for them the guard
// trusts the headers without reading the body. A version this build does
// not know (a later one, or a made-up one a non-validating server would
// not refuse) is judged by its body.
var headerValidatedVersions = []string{"2026-07-28"}

// JSON-RPC error codes of the guard's refusals.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcInvalidParams  = -32602
	rpcHeaderMismatch = -32020 // MCP 2026-07-28 HeaderMismatch
	rpcRateLimited    = -32000 // a server error: retry after Retry-After
)

// mcpRequest is one JSON-RPC request of a POST, as the guard judges it.
type mcpRequest struct {
	id     json.RawMessage // nil when only the headers were read
	method string
	name   string // tools/call and prompts/get: params.name; resources/read: params.uri
}

// mcpCall is what the guard learned of an MCP POST.
type mcpCall struct {
	requests []mcpRequest
	batch    bool
}

// mcpRefusal is a request the guard answers itself with a JSON-RPC error.
type mcpRefusal struct {
	status  int
	code    int
	message string
	id      json.RawMessage // the request's, when known
}

func (e *mcpRefusal) Error() string { return e.message }

// inspectMCP learns the JSON-RPC requests of a POST: from the headers when
// the protocol version obliges the server to validate them, else (when
// readBody) from the body, which is restored for the upstream unchanged.
// A body that is not JSON-RPC yields no requests (the path rules alone
// apply).
func inspectMCP(r *http.Request, readBody bool) (*mcpCall, error) {
	method, name := r.Header.Get("Mcp-Method"), r.Header.Get("Mcp-Name")
	if method != "" && validatedVersion(r.Header.Get("MCP-Protocol-Version")) {
		return &mcpCall{requests: []mcpRequest{{method: method, name: name}}}, nil
	}
	if !readBody || r.Body == nil || r.Body == http.NoBody {
		return &mcpCall{}, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMCPBody+1))
	r.Body.Close()
	if err != nil {
		return nil, &mcpRefusal{http.StatusBadRequest, rpcInvalidRequest, "the request body could not be read", nil}
	}
	if len(body) > maxMCPBody {
		return nil, &mcpRefusal{http.StatusRequestEntityTooLarge, rpcInvalidRequest, "the request body is larger than 1 MiB", nil}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && !json.Valid(trimmed) {
		// Broken JSON is refused rather than passed on unjudged: a server
		// that decodes only a first value (or forgives a syntax error)
		// would run what the guard could not read.
		return nil, &mcpRefusal{http.StatusBadRequest, rpcParseError, "the request body is not valid JSON", nil}
	}
	call := parseJSONRPC(body)
	if method != "" && !call.batch && len(call.requests) == 1 {
		got := call.requests[0]
		if got.method != method || (name != "" || mcpNamed(got.method)) && got.name != name {
			return nil, &mcpRefusal{http.StatusBadRequest, rpcHeaderMismatch, "the Mcp-Method or Mcp-Name header does not match the request body", got.id}
		}
	}
	return call, nil
}

// validatedVersion reports whether an MCP-Protocol-Version obliges the
// server to validate the mirrored headers.
func validatedVersion(v string) bool { return slices.Contains(headerValidatedVersions, v) }

// mcpNamed reports whether a method's requests carry Mcp-Name.
func mcpNamed(method string) bool {
	return method == "tools/call" || method == "prompts/get" || method == "resources/read"
}

// parseJSONRPC reads a JSON-RPC request or batch (valid JSON: see
// inspectMCP). Members are matched
// exactly (encoding/json's struct decoding would match "NAME" too, and a
// server that reads only "name" would then run another tool than the one
// judged); of repeated members the last counts, as in JavaScript and
// Python. Notifications and responses carry no requests.
func parseJSONRPC(body []byte) *mcpCall {
	body = bytes.TrimSpace(body)
	call := &mcpCall{}
	var objects []json.RawMessage
	switch {
	case len(body) > 0 && body[0] == '[':
		if json.Unmarshal(body, &objects) != nil {
			return &mcpCall{}
		}
		call.batch = true
	case len(body) > 0 && body[0] == '{':
		objects = []json.RawMessage{body}
	default:
		return call
	}
	for _, o := range objects {
		req, ok := parseJSONRPCRequest(o)
		if ok {
			call.requests = append(call.requests, req)
		}
	}
	return call
}

func parseJSONRPCRequest(raw json.RawMessage) (mcpRequest, bool) {
	var members map[string]json.RawMessage
	if json.Unmarshal(raw, &members) != nil {
		return mcpRequest{}, false
	}
	// The "jsonrpc" member is not required: a lenient server would run a
	// request without it, so the guard judges it too.
	var method string
	id, hasID := members["id"]
	if json.Unmarshal(members["method"], &method) != nil || method == "" || !hasID {
		return mcpRequest{}, false // not a request: a notification, a response, or no JSON-RPC
	}
	req := mcpRequest{id: id, method: method}
	if mcpNamed(method) {
		var params map[string]json.RawMessage
		key := "name"
		if method == "resources/read" {
			key = "uri"
		}
		if json.Unmarshal(members["params"], &params) == nil {
			json.Unmarshal(params[key], &req.name)
		}
	}
	return req, true
}

// mcpScopes is every scope the MCP rules require of the call.
func (s *Server) mcpScopes(call *mcpCall) []string {
	var out []string
	for _, req := range call.requests {
		for _, rule := range s.cfg.MCPRules {
			if rule.Method != "" && globMatch(rule.Method, req.method) ||
				rule.Tool != "" && req.method == "tools/call" && globMatch(rule.Tool, req.name) {
				out = append(out, rule.Scopes...)
			}
		}
	}
	return out
}

// refusedTool is the first tool of the call outside allow_tools, if any.
func (s *Server) refusedTool(call *mcpCall) (mcpRequest, bool) {
	if call == nil || len(s.cfg.AllowTools) == 0 {
		return mcpRequest{}, false
	}
	for _, req := range call.requests {
		if req.method == "tools/call" && !slices.ContainsFunc(s.cfg.AllowTools, func(p string) bool { return globMatch(p, req.name) }) {
			return req, true
		}
	}
	return mcpRequest{}, false
}

// globMatch is path.Match without its error (patterns are checked at load).
func globMatch(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}

// ValidGlob reports whether a require_scope tool/method or allow_tools
// pattern is well formed.
func ValidGlob(pattern string) bool {
	_, err := path.Match(pattern, "")
	return pattern != "" && !errors.Is(err, path.ErrBadPattern)
}

// rpcError is a JSON-RPC 2.0 error response.
type rpcError struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorBody    `json:"error"`
}

type rpcErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeRPCError answers with a JSON-RPC error for the request (id null
// when it is not known), in an array when the body was a batch.
func writeRPCError(w http.ResponseWriter, status int, call *mcpCall, req mcpRequest, code int, message string) {
	id := req.id
	if id == nil {
		id = json.RawMessage("null")
	}
	var body any = rpcError{"2.0", id, rpcErrorBody{code, message}}
	if call != nil && call.batch {
		body = []any{body}
	}
	writeJSON(w, status, body)
}

// toolNotAllowed is the message naming a refused tool.
func toolNotAllowed(name string) string {
	return fmt.Sprintf("tool %q is not allowed through this gateway", name)
}

// mcpMethods are the MCP methods counted by name in the metrics (with the
// methods the operator lists); any other is counted as "other".
var mcpMethods = []string{"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
	"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
	"completion/complete", "logging/setLevel", "tasks/get", "tasks/list", "tasks/result", "tasks/cancel"}

// mcpOutcome counts the guard's decision for every request of an MCP call
// and writes an audit event per tools/call (claims nil: no valid token).
func (s *Server) mcpOutcome(res resource, call *mcpCall, claims *accessTokenClaims, outcome, reason string) {
	if call == nil {
		return
	}
	for _, req := range call.requests {
		method := "other"
		if slices.Contains(mcpMethods, req.method) || slices.ContainsFunc(s.cfg.MCPRules, func(m MCPScopeRule) bool { return m.Method == req.method }) {
			method = req.method
		}
		tool := ""
		if req.method == "tools/call" {
			tool = s.toolLabel(req.name)
		}
		metrics.mcp.WithLabelValues(res.id, method, tool, outcome).Inc()
		if req.method != "tools/call" {
			continue
		}
		fields := []zap.Field{zap.String("resource", res.id), zap.String("tool", req.name), zap.String("outcome", auditOutcome(outcome))}
		if claims != nil {
			fields = append(fields, zap.String("sub", claims.Subject), zap.String("client_id", claims.ClientID))
		}
		if outcome != decisionAllowed {
			fields = append(fields, zap.String("reason", outcome), zap.String("detail", reason))
		}
		s.audit.info(eventToolCall, fields...)
	}
}

// auditOutcome is allowed or refused.
func auditOutcome(decision string) string {
	if decision == decisionAllowed {
		return "allowed"
	}
	return "refused"
}

// toolLabel is the metrics label of a tool: a pattern of require_scope
// tool or allow_tools that matches it (its name when listed as is), else
// "other", so that the label takes only values the operator wrote.
func (s *Server) toolLabel(name string) string {
	for _, rule := range s.cfg.MCPRules {
		if rule.Tool != "" && globMatch(rule.Tool, name) {
			return rule.Tool
		}
	}
	for _, p := range s.cfg.AllowTools {
		if globMatch(p, name) {
			return p
		}
	}
	return "other"
}

// mcpAware reports whether the guard reads bodies to learn MCP methods
// and tools: only when the operator wrote rules about them.
func (s *Server) mcpAware() bool {
	return len(s.cfg.MCPRules) > 0 || len(s.cfg.AllowTools) > 0
}
