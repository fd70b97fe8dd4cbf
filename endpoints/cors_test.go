package endpoints

import (
	"strings"
	"testing"
)

func TestMCPParamHeaders(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "",
		"authorization, content-type": "",
		"mcp-param-city":              ", mcp-param-city",
		"Mcp-Param-City,MCP-PARAM-units , x-other": ", Mcp-Param-City, MCP-PARAM-units",
		"mcp-param-":                  "",
		"mcp-param-a b, mcp-param-ok": ", mcp-param-ok",
		"mcp-param-\x00x, mcp-param-(x), mcp-param-ok2": ", mcp-param-ok2",
	} {
		if got := mcpParamHeaders([]string{in}); got != want {
			t.Errorf("mcpParamHeaders(%q) = %q, want %q", in, got, want)
		}
	}
	if got := mcpParamHeaders([]string{"mcp-param-a", "mcp-param-b"}); got != ", mcp-param-a, mcp-param-b" {
		t.Errorf("two header lines: %q", got)
	}
}

// FuzzPreflightHeaders: what a preflight reflects is only Mcp-Param-*
// header names that were asked for, each a valid token.
func FuzzPreflightHeaders(f *testing.F) {
	f.Add("authorization, content-type, mcp-param-city, Mcp-Param-Units")
	f.Add("mcp-param-\r\nx-injected: 1")
	f.Fuzz(func(t *testing.T, requested string) {
		out := mcpParamHeaders([]string{requested})
		if out == "" {
			return
		}
		for _, name := range strings.Split(strings.TrimPrefix(out, ", "), ", ") {
			if !isToken(name) || !strings.HasPrefix(strings.ToLower(name), mcpParamPrefix) || len(name) == len(mcpParamPrefix) {
				t.Fatalf("reflected %q from %q", name, requested)
			}
			if !strings.Contains(requested, name) {
				t.Fatalf("reflected %q, which was not asked for in %q", name, requested)
			}
		}
	})
}
