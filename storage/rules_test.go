package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestRotationJudge: the rotation rules, as every backend applies them.
func TestRotationJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := Rotation{ClientID: "c", NextToken: "next", Now: t0, Grace: 10 * time.Second, Burst: 2 * time.Second,
		Next: RefreshToken{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}}
	fam := RefreshFamily{ID: "f", ClientID: "c", Scope: "a b", Resource: "r", ExpiresAt: t0.Add(30 * time.Minute)}
	errNarrow := errors.New("narrowed")
	for _, tc := range []struct {
		name        string
		mutate      func(*Rotation, *RefreshFamily, *RefreshToken)
		successor   bool // a successor was used
		wantAsked   bool // the rule asked whether one was
		wantErr     error
		wantReused  bool
		wantExpires time.Time
	}{
		{name: "first use", wantExpires: fam.ExpiresAt},
		{name: "another client", mutate: func(r *Rotation, _ *RefreshFamily, _ *RefreshToken) { r.ClientID = "d" }, wantErr: ErrWrongClient},
		{name: "revoked family", mutate: func(_ *Rotation, f *RefreshFamily, _ *RefreshToken) { f.RevokedAt = t0 }, wantErr: ErrRevoked},
		{name: "expired token", mutate: func(_ *Rotation, _ *RefreshFamily, c *RefreshToken) { c.ExpiresAt = t0 }, wantErr: ErrNotFound},
		{name: "expired family", mutate: func(_ *Rotation, f *RefreshFamily, _ *RefreshToken) { f.ExpiresAt = t0.Add(-time.Second) }, wantErr: ErrNotFound},
		{name: "narrow refuses", mutate: func(r *Rotation, _ *RefreshFamily, _ *RefreshToken) {
			r.Narrow = func(*RefreshFamily) (string, error) { return "", errNarrow }
		}, wantErr: errNarrow},
		{name: "within the burst", mutate: rotatedAgo(time.Second), successor: true, wantExpires: fam.ExpiresAt},
		{name: "within grace, no successor used", mutate: rotatedAgo(5 * time.Second), wantAsked: true, wantExpires: fam.ExpiresAt},
		{name: "within grace, a successor used", mutate: rotatedAgo(5 * time.Second), successor: true, wantAsked: true, wantReused: true},
		{name: "after grace", mutate: rotatedAgo(11 * time.Second), wantReused: true},
		{name: "strict", mutate: func(r *Rotation, f *RefreshFamily, c *RefreshToken) { r.Grace, r.Burst = 0, 0; c.RotatedAt = t0 }, wantReused: true},
	} {
		r, f, cur := base, fam, RefreshToken{FamilyID: "f", ExpiresAt: t0.Add(time.Hour)}
		if tc.mutate != nil {
			tc.mutate(&r, &f, &cur)
		}
		rotated := !cur.RotatedAt.IsZero()
		asked := false
		next, reused, err := r.Judge(&f, &cur, func() (bool, error) { asked = true; return tc.successor, nil })
		switch {
		case !errors.Is(err, tc.wantErr) || reused != tc.wantReused || asked != tc.wantAsked:
			t.Errorf("%s: err %v reused %v asked %v", tc.name, err, reused, asked)
		case err != nil:
			if len(cur.Successors) != 0 || !f.LastUsedAt.IsZero() {
				t.Errorf("%s: a refusal changed the records", tc.name)
			}
		case reused:
			if f.RevokedAt != t0 || len(cur.Successors) != 0 {
				t.Errorf("%s: the family is not revoked at now, or a successor was added", tc.name)
			}
		default:
			if next.FamilyID != "f" || !next.ExpiresAt.Equal(tc.wantExpires) || f.LastUsedAt != t0 || len(cur.Successors) != 1 ||
				string(cur.Successors[0]) != string(Hash("next")) || !rotated && cur.RotatedAt != t0 {
				t.Errorf("%s: next %+v, family %+v, current %+v", tc.name, next, f, cur)
			}
		}
	}
}

func rotatedAgo(d time.Duration) func(*Rotation, *RefreshFamily, *RefreshToken) {
	return func(r *Rotation, _ *RefreshFamily, c *RefreshToken) { c.RotatedAt = r.Now.Add(-d) }
}

// TestConsentAnswerJudge: the consent-answer rules.
func TestConsentAnswerJudge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pending := PendingAuthorization{Subject: "alice", CSRFHash: Hash("csrf"), ExpiresAt: t0.Add(time.Minute)}
	answer := ConsentAnswer{CSRF: "csrf", Subject: "alice", Decision: "allow", Now: t0, ReplayWindow: 2 * time.Minute}
	for _, tc := range []struct {
		name                   string
		mutate                 func(*ConsentAnswer, *PendingAuthorization)
		wantRefused, wantAgain bool
		wantErr                error
	}{
		{name: "first answer"},
		{name: "expired", mutate: func(_ *ConsentAnswer, p *PendingAuthorization) { p.ExpiresAt = t0 }, wantErr: ErrNotFound},
		{name: "wrong CSRF", mutate: func(a *ConsentAnswer, _ *PendingAuthorization) { a.CSRF = "guess" }, wantRefused: true},
		{name: "another user", mutate: func(a *ConsentAnswer, _ *PendingAuthorization) { a.Subject = "mallory" }, wantRefused: true},
		{name: "no user", mutate: func(a *ConsentAnswer, p *PendingAuthorization) { a.Subject, p.Subject = "", "" }, wantRefused: true},
		{name: "answered already", mutate: func(_ *ConsentAnswer, p *PendingAuthorization) { p.Decision, p.AnsweredAt = "deny", t0 }, wantAgain: true},
	} {
		a, p := answer, pending
		if tc.mutate != nil {
			tc.mutate(&a, &p)
		}
		before := p
		refused, repeated, err := a.Judge(&p)
		if !errors.Is(err, tc.wantErr) || refused != tc.wantRefused || repeated != tc.wantAgain {
			t.Errorf("%s: refused %v repeated %v err %v", tc.name, refused, repeated, err)
			continue
		}
		answered := err == nil && !refused && !repeated
		if answered != (p.Decision == "allow" && p.AnsweredAt == t0 && p.ExpiresAt == t0.Add(2*time.Minute)) || !answered && p.Decision != before.Decision {
			t.Errorf("%s: the request became %+v", tc.name, p)
		}
	}
}

// TestAnswer: a backend's transaction errors are the contract's answers
// (wrapped or not) and the caller's refusals, passed on as they are, or
// else marked as the storage failing.
func TestAnswer(t *testing.T) {
	type refusedType struct{ error }
	narrow := &refusedType{errors.New("scope exceeds what was granted")}
	for _, tc := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"nil", nil, false},
		{"not found", ErrNotFound, false},
		{"a wrapped not found", fmt.Errorf("reading the code: %w", ErrNotFound), false},
		{"reused", ErrReused, false},
		{"a key that signs", ErrKeySigns, false},
		{"a caller's refusal", Refusal(narrow), false},
		{"a disk error", errors.New("write /var/lib/oauth.db: no space left on device"), true},
		{"a cancelled request", context.Canceled, true},
		{"marked twice", Unavailable(errors.New("connection refused")), true},
	} {
		got := Answer(tc.err)
		if errors.Is(got, ErrUnavailable) != tc.unavailable || (tc.err == nil) != (got == nil) || tc.err != nil && !errors.Is(got, tc.err) {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
	var r *refusedType
	if !errors.As(Answer(Refusal(narrow)), &r) || r != narrow {
		t.Error("a refusal does not unwrap to the caller's error")
	}
	if got := Unavailable(Unavailable(errors.New("x"))).Error(); got != "the storage is unavailable: x" {
		t.Errorf("marked twice reads %q", got)
	}
}
