package endpoints

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
)

// dpopCredential is a DPoP-bound access token in `Authorization: DPoP`
// with a proof in the DPoP header (RFC 9449 §7): the token is verified as
// a bearer token is (once per token), the proof on every request: by the
// key the token is bound to (cnf.jkt), for this request's method and URL
// as the client sent it, for this token (ath), recent and not seen before
// on this node.
type dpopCredential struct {
	s       *issuer
	replays *dpopReplays
}

func (dpopCredential) read(r *http.Request) (string, error) { return schemeToken(r.Header, "DPoP") }

// proofError is a refusal of the proof rather than of the token: its
// challenge says invalid_dpop_proof, or use_dpop_nonce (nonce).
type proofError struct {
	error
	nonce bool
}

// code is the challenge's error code.
func (e proofError) code() string {
	if e.nonce {
		return "use_dpop_nonce"
	}
	return "invalid_dpop_proof"
}

func (d dpopCredential) authenticate(ctx context.Context, r *http.Request, raw string) (principal, error) {
	if !d.s.synced() {
		return principal{}, errRevocationUnknown
	}
	claims, fresh, err := d.s.verifyCached(ctx, raw, true)
	if err != nil {
		return principal{}, err
	}
	if claims.Cnf == nil {
		return principal{}, errors.New("the access token is not bound to a DPoP key: send it as a Bearer token")
	}
	now := time.Now()
	skew := d.s.cfg.Tokens.ClockSkew
	proof, err := checkDPoPProof(r, requestOrigin(r)+r.URL.EscapedPath(), raw, skew, now)
	switch {
	case err != nil:
		return principal{}, proofError{error: err}
	case proof.jkt != claims.Cnf.JKT:
		return principal{}, proofError{error: errors.New("the DPoP proof is not signed by the key the access token is bound to")}
	case d.s.cfg.Tokens.DPoPNonce && !d.s.Keys().validDPoPNonce(proof.nonce, skew, now):
		return principal{}, proofError{error: errStaleNonce, nonce: true}
	}
	if err := d.replays.use(proof, skew, now); err == errReplaysFull {
		return principal{}, errRevocationUnknown
	} else if err != nil {
		return principal{}, proofError{error: err}
	}
	return principal{scheme: "DPoP", token: claims, fresh: fresh}, nil
}

// challenge is RFC 9449 §7.1's, with the algorithms proofs may use.
func (dpopCredential) challenge(params string) string { return "DPoP " + params + dpopAlgsParam }

// dpopAlgsParam is the challenge's algs parameter.
var dpopAlgsParam = `, algs="` + strings.Join(dpopAlgNames(), " ") + `"`

// errBoundAsBearer: a DPoP-bound token sent as a bearer token (a
// downgrade: whoever stole it has no key).
var errBoundAsBearer = errors.New("the access token is bound to a DPoP key: send it with the DPoP scheme and a proof")

// errDPoPRequired: require_dpop refuses bearer tokens.
var errDPoPRequired = errors.New("this resource requires DPoP-bound access tokens")
