package storagetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// runCapabilities runs the conformance tests of the optional capabilities
// (storage/module.go, storage/store.go) a backend implements.
func runCapabilities(t *testing.T, open Opener) {
	b := open(t)
	for _, c := range []struct {
		name string
		has  bool
		fn   func(*testing.T, storage.Backend)
	}{
		{"EventCounter", is[storage.EventCounter](b), testEventCounter},
		{"Pinger", is[storage.Pinger](b), testPinger},
		{"Syncer", is[storage.Syncer](b), testSyncer},
		{"KeyWatcher", is[storage.KeyWatcher](b), testKeyWatcher},
		{"Backuper", is[storage.Backuper](b), testBackuper},
	} {
		if c.has {
			t.Run(c.name, func(t *testing.T) { c.fn(t, open(t)) })
		}
	}
}

func is[T any](b storage.Backend) bool {
	_, ok := b.(T)
	return ok
}

// testEventCounter: events are counted per key over a sliding window,
// recorded or only counted, and forgotten once the window has passed.
func testEventCounter(t *testing.T, b storage.Backend) {
	c := b.(storage.EventCounter)
	ctx := context.Background()
	const window = 2 * time.Second // wide enough for three events on a busy machine
	key, other := storage.Hash("login\x00user:alice"), storage.Hash("login\x00user:bob")
	for i := range 3 {
		if n, err := c.CountEvents(ctx, key, window, true); err != nil || n != i+1 {
			t.Fatalf("event %d: count %d, %v", i+1, n, err)
		}
	}
	if n, err := c.CountEvents(ctx, key, window, false); err != nil || n != 3 {
		t.Fatalf("count without recording: %d, %v; want 3", n, err)
	}
	if n, err := c.CountEvents(ctx, other, window, false); err != nil || n != 0 {
		t.Fatalf("another key counts %d, %v", n, err)
	}
	time.Sleep(window + 300*time.Millisecond)
	if n, err := c.CountEvents(ctx, key, window, false); err != nil || n != 0 {
		t.Fatalf("events older than the window count: %d, %v", n, err)
	}
}

// testPinger: an open backend answers; a cancelled request does not wait.
func testPinger(t *testing.T, b storage.Backend) {
	p := b.(storage.Pinger)
	if err := p.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Ping(ctx); err == nil {
		t.Fatal("a cancelled ping succeeded")
	}
}

// testSyncer: a backend just opened knows every revocation committed
// before it opened.
func testSyncer(t *testing.T, b storage.Backend) {
	s := b.(storage.Syncer)
	if !eventually(func() bool { return s.Synced() }) {
		t.Fatal("a backend just opened is not synced")
	}
}

// testKeyWatcher: storing a signing key moves KeyChanges.
func testKeyWatcher(t *testing.T, b storage.Backend) {
	w := b.(storage.KeyWatcher)
	before := w.KeyChanges()
	s := b.ForIssuer(testIssuer)
	if _, err := s.EnsureSigningKey(context.Background(), func() (*storage.SigningKey, error) {
		return &storage.SigningKey{ID: "k1", Algorithm: "ES256", CreatedAt: time.Now()}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return w.KeyChanges() != before }) {
		t.Fatal("KeyChanges did not move when a key was stored")
	}
}

// testBackuper: a backup writes the bytes it reports.
func testBackuper(t *testing.T, b storage.Backend) {
	NewFamily(t, b.ForIssuer(testIssuer), "f1", "t1")
	var buf bytes.Buffer
	n, err := b.(storage.Backuper).Backup(context.Background(), &buf)
	if err != nil || n <= 0 || n != int64(buf.Len()) {
		t.Fatalf("backup: %d bytes reported, %d written, %v", n, buf.Len(), err)
	}
}

// eventually polls cond for up to five seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
