package endpoints

import (
	"crypto/rand"
	"encoding/base64"
)

// randomToken returns 256 bits from crypto/rand, base64url-encoded (43
// characters): authorization codes, refresh tokens, session ids, CSRF
// tokens and pending-request ids.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// randomID returns 128 bits, for client ids, never starting with "-" (an
// operator types them as command arguments, where they would be flags).
func randomID() string {
	var b [16]byte
	for {
		rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}
