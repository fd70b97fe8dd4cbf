package endpoints

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// validChallenge reports whether c is an S256 code challenge: the
// base64url encoding (no padding) of a SHA-256, 43 characters.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	return err == nil && len(raw) == sha256.Size
}

// validVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// verifyPKCE checks that verifier hashes to challenge (S256), in constant time.
func verifyPKCE(verifier, challenge string) bool {
	if !validVerifier(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	computed := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(computed), []byte(challenge)) == 1
}
