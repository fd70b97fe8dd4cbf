package endpoints

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// The limits a clock decides: the code's lifetime, the refresh grace and
// burst windows, the family's lifetime. Each case waits out a real window
// on its own server, in parallel with the others.

func TestLifetimesAndWindows(t *testing.T) {
	redeem := func(code string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "code": {code}, "code_verifier": {testVerifier}}
	}
	refresh := func(token string) url.Values {
		return url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {token}}
	}
	// tokens redeems a new code of app: a new refresh family.
	tokens := func(t *testing.T, s *Server) map[string]any {
		_, out, _ := tokenCall(t, s, redeem(storeCode(t, s, nil)))
		return out
	}
	refreshed := func(t *testing.T, s *Server, token string) map[string]any {
		t.Helper()
		status, out, _ := tokenCall(t, s, refresh(token))
		if status != http.StatusOK {
			t.Fatalf("refresh: %d %v", status, out)
		}
		return out
	}
	refused := func(t *testing.T, s *Server, name string, token string) {
		t.Helper()
		status, out, h := tokenCall(t, s, refresh(token))
		wantAnswer(t, name, status, out, h, http.StatusBadRequest, "invalid_grant")
	}

	t.Run("a code past authorization_code_lifetime", func(t *testing.T) {
		t.Parallel()
		s := grantServer(t, func(c *Config) { c.Tokens.AuthorizationCodeLifetime = time.Second })
		c, err := s.resolveClient(context.Background(), "app")
		if err != nil {
			t.Fatal(err)
		}
		code := randomToken()
		req := &authorizeRequest{client: c, redirectURI: "https://app.test/cb", challenge: challengeOf(testVerifier), scope: "mcp:read", resource: "https://auth.test/mcp"}
		if err := s.issueCode(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "https://auth.test/oauth/authorize", nil), req, identity{subject: "alice", authTime: time.Now()}, code); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond)
		status, out, h := tokenCall(t, s, redeem(code))
		wantAnswer(t, "expired code", status, out, h, http.StatusBadRequest, "invalid_grant")
	})

	// A lost response is retried within the grace; once a successor is
	// used and the 2 s burst is over, the rotated token again is theft:
	// the whole family dies, its refresh and access tokens.
	t.Run("retry within the grace, reuse after the burst", func(t *testing.T) {
		t.Parallel()
		s := grantServer(t)
		first := tokens(t, s)
		rt0 := first["refresh_token"].(string)
		a := refreshed(t, s, rt0)
		b := refreshed(t, s, rt0)
		refreshed(t, s, b["refresh_token"].(string))
		time.Sleep(refreshBurst + 100*time.Millisecond)
		refused(t, s, "reuse after the successor was used", rt0)
		refused(t, s, "a sibling after the family's revocation", a["refresh_token"].(string))
		for name, at := range map[string]any{"first": first["access_token"], "second": a["access_token"], "third": b["access_token"]} {
			if _, _, err := s.verifyCached(context.Background(), at.(string), true); err != errTokenRevoked {
				t.Errorf("the %s access token after the family's revocation: %v", name, err)
			}
		}
	})

	t.Run("reuse after a 1s grace", func(t *testing.T) {
		t.Parallel()
		s := grantServer(t, func(c *Config) { c.Tokens.RefreshReuseGrace = time.Second })
		rt0 := tokens(t, s)["refresh_token"].(string)
		a := refreshed(t, s, rt0)
		time.Sleep(1100 * time.Millisecond)
		refused(t, s, "reuse after the grace", rt0)
		refused(t, s, "the successor after the revocation", a["refresh_token"].(string))
	})

	t.Run("a family past refresh_family_lifetime", func(t *testing.T) {
		t.Parallel()
		s := grantServer(t, func(c *Config) { c.Tokens.RefreshFamilyLifetime = 2 * time.Second })
		a := refreshed(t, s, tokens(t, s)["refresh_token"].(string))
		time.Sleep(2100 * time.Millisecond)
		refused(t, s, "a family past its lifetime", a["refresh_token"].(string))
	})
}
