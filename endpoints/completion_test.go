package endpoints

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// recordedCompletion is a kind of pending authorization for
// TestConsentCompletesByKind: it writes what it was called with.
type recordedCompletion struct{}

func (recordedCompletion) allow(w http.ResponseWriter, _ *http.Request, req *authorizeRequest, user identity, code string, repeated bool) error {
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte("allow " + user.subject + " " + req.client.ID + " " + code + map[bool]string{true: " repeated", false: ""}[repeated]))
	return err
}

func (recordedCompletion) deny(w http.ResponseWriter, _ *http.Request, req *authorizeRequest) {
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("deny " + req.client.ID))
}

// TestConsentCompletesByKind: the consent handler ends a pending
// authorization through the completion of its kind, once for an answer
// and again, marked repeated, for the same answer submitted twice; a kind
// the server does not know is refused.
func TestConsentCompletesByKind(t *testing.T) {
	s := newTestServer(t)
	s.completions["test"] = recordedCompletion{}
	ctx := context.Background()
	now := time.Now()
	if err := s.cfg.Storage.Store.SaveSession(ctx, "sid-alice", &storage.Session{Subject: "alice", AuthTime: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	pend := func(id, kind string) string {
		csrf := randomToken()
		if err := s.cfg.Storage.Store.SavePendingAuthorization(ctx, id, &storage.PendingAuthorization{Kind: kind, ClientID: "pub1", RedirectURI: "https://client.test/cb",
			Resource: "https://auth.test/mcp", Subject: "alice", AuthTime: now, CSRFHash: storage.Hash(csrf), ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		return csrf
	}
	answer := func(id, csrf, decision string) (int, string) {
		form := url.Values{"request_id": {id}, "csrf_token": {csrf}, "decision": {decision}}
		r := httptest.NewRequest(http.MethodPost, "http://auth.test/oauth/consent", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: "sid-alice"})
		w := httptest.NewRecorder()
		s.consent(w, r)
		return w.Code, w.Body.String()
	}
	csrf := pend("req-1", "test")
	want := "allow alice pub1 " + consentCode(csrf, "req-1")
	if status, body := answer("req-1", csrf, "allow"); status != http.StatusOK || body != want {
		t.Fatalf("allow: %d %q, want %q", status, body, want)
	}
	if status, body := answer("req-1", csrf, "allow"); status != http.StatusOK || body != want+" repeated" {
		t.Fatalf("allow again: %d %q", status, body)
	}
	csrf = pend("req-2", "test")
	if status, body := answer("req-2", csrf, "deny"); status != http.StatusOK || body != "deny pub1" {
		t.Fatalf("deny: %d %q", status, body)
	}
	csrf = pend("req-3", "device")
	if status, _ := answer("req-3", csrf, "allow"); status != http.StatusBadRequest {
		t.Fatalf("an unknown kind: %d", status)
	}
	// A record from before kinds is the code flow.
	csrf = pend("req-4", "")
	if status, _ := answer("req-4", csrf, "deny"); status != http.StatusFound {
		t.Fatalf("a record without a kind: %d", status)
	}
}
