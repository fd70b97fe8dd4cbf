package bolt

import (
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// maxGroup bounds the writes that share one commit.
const maxGroup = 1000

// groupCommit is leader-based group commit over bbolt: a write that finds
// no commit in flight commits at once (a lone writer never waits for a
// timer), and the writes that arrive while a commit is in flight share
// the next one. Every write is answered after its commit's fsync, as with
// db.Update. (bbolt's own db.Batch waits MaxBatchDelay before every
// commit.)
type groupCommit struct {
	db *bbolt.DB

	mu      sync.Mutex
	queue   []*write
	leading bool // a goroutine is committing; new writes join its next group
	closed  bool
}

type write struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// panicked carries a write's panic back to its caller's goroutine.
type panicked struct{ value any }

func (p panicked) Error() string { return fmt.Sprintf("panic in a write transaction: %v", p.value) }

// do runs fn in a write transaction shared with other writes; fn may run
// more than once (a group whose member fails is committed again without
// it, and the failing write runs alone), so it must not keep state
// across runs.
func (g *groupCommit) do(fn func(*bbolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return bolterrors.ErrDatabaseNotOpen
	}
	g.queue = append(g.queue, w)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if lead {
		g.lead(w)
	}
	err := <-w.done
	if p, ok := err.(panicked); ok {
		panic(p.value)
	}
	return err
}

// lead commits groups until the queue is empty (then the next write to
// arrive leads), or until its own write is answered while others wait:
// then a new goroutine goes on leading, so that no caller is held
// committing for others.
func (g *groupCommit) lead(own *write) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxGroup)
		group := g.queue[:n:n]
		g.queue = g.queue[n:]
		switch {
		case n == 0:
			g.leading = false
			g.mu.Unlock()
			return
		case own != nil && len(own.done) > 0:
			g.queue = append(group, g.queue...)
			g.mu.Unlock()
			go g.lead(nil)
			return
		}
		g.mu.Unlock()
		g.commit(group)
	}
}

// commit runs a group in one transaction. When a member fails, the
// transaction is rolled back, the member runs alone (its answer is its
// own), and the rest are committed again without it.
func (g *groupCommit) commit(group []*write) {
	for len(group) > 0 {
		failed := -1
		err := g.update(func(tx *bbolt.Tx) error {
			for i, w := range group {
				if err := run(w.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range group {
				w.done <- err
			}
			return
		}
		w := group[failed]
		group = append(group[:failed:failed], group[failed+1:]...)
		w.done <- g.update(func(tx *bbolt.Tx) error { return run(w.fn, tx) })
	}
}

// update runs fn in a write transaction, with the fill of appended
// buckets set (see appendedFill).
func (g *groupCommit) update(fn func(*bbolt.Tx) error) error {
	return g.db.Update(func(tx *bbolt.Tx) error {
		fillAppended(tx)
		return fn(tx)
	})
}

// run calls fn, turning a panic into an error for its caller.
func run(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicked{p}
		}
	}()
	return fn(tx)
}

// close refuses writes from now on.
func (g *groupCommit) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
