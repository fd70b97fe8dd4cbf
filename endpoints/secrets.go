package endpoints

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// equalSecrets compares a presented secret with the expected one in
// constant time, their lengths included: it compares their SHA-256
// digests (subtle.ConstantTimeCompare returns at once on a length
// mismatch, which would tell a caller how long the secret is).
func equalSecrets(presented, expected string) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(expected))
	return presented != "" && subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// equalSecretHash compares a presented secret with the SHA-256 hash it is
// stored as, in constant time.
func equalSecretHash(presented string, hash []byte) bool {
	return subtle.ConstantTimeCompare(storage.Hash(presented), hash) == 1
}
