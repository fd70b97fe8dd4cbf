package storagetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestUpstreamSignInIsTakenOnce: a started upstream sign-in is accepted
// by one callback only, not after it expires, and not at another issuer.
func testUpstreamSignInIsTakenOnce(t *testing.T, open Opener) {
	file := open(t)
	s := file.ForIssuer(testIssuer)
	ctx := context.Background()
	save := func(state string, expires time.Time) {
		t.Helper()
		if err := s.SaveUpstreamSignIn(ctx, state, &storage.UpstreamSignIn{Provider: "google", BrowserHash: storage.Hash("b"), ReturnTo: "/oauth/authorize?x", ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	save("st", t0.Add(10*time.Minute))
	browser := storage.Hash("b")
	if _, err := file.ForIssuer("https://other.test").TakeUpstreamSignIn(ctx, "st", browser, t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("taken at another issuer: %v", err)
	}
	// Another browser (or none) is refused and takes nothing.
	for _, other := range [][]byte{storage.Hash("a"), nil} {
		if _, err := s.TakeUpstreamSignIn(ctx, "st", other, t0); !errors.Is(err, storage.ErrWrongBrowser) {
			t.Fatalf("taken by another browser: %v", err)
		}
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if u, err := s.TakeUpstreamSignIn(ctx, "st", browser, t0); err == nil && u.Provider == "google" {
				wins.Add(1)
			} else if !errors.Is(err, storage.ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d callbacks took the sign-in, want 1", wins.Load())
	}
	save("old", t0)
	if _, err := s.TakeUpstreamSignIn(ctx, "old", browser, t0.Add(time.Second)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired sign-in: %v", err)
	}
}

// TestUpstreamTokens: a sign-in's upstream tokens are taken once; a
// grant's are read, replaced, kept per issuer, deleted with the grant (by
// RevokeGrants, DeleteClient or RevokeRefreshFamily), swept when expired,
// and never exported.
func testUpstreamTokens(t *testing.T, open Opener) {
	ctx := context.Background()
	file := open(t)
	s, other := file.ForIssuer(testIssuer), file.ForIssuer("https://other.test")
	put := func(sub, client, resource, sealed string, expires time.Time) {
		t.Helper()
		if err := s.PutUpstreamToken(ctx, &storage.UpstreamToken{Subject: sub, ClientID: client, Resource: resource, Provider: "corp",
			Sealed: []byte(sealed), ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	has := func(st storage.Store, sub, client, resource string) string {
		t.Helper()
		u, err := st.GetUpstreamToken(ctx, sub, client, resource, t0)
		if errors.Is(err, storage.ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(u.Sealed)
	}

	put("alice", "", "session:1", "pending-SEALED", t0.Add(time.Hour))
	u, err := s.TakeUpstreamToken(ctx, "alice", "", "session:1", t0)
	if err != nil || string(u.Sealed) != "pending-SEALED" || u.Provider != "corp" || u.Issuer != testIssuer {
		t.Fatalf("take: %+v %v", u, err)
	}
	if _, err := s.TakeUpstreamToken(ctx, "alice", "", "session:1", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("taken twice: %v", err)
	}

	put("alice", "c1", "https://r/mcp", "v1-SEALED", t0.Add(time.Hour))
	put("alice", "c1", "https://r/mcp", "v2-SEALED", t0.Add(time.Hour))
	if got := has(s, "alice", "c1", "https://r/mcp"); got != "v2-SEALED" {
		t.Fatalf("after a replacement: %q", got)
	}
	if got := has(other, "alice", "c1", "https://r/mcp"); got != "" {
		t.Fatalf("another issuer reads %q", got)
	}
	if _, err := s.GetUpstreamToken(ctx, "alice", "c1", "https://r/mcp", t0.Add(2*time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired: %v", err)
	}

	var export bytes.Buffer
	if _, err := file.Export(ctx, &export); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(export.String(), "v2-SEALED") || strings.Contains(export.String(), base64.StdEncoding.EncodeToString([]byte("v2-SEALED"))) {
		t.Error("the export holds upstream tokens")
	}

	// Deleted with the grant, whichever way it is revoked.
	GrantFamily(t, s, "fam-a", "alice", "c1", "https://r/mcp")
	if _, err := s.RevokeGrants(ctx, storage.GrantFilter{Subject: "alice", ClientID: "c1", Resource: "https://r/mcp"}, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "alice", "c1", "https://r/mcp"); got != "" {
		t.Errorf("RevokeGrants left %q", got)
	}
	GrantFamily(t, s, "fam-b", "bob", "c1", "https://r/mcp")
	put("bob", "c1", "https://r/mcp", "bob-SEALED", t0.Add(time.Hour))
	if err := s.RevokeRefreshFamily(ctx, "fam-b", t0); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "bob", "c1", "https://r/mcp"); got != "" {
		t.Errorf("RevokeRefreshFamily left %q", got)
	}
	if err := s.PutClient(ctx, &storage.Client{ID: "c2"}); err != nil {
		t.Fatal(err)
	}
	GrantFamily(t, s, "fam-c", "carol", "c2", "https://r/mcp")
	put("carol", "c2", "https://r/mcp", "carol-SEALED", t0.Add(time.Hour))
	put("carol", "c3", "https://r/mcp", "kept-SEALED", t0.Add(time.Hour))
	if _, err := s.DeleteClient(ctx, "c2", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := has(s, "carol", "c2", "https://r/mcp"); got != "" {
		t.Errorf("DeleteClient left %q", got)
	}
	if got := has(s, "carol", "c3", "https://r/mcp"); got != "kept-SEALED" {
		t.Errorf("another client's tokens: %q", got)
	}
	if err := s.DeleteUpstreamToken(ctx, "carol", "c3", "https://r/mcp"); err != nil || has(s, "carol", "c3", "https://r/mcp") != "" {
		t.Errorf("DeleteUpstreamToken: %v", err)
	}
	if err := s.DeleteUpstreamToken(ctx, "nobody", "c3", "https://r/mcp"); err != nil {
		t.Errorf("deleting nothing: %v", err)
	}

	put("dave", "c1", "https://r/mcp", "dave-SEALED", t0.Add(time.Minute))
	if _, err := s.DeleteExpired(ctx, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetUpstreamToken(ctx, "dave", "c1", "https://r/mcp", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("not swept: %v", err)
	}
}
