package endpoints

import (
	"os"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
)

// TestMain stops the PostgreSQL cluster the benchmarks may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}
