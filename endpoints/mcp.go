package endpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"unicode/utf8"

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

// maxBatch is the most messages a JSON-RPC batch may hold (what the SDKs
// accept).
const maxBatch = 100

// JSON-RPC error codes of the guard's refusals.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcInvalidParams  = -32602
	rpcHeaderMismatch = -32020 // MCP 2026-07-28 HeaderMismatch
	rpcRateLimited    = -32000 // a server error: retry after Retry-After
)

// mcpRequest is one JSON-RPC message with a method (a request, or a
// notification when id is nil), as the guard judges it.
type mcpRequest struct {
	id     json.RawMessage // nil for a notification, or when only the headers were read
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
	reason  string // for the audit event and the logs: a fixed word
	message string
	id      json.RawMessage // the request's, when known
}

func (e *mcpRefusal) Error() string { return e.message }

// mcpScopes is every scope the MCP rules require of the call.
func (s *guard) mcpScopes(call *mcpCall) []string {
	if call == nil {
		return nil
	}
	var out []string
	for _, req := range call.requests {
		for _, rule := range s.cfg.Guard.MCPRules {
			if rule.Method != "" && globMatch(rule.Method, req.method) ||
				rule.Tool != "" && req.method == "tools/call" && globMatch(rule.Tool, req.name) {
				out = append(out, rule.Scopes...)
			}
		}
	}
	return out
}

// refusedTool is the first tool of the call outside allow_tools, if any.
func (s *guard) refusedTool(call *mcpCall) (mcpRequest, bool) {
	if call == nil || len(s.cfg.Guard.AllowTools) == 0 {
		return mcpRequest{}, false
	}
	for _, req := range call.requests {
		if req.method == "tools/call" && !slices.ContainsFunc(s.cfg.Guard.AllowTools, func(p string) bool { return globMatch(p, req.name) }) {
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
// and writes an audit event per tools/call; without a valid token (claims
// nil) one event stands for all the call's tools/call, so that a stranger's
// batch cannot flood the audit log.
func (s *guard) mcpOutcome(res resource, call *mcpCall, claims *accessTokenClaims, outcome, reason string) {
	if call == nil {
		return
	}
	var anonymous []string
	for _, req := range call.requests {
		method := "other"
		if slices.Contains(mcpMethods, req.method) || slices.ContainsFunc(s.cfg.Guard.MCPRules, func(m MCPScopeRule) bool { return m.Method == req.method }) {
			method = req.method
		}
		tool := ""
		if req.method == "tools/call" {
			tool = s.toolLabel(req.name)
		}
		metrics.mcp.WithLabelValues(res.id, method, tool, outcome).Inc()
		switch {
		case req.method != "tools/call":
		case claims == nil:
			anonymous = append(anonymous, req.name)
		default:
			s.audit.info(eventToolCall, s.toolCallFields(res, req.name, 1, claims, outcome, reason)...)
		}
	}
	if len(anonymous) > 0 {
		s.audit.info(eventToolCall, s.toolCallFields(res, anonymous[0], len(anonymous), nil, outcome, reason)...)
	}
}

// toolCallFields are the fields of an mcp_tool_call event: the tool (its
// name cut to 200 bytes), how many calls it stands for when more than one,
// who, and why it was refused.
func (s *guard) toolCallFields(res resource, tool string, calls int, claims *accessTokenClaims, outcome, reason string) []zap.Field {
	fields := []zap.Field{zap.String("resource", res.id), zap.String("tool", truncate(tool, maxLoggedName)), zap.String("outcome", auditOutcome(outcome))}
	if calls > 1 {
		fields = append(fields, zap.Int("tool_calls", calls))
	}
	if claims != nil {
		fields = append(fields, zap.String("sub", claims.Subject), zap.String("client_id", claims.ClientID))
	}
	if outcome != decisionAllowed {
		fields = append(fields, zap.String("reason", outcome), zap.String("detail", reason))
	}
	return fields
}

// maxLoggedName bounds a caller-chosen name in a log line.
const maxLoggedName = 200

// truncate cuts s to at most n bytes on a character boundary, marking the
// cut with "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
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
func (s *guard) toolLabel(name string) string {
	for _, rule := range s.cfg.Guard.MCPRules {
		if rule.Tool != "" && globMatch(rule.Tool, name) {
			return rule.Tool
		}
	}
	for _, p := range s.cfg.Guard.AllowTools {
		if globMatch(p, name) {
			return p
		}
	}
	return "other"
}

// mcpAware reports whether the guard reads bodies to learn MCP methods
// and tools: only when the operator wrote rules about them.
func (s *guard) mcpAware() bool {
	return len(s.cfg.Guard.MCPRules) > 0 || len(s.cfg.Guard.AllowTools) > 0
}
