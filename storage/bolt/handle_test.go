package bolt

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"

	bolterrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestAcquireSharesOneHandlePerFile(t *testing.T) {
	dir := t.TempDir()
	key, err := Key(filepath.Join(dir, "a", "..", "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	if key != filepath.Join(dir, "oauth.db") {
		// t.TempDir may itself sit behind a symlink; compare resolved forms.
		if want, _ := Key(filepath.Join(dir, "oauth.db")); key != want {
			t.Fatalf("Key = %s, want %s", key, want)
		}
	}
	first, err := Acquire(key, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A second user (the next config during a reload) gets the same handle
	// at once instead of waiting for the file lock.
	start := time.Now()
	second, err := Acquire(key, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if first != second || time.Since(start) > time.Second {
		t.Fatal("second Acquire did not share the open handle")
	}
	if err := first.ForIssuer(testIssuer).PutClient(context.Background(), &storage.Client{ID: "kept"}); err != nil {
		t.Fatal(err)
	}
	// The old config lets go: the file stays open for the new one.
	if err := Release(key); err != nil {
		t.Fatal(err)
	}
	if _, err := second.ForIssuer(testIssuer).GetClient(context.Background(), "kept", time.Now()); err != nil {
		t.Fatalf("after the first release: %v", err)
	}
	if err := Release(key); err != nil {
		t.Fatal(err)
	}
	// The last release closed the file: it can be opened again directly.
	s, err := Open(key)
	if err != nil {
		t.Fatalf("file still locked after the last release: %v", err)
	}
	defer s.Close()
	if _, err := s.ForIssuer(testIssuer).GetClient(context.Background(), "kept", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestSecondProcessGetsClearError runs this test binary again as a child
// that opens a file the parent holds.
func TestSecondProcessGetsClearError(t *testing.T) {
	if path := os.Getenv("OAUTH2_TEST_OPEN_LOCKED"); path != "" {
		_, err := Open(path)
		if err == nil {
			os.Exit(3)
		}
		os.Stderr.WriteString(err.Error())
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "oauth.db")
	key, _ := Key(path)
	if _, err := Acquire(key, Options{}); err != nil {
		t.Fatal(err)
	}
	defer Release(key)

	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondProcessGetsClearError$")
	cmd.Env = append(os.Environ(), "OAUTH2_TEST_OPEN_LOCKED="+key)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v (%s)", err, stderr.String())
	}
	if took := time.Since(start); took > lockTimeout+5*time.Second {
		t.Fatalf("the child waited %s", took)
	}
	if want := "locked by another process for 5s; if Caddy is already running, use 'caddy reload'"; !strings.Contains(stderr.String(), want) {
		t.Fatalf("child error %q does not contain %q", stderr.String(), want)
	}
}

func TestSweeperDeletesExpiredAndStops(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	key, _ := Key(filepath.Join(t.TempDir(), "oauth.db"))
	file, err := Acquire(key, Options{SweepInterval: 20 * time.Millisecond, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	s := file.ForIssuer(testIssuer)
	ctx := context.Background()
	if err := s.SaveSession(ctx, "old", &storage.Session{Subject: "alice", ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !anyDeleted(logs) {
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper did not report a deletion; logs: %v", logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := Release(key); err != nil {
		t.Fatal(err)
	}
	// Destruct waited for the sweeper; nothing is logged after it.
	n := logs.Len()
	time.Sleep(100 * time.Millisecond)
	if logs.Len() != n {
		t.Fatal("the sweeper kept running after the last release")
	}
	if _, err := s.GetSession(ctx, "old", time.Now()); !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		t.Fatalf("after the last release: %v, want the file closed", err)
	}
}

func anyDeleted(logs *observer.ObservedLogs) bool {
	for _, e := range logs.FilterMessage("swept expired records").All() {
		if e.ContextMap()["deleted"].(int64) >= 1 {
			return true
		}
	}
	return false
}
