package integration

import (
	"bufio"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// scrape reads Caddy's /metrics from the admin endpoint: every
// caddy_oauth2_* sample by its full name with labels.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_oauth2_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsAfterAFlow: a flow moves the counters, and no label names a
// user, client or token.
func TestMetricsAfterAFlow(t *testing.T) {
	flowServer(t, guardExtra+dcr)
	before := scrape(t)
	b := signedIn(t)
	tokens := tokensFor(t, b, nil)
	callAPI(t, tokens["access_token"].(string), "/mcp")
	callAPI(t, "", "/mcp")
	callAPI(t, tokens["access_token"].(string), "/mcp/admin/x")
	tokenRequest(t, refreshForm(tokens["refresh_token"].(string)))
	tokenRequest(t, redeemForm("no-such-code", newPKCE()))
	registerJSON(t, `{"redirect_uris":["https://c.test/cb"],"token_endpoint_auth_method":"none"}`)
	newBrowser(t).post("/oauth/revoke", url.Values{"token": {tokens["refresh_token"].(string)}, "client_id": {"pub1"}})
	after := scrape(t)
	is := `issuer="` + base + `"`
	for _, name := range []string{
		`caddy_oauth2_tokens_issued_total{grant_type="authorization_code",` + is + `}`,
		`caddy_oauth2_tokens_issued_total{grant_type="refresh_token",` + is + `}`,
		`caddy_oauth2_refresh_total{` + is + `,outcome="rotated"}`,
		`caddy_oauth2_token_errors_total{error="invalid_grant",` + is + `}`,
		`caddy_oauth2_guard_decisions_total{decision="allowed",resource="` + base + `/mcp"}`,
		`caddy_oauth2_guard_decisions_total{decision="missing_token",resource="` + base + `/mcp"}`,
		`caddy_oauth2_guard_decisions_total{decision="insufficient_scope",resource="` + base + `/mcp"}`,
		`caddy_oauth2_sign_ins_total{` + is + `,method="password",outcome="success"}`,
		`caddy_oauth2_registrations_total{` + is + `,outcome="registered"}`,
		`caddy_oauth2_revocations_total{` + is + `,kind="refresh_token"}`,
		`caddy_oauth2_family_revocations_total{` + is + `,reason="revocation_endpoint"}`,
		`caddy_oauth2_storage_operation_seconds_count{operation="redeem_authorization_code"}`,
		`caddy_oauth2_storage_operation_seconds_count{operation="rotate_refresh_token"}`,
	} {
		if after[name] <= before[name] {
			t.Errorf("%s did not move: %v -> %v", name, before[name], after[name])
		}
	}
	// A reload registers the same collectors into the new registry: they
	// are still there, with their values.
	flowServer(t, "")
	if reloaded := scrape(t); reloaded[`caddy_oauth2_tokens_issued_total{grant_type="authorization_code",`+is+`}`] < after[`caddy_oauth2_tokens_issued_total{grant_type="authorization_code",`+is+`}`] {
		t.Error("the counters are gone after a reload")
	}
	labels := regexp.MustCompile(`\{[^}]*\}`)
	for name := range after {
		for _, leak := range []string{"pub1", "alice", "127.0.0.1", tokens["access_token"].(string)} {
			if strings.Contains(labels.FindString(name), leak) {
				t.Errorf("a label names %q: %s", leak, name)
			}
		}
	}
}
