package storage

import (
	"errors"
	"time"
)

// ErrKeySigns: the key to retire is the one that signs now; another must
// take over first.
var ErrKeySigns = errors.New("the key signs now: rotate first (caddy oauth2 keys rotate --now), then retire it")

// The rules of signing keys, decided here once and applied by every
// backend under its lock: a backend reads the keys, asks, and writes what
// it is told.

// from is when a key starts signing.
func (k *SigningKey) from() time.Time {
	if k.ActivatesAt.IsZero() {
		return k.CreatedAt
	}
	return k.ActivatesAt
}

// SigningNow is the key that signs at now: the latest to have started,
// among those not yet retired and still verifying; nil when none is.
func SigningNow(keys []SigningKey, now time.Time) *SigningKey {
	var cur *SigningKey
	for i := range keys {
		k := &keys[i]
		if now.Before(k.from()) || Expired(k.RetiredAt, now) || Expired(k.VerifyUntil, now) {
			continue
		}
		if cur == nil || k.from().After(cur.from()) {
			cur = k
		}
	}
	return cur
}

// ActiveKey is the newest key not retired, of keys newest first (as
// SigningKeys returns them); nil when there is none, and EnsureSigningKey
// generates one.
func ActiveKey(keys []SigningKey) *SigningKey {
	for i := range keys {
		if keys[i].RetiredAt.IsZero() {
			return &keys[i]
		}
	}
	return nil
}

// pending reports whether a key waits to sign (a rotation not yet in force).
func (k *SigningKey) pending(now time.Time) bool {
	return k.RetiredAt.IsZero() && now.Before(k.from())
}

// PlanRotation decides a rotation at next.CreatedAt: next takes over from
// current, the key that signs now, at next.ActivatesAt (at once when
// zero), and current verifies until verifyOldUntil. A key still waiting to
// sign — an earlier rotation not yet in force — is dropped: next replaces
// it, so an operator rotating a suspect key always succeeds. ErrConflict
// when current no longer signs (another rotation took effect first).
func PlanRotation(keys []SigningKey, current string, next *SigningKey, verifyOldUntil time.Time) (put []SigningKey, drop []string, err error) {
	now := next.CreatedAt
	old := SigningNow(keys, now)
	if old == nil || old.ID != current {
		return nil, nil, ErrConflict
	}
	for i := range keys {
		if k := &keys[i]; k.ID != old.ID && k.pending(now) {
			drop = append(drop, k.ID)
		}
	}
	retired := *old
	retired.RetiredAt, retired.VerifyUntil = next.from(), verifyOldUntil
	return []SigningKey{retired, *next}, drop, nil
}

// PlanRetirement decides the retirement of a key at now: it stops
// verifying at once (its tokens are refused), and a key waiting to sign
// is dropped, the key that signs now then signing on. ErrKeySigns for the
// key that signs now; ErrNotFound for a key that is not stored or no
// longer verifies.
func PlanRetirement(keys []SigningKey, kid string, now time.Time) (put []SigningKey, drop []string, err error) {
	cur := SigningNow(keys, now)
	if cur != nil && cur.ID == kid {
		return nil, nil, ErrKeySigns
	}
	for i := range keys {
		k := keys[i]
		switch {
		case k.ID != kid:
		case k.pending(now):
			if cur == nil || cur.RetiredAt.IsZero() {
				return nil, []string{kid}, nil
			}
			stays := *cur // it was to hand over to the dropped key
			stays.RetiredAt, stays.VerifyUntil = time.Time{}, time.Time{}
			return []SigningKey{stays}, []string{kid}, nil
		case Expired(k.VerifyUntil, now):
			return nil, nil, ErrNotFound
		default:
			if k.RetiredAt.IsZero() || now.Before(k.RetiredAt) {
				k.RetiredAt = now
			}
			k.VerifyUntil = now
			return []SigningKey{k}, nil, nil
		}
	}
	return nil, nil, ErrNotFound
}
