package endpoints

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// keyRefresh is how often stored keys are re-read (a rotation by another
// site on the file, or another node); never longer than half the
// prepublish time, so every signer learns a new key before it signs.
func (s *issuer) keyRefresh() time.Duration {
	d := 30 * time.Second
	if p := s.cfg.Signing.KeyPrepublish / 2; p > 0 && p < d {
		d = p
	}
	return max(d, 100*time.Millisecond)
}

// keyWatch is how often a storage's key-change counter is looked at (a
// memory read; the storage moves it on another node's notice).
const keyWatch = 50 * time.Millisecond

// maintainKeys re-reads the stored keys (periodically, and at once when
// the storage announces a change), and rotates the signing key once it
// has signed for key_rotation, until Close.
func (s *issuer) maintainKeys() {
	t := time.NewTicker(s.keyRefresh())
	defer t.Stop()
	var watch <-chan time.Time
	var seen uint64
	if s.cfg.Signing.KeyChanges != nil {
		w := time.NewTicker(keyWatch)
		defer w.Stop()
		watch, seen = w.C, s.cfg.Signing.KeyChanges()
	}
	for {
		select {
		case <-s.stop:
			return
		case <-watch:
			if n := s.cfg.Signing.KeyChanges(); n != seen {
				if err := s.reloadKeys(context.Background()); err != nil {
					s.cfg.Logger.Error("reading the signing keys", zap.Error(err))
					continue // tried again at the next look
				}
				seen = n
			}
		case now := <-t.C:
			if err := s.reloadKeys(context.Background()); err != nil {
				s.cfg.Logger.Error("reading the signing keys", zap.Error(err))
				continue
			}
			ks := s.Keys()
			if s.cfg.Signing.KeyRotation > 0 && !ks.Pending(now) && now.Sub(ks.ActiveSince()) >= s.cfg.Signing.KeyRotation {
				if _, err := s.RotateKey(context.Background(), "schedule", false); err != nil && !errors.Is(err, storage.ErrConflict) {
					s.cfg.Logger.Error("rotating the signing key", zap.Error(err))
				}
			}
		}
	}
}

// unknownKIDReload is the least time between two key reloads caused by
// tokens naming an unknown kid (a key another node just created): forged
// kids cannot make every request a storage read.
const unknownKIDReload = time.Second

// reloadForUnknownKID re-reads the stored keys, at most once per
// unknownKIDReload, and reports whether it did.
func (s *issuer) reloadForUnknownKID(ctx context.Context) bool {
	if !s.cfg.Signing.StoredKeys {
		return false
	}
	now := time.Now().UnixNano()
	last := s.lastKIDReload.Load()
	if now-last < int64(unknownKIDReload) || !s.lastKIDReload.CompareAndSwap(last, now) {
		return false
	}
	if err := s.reloadKeys(ctx); err != nil {
		s.cfg.Logger.Error("reading the signing keys for an unknown kid", zap.Error(err))
		return false
	}
	return true
}

// reloadKeys rebuilds the key set from the storage. When a key stopped
// verifying (retired, or swept) the verified-token cache is emptied, so
// that what it signed is refused at once.
func (s *issuer) reloadKeys(ctx context.Context) error {
	keys, err := s.cfg.Storage.Store.SigningKeys(ctx)
	if err != nil {
		return err
	}
	ks, err := NewKeySet(keys, time.Now())
	if err != nil {
		return err
	}
	old := s.keys.Swap(ks)
	if old != nil {
		for kid := range old.verify {
			if _, still := ks.verify[kid]; !still {
				s.tokens.clear()
				break
			}
		}
	}
	return nil
}

// ErrKeysNotRotatable: the keys come from the config (signing_key,
// signing_secret), not from the storage.
var ErrKeysNotRotatable = errors.New("the signing key is configured (signing_key or signing_secret); only generated keys rotate")

// RotateKey generates the next signing key and publishes it at once; it
// signs after key_prepublish (at once with atOnce: resource servers that
// cached the key set refuse its tokens until they fetch it again), a
// pending rotation is replaced, and the key it replaces verifies until
// the last token it signed has expired. A rotation that took effect first
// (another node's) is storage.ErrConflict.
func (s *issuer) RotateKey(ctx context.Context, by string, atOnce bool) (*storage.SigningKey, error) {
	if !s.cfg.Signing.StoredKeys {
		return nil, ErrKeysNotRotatable
	}
	now := time.Now()
	current := s.Keys().KeyID()
	next, err := GenerateSigningKey(now)
	if err != nil {
		return nil, fmt.Errorf("generating a signing key: %v", err)
	}
	next.ActivatesAt = now.Add(s.cfg.Signing.KeyPrepublish)
	if atOnce {
		next.ActivatesAt = time.Time{}
	}
	takeover := next.ActivatesAt
	if atOnce {
		takeover = now
	}
	verifyOldUntil := takeover.Add(s.cfg.Tokens.AccessTokenLifetime + s.cfg.Tokens.ClockSkew)
	if err := s.cfg.Storage.Store.RotateSigningKey(ctx, current, next, verifyOldUntil); err != nil {
		s.reloadKeys(ctx) // a conflict: learn the rotation that won
		return nil, err
	}
	if err := s.reloadKeys(ctx); err != nil {
		return nil, err
	}
	s.audit.info(eventKeyRotated, zap.String("kid", next.ID), zap.String("previous", current), zap.Time("activates_at", next.ActivatesAt), zap.String("by", by))
	return next, nil
}

// RetireKey stops a signing key verifying at once: every token it signed
// is refused from the next request (a suspected-compromised key: rotate
// with atOnce first, then retire the old key). A pending key is dropped.
// storage.ErrKeySigns for the key that signs now.
func (s *issuer) RetireKey(ctx context.Context, kid, by string) error {
	if !s.cfg.Signing.StoredKeys {
		return ErrKeysNotRotatable
	}
	if err := s.cfg.Storage.Store.RetireSigningKey(ctx, kid, time.Now()); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return ErrUnknown
		}
		return err
	}
	if err := s.reloadKeys(ctx); err != nil {
		return err
	}
	s.audit.info(eventKeyRetired, zap.String("kid", kid), zap.String("by", by))
	return nil
}
