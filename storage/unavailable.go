package storage

import "errors"

// ErrUnavailable marks a failure of the storage itself: it could not be
// reached, read or written (an I/O error, a timeout, a lost connection, a
// record it cannot decode, a cancelled request). The same request may
// succeed later: the server answers 503, and the guard fails closed.
// Every other error a Store method returns is one of the contract's
// answers above (ErrNotFound, ErrAlreadyUsed, …; wrapped or not) or the
// caller's own refusal (see Refusal).
var ErrUnavailable = errors.New("the storage is unavailable")

// Unavailable marks err as a failure of the storage; nil stays nil, and
// err stays in the chain.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &unavailable{err}
}

type unavailable struct{ err error }

func (u *unavailable) Error() string   { return "the storage is unavailable: " + u.err.Error() }
func (u *unavailable) Unwrap() []error { return []error{ErrUnavailable, u.err} }

// answers are the errors of the contract: what a Store or Backend method
// decides, never a failure.
var answers = []error{ErrNotFound, ErrAlreadyUsed, ErrRevoked, ErrReused, ErrWrongClient, ErrWrongBrowser, ErrConflict,
	ErrImportConflict, ErrKeySigns, ErrSealed}

// Answer is what a backend returns from one of its transactions: err as
// it is when it is one of the contract's answers or a caller's refusal,
// and otherwise err marked Unavailable — whatever else fails inside a
// transaction is the storage failing. A backend calls it at the boundary
// of its I/O, where it knows that.
func Answer(err error) error {
	if err == nil {
		return nil
	}
	var refused *refusal
	if errors.As(err, &refused) {
		return err
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return err
		}
	}
	return Unavailable(err)
}

// Refusal wraps an error that a caller's function (Rotation.Narrow, a
// key generator) returned inside a backend's transaction, so that Answer
// passes it on as the caller's own; errors.As and errors.Is see through.
func Refusal(err error) error {
	if err == nil {
		return nil
	}
	return &refusal{err}
}

type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }
