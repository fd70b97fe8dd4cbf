package endpoints

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// KeySet signs tokens with the key active now and knows every key that
// may still verify one. Asymmetric public keys are published at the JWKS
// URI, a rotation's next key before it signs.
type KeySet struct {
	signers []signer             // by activation time, oldest first
	verify  map[string]verifyKey // by kid
	jwks    []byte
}

// signer is a key that signs from a time on.
type signer struct {
	from      time.Time
	createdAt time.Time
	kid, alg  string
	key       jose.SigningKey
	prepared  *sync.Map // typ -> jose.Signer, made once per key and typ
	nonceKey  []byte    // the DPoP nonces' HMAC key, derived from the key
}

type verifyKey struct {
	alg jose.SignatureAlgorithm
	key any // []byte for HMAC, a public key otherwise
}

// NewHMACKeySet returns an HS256 key set for a shared secret (≥ 32 bytes).
// Its JWKS is empty: a shared secret is never published.
func NewHMACKeySet(secret []byte) (*KeySet, error) {
	if len(secret) < 32 {
		return nil, errors.New("HS256 secret is shorter than 32 bytes")
	}
	// The kid names the key without revealing anything usable about it.
	sum := sha256.Sum256(append([]byte("caddy-oauth2-server kid\x00"), secret...))
	kid := "hs256-" + base64.RawURLEncoding.EncodeToString(sum[:12])
	return &KeySet{
		signers: []signer{{kid: kid, alg: string(jose.HS256), key: jose.SigningKey{Algorithm: jose.HS256, Key: secret}, prepared: &sync.Map{},
			nonceKey: nonceKeyOf(secret)}},
		verify: map[string]verifyKey{kid: {alg: jose.HS256, key: secret}},
		jwks:   []byte(`{"keys":[]}`),
	}, nil
}

// NewKeySet returns the key set of stored keys: each signs from its
// activation (ActivatesAt, else its creation) until another takes over,
// and verifies until VerifyUntil. Keys past VerifyUntil are left out.
func NewKeySet(keys []storage.SigningKey, now time.Time) (*KeySet, error) {
	ks := &KeySet{verify: map[string]verifyKey{}}
	var public []jose.JSONWebKey
	for i := range keys {
		k := &keys[i]
		if !k.VerifyUntil.IsZero() && !now.Before(k.VerifyUntil) {
			continue
		}
		priv, err := x509.ParsePKCS8PrivateKey(k.PKCS8)
		if err != nil {
			return nil, fmt.Errorf("decoding signing key %s: %v", k.ID, err)
		}
		sig, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("signing key %s cannot sign", k.ID)
		}
		alg := jose.SignatureAlgorithm(k.Algorithm)
		ks.verify[k.ID] = verifyKey{alg: alg, key: sig.Public()}
		public = append(public, jose.JSONWebKey{Key: sig.Public(), KeyID: k.ID, Algorithm: k.Algorithm, Use: "sig"})
		if !k.RetiredAt.IsZero() && !now.Before(k.RetiredAt) {
			continue // verifies only
		}
		from := k.ActivatesAt
		if from.IsZero() {
			from = k.CreatedAt
		}
		ks.signers = append(ks.signers, signer{from: from, createdAt: k.CreatedAt, kid: k.ID, alg: k.Algorithm,
			key: jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: sig, KeyID: k.ID, Algorithm: k.Algorithm}}, prepared: &sync.Map{},
			nonceKey: nonceKeyOf(k.PKCS8)})
	}
	if len(ks.signers) == 0 {
		return nil, errors.New("no signing key is active")
	}
	slices.SortFunc(ks.signers, func(a, b signer) int { return a.from.Compare(b.from) })
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: public})
	if err != nil {
		return nil, fmt.Errorf("encoding key set: %v", err)
	}
	ks.jwks = jwks
	return ks, nil
}

// current is the key that signs at now: the latest activated one (the
// first, before any is).
func (ks *KeySet) current(now time.Time) signer {
	cur := ks.signers[0]
	for _, s := range ks.signers[1:] {
		if !now.Before(s.from) {
			cur = s
		}
	}
	return cur
}

// Algorithm is the JWS algorithm of the key signing now.
func (ks *KeySet) Algorithm() string { return ks.current(time.Now()).alg }

// KeyID is the kid of the key signing now.
func (ks *KeySet) KeyID() string { return ks.current(time.Now()).kid }

// ActiveSince is when the key signing now was created.
func (ks *KeySet) ActiveSince() time.Time { return ks.current(time.Now()).createdAt }

// Pending reports whether a published key has yet to start signing.
func (ks *KeySet) Pending(now time.Time) bool {
	return now.Before(ks.signers[len(ks.signers)-1].from)
}

// PublicKey is the signing key's public key (nil for HS256).
func (ks *KeySet) PublicKey() any {
	cur := ks.current(time.Now())
	if cur.alg == string(jose.HS256) {
		return nil
	}
	return ks.verify[cur.kid].key
}

// JWKS is the public key set document.
func (ks *KeySet) JWKS() []byte { return ks.jwks }

// Sign serialises claims as a JWT signed with the key active now, with
// the given "typ" header (e.g. "at+jwt") and the key's "kid". The claims
// are encoded once (encoding/json) and signed as they are by a go-jose
// signer prepared once per key, without the JWT builder's re-encoding.
func (ks *KeySet) Sign(typ string, claims any) (string, error) {
	sig, err := ks.current(time.Now()).signer(typ)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %v", err)
	}
	obj, err := sig.Sign(payload)
	if err != nil {
		return "", err
	}
	return obj.CompactSerialize()
}

// signer is the key's go-jose signer for a typ.
func (s signer) signer(typ string) (jose.Signer, error) {
	if sig, ok := s.prepared.Load(typ); ok {
		return sig.(jose.Signer), nil
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if _, hmac := s.key.Key.([]byte); hmac {
		// go-jose names asymmetric keys from their JSONWebKey, not secrets.
		opts = opts.WithHeader("kid", s.kid)
	}
	sig, err := jose.NewSigner(s.key, opts)
	if err != nil {
		return nil, fmt.Errorf("preparing signer: %v", err)
	}
	s.prepared.Store(typ, sig)
	return sig, nil
}

// errUnknownKID: the token names a key this set does not hold.
var errUnknownKID = errors.New("unknown kid")

// Verify checks a compact JWS signed by one of this set's keys and decodes
// its claims into v. The header must name a known kid, use exactly that
// key's algorithm (so alg=none and HS/ES confusion fail), carry no
// embedded or remote keys (jwk, jku, x5u, x5c) and have typ at+jwt.
func (ks *KeySet) Verify(raw string, v any) error {
	if err := checkHeaderMembers(raw); err != nil {
		return err
	}
	algs := make([]jose.SignatureAlgorithm, 0, len(ks.verify))
	for _, k := range ks.verify {
		algs = append(algs, k.alg)
	}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return err
	}
	if len(tok.Headers) != 1 {
		return errors.New("want exactly one signature")
	}
	h := tok.Headers[0]
	key, ok := ks.verify[h.KeyID]
	switch {
	case !ok:
		return errUnknownKID
	case jose.SignatureAlgorithm(h.Algorithm) != key.alg:
		return errors.New("algorithm does not match the key")
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "at+jwt" && typ != "application/at+jwt" {
		return errors.New("typ is not at+jwt")
	}
	return tok.Claims(key.key, v)
}

// checkHeaderMembers refuses a JWS whose protected header embeds or points
// at keys (jwk, jku, x5u, x5c) or marks extensions critical: this server
// verifies only with its own keys.
func checkHeaderMembers(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("not a compact JWS")
	}
	decoded, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return errors.New("header is not base64url")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(decoded, &members); err != nil {
		return errors.New("header is not a JSON object")
	}
	for _, name := range []string{"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit"} {
		if _, present := members[name]; present {
			return fmt.Errorf("header member %q is not accepted", name)
		}
	}
	return nil
}

// GenerateSigningKey makes a new ES256 key, named by its RFC 7638 thumbprint.
func GenerateSigningKey(now time.Time) (*storage.SigningKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return signingKeyFrom(priv, now)
}

// signingKeyFrom wraps an ECDSA P-256 or Ed25519 private key.
func signingKeyFrom(priv crypto.Signer, now time.Time) (*storage.SigningKey, error) {
	var alg jose.SignatureAlgorithm
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("EC key is not on curve P-256")
		}
		alg = jose.ES256
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	default:
		return nil, fmt.Errorf("unsupported key type %T", priv)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	thumb, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return &storage.SigningKey{
		ID:        base64.RawURLEncoding.EncodeToString(thumb),
		Algorithm: string(alg),
		PKCS8:     der,
		CreatedAt: now,
	}, nil
}

// ParseSigningKeyPEM reads an EC P-256 or Ed25519 private key from PEM
// (PKCS #8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY").
func ParseSigningKeyPEM(data []byte, now time.Time) (*storage.SigningKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing private key: %v", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", priv)
	}
	key, err := signingKeyFrom(signer, now)
	if err != nil {
		return nil, fmt.Errorf("%v: want an EC P-256 or Ed25519 private key", err)
	}
	return key, nil
}

// publicJWK is the public JWK of a key of the set (nil for HS256, or a
// kid it does not hold).
func (ks *KeySet) publicJWK(kid string) json.RawMessage {
	k, ok := ks.verify[kid]
	if !ok || k.alg == jose.HS256 {
		return nil
	}
	raw, err := json.Marshal(jose.JSONWebKey{Key: k.key, KeyID: kid, Algorithm: string(k.alg), Use: "sig"})
	if err != nil {
		return nil
	}
	return raw
}
