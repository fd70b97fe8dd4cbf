package endpoints

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
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

// TestLimiterKeys: an attempt refused by one key makes no key for the
// others, and beyond the cap the key used least recently is forgotten.
func TestLimiterKeys(t *testing.T) {
	l := newKeyedLimiter(2, time.Hour)
	for range 2 {
		a, _ := l.admit("ip:1", "user:a")
		a.settle(true)
	}
	for i := range 50 {
		if a, _ := l.admit("ip:1", "user:"+strconv.Itoa(i)); a != nil {
			t.Fatal("an exhausted address was admitted")
		}
	}
	if len(l.keys) != 2 {
		t.Fatalf("%d keys after refused attempts, want 2", len(l.keys))
	}

	l = newKeyedLimiter(2, time.Hour)
	l.cap = 3
	for _, k := range []string{"a", "b", "c"} {
		a, _ := l.admit(k)
		a.settle(true)
	}
	l.admit("a") // a is used again: b is now the oldest
	a, _ := l.admit("d")
	a.settle(true)
	if len(l.keys) != 3 || l.lookup("b") != nil || l.lookup("a") == nil || l.lookup("c") == nil || l.lookup("d") == nil {
		t.Fatalf("after d: %d keys; want a, c, d", len(l.keys))
	}
}

// TestSignInMemoryStaysBounded: 2,000 sign-in attempts with 60 KB user
// names, from one address and from 2,000, keep the heap within a few MB
// and write no typed name that is not a user into the audit log.
func TestSignInMemoryStaysBounded(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := newTestServer(t, func(c *Config) {
		c.SignIn.Users = map[string]string{"alice": "$2a$04$abcdefghijklmnopqrstuu5YMbOVF2AMMB7NYVkQVbRQ8jIe3R1ZW"}
		c.Audit = zap.New(core)
	})
	attempt := func(name, ip string) int {
		form := url.Values{"username": {name}, "password": {"guess"}, "csrf_token": {"csrf"}}
		r := httptest.NewRequest(http.MethodPost, "http://localhost/oauth/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: loginCSRFCookie, Value: "csrf"})
		r.RemoteAddr = ip + ":1234"
		w := httptest.NewRecorder()
		s.login(w, r)
		return w.Code
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	long := func(i int) string { return strconv.Itoa(i) + strings.Repeat("x", 60_000) }
	attempt("warm-up", "192.0.2.200")
	before := heap()
	for i := range 2000 {
		if code := attempt(long(i), "192.0.2.1"); code != http.StatusBadRequest {
			t.Fatalf("a 60 KB name: %d", code)
		}
	}
	for i := range 2000 {
		attempt(long(i), "10.0."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250))
	}
	for i := range 2000 { // names within the bound, one address: five get in
		attempt("user-"+strconv.Itoa(i)+strings.Repeat("y", 200), "192.0.2.2")
	}
	after := heap()
	if grown := int64(after) - int64(before); grown > 4<<20 {
		t.Errorf("the heap grew by %d bytes", grown)
	}
	if n := len(s.loginLimit.keys); n > 10 {
		t.Errorf("%d limiter keys", n)
	}
	logged := 0
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		logged += len(b)
		if strings.Contains(string(b), "xxxxxxxxxx") || strings.Contains(string(b), "yyyyyyyyyy") {
			t.Fatalf("a typed name in the audit log: %.200s", b)
		}
	}
	if logged > 6000*200 {
		t.Errorf("%d bytes of audit events for 6,000 attempts", logged)
	}
	if f := logs.All()[len(logs.All())-1].ContextMap(); f["event"] != eventSignInThrottled || len(f["user_hash"].(string)) != 16 {
		t.Errorf("last event %v", f)
	}
}

// TestLimitAddress: IPv4 addresses count one by one, an IPv6 client by
// its network of IPv6LimitPrefix bits.
func TestLimitAddress(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.IPv6LimitPrefix = 64 })
	for ip, want := range map[string]string{
		"192.0.2.7":                    "192.0.2.7",
		"192.0.2.7:4433":               "192.0.2.7",
		"::ffff:192.0.2.7":             "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":         "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1":         "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":        "2001:db8:1:3::/64",
		"fe80::1%eth0":                 "fe80::/64",
		"not an address":               "not an address",
		"2001:db8:1:2:3:4:5:6:7:8:9:a": "2001:db8:1:2:3:4:5:6:7:8:9:a",
	} {
		if got := s.limitAddress(ip); got != want {
			t.Errorf("limitAddress(%q) = %q, want %q", ip, got, want)
		}
	}
	s.cfg.IPv6LimitPrefix = 128
	if got := s.limitAddress("2001:db8::1"); got != "2001:db8::1/128" {
		t.Errorf("/128: %q", got)
	}
}

// TestRegistrationQuotaPerNetwork: the addresses of one IPv6 /64 share
// one registration quota.
func TestRegistrationQuotaPerNetwork(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.Clients.DynamicRegistration, c.Clients.UnusedClientTTL, c.IPv6LimitPrefix = true, time.Hour, 64
		c.Clients.RegistrationRateLimit, c.Clients.RegistrationRateWindow = 1, time.Hour
	})
	register := func(remote string) int {
		r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/register", strings.NewReader(`{"redirect_uris":["https://c.test/cb"],"token_endpoint_auth_method":"none"}`))
		r.Header.Set("Content-Type", "application/json")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		s.register(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		remote string
		want   int
	}{{"[2001:db8:0:1::1]:1000", 201}, {"[2001:db8:0:1::2]:1000", 429}, {"[2001:db8:0:1:ffff::9]:1", 429}, {"[2001:db8:0:2::1]:1000", 201}, {"192.0.2.1:1", 201}, {"192.0.2.2:1", 201}} {
		if got := register(tc.remote); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.remote, got, tc.want)
		}
	}
}
