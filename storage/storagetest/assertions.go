package storagetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// testAssertionUsedOnce: an assertion's jti is accepted once per signer
// and issuer until it expires, then may come again; the sweep removes it.
func testAssertionUsedOnce(t *testing.T, open Opener) {
	b := open(t)
	s := b.ForIssuer(testIssuer)
	ctx := context.Background()
	exp := t0.Add(5 * time.Minute)
	if err := s.UseAssertion(ctx, "client-a", "jti-1", exp, t0); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for name, use := range map[string]func() error{
		"a replay":                  func() error { return s.UseAssertion(ctx, "client-a", "jti-1", exp, t0.Add(time.Minute)) },
		"a replay with a later exp": func() error { return s.UseAssertion(ctx, "client-a", "jti-1", exp.Add(time.Hour), t0.Add(time.Minute)) },
	} {
		if err := use(); !errors.Is(err, storage.ErrReplayed) {
			t.Errorf("%s: %v, want ErrReplayed", name, err)
		}
	}
	for name, use := range map[string]func() error{
		"another signer's jti":           func() error { return s.UseAssertion(ctx, "client-b", "jti-1", exp, t0) },
		"the same jti at another issuer": func() error { return b.ForIssuer("https://other.test").UseAssertion(ctx, "client-a", "jti-1", exp, t0) },
		"after it expired":               func() error { return s.UseAssertion(ctx, "client-a", "jti-1", exp.Add(5*time.Minute), exp) },
	} {
		if err := use(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The renewed record holds until its new expiry.
	if err := s.UseAssertion(ctx, "client-a", "jti-1", exp, exp.Add(time.Minute)); !errors.Is(err, storage.ErrReplayed) {
		t.Errorf("a replay of the renewed jti: %v", err)
	}
	swept, err := s.DeleteExpired(ctx, exp.Add(10*time.Minute))
	if err != nil || swept.Deleted < 3 {
		t.Fatalf("sweep: %+v %v, want the three records deleted", swept, err)
	}
	if err := s.UseAssertion(ctx, "client-b", "jti-1", exp.Add(time.Hour), exp.Add(10*time.Minute)); err != nil {
		t.Errorf("after the sweep: %v", err)
	}
	UseAssertionRace(t, []storage.Store{s}, "jti-race", 20, t0)
}

// UseAssertionRace presents one assertion n times at once, spread over
// stores (one per node sharing the storage), and fails t unless exactly
// one is accepted and every other is told ErrReplayed.
func UseAssertionRace(t *testing.T, stores []storage.Store, jti string, n int, at time.Time) {
	t.Helper()
	var wins, replays atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := stores[i%len(stores)].UseAssertion(context.Background(), "racer", jti, at.Add(time.Minute), at)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, storage.ErrReplayed):
				replays.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || replays.Load() != int32(n-1) {
		t.Fatalf("%d uses of one assertion accepted and %d refused as replays, want 1 and %d", wins.Load(), replays.Load(), n-1)
	}
}
