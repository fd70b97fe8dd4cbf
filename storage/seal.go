package storage

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// sealedPrefix marks a sealed value.
var sealedPrefix = []byte("oauth2-sealed-v1:")

// ErrSealed: a stored key is sealed and no storage_key opens it.
var ErrSealed = errors.New("the stored signing key is sealed: configure the storage_key it was sealed with")

// Sealer encrypts values at rest with storage_key (AES-256-GCM, a random
// nonce per value, bound to additional data such as the record's key).
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("storage_key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead}, nil
}

// Seal returns plain encrypted and marked as sealed.
func (s *Sealer) Seal(plain, data []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return append(append(bytes.Clone(sealedPrefix), nonce...), s.aead.Seal(nil, nonce, plain, data)...)
}

// Open decrypts what Seal returned with the same data.
func (s *Sealer) Open(sealed, data []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, sealedPrefix)
	if !ok || len(rest) < s.aead.NonceSize() {
		return nil, errors.New("not a sealed value, or truncated")
	}
	plain, err := s.aead.Open(nil, rest[:s.aead.NonceSize()], rest[s.aead.NonceSize():], data)
	if err != nil {
		return nil, errors.New("storage_key does not open it (another key sealed it)")
	}
	return plain, nil
}

// SealKeys wraps a store so that the generated private keys it stores are
// sealed with AES-256-GCM under key (32 bytes), and opened when read. A key
// stored unsealed (before storage_key was set) is read as it is. With a
// nil key, keys are stored as they are, and a sealed key is ErrSealed.
func SealKeys(s Store, key []byte) (Store, error) {
	sk := &sealedKeys{Store: s}
	if key != nil {
		var err error
		if sk.sealer, err = NewSealer(key); err != nil {
			return nil, err
		}
	}
	return sk, nil
}

type sealedKeys struct {
	Store
	sealer *Sealer
}

func (s *sealedKeys) seal(k *SigningKey) *SigningKey {
	if s.sealer == nil {
		return k
	}
	out := *k
	out.PKCS8 = s.sealer.Seal(k.PKCS8, []byte(k.ID))
	return &out
}

func (s *sealedKeys) open(k *SigningKey) error {
	if !bytes.HasPrefix(k.PKCS8, sealedPrefix) {
		return nil
	}
	if s.sealer == nil {
		return ErrSealed
	}
	plain, err := s.sealer.Open(k.PKCS8, []byte(k.ID))
	if err != nil {
		return fmt.Errorf("signing key %s: %w", k.ID, err)
	}
	k.PKCS8 = plain
	return nil
}

// SigningKeys opens every stored key.
func (s *sealedKeys) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	keys, err := s.Store.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	for i := range keys {
		if err := s.open(&keys[i]); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// EnsureSigningKey stores a generated key sealed and returns it open.
func (s *sealedKeys) EnsureSigningKey(ctx context.Context, generate func() (*SigningKey, error)) (*SigningKey, error) {
	k, err := s.Store.EnsureSigningKey(ctx, func() (*SigningKey, error) {
		k, err := generate()
		if err != nil {
			return nil, err
		}
		return s.seal(k), nil
	})
	if err != nil {
		return nil, err
	}
	out := *k
	return &out, s.open(&out)
}

// RotateSigningKey stores the next key sealed.
func (s *sealedKeys) RotateSigningKey(ctx context.Context, current string, next *SigningKey, verifyOldUntil time.Time) error {
	return s.Store.RotateSigningKey(ctx, current, s.seal(next), verifyOldUntil)
}
