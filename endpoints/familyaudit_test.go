package endpoints

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// TestEveryFamilyRevocationIsAudited: whatever revokes a refresh-token
// family writes family_revoked naming it and why, and counts it.
func TestEveryFamilyRevocationIsAudited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := benchServer(t, nil...)
	s.audit = newAuditor(zap.New(core))
	s.cfg.Tokens.RefreshReuseGrace = 0
	ctx := context.Background()
	family := func(rt string) string {
		fam, _, err := s.cfg.Storage.Store.GetRefreshToken(ctx, rt, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return fam.ID
	}
	counted := func(reason string) float64 {
		return testutil.ToFloat64(metrics.familyRevocations.WithLabelValues(s.cfg.Issuer, reason))
	}
	want := map[string]string{} // family id -> by
	before := map[string]float64{}
	for _, r := range familyReasons {
		before[r] = counted(r)
	}

	// RFC 7009.
	rt := exchange(t, s, saveCode(t, s))
	want[family(rt)] = revokedByEndpoint
	req := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/revoke", strings.NewReader(url.Values{"token": {rt}, "client_id": {"pub1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	if s.revoke(w, req); w.Code != http.StatusOK {
		t.Fatalf("revoke: %d", w.Code)
	}
	// Reuse of a rotated refresh token.
	rt = exchange(t, s, saveCode(t, s))
	want[family(rt)] = revokedByReuse
	refresh(t, s, rt)
	if w := postToken(s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"pub1"}}); w.Code != http.StatusBadRequest {
		t.Fatalf("reuse: %d", w.Code)
	}
	// A replayed code.
	code := saveCode(t, s)
	rt = exchange(t, s, code)
	want[family(rt)] = revokedByCodeReplay
	postToken(s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {benchVerifier}, "client_id": {"pub1"}, "redirect_uri": {"https://client.test/cb"}})
	// The operator, then the user.
	for _, by := range []string{revokedByAdmin, revokedByUser} {
		rt = exchange(t, s, saveCode(t, s))
		want[family(rt)] = by
		if n, err := s.RevokeGrants(ctx, storage.GrantFilter{Subject: "alice"}, by); err != nil || n != 1 {
			t.Fatalf("%s: %d %v", by, n, err)
		}
	}
	// A deleted client.
	if err := s.cfg.Storage.Store.PutClient(ctx, &storage.Client{ID: "doomed", RedirectURIs: []string{"https://client.test/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}}); err != nil {
		t.Fatal(err)
	}
	storeFamily(t, s, "bob", "doomed")
	grants, _ := s.cfg.Storage.Store.Grants(ctx, storage.GrantFilter{ClientID: "doomed"}, time.Now())
	want[grants[0].Families[0].ID] = revokedByClientDelete
	if err := s.RemoveClient(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}

	got := map[string]string{}
	for _, e := range logs.FilterMessage(eventFamilyRevoked).All() {
		f := e.ContextMap()
		got[f["family_id"].(string)] = f["by"].(string)
	}
	for id, by := range want {
		if got[id] != by {
			t.Errorf("family %s: family_revoked by %q, want %q", id, got[id], by)
		}
	}
	for _, r := range familyReasons {
		if d := counted(r) - before[r]; d != 1 {
			t.Errorf("caddy_oauth2_family_revocations_total{reason=%q} moved by %v, want 1", r, d)
		}
	}
}

// TestClientListingsSayWhatAClientAccepts: the admin listing names the
// client authentication methods each client may use.
func TestClientListingsSayWhatAClientAccepts(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.Clients.Static = append(c.Clients.Static,
			storage.Client{ID: "conf", SecretHash: storage.Hash("s")},
			storage.Client{ID: "post", SecretHash: storage.Hash("s"), TokenEndpointAuthMethod: "client_secret_post"})
	})
	if err := s.cfg.Storage.Store.PutClient(context.Background(), &storage.Client{ID: "reg", SecretHash: storage.Hash("s"), TokenEndpointAuthMethod: "client_secret_basic"}); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListClients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"pub1": "none", "conf": "client_secret_basic client_secret_post", "post": "client_secret_post", "reg": "client_secret_basic client_secret_post"}
	for _, c := range list {
		if w, ok := want[c.ID]; ok && strings.Join(c.AuthMethods, " ") != w {
			t.Errorf("%s accepts %v, want %s", c.ID, c.AuthMethods, w)
		}
	}
}
