package endpoints

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
)

// TestEveryKeySignsWithKidAndVerifies covers the three signing modes.
func TestEveryKeySignsWithKidAndVerifies(t *testing.T) {
	hs, err := NewHMACKeySet([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	es, _ := GenerateSigningKey(time.Now())
	esSet, err := NewKeySet([]storage.SigningKey{*es}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed, err := signingKeyFrom(edPriv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	edSet, err := NewKeySet([]storage.SigningKey{*ed}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for alg, ks := range map[string]*KeySet{"HS256": hs, "ES256": esSet, "EdDSA": edSet} {
		tok, err := ks.Sign("at+jwt", map[string]any{"sub": "alice"})
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		var header map[string]any
		json.Unmarshal(raw, &header)
		if header["kid"] != ks.KeyID() || header["alg"] != alg || header["typ"] != "at+jwt" || ks.Algorithm() != alg {
			t.Errorf("%s header %v", alg, header)
		}
		var claims map[string]any
		if err := ks.Verify(tok, &claims); err != nil || claims["sub"] != "alice" {
			t.Errorf("%s verify: %v", alg, err)
		}
	}
	// Keys of one set do not verify another's tokens.
	tok, _ := esSet.Sign("at+jwt", map[string]any{"sub": "alice"})
	var c map[string]any
	if edSet.Verify(tok, &c) == nil || hs.Verify(tok, &c) == nil {
		t.Fatal("a token verified under another key set")
	}
	if string(hs.JWKS()) != `{"keys":[]}` {
		t.Fatalf("HS256 JWKS %s", hs.JWKS())
	}
}

// TestRotatedKeysStillVerify: after a rotation the old key verifies until
// its VerifyUntil, and only the new one signs.
func TestRotatedKeysStillVerify(t *testing.T) {
	now := time.Now()
	old, _ := GenerateSigningKey(now.Add(-time.Hour))
	oldSet, _ := NewKeySet([]storage.SigningKey{*old}, now)
	tok, _ := oldSet.Sign("at+jwt", map[string]any{"sub": "alice"})
	old.RetiredAt, old.VerifyUntil = now, now.Add(time.Hour)
	next, _ := GenerateSigningKey(now)
	rotated, err := NewKeySet([]storage.SigningKey{*next, *old}, now)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := rotated.Verify(tok, &c); err != nil {
		t.Fatalf("a token of the retired key: %v", err)
	}
	if rotated.KeyID() != next.ID {
		t.Fatal("the retired key still signs")
	}
	var jwks struct{ Keys []any }
	json.Unmarshal(rotated.JWKS(), &jwks)
	if len(jwks.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want both", len(jwks.Keys))
	}
	expired, _ := NewKeySet([]storage.SigningKey{*next, *old}, now.Add(2*time.Hour))
	if expired.Verify(tok, &c) == nil {
		t.Fatal("a key past VerifyUntil still verifies")
	}
}

// TestUnknownKIDReloadsKeys: a node that has not yet re-read the keys
// meets a token signed with a key another node just rotated in; it
// re-reads the keys once and accepts it.
func TestUnknownKIDReloadsKeys(t *testing.T) {
	file, err := bolt.Open(filepath.Join(t.TempDir(), "oauth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	node := func(prepublish time.Duration) *Server {
		store := file.ForIssuer("https://auth.test")
		key, err := store.EnsureSigningKey(context.Background(), func() (*storage.SigningKey, error) { return GenerateSigningKey(time.Now()) })
		if err != nil {
			t.Fatal(err)
		}
		ks, err := NewKeySet([]storage.SigningKey{*key}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return newTestServer(t, func(c *Config) {
			c.Storage.Store, c.Signing.Keys, c.Signing.StoredKeys, c.Signing.KeyPrepublish = store, ks, true, prepublish
		})
	}
	a, b := node(0), node(time.Hour) // b re-reads the keys every 30 s
	next, err := a.RotateKey(context.Background(), "test", false)
	if err != nil {
		t.Fatal(err)
	}
	at, err := a.mintAccessToken(randomID(), grant{clientID: "pub1", subject: "alice", resource: "https://auth.test/mcp"}, time.Now())
	if err != nil || a.Keys().KeyID() != next.ID {
		t.Fatalf("a signs with %s, want %s (%v)", a.Keys().KeyID(), next.ID, err)
	}
	if _, ok := b.Keys().verify[next.ID]; ok {
		t.Fatal("b already knows the new key: the test proves nothing")
	}
	w, r := guardRequest(at.token)
	b.Guard(w, r, okNext)
	if w.Code != http.StatusNoContent {
		t.Fatalf("b refused the new key's token: %d %s", w.Code, w.Body)
	}
}
