package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func openCommitTest(t *testing.T) *File {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "commit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestGroupCommitSharesCommits: writes that arrive while a commit is in
// flight share the next one; each sees its own write committed.
func TestGroupCommitSharesCommits(t *testing.T) {
	f := openCommitTest(t)
	release, started := make(chan struct{}), make(chan struct{})
	signal := sync.OnceFunc(func() { close(started) })
	var first int
	var wg sync.WaitGroup
	wg.Go(func() {
		f.writes.do(func(tx *bbolt.Tx) error {
			first = tx.ID()
			signal()
			<-release
			return tx.Bucket(bucketMeta).Put([]byte("first"), []byte("1"))
		})
	})
	<-started
	ids := make([]int, 10)
	for i := range ids {
		wg.Go(func() {
			err := f.writes.do(func(tx *bbolt.Tx) error {
				ids[i] = tx.ID()
				return tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "w%d", i), []byte("1"))
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		f.writes.mu.Lock()
		n := len(f.writes.queue)
		f.writes.mu.Unlock()
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued behind the commit in flight", n)
		}
	}
	close(release)
	wg.Wait()
	for i, id := range ids {
		if id != ids[0] || id == first {
			t.Fatalf("write %d ran in transaction %d; the group's first in %d, the commit in flight was %d", i, id, ids[0], first)
		}
	}
	f.db.View(func(tx *bbolt.Tx) error {
		for i := range ids {
			if tx.Bucket(bucketMeta).Get(fmt.Appendf(nil, "w%d", i)) == nil {
				t.Errorf("write %d is not in the file", i)
			}
		}
		return nil
	})
}

// TestGroupCommitIsolatesFailures: a member that fails (or panics) gets
// its own answer and leaves nothing behind; the rest of its group is
// committed.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	f := openCommitTest(t)
	refused := errors.New("refused")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("panic: %v", p)
				}
			}()
			errs[i] = f.writes.do(func(tx *bbolt.Tx) error {
				if err := tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "k%d", i), []byte("1")); err != nil {
					return err
				}
				switch i % 5 {
				case 3:
					return refused
				case 4:
					panic("write 4")
				}
				return nil
			})
		})
	}
	wg.Wait()
	f.db.View(func(tx *bbolt.Tx) error {
		for i, err := range errs {
			stored := tx.Bucket(bucketMeta).Get(fmt.Appendf(nil, "k%d", i)) != nil
			switch i % 5 {
			case 3:
				if !errors.Is(err, refused) || stored {
					t.Errorf("write %d: %v, stored %v; want refused and nothing stored", i, err, stored)
				}
			case 4:
				if err == nil || err.Error() != "panic: write 4" || stored {
					t.Errorf("write %d: %v, stored %v; want its panic and nothing stored", i, err, stored)
				}
			default:
				if err != nil || !stored {
					t.Errorf("write %d: %v, stored %v", i, err, stored)
				}
			}
		}
		return nil
	})
}

// TestGroupCommitAfterClose: a write to a closed file is refused, never
// left waiting.
func TestGroupCommitAfterClose(t *testing.T) {
	f := openCommitTest(t)
	f.Close()
	if err := f.writes.do(func(*bbolt.Tx) error { return nil }); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

// TestSweepInChunks: a sweep larger than one chunk, with live records
// between the expired ones (more than a chunk's scan of them in a row),
// deletes exactly the expired ones.
func TestSweepInChunks(t *testing.T) {
	f := openCommitTest(t)
	now := time.Now()
	const n = 25 * sweepChunk
	want := putTokens(t, f, n, now, func(i int) bool {
		return i%3 == 0 && !(i > 12*sweepChunk && i < 24*sweepChunk) // then a long live stretch
	})
	swept, err := f.DeleteExpired(context.Background(), now)
	deleted := swept.Deleted
	if err != nil || deleted != want {
		t.Fatalf("swept %d (%v), want %d", deleted, err, want)
	}
	f.db.View(func(tx *bbolt.Tx) error {
		if left := tx.Bucket(bucketRefresh).Stats().KeyN; left != n-want {
			t.Errorf("%d records left, want %d", left, n-want)
		}
		return nil
	})
}

// TestSweepDeletesRunsOfRecords: each write of a sweep deletes among at
// most sweepChunk records in a row, however sparse the expired ones are,
// so a commit that writes are held behind rewrites only the pages of one
// such run: with one record in ten expired, ten runs, ten writes.
func TestSweepDeletesRunsOfRecords(t *testing.T) {
	f := openCommitTest(t)
	now := time.Now()
	const n = 10 * sweepChunk
	putTokens(t, f, n, now, func(i int) bool { return i%10 == 0 })
	writes := 0
	f.Observe(func(op string, _ time.Duration) {
		if op == "delete_expired" {
			writes++
		}
	})
	swept, err := f.DeleteExpired(context.Background(), now)
	deleted := swept.Deleted
	f.Observe(nil)
	if err != nil || deleted != n/10 || writes != 10 {
		t.Fatalf("swept %d (%v) in %d writes, want %d in 10", deleted, err, writes, n/10)
	}
}

// putTokens stores n refresh tokens in key order, those for which dead
// is true expired at now and the others live, and returns how many
// expired.
func putTokens(t *testing.T, f *File, n int, now time.Time, dead func(i int) bool) (expired int) {
	t.Helper()
	err := f.db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			exp := now.Add(time.Hour)
			if dead(i) {
				exp, expired = now.Add(-time.Hour), expired+1
			}
			if err := put(tx, bucketRefresh, fmt.Appendf(nil, "rt-%08d", i), storage.RefreshToken{ExpiresAt: exp}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return expired
}
