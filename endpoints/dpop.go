package endpoints

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DPoP (RFC 9449): a client proves, with a fresh JWT signed by a key it
// holds (the proof, in the DPoP header), that it is the one a token was
// bound to. The token endpoint binds the tokens it issues to the proof's
// key (cnf.jkt, the RFC 7638 thumbprint); the guard then wants a proof by
// that key on every request. A proof names the request it is for (htm,
// htu), is recent (iat) and used once (jti); at the guard it names the
// token too (ath).

// dpopAlgs are the proof algorithms (dpop_signing_alg_values_supported):
// asymmetric only.
var dpopAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256, jose.PS256}

// dpopAlgNames are dpopAlgs as metadata and challenges list them.
func dpopAlgNames() []string { return algNames(dpopAlgs) }

// dpopProofWindow is how far a proof's iat may be from now (clock_skew
// added): proofs are made for each request.
const dpopProofWindow = time.Minute

// maxProofBytes bounds a DPoP header.
const maxProofBytes = 8 << 10

// dpopProof is a verified proof: the thumbprint of its key, its jti, iat.
type dpopProof struct {
	jkt   string
	jti   string
	iat   time.Time
	nonce string // the server nonce it carries, if any
}

// dpopClaims are a proof's claims.
type dpopClaims struct {
	JTI   string       `json:"jti"`
	HTM   string       `json:"htm"`
	HTU   string       `json:"htu"`
	IAT   *json.Number `json:"iat"`
	ATH   string       `json:"ath"`
	Nonce string       `json:"nonce"`
}

// errStaleNonce: dpop_nonce is on and the proof has no fresh nonce of
// ours (answered with one in DPoP-Nonce).
var errStaleNonce = errors.New("use the DPoP-Nonce this server gives in the proof's nonce")

// errNoProof: the request carries no DPoP header.
var errNoProof = errors.New("a DPoP proof is required")

// checkDPoPProof verifies the DPoP header of r as a proof for method
// and htu (the URL the client sent the request to, without query or
// fragment) at now, and, when accessToken is not "", for that token (ath).
// Its jti is not yet used up (see dpopReplays).
func checkDPoPProof(r *http.Request, htu, accessToken string, skew time.Duration, now time.Time) (*dpopProof, error) {
	values := r.Header.Values("DPoP")
	switch {
	case len(values) == 0:
		return nil, errNoProof
	case len(values) > 1:
		return nil, errors.New("more than one DPoP header")
	case len(values[0]) > maxProofBytes:
		return nil, errors.New("the DPoP proof is too large")
	}
	sig, err := jose.ParseSigned(values[0], dpopAlgs)
	if err != nil || len(sig.Signatures) != 1 {
		return nil, fmt.Errorf("the DPoP proof is not a JWS signed with %s", strings.Join(dpopAlgNames(), ", "))
	}
	h := sig.Signatures[0].Protected
	switch typ, _ := h.ExtraHeaders[jose.HeaderType].(string); {
	case !strings.EqualFold(typ, "dpop+jwt"):
		return nil, errors.New("the DPoP proof's typ is not dpop+jwt")
	case h.JSONWebKey == nil:
		return nil, errors.New("the DPoP proof's header has no jwk")
	case !h.JSONWebKey.IsPublic():
		return nil, errors.New("the DPoP proof's jwk must be a public key")
	}
	if err := checkPublicKey(*h.JSONWebKey); err != nil {
		return nil, fmt.Errorf("the DPoP proof's jwk: %w", err)
	}
	payload, err := sig.Verify(h.JSONWebKey)
	if err != nil {
		return nil, errors.New("the DPoP proof's signature does not verify with its jwk")
	}
	var c dpopClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, errors.New("the DPoP proof's claims are not a JSON object of the registered types")
	}
	if err := checkProofClaims(&c, r.Method, htu, accessToken, skew, now); err != nil {
		return nil, err
	}
	thumb, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, errors.New("the DPoP proof's jwk has no thumbprint")
	}
	iat, _ := c.IAT.Int64()
	return &dpopProof{jkt: base64.RawURLEncoding.EncodeToString(thumb), jti: c.JTI, iat: time.Unix(iat, 0), nonce: c.Nonce}, nil
}

// checkProofClaims checks what a proof says of the request.
func checkProofClaims(c *dpopClaims, method, htu, accessToken string, skew time.Duration, now time.Time) error {
	switch {
	case c.JTI == "" || len(c.JTI) > maxJTILength:
		return errors.New("the DPoP proof's jti is missing or too long")
	case c.HTM != method:
		return errors.New("the DPoP proof's htm is not the request's method")
	case !sameHTU(c.HTU, htu):
		return errors.New("the DPoP proof's htu is not the URL of the request")
	case c.IAT == nil:
		return errors.New("the DPoP proof's iat is missing")
	}
	iat, err := c.IAT.Int64()
	if err != nil {
		return errors.New("the DPoP proof's iat is not a number of seconds")
	}
	if d := now.Sub(time.Unix(iat, 0)); d > dpopProofWindow+skew || d < -(dpopProofWindow+skew) {
		return errors.New("the DPoP proof's iat is not recent")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return errors.New("the DPoP proof's ath is not the access token's hash")
		}
	}
	return nil
}

// sameHTU compares a proof's htu with the request's URL: scheme and host
// without case, the default port implied, the path exactly; the proof's
// query and fragment are ignored (RFC 9449 §4.3).
func sameHTU(claimed, want string) bool {
	c, err1 := url.Parse(claimed)
	w, err2 := url.Parse(want)
	if err1 != nil || err2 != nil || c.Opaque != "" || c.User != nil {
		return false
	}
	norm := func(u *url.URL) string {
		scheme := strings.ToLower(u.Scheme)
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		return scheme + "://" + hostPort(strings.ToLower(u.Host), scheme) + path
	}
	return norm(c) == norm(w)
}

// dpopReplays remembers the proofs seen on this node within their window,
// so that a jti is accepted once (across nodes, the window bounds a
// replay). Bounded: when it is full of live entries a new proof is
// refused rather than a live one forgotten.
type dpopReplays struct {
	mu   sync.Mutex
	seen map[[sha256.Size]byte]time.Time // key and jti -> until
	max  int
}

// maxDPoPReplays bounds the replay cache.
const maxDPoPReplays = 1 << 18

func newDPoPReplays() *dpopReplays {
	return &dpopReplays{seen: map[[sha256.Size]byte]time.Time{}, max: maxDPoPReplays}
}

// errProofReplayed: a proof's jti was seen in its window.
var errProofReplayed = errors.New("the DPoP proof was used before (jti)")

// errReplaysFull: the cache holds nothing that may be forgotten.
var errReplaysFull = errors.New("too many DPoP proofs at once; retry shortly")

// use records a proof's jti until its window ends.
func (d *dpopReplays) use(p *dpopProof, skew time.Duration, now time.Time) error {
	key := sha256.Sum256([]byte(p.jkt + "\x00" + p.jti))
	d.mu.Lock()
	defer d.mu.Unlock()
	if until, ok := d.seen[key]; ok && now.Before(until) {
		return errProofReplayed
	}
	if len(d.seen) >= d.max {
		for k, until := range d.seen {
			if !now.Before(until) {
				delete(d.seen, k)
			}
		}
		if len(d.seen) >= d.max {
			return errReplaysFull
		}
	}
	d.seen[key] = p.iat.Add(dpopProofWindow + skew)
	return nil
}

// proofKey is the context key of a token request's verified DPoP proof.
type proofKey struct{}

// proofJKT is the thumbprint of the key of the request's verified DPoP
// proof; "" when it carries none.
func proofJKT(r *http.Request) string {
	if p, ok := r.Context().Value(proofKey{}).(*dpopProof); ok {
		return p.jkt
	}
	return ""
}

// tokenProof verifies a token request's DPoP proof, if it carries one
// (htm POST, htu this endpoint's URL as clients see it: the issuer's
// origin and the request's path), and uses its jti up; the request goes
// on with the proof in its context. A bad proof is answered 400
// invalid_dpop_proof (RFC 9449 §5); ok is false then.
func (s *tokenEndpoints) tokenProof(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if len(r.Header.Values("DPoP")) == 0 {
		return r, true
	}
	now := time.Now()
	skew := s.cfg.Tokens.ClockSkew
	p, err := checkDPoPProof(r, s.issuerOrigin+r.URL.EscapedPath(), "", skew, now)
	if s.cfg.Tokens.DPoPNonce {
		// Every answer gives the client the nonce to use next.
		w.Header().Set("DPoP-Nonce", s.Keys().DPoPNonce(now))
		if err == nil && !s.Keys().validDPoPNonce(p.nonce, skew, now) {
			s.tokenFail(w, http.StatusBadRequest, "use_dpop_nonce", errStaleNonce.Error())
			return r, false
		}
	}
	if err == nil {
		err = s.replays.use(p, skew, now)
	}
	switch {
	case err == errReplaysFull:
		w.Header().Set("Retry-After", "1")
		s.tokenFail(w, http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
		return r, false
	case err != nil:
		s.tokenFail(w, http.StatusBadRequest, "invalid_dpop_proof", err.Error())
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), proofKey{}, p)), true
}
