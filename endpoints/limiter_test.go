package endpoints

import (
	"sync"
	"testing"
	"time"
)

// TestLimiterAdmitsBeforeTheWork: admitted attempts hold their events, so
// concurrent attempts beyond the limit are refused while the admitted
// ones run; failures use events up, successes give them back.
func TestLimiterAdmitsBeforeTheWork(t *testing.T) {
	l := newKeyedLimiter(5, 15*time.Minute)
	var held []*attempt
	for range 5 {
		a, wait := l.admit("user:bob", "ip:1")
		if a == nil {
			t.Fatalf("refused within the limit (wait %s)", wait)
		}
		held = append(held, a)
	}
	// Five attempts in flight: the sixth waits for them, briefly.
	if a, wait := l.admit("user:bob", "ip:2"); a != nil || wait != busyRetry {
		t.Fatalf("sixth concurrent attempt: %v, wait %s; want refused with %s", a, wait, busyRetry)
	}
	// Another account from another address is not affected.
	if a, _ := l.admit("user:carol", "ip:3"); a == nil {
		t.Fatal("another account was refused")
	} else {
		a.settle(false)
	}
	held[0].settle(false) // a success gives its place back
	if a, _ := l.admit("user:bob", "ip:4"); a == nil {
		t.Fatal("the place of a success was not given back")
	} else {
		held[0] = a
	}
	for _, a := range held {
		a.settle(true) // five failures
	}
	a, wait := l.admit("user:bob", "ip:5")
	if a != nil || wait < 2*time.Minute || wait > 3*time.Minute {
		t.Fatalf("after five failures: %v, wait %s; want refused until an event refills (3m)", a, wait)
	}
}

// TestLimiterParallelAdmissions: however many attempts race, at most the
// limit is admitted.
func TestLimiterParallelAdmissions(t *testing.T) {
	l := newKeyedLimiter(5, time.Hour)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if a, _ := l.admit("ip:1"); a != nil {
				mu.Lock()
				admitted++
				mu.Unlock()
				time.Sleep(time.Millisecond)
				a.settle(true)
			}
		})
	}
	wg.Wait()
	if admitted != 5 {
		t.Fatalf("%d of 100 racing attempts admitted, want 5", admitted)
	}
}
