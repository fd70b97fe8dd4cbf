package endpoints

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"
)

// DPoP server nonces (RFC 9449 §8, with dpop_nonce): a proof must carry a
// nonce this server issued recently, which bounds a captured proof's use
// to the nonce's life on every node. Nonces are stateless: a time and an
// HMAC of it under a key every node derives from what they already
// share, the signing key (so a cluster needs no coordination, and the
// nonce key rotates with it): <kid>~base64url(seconds || MAC).

// dpopNonceLifetime is how long a nonce is accepted.
const dpopNonceLifetime = 5 * time.Minute

// nonceKeyOf derives a signing key's nonce key.
func nonceKeyOf(secret []byte) []byte {
	key, err := hkdf.Key(sha256.New, secret, nil, "caddy-oauth2-server dpop nonce", 32)
	if err != nil {
		panic("hkdf: " + err.Error()) // only for a length SHA-256 cannot give
	}
	return key
}

// DPoPNonce is a fresh nonce, under the key signing now.
func (ks *KeySet) DPoPNonce(now time.Time) string {
	cur := ks.current(now)
	return cur.kid + "~" + base64.RawURLEncoding.EncodeToString(nonceBody(cur.nonceKey, cur.kid, now.Unix()))
}

// validDPoPNonce reports whether nonce is one of ours, issued within
// dpopNonceLifetime (skew allowed) of now.
func (ks *KeySet) validDPoPNonce(nonce string, skew time.Duration, now time.Time) bool {
	kid, rest, ok := strings.Cut(nonce, "~")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 8+16 {
		return false
	}
	for _, s := range ks.signers {
		if s.kid != kid {
			continue
		}
		secs := int64(binary.BigEndian.Uint64(raw[:8]))
		issued := time.Unix(secs, 0)
		return hmac.Equal(raw, nonceBody(s.nonceKey, kid, secs)) && !now.Add(skew).Before(issued) && now.Sub(issued) <= dpopNonceLifetime+skew
	}
	return false
}

// nonceBody is seconds (8 bytes) and their MAC (16 bytes).
func nonceBody(key []byte, kid string, secs int64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(secs))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(kid))
	mac.Write(b)
	return mac.Sum(b)[:24]
}
