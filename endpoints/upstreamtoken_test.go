package endpoints

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestLogoutDropsPendingUpstreamTokens: signing out deletes the provider
// tokens the session held for its next grant.
func TestLogoutDropsPendingUpstreamTokens(t *testing.T) {
	sealer, err := storage.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, func(c *Config) { c.SignIn.PassUpstreamToken, c.SignIn.Sealer = map[string]bool{"corp": true}, sealer })
	ctx := t.Context()
	now := time.Now()
	if err := s.cfg.Storage.Store.SaveSession(ctx, "sid-1", &storage.Session{Subject: "corp:alice", Profile: storage.Profile{Provider: "corp"},
		AuthTime: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.keepSignInTokens(ctx, "sid-1", "corp:alice", "corp", &oauth2.Token{AccessToken: "upstream-at", RefreshToken: "upstream-rt"}, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/logout", strings.NewReader("csrf_token=csrf-1"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(&http.Cookie{Name: "__Host-" + sessionCookie, Value: "sid-1"})
	r.AddCookie(&http.Cookie{Name: "__Host-" + loginCSRFCookie, Value: "csrf-1"})
	pending := sessionRef(r)
	if _, err := s.cfg.Storage.Store.GetUpstreamToken(ctx, "corp:alice", "", pending, now); err != nil {
		t.Fatalf("before: %v", err)
	}
	w := httptest.NewRecorder()
	s.logout(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if _, err := s.cfg.Storage.Store.GetUpstreamToken(ctx, "corp:alice", "", pending, now); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after sign-out the session's upstream tokens: %v", err)
	}
}
