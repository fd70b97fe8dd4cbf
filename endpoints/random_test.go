package endpoints

import (
	"strings"
	"testing"
)

// TestClientIDsAreNotFlags: a generated client id never starts with "-",
// so `caddy oauth2 clients delete <id>` does not read it as flags (one in
// 32 did).
func TestClientIDsAreNotFlags(t *testing.T) {
	for range 10000 {
		if id := randomID(); strings.HasPrefix(id, "-") || len(id) != 22 {
			t.Fatalf("client id %q", id)
		}
	}
}
