package endpoints

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// What the guard reads of a request under a protected resource when MCP
// rules exist: exactly what the upstream will decode, or a refusal. MCP
// servers differ in what they forgive: the official TypeScript SDK's
// Express app inflates gzip, deflate and br bodies, strips a byte-order
// mark and decodes UTF-16 under its charset; Go's encoding/json matches
// member names without regard to case (and folds ſ to s, K to k); some
// servers read a body whatever the method. The guard accepts only bodies
// they all decode alike, and refuses the rest.

// judgedHeaders are the MCP headers that may appear once.
var judgedHeaders = []string{"Mcp-Method", "Mcp-Name", "Mcp-Protocol-Version"}

// rpcMembers are the JSON-RPC members the guard judges by.
var rpcMembers = []string{"jsonrpc", "id", "method", "params"}

// inspectMCP judges a request under a protected resource: a POST by its
// JSON-RPC body (restored for the upstream unchanged), any other method
// only when it carries no body. The mirrored Mcp-Method and Mcp-Name
// headers must agree with the body.
func inspectMCP(r *http.Request) (*mcpCall, error) {
	for _, name := range judgedHeaders {
		if len(r.Header.Values(name)) > 1 {
			return nil, refuse(http.StatusBadRequest, rpcInvalidRequest, "repeated_header", "the "+name+" header is repeated")
		}
	}
	if !strings.EqualFold(r.Method, http.MethodPost) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			return nil, refuse(http.StatusMethodNotAllowed, rpcInvalidRequest, "method_with_body", "under an MCP resource a request body is accepted only with POST")
		}
		return nil, nil
	}
	if err := checkBodyHeaders(r.Header); err != nil {
		return nil, err
	}
	body, err := readMCPBody(r)
	if err != nil {
		return nil, err
	}
	call, err := parseJSONRPC(body)
	if err != nil {
		return nil, err
	}
	if err := headersAgree(r.Header, call); err != nil {
		return nil, err
	}
	return call, nil
}

// refuse is an mcpRefusal without a request id.
func refuse(status, code int, reason, message string) *mcpRefusal {
	return &mcpRefusal{status: status, code: code, reason: reason, message: message}
}

// checkBodyHeaders refuses a body the upstream would decode before
// parsing it: any Content-Encoding but identity, a charset other than
// UTF-8, a Content-Type that is repeated or malformed.
func checkBodyHeaders(h http.Header) error {
	for _, v := range h.Values("Content-Encoding") {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return refuse(http.StatusUnsupportedMediaType, rpcInvalidRequest, "content_encoding", "a Content-Encoding is not accepted under an MCP resource: send the JSON-RPC body unencoded")
			}
		}
	}
	types := h.Values("Content-Type")
	switch {
	case len(types) > 1:
		return refuse(http.StatusUnsupportedMediaType, rpcInvalidRequest, "content_type", "the Content-Type header is repeated")
	case len(types) == 0:
		return nil
	}
	_, params, err := mime.ParseMediaType(types[0])
	if err != nil {
		return refuse(http.StatusUnsupportedMediaType, rpcInvalidRequest, "content_type", "the Content-Type header is malformed")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return refuse(http.StatusUnsupportedMediaType, rpcInvalidRequest, "charset", "only charset=utf-8 is accepted under an MCP resource")
	}
	return nil
}

// readMCPBody reads a POST body of at most maxMCPBody bytes and puts it
// back for the upstream.
func readMCPBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxMCPBody+1))
	r.Body.Close()
	if err != nil {
		return nil, refuse(http.StatusBadRequest, rpcInvalidRequest, "unreadable", "the request body could not be read")
	}
	if len(body) > maxMCPBody {
		return nil, refuse(http.StatusRequestEntityTooLarge, rpcInvalidRequest, "too_large", "the request body is larger than 1 MiB")
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// byteOrderMarks are the UTF-8, UTF-16 and UTF-32 byte-order marks.
var byteOrderMarks = [][]byte{{0xEF, 0xBB, 0xBF}, {0xFE, 0xFF}, {0xFF, 0xFE}, {0, 0, 0xFE, 0xFF}}

// parseJSONRPC judges a body as JSON-RPC: empty, or one JSON object or an
// array of at most maxBatch values, in UTF-8 without a byte-order mark.
// Every object with a method is judged (a request, or a notification a
// lenient server might run all the same); responses and other values
// carry nothing to judge.
func parseJSONRPC(body []byte) (*mcpCall, error) {
	for _, bom := range byteOrderMarks {
		if bytes.HasPrefix(body, bom) {
			return nil, refuse(http.StatusBadRequest, rpcParseError, "byte_order_mark", "the request body starts with a byte-order mark: send UTF-8 JSON without one")
		}
	}
	if !utf8.Valid(body) {
		return nil, refuse(http.StatusBadRequest, rpcParseError, "not_utf8", "the request body is not UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	call := &mcpCall{}
	if len(trimmed) == 0 {
		return call, nil
	}
	if trimmed[0] != '{' && trimmed[0] != '[' {
		return nil, refuse(http.StatusBadRequest, rpcParseError, "not_json", "the request body is not a JSON-RPC message (a JSON object or array)")
	}
	if !json.Valid(trimmed) {
		// A server that decodes only a first value (or forgives a syntax
		// error) would run what the guard could not read.
		return nil, refuse(http.StatusBadRequest, rpcParseError, "not_json", "the request body is not valid JSON")
	}
	messages := []json.RawMessage{trimmed}
	if trimmed[0] == '[' {
		call.batch = true
		var err error
		if messages, err = batchMessages(trimmed); err != nil {
			return nil, err
		}
	}
	for _, m := range messages {
		req, ok, err := parseMessage(m)
		if err != nil {
			return nil, err
		}
		if ok {
			call.requests = append(call.requests, req)
		}
	}
	return call, nil
}

// batchMessages splits a valid JSON array into its values, refusing more
// than maxBatch before reading further.
func batchMessages(array []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(array))
	dec.Token() // [
	var out []json.RawMessage
	for dec.More() {
		if len(out) == maxBatch {
			return nil, refuse(http.StatusBadRequest, rpcInvalidRequest, "batch_too_large", "a JSON-RPC batch may hold at most 100 messages")
		}
		var m json.RawMessage
		if err := dec.Decode(&m); err != nil {
			return nil, refuse(http.StatusBadRequest, rpcParseError, "not_json", "the request body is not valid JSON")
		}
		out = append(out, m)
	}
	return out, nil
}

// member is one member of a JSON object, in order, repeats kept.
type member struct {
	name  string
	value json.RawMessage
}

// objectMembers lists the members of a valid JSON object; ok is false
// for any other value.
func objectMembers(raw json.RawMessage) ([]member, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		name, isName := t.(string)
		if err != nil || !isName {
			return nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		out = append(out, member{name, v})
	}
	return out, true
}

// exactly returns the members named, refusing a repeated one and a member
// whose name folds to one of them without being spelled exactly ("METHOD",
// "paramſ"): a server matching names without regard to case would read
// it, and the guard would judge another.
func exactly(members []member, names ...string) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(names))
	for _, m := range members {
		for _, n := range names {
			switch {
			case m.name == n:
				if _, dup := out[n]; dup {
					return nil, refuse(http.StatusBadRequest, rpcInvalidRequest, "repeated_member", "the JSON-RPC message repeats its "+n+" member")
				}
				out[n] = m.value
			case strings.EqualFold(m.name, n):
				return nil, refuse(http.StatusBadRequest, rpcInvalidRequest, "member_spelling", "the JSON-RPC message has a member spelled like "+n+" but not exactly")
			}
		}
	}
	return out, nil
}

// parseMessage judges one value of the body: ok when it is an object with
// a method (a request or a notification).
func parseMessage(raw json.RawMessage) (mcpRequest, bool, error) {
	members, isObject := objectMembers(raw)
	if !isObject {
		return mcpRequest{}, false, nil
	}
	m, err := exactly(members, rpcMembers...)
	if err != nil {
		return mcpRequest{}, false, err
	}
	var method string
	if json.Unmarshal(m["method"], &method) != nil || method == "" {
		return mcpRequest{}, false, nil // a response, or no JSON-RPC: nothing runs
	}
	// The "jsonrpc" member is not required: a lenient server would run a
	// request without it, so the guard judges it too.
	req := mcpRequest{id: m["id"], method: method}
	if !mcpNamed(method) {
		return req, true, nil
	}
	key := "name"
	if method == "resources/read" {
		key = "uri"
	}
	params, given := m["params"]
	if !given {
		return req, true, nil // nothing named: the server refuses it
	}
	badParams := &mcpRefusal{http.StatusBadRequest, rpcInvalidParams, "params", "params must be an object whose " + key + " is a string", req.id}
	pm, isObject := objectMembers(params)
	if !isObject {
		return mcpRequest{}, false, badParams
	}
	named, err := exactly(pm, key)
	if err != nil {
		return mcpRequest{}, false, err
	}
	if v, ok := named[key]; ok && json.Unmarshal(v, &req.name) != nil {
		return mcpRequest{}, false, badParams
	}
	return req, true, nil
}

// headersAgree refuses Mcp-Method or Mcp-Name headers that do not mirror
// the body exactly: a server routing on the headers must run what the
// guard judged.
func headersAgree(h http.Header, call *mcpCall) error {
	_, hasMethod := h["Mcp-Method"]
	_, hasName := h["Mcp-Name"]
	if !hasMethod && !hasName {
		return nil
	}
	mismatch := refuse(http.StatusBadRequest, rpcHeaderMismatch, "header_mismatch", "the Mcp-Method or Mcp-Name header does not match the request body")
	if call.batch || len(call.requests) != 1 {
		return mismatch
	}
	got := call.requests[0]
	mismatch.id = got.id
	if got.method != h.Get("Mcp-Method") || (hasName || mcpNamed(got.method)) && got.name != h.Get("Mcp-Name") {
		return mismatch
	}
	return nil
}

// headerValidatedVersions are the MCP protocol versions whose servers
// must check Mcp-Method and Mcp-Name against the body. Without MCP rules
// the guard counts such requests by their headers without reading the
// body (see headerCall).
var headerValidatedVersions = []string{"2026-07-28"}

// headerCall is what the headers of a POST say, for the metrics of a
// guard without MCP rules (nothing is judged by it).
func headerCall(r *http.Request) *mcpCall {
	method := r.Header.Get("Mcp-Method")
	if method == "" || !slices.Contains(headerValidatedVersions, r.Header.Get("MCP-Protocol-Version")) {
		return nil
	}
	return &mcpCall{requests: []mcpRequest{{method: method, name: r.Header.Get("Mcp-Name")}}}
}

// mcpNamed reports whether a method's requests name what they act on
// (Mcp-Name): a tool, a prompt, a resource.
func mcpNamed(method string) bool {
	return method == "tools/call" || method == "prompts/get" || method == "resources/read"
}
