package oauth2server

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzUnmarshalCaddyfile feeds arbitrary text to the Caddyfile
// unmarshaller and the validation behind it: neither may panic, and a
// block that parses must survive the JSON round trip `caddy adapt` makes.
// The seed corpus is in testdata/fuzz/FuzzUnmarshalCaddyfile; plain
// `go test` runs it.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	f.Add("oauth2_server {\n issuer https://a.test\n resource https://a.test/mcp\n}")
	f.Fuzz(func(t *testing.T, src string) {
		h, err := parse(src)
		if err != nil {
			return
		}
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("marshalling a parsed config: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("the adapted JSON does not load back: %v", err)
		}
		if !reflect.DeepEqual(normalized(h), normalized(&back)) {
			t.Fatalf("JSON round trip changed the config:\n%+v\n%+v", h, &back)
		}
		back.SigningKey = "" // a fuzzed path could name /dev/stdin
		back.setDefaults()
		_ = back.validate()
	})
}

// normalized re-encodes h so that nil and empty slices compare equal.
func normalized(h *Handler) string {
	raw, _ := json.Marshal(h)
	return string(raw)
}
