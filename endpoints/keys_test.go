package endpoints

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
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
