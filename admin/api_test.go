package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestImportBodyIsBounded: an import larger than the bound is refused
// with 413 before anything is stored.
func TestImportBodyIsBounded(t *testing.T) {
	defer func(n int64) { maxImportBytes = n }(maxImportBytes)
	maxImportBytes = 1 << 20
	line := `{"type":"revoked_access_token","record":{"jti":"` + strings.Repeat("x", 1000) + `","expires_at":"2999-01-01T00:00:00Z"}}` + "\n"
	r := httptest.NewRequest(http.MethodPost, "/oauth2/import", strings.NewReader(strings.Repeat(line, 1100)))
	w := httptest.NewRecorder()
	err := importRecords(&Site{}, w, r, "")
	ae, ok := err.(caddy.APIError)
	if !ok || ae.HTTPStatus != http.StatusRequestEntityTooLarge || ae.Err.Error() != "the import is larger than 1 MiB" {
		t.Fatalf("%v", err)
	}
}
