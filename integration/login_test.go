package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

func hasSessionCookie(p page) bool {
	for _, c := range p.resp.Cookies() {
		if strings.HasSuffix(c.Name, "oauth2_session") && c.Value != "" {
			return true
		}
	}
	return false
}

var alertText = regexp.MustCompile(`role="alert">([^<]*)<`)

func TestLoginFailuresLookAlike(t *testing.T) {
	flowServer(t, "")
	wrong := newBrowser(t).signIn("alice", "not her password")
	unknown := newBrowser(t).signIn("nobody", "whatever")
	for name, p := range map[string]page{"wrong password": wrong, "unknown user": unknown} {
		if p.resp.StatusCode != http.StatusUnauthorized || hasSessionCookie(p) {
			t.Fatalf("%s: %d, session cookie %v", name, p.resp.StatusCode, hasSessionCookie(p))
		}
	}
	a, b := alertText.FindStringSubmatch(wrong.body), alertText.FindStringSubmatch(unknown.body)
	if a == nil || b == nil || a[1] != b[1] {
		t.Fatalf("failure messages differ: %q vs %q", a, b)
	}
}

// TestLoginUnknownUserCostsAHashComparison times sign-ins: an unknown user
// must cost about as much as a wrong password (a real hash comparison),
// so timing does not reveal which names exist.
func TestLoginUnknownUserCostsAHashComparison(t *testing.T) {
	// A costlier hash than alice's, so the comparison dominates; and
	// X-Forwarded-For trusted from loopback, so each attempt comes from
	// its own address and the per-IP throttle stays out of the way.
	flowSite{global: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", extra: "user bob " + mustHash("bob's password", 10)}.start(t)
	attempt := 0
	median := func(user func() string) time.Duration {
		var times []time.Duration
		for range 3 {
			attempt++
			b := newBrowser(t)
			form := b.get("/oauth/login")
			start := time.Now()
			p := b.post("/oauth/login", url.Values{"username": {user()}, "password": {"wrong"}, "csrf_token": {form.field("csrf_token")}},
				"X-Forwarded-For", fmt.Sprintf("192.0.2.%d", attempt))
			times = append(times, time.Since(start))
			if p.resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d", attempt, p.resp.StatusCode)
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times[1]
	}
	known := median(func() string { return "bob" })
	unknown := median(func() string { return fmt.Sprintf("nobody-%d", attempt) })
	t.Logf("median wrong-password sign-in %s, unknown-user sign-in %s", known, unknown)
	if unknown < known/3 {
		t.Fatalf("an unknown user is answered in %s, a wrong password in %s: timing reveals which names exist", unknown, known)
	}
}

func TestLoginThrottling(t *testing.T) {
	flowServer(t, "")
	b := newBrowser(t)
	for i := range 5 {
		// A spoofed X-Forwarded-For from an untrusted peer changes nothing.
		form := b.get("/oauth/login")
		p := b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {"guess"}, "csrf_token": {form.field("csrf_token")}},
			"X-Forwarded-For", "203.0.113."+string(rune('1'+i)))
		if p.resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, p.resp.StatusCode)
		}
	}
	form := b.get("/oauth/login")
	p := b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {form.field("csrf_token")}},
		"X-Forwarded-For", "198.51.100.7")
	if p.resp.StatusCode != http.StatusTooManyRequests || hasSessionCookie(p) {
		t.Fatalf("sixth attempt (with the right password): %d, want 429 and no session", p.resp.StatusCode)
	}
	if ra := p.resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	// Another account from the same address is throttled too (per IP).
	form = b.get("/oauth/login")
	if p := b.post("/oauth/login", url.Values{"username": {"bob"}, "password": {"x"}, "csrf_token": {form.field("csrf_token")}}); p.resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("other account from the same IP: %d", p.resp.StatusCode)
	}
}

func TestLoginCSRF(t *testing.T) {
	flowServer(t, "")
	// A cross-site form: no CSRF cookie, a made-up token.
	attacker := newBrowser(t)
	p := attacker.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {"forged"}})
	if p.resp.StatusCode != http.StatusBadRequest || hasSessionCookie(p) {
		t.Fatalf("forged login: %d, session %v", p.resp.StatusCode, hasSessionCookie(p))
	}
	// The cookie is there but the form's token is not its own.
	b := newBrowser(t)
	b.get("/oauth/login")
	p = b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {"other"}})
	if p.resp.StatusCode != http.StatusBadRequest || hasSessionCookie(p) {
		t.Fatalf("wrong token: %d, session %v", p.resp.StatusCode, hasSessionCookie(p))
	}
	// And the return URL cannot point anywhere else.
	b = newBrowser(t)
	form := b.get("/oauth/login?return_to=https%3A%2F%2Fevil.test%2F")
	p = b.post("/oauth/login", url.Values{"username": {"alice"}, "password": {alicePassword}, "csrf_token": {form.field("csrf_token")}, "return_to": {"//evil.test/oauth/authorize?x"}})
	if p.resp.StatusCode != http.StatusOK || p.resp.Header.Get("Location") != "" || !hasSessionCookie(p) {
		t.Fatalf("foreign return_to: %d %v", p.resp.StatusCode, p.resp.Header)
	}
}

// bobPassword is bob's password; his hash is costly (bcrypt 10), so that
// verifications are still running while other attempts arrive.
const bobPassword = "bob's long password"

var bobHash = mustHash(bobPassword, 10)

const trustLoopbackProxy = "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"

// TestLoginThrottleCannotBeRaced: the throttle takes its token before the password is verified,
// so a burst of parallel guesses cannot all be evaluated.
func TestLoginThrottleCannotBeRaced(t *testing.T) {
	// Each attempt comes from its own address (X-Forwarded-For from a
	// trusted proxy), so only the per-account limit stands in the way.
	flowSite{global: trustLoopbackProxy, extra: "user bob " + bobHash}.start(t)
	const wrong = 19
	browsers := make([]*browser, wrong+1)
	csrf := make([]string, wrong+1)
	for i := range browsers {
		browsers[i] = newBrowser(t)
		csrf[i] = browsers[i].get("/oauth/login").field("csrf_token")
	}
	attempt := func(i int, password string) page {
		return browsers[i].post("/oauth/login", url.Values{"username": {"bob"}, "password": {password}, "csrf_token": {csrf[i]}},
			"X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1))
	}
	results := make(chan page, wrong)
	for i := range wrong {
		go func() { results <- attempt(i, "a wrong guess") }()
	}
	// The attempts that were not let in are answered at once; while the
	// admitted ones are still verifying, the right password arrives.
	var answers []page
	timeout := time.After(time.Minute)
	for len(answers) < wrong-5 {
		select {
		case p := <-results:
			answers = append(answers, p)
		case <-timeout:
			t.Fatalf("only %d of %d attempts answered", len(answers), wrong)
		}
	}
	right := attempt(wrong, bobPassword)
	for len(answers) < wrong {
		answers = append(answers, <-results)
	}
	evaluated := 0
	for _, p := range answers {
		switch p.resp.StatusCode {
		case http.StatusUnauthorized:
			evaluated++
		case http.StatusTooManyRequests:
			if ra := p.resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("429 with Retry-After %q", ra)
			}
		default:
			t.Errorf("unexpected answer %d", p.resp.StatusCode)
		}
	}
	if evaluated == 0 || evaluated > 5 {
		t.Fatalf("%d of %d parallel wrong guesses were evaluated, want 1 to 5", evaluated, wrong)
	}
	if right.resp.StatusCode != http.StatusTooManyRequests || hasSessionCookie(right) || right.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("the right password during the burst: %d, session %v, want 429 with Retry-After", right.resp.StatusCode, hasSessionCookie(right))
	}
	// Five failures were counted: the account stays limited.
	b := newBrowser(t)
	form := b.get("/oauth/login")
	p := b.post("/oauth/login", url.Values{"username": {"bob"}, "password": {bobPassword}, "csrf_token": {form.field("csrf_token")}},
		"X-Forwarded-For", "198.51.100.200")
	if evaluated == 5 && (p.resp.StatusCode != http.StatusTooManyRequests || hasSessionCookie(p)) {
		t.Fatalf("the right password after five failures: %d, want 429", p.resp.StatusCode)
	}
}
