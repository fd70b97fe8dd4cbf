package endpoints

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Limits of the key sets clients register for private_key_jwt (jwks, or
// jwks_uri fetched by the safeFetcher).
const (
	maxKeySetBytes = 16 << 10
	maxKeysPerSet  = 20
	minRSABits     = 2048
	// keySetMaxAge is how long a fetched key set is used before it is
	// fetched again (a key the client removed stops working then).
	keySetMaxAge = 5 * time.Minute
	// keySetRefetchFloor is how often an assertion whose kid the cached
	// set lacks (a key the client just added) may cause a fetch; a failed
	// fetch is not tried again sooner either.
	keySetRefetchFloor = time.Minute
	maxCachedKeySets   = 10_000
)

// parseKeySet validates a JWK Set a client registers: at most
// maxKeysPerSet public signing keys, each usable with one of
// assertionAlgs (RSA of at least 2048 bits, EC P-256, Ed25519). A private
// or symmetric key is refused: whoever registers it has shown it to us.
func parseKeySet(raw []byte) ([]jose.JSONWebKey, error) {
	if len(raw) > maxKeySetBytes {
		return nil, fmt.Errorf("the key set is larger than %d KiB", maxKeySetBytes>>10)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("the key set is not a JWK Set: %s", jsonProblem(err))
	}
	switch {
	case len(set.Keys) == 0:
		return nil, errors.New("the key set has no keys")
	case len(set.Keys) > maxKeysPerSet:
		return nil, fmt.Errorf("the key set has more than %d keys", maxKeysPerSet)
	}
	for i, k := range set.Keys {
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("key %d of the set: %w", i+1, err)
		}
	}
	return set.Keys, nil
}

// CheckKeySet checks a JWK Set an operator configures (a workload
// issuer's jwks_file): as a client's (see parseKeySet).
func CheckKeySet(raw []byte) error {
	_, err := parseKeySet(raw)
	return err
}

// checkPublicKey checks one key of a client's set.
func checkPublicKey(k jose.JSONWebKey) error {
	if !k.IsPublic() {
		return errors.New("a private or symmetric key must not be registered (publish the public key only)")
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use %q: only signing keys (sig) are used", k.Use)
	}
	var algs []string
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("an RSA key of %d bits is too short (%d at least)", pub.N.BitLen(), minRSABits)
		}
		algs = []string{string(jose.RS256), string(jose.PS256)}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return fmt.Errorf("curve %s is not supported (P-256)", pub.Curve.Params().Name)
		}
		algs = []string{string(jose.ES256)}
	case ed25519.PublicKey:
		algs = []string{string(jose.EdDSA)}
	default:
		return fmt.Errorf("key type %T is not supported", k.Key)
	}
	if k.Algorithm != "" && !slices.Contains(algs, k.Algorithm) {
		return fmt.Errorf("alg %q does not fit the key (%s)", k.Algorithm, strings.Join(algs, ", "))
	}
	return nil
}

// checkKeySetURL applies the jwks_uri rules: https, a host, no user
// information or fragment, port 443 (the address rules apply when it is
// fetched).
func checkKeySetURL(raw string, allowed map[string]bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("jwks_uri is not a URL")
	case u.Scheme != "https" || u.Host == "":
		return nil, errors.New("jwks_uri must be an https URL")
	case u.User != nil:
		return nil, errors.New("jwks_uri must not carry user information")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, errors.New("jwks_uri must not have a fragment")
	case u.Port() != "" && u.Port() != "443" && !allowed[u.Host]:
		return nil, errors.New("jwks_uri must use port 443")
	}
	return u, nil
}

// checkClientKeys checks the keys of a client of kind k: a key client
// registers exactly one of jwks and jwks_uri; other clients none. allowed
// are the test-only host:port pairs a jwks_uri may name (see
// testAllowedHosts). (Part of the client policy: see clientpolicy.go.)
func checkClientKeys(k clientKind, jwks json.RawMessage, jwksURI string, allowed map[string]bool) error {
	switch {
	case k != keyClient && (len(jwks) > 0 || jwksURI != ""):
		return errors.New("jwks and jwks_uri are for clients that use private_key_jwt")
	case k != keyClient:
		return nil
	case len(jwks) > 0 && jwksURI != "":
		return errors.New("use jwks or jwks_uri, not both")
	case len(jwks) == 0 && jwksURI == "":
		return errors.New("private_key_jwt needs the client's public keys: jwks or jwks_uri")
	case jwksURI != "":
		_, err := checkKeySetURL(jwksURI, allowed)
		return err
	}
	_, err := parseKeySet(jwks)
	return err
}

// keySets holds key sets parsed: those registered inline by their
// content, those of a URL as last fetched (by fetch).
type keySets struct {
	fetch  func(ctx context.Context, uri string) ([]jose.JSONWebKey, error)
	mu     sync.Mutex
	inline map[[sha256.Size]byte][]jose.JSONWebKey
	remote map[string]*remoteKeySet
}

// remoteKeySet is the key set of one jwks_uri.
type remoteKeySet struct {
	mu      sync.Mutex // held while fetching: one fetch of a set at a time
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were fetched
	tried   time.Time // when the last fetch was tried
	err     error     // why it failed, when it did
}

func newKeySets(fetch func(ctx context.Context, uri string) ([]jose.JSONWebKey, error)) *keySets {
	return &keySets{fetch: fetch, inline: map[[sha256.Size]byte][]jose.JSONWebKey{}, remote: map[string]*remoteKeySet{}}
}

// clientKeySets are the key sets of private_key_jwt clients, their
// jwks_uri fetched by f.
func clientKeySets(f *safeFetcher) *keySets {
	return newKeySets(func(ctx context.Context, uri string) ([]jose.JSONWebKey, error) {
		u, err := checkKeySetURL(uri, f.allowed)
		if err != nil {
			return nil, err
		}
		body, _, err := f.getJSON(ctx, u, maxKeySetBytes, "the client's jwks_uri")
		if err != nil {
			return nil, err
		}
		keys, err := parseKeySet(body)
		if err != nil {
			return nil, fmt.Errorf("the client's jwks_uri: %w", err)
		}
		return keys, nil
	})
}

// clientKeys are the keys of a client that authenticates with
// private_key_jwt; kid is the key an assertion names ("" for none): a
// fetched set that lacks it is fetched again, at most once a minute.
func (k *keySets) clientKeys(ctx context.Context, c *storage.Client, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	if len(c.JWKS) > 0 {
		return k.parsed(c.JWKS)
	}
	if c.JWKSURI == "" {
		return nil, errors.New("the client has no keys")
	}
	return k.fetched(ctx, c.JWKSURI, kid, now)
}

// parsed is an inline set, parsed once.
func (k *keySets) parsed(raw []byte) ([]jose.JSONWebKey, error) {
	sum := sha256.Sum256(raw)
	k.mu.Lock()
	keys, ok := k.inline[sum]
	k.mu.Unlock()
	if ok {
		return keys, nil
	}
	keys, err := parseKeySet(raw)
	if err != nil {
		return nil, fmt.Errorf("the client's jwks: %w", err)
	}
	k.mu.Lock()
	if len(k.inline) >= maxCachedKeySets {
		clear(k.inline)
	}
	k.inline[sum] = keys
	k.mu.Unlock()
	return keys, nil
}

// fetched is the set at uri: cached for keySetMaxAge, fetched again
// sooner only for a kid it lacks, and never more than once a
// keySetRefetchFloor; a set that cannot be fetched is no keys.
func (k *keySets) fetched(ctx context.Context, uri, kid string, now time.Time) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	set, ok := k.remote[uri]
	if !ok {
		if len(k.remote) >= maxCachedKeySets {
			clear(k.remote)
		}
		set = &remoteKeySet{}
		k.remote[uri] = set
	}
	k.mu.Unlock()

	set.mu.Lock()
	defer set.mu.Unlock()
	fresh := !set.fetched.IsZero() && now.Sub(set.fetched) < keySetMaxAge
	if fresh && (kid == "" || hasKeyID(set.keys, kid)) || now.Sub(set.tried) < keySetRefetchFloor {
		if set.keys == nil {
			return nil, set.err
		}
		return set.keys, nil
	}
	set.tried = now
	keys, err := k.fetch(ctx, uri)
	if err != nil {
		// The old keys are not used past their age: a client that can no
		// longer publish its keys cannot authenticate.
		set.keys, set.err = nil, err
		return nil, err
	}
	set.keys, set.fetched, set.err = keys, now, nil
	return keys, nil
}

func hasKeyID(keys []jose.JSONWebKey, kid string) bool {
	return slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
}
