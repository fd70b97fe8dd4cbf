package storage

import (
	"crypto/subtle"
	"time"
)

// The rules every backend applies the same way, written once: a backend
// reads and locks the records, calls the rule, and writes what it decided.

// Expired reports whether a deadline has passed at now; a zero deadline
// never passes.
func Expired(deadline, now time.Time) bool {
	return !deadline.IsZero() && !now.Before(deadline)
}

// Earliest is the earlier of two deadlines, a zero one meaning none.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Judge applies the rules of a rotation (see Rotation) to the presented
// token cur of the family fam, as the backend read them in its
// transaction, at r.Now. An error (ErrWrongClient, ErrRevoked,
// ErrNotFound, or Narrow's, as a Refusal) changes nothing. reused: the family is
// revoked at r.Now; the backend stores fam and answers ErrReused.
// Otherwise fam, cur (rotated, with the next token's hash as its last
// successor: the key to store next under) and next are what the backend
// stores. successorUsed is
// called only when the rules need to know whether one of cur's successors
// has been used.
func (r Rotation) Judge(fam *RefreshFamily, cur *RefreshToken, successorUsed func() (bool, error)) (next RefreshToken, reused bool, err error) {
	switch {
	case fam.ClientID != r.ClientID:
		return RefreshToken{}, false, ErrWrongClient
	case !fam.RevokedAt.IsZero():
		return RefreshToken{}, false, ErrRevoked
	case Expired(fam.ExpiresAt, r.Now) || Expired(cur.ExpiresAt, r.Now):
		return RefreshToken{}, false, ErrNotFound
	}
	next = r.Next
	if r.Narrow != nil {
		scope, err := r.Narrow(fam)
		if err != nil {
			return RefreshToken{}, false, Refusal(err)
		}
		next.Scope, next.Resource = scope, fam.Resource
	}
	if cur.RotatedAt.IsZero() {
		cur.RotatedAt = r.Now
	} else {
		since := max(r.Now.Sub(cur.RotatedAt), 0)
		reused = r.Grace <= 0 || since > r.Grace
		if !reused && since > r.Burst {
			if reused, err = successorUsed(); err != nil {
				return RefreshToken{}, false, err
			}
		}
		if reused {
			fam.RevokedAt = r.Now
			return RefreshToken{}, true, nil
		}
	}
	fam.LastUsedAt = r.Now
	if fam.JKT == "" {
		fam.JKT = r.Bind
	}
	cur.Successors = append(cur.Successors, Hash(r.NextToken))
	next.FamilyID = fam.ID
	next.ExpiresAt = Earliest(next.ExpiresAt, fam.ExpiresAt)
	return next, false, nil
}

// Judge applies the rules of an answer (see ConsentAnswer) to the pending
// request p, as the backend read it in its transaction. ErrNotFound: it
// has expired. refused: a wrong CSRF token or another user; the backend
// deletes the request (a guessed form is used up) and answers
// ErrNotFound. repeated: the answer that stands is in p already.
// Otherwise p holds the answer, and the backend stores it.
func (a ConsentAnswer) Judge(p *PendingAuthorization) (refused, repeated bool, err error) {
	switch {
	case Expired(p.ExpiresAt, a.Now):
		return false, false, ErrNotFound
	case subtle.ConstantTimeCompare(Hash(a.CSRF), p.CSRFHash) != 1 || a.Subject == "" || a.Subject != p.Subject:
		return true, false, nil
	case !p.AnsweredAt.IsZero():
		return false, true, nil
	}
	p.Decision, p.AnsweredAt = a.Decision, a.Now
	p.ExpiresAt = a.Now.Add(a.ReplayWindow)
	return false, false, nil
}
