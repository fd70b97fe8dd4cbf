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

func testConsentsAndSessions(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Scope: "mcp:read mcp:write", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", ""); err != nil || c.Scope != "mcp:read mcp:write" {
		t.Fatalf("consent = %+v, %v", c, err)
	}
	if _, err := s.GetConsent(ctx, "alice", "c2", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consent for another client: %v", err)
	}
	// Consent is per resource.
	if err := s.PutConsent(ctx, &storage.Consent{Subject: "alice", ClientID: "c1", Resource: "https://r.test/api", Scope: "api:read", GrantedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", "https://r.test/api"); err != nil || c.Scope != "api:read" {
		t.Fatalf("consent for the other resource = %+v, %v", c, err)
	}
	if c, err := s.GetConsent(ctx, "alice", "c1", ""); err != nil || c.Scope != "mcp:read mcp:write" {
		t.Fatalf("consent for the first resource after the second = %+v, %v", c, err)
	}
	if _, err := s.GetConsent(ctx, "alice", "c1", "https://r.test/other"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consent for a third resource: %v", err)
	}

	if err := s.SaveSession(ctx, "sid", &storage.Session{Subject: "alice", AuthTime: t0, ExpiresAt: t0.Add(12 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if sess, err := s.GetSession(ctx, "sid", t0.Add(time.Hour)); err != nil || sess.Subject != "alice" {
		t.Fatalf("session = %+v, %v", sess, err)
	}
	if _, err := s.GetSession(ctx, "sid", t0.Add(12*time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if err := s.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "sid", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

func answer(csrf, subject, decision string, at time.Time) storage.ConsentAnswer {
	return storage.ConsentAnswer{CSRF: csrf, Subject: subject, Decision: decision, Now: at, ReplayWindow: 2 * time.Minute}
}

// TestPendingAuthorizationIsAnsweredOnce: of concurrent answers one is
// recorded; the others, and a repeat within the replay window, are told
// that answer; later, or from someone else, the request is unknown.
func testPendingAuthorizationIsAnsweredOnce(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	save := func(id string) {
		t.Helper()
		if err := s.SavePendingAuthorization(ctx, id, &storage.PendingAuthorization{ClientID: "c1", Subject: "alice", CSRFHash: storage.Hash("csrf-" + id), ExpiresAt: t0.Add(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	save("pid")
	var firsts, repeats atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			decision := []string{"allow", "deny"}[i%2]
			p, repeated, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", decision, t0))
			switch {
			case err != nil:
				t.Error(err)
			case repeated:
				repeats.Add(1)
			default:
				firsts.Add(1)
			}
			if err == nil && (p.Subject != "alice" || p.Decision == "") {
				t.Errorf("answer %+v", p)
			}
		})
	}
	wg.Wait()
	if firsts.Load() != 1 || repeats.Load() != 9 {
		t.Fatalf("%d first answers and %d repeats, want 1 and 9", firsts.Load(), repeats.Load())
	}
	first, _, _ := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "allow", t0.Add(time.Minute)))
	last, repeated, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "deny", t0.Add(2*time.Minute-time.Second)))
	if err != nil || !repeated || last.Decision != first.Decision {
		t.Fatalf("repeat at the end of the window: %+v %v %v", last, repeated, err)
	}
	if _, _, err := s.AnswerPendingAuthorization(ctx, "pid", answer("csrf-pid", "alice", "allow", t0.Add(2*time.Minute))); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("repeat after the window: %v", err)
	}

	// Another subject, or a wrong CSRF token, is refused and uses the request up.
	for name, a := range map[string]storage.ConsentAnswer{
		"other subject": answer("csrf-p2", "mallory", "allow", t0),
		"no subject":    answer("csrf-p2", "", "allow", t0),
		"wrong csrf":    answer("forged", "alice", "allow", t0),
	} {
		save("p2")
		if _, _, err := s.AnswerPendingAuthorization(ctx, "p2", a); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: %v", name, err)
		}
		if _, _, err := s.AnswerPendingAuthorization(ctx, "p2", answer("csrf-p2", "alice", "allow", t0)); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: the request was not used up: %v", name, err)
		}
	}
	if err := s.SavePendingAuthorization(ctx, "old", &storage.PendingAuthorization{Subject: "alice", CSRFHash: storage.Hash("c"), ExpiresAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AnswerPendingAuthorization(ctx, "old", answer("c", "alice", "allow", t0.Add(time.Second))); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired pending request: %v", err)
	}
}
