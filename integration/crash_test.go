package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

const crashBase = "http://localhost:9180"

// TestCrashDuringRefreshBurst runs Caddy as a child process, drives a
// burst of refresh rotations from 16 clients, kills the child with
// SIGKILL in the middle of it, and then checks the storage file: no family
// half-rotated, no family revoked, and every refresh token a client
// received still there.
func TestCrashDuringRefreshBurst(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "oauth.db")
	caddyfile := filepath.Join(dir, "Caddyfile")
	err := os.WriteFile(caddyfile, []byte(`{
	admin off
	http_port 9180
	persist_config off
	skip_install_trust
}
`+crashBase+` {
	oauth2_server {
		issuer `+crashBase+`
		resource `+crashBase+`/mcp
		storage `+dbPath+`
		user alice `+aliceHash+`
		client pub1 {
			public
			redirect_uri https://client.test/cb
		}
	}
	respond "upstream" 200
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable() // not os.Args[0]: caddytest rewrites os.Args
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(self)
	child.Env = append(os.Environ(), "OAUTH2_CHILD_CADDYFILE="+caddyfile)
	var childLog strings.Builder
	child.Stdout, child.Stderr = &childLog, &childLog
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	waitForServer(t, crashBase+"/.well-known/oauth-authorization-server", &childLog)

	// 16 families, one per simulated client.
	b := newBrowser(t)
	b.origin = crashBase
	b.signIn("alice", alicePassword)
	const clients = 16
	current := make([]string, clients)
	for i := range current {
		p := newPKCE()
		first := b.get(authorizeQuery(p, map[string]string{"resource": crashBase + "/mcp", "scope": ""}))
		if first.resp.StatusCode == http.StatusOK {
			first = b.approve(first, "allow")
		}
		code := first.location().Query().Get("code")
		pg := b.post("/oauth/token", redeemForm(code, p))
		current[i] = jsonField(t, pg.body, "refresh_token")
	}

	var rotations atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	httpClient := &http.Client{Timeout: 5 * time.Second}
	for i := range clients {
		wg.Go(func() {
			for !stop.Load() {
				resp, err := httpClient.PostForm(crashBase+"/oauth/token", refreshForm(current[i]))
				if err != nil {
					return // the server is gone
				}
				var body strings.Builder
				_, copyErr := ioCopy(&body, resp)
				if resp.StatusCode != http.StatusOK {
					if copyErr == nil {
						t.Errorf("client %d: refresh refused while the server was up: %d %s", i, resp.StatusCode, body.String())
					}
					return
				}
				if copyErr != nil {
					return // killed while sending the answer: never received
				}
				current[i] = jsonField(t, body.String(), "refresh_token")
				rotations.Add(1)
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	stop.Store(true)
	wg.Wait()
	if rotations.Load() < 100 {
		t.Fatalf("only %d rotations before the kill: the burst did not happen", rotations.Load())
	}
	t.Logf("%d refresh rotations, then SIGKILL", rotations.Load())

	s, err := bolt.Open(dbPath)
	if err != nil {
		t.Fatalf("reopening the file after the crash: %v", err)
	}
	defer s.Close()
	if err := s.CheckConsistency(context.Background()); err != nil {
		t.Fatalf("inconsistent after the crash: %v", err)
	}
	for i, token := range current {
		fam, _, err := s.ForIssuer(crashBase).GetRefreshToken(context.Background(), token, time.Now())
		if err != nil {
			t.Errorf("client %d: its last refresh token is lost: %v", i, err)
			continue
		}
		if !fam.RevokedAt.IsZero() {
			t.Errorf("client %d: family %s was revoked", i, fam.ID)
		}
	}
}

func waitForServer(t *testing.T, u string, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the child Caddy did not start:\n%s", log)
}

// ioCopy reads a whole response body.
func ioCopy(w io.Writer, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}
