// Package integration runs the oauth2_server module inside a real Caddy,
// in process, through caddytest. All caddytest tests live in this one
// package: caddytest runs one Caddy per test binary, and packages run in
// parallel.
package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-oauth2/caddy-oauth2-server"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
)

func TestMain(m *testing.M) {
	// The CLI tests run this binary again as the caddy command.
	if args := os.Getenv("OAUTH2_CHILD_ARGS"); args != "" {
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			panic(err)
		}
		os.Args = append([]string{"caddy"}, argv...)
		caddycmd.Main()
		return
	}
	// The crash test runs this binary again as a stand-alone Caddy.
	if config := os.Getenv("OAUTH2_CHILD_CADDYFILE"); config != "" {
		os.Args = []string{"caddy", "run", "--config", config, "--adapter", "caddyfile"}
		caddycmd.Main()
		return
	}
	// Keep Caddy's data and config out of the developer's home.
	dir, err := os.MkdirTemp("", "oauth2-integration")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	// Caddy's own log goes to a file, so that a failing test's output is
	// its assertions; the file is kept and named when a test fails.
	logs, err := os.MkdirTemp("", "oauth2-integration-log")
	if err != nil {
		panic(err)
	}
	caddyLog = filepath.Join(logs, "caddy.log")
	os.Setenv("OAUTH2_CADDY_LOG", caddyLog)
	code := m.Run()
	pgtest.StopShared()
	os.RemoveAll(dir)
	if code != 0 {
		fmt.Printf("Caddy's log, with the config of each failed test: %s\n", caddyLog)
	} else {
		os.RemoveAll(logs)
	}
	os.Exit(code)
}

// caddyLog is the file Caddy's log goes to (set by TestMain).
var caddyLog string

// base is the address of the test site.
const base = "http://localhost:9080"

// globalOptions must open every config: caddytest finds its Caddy on the
// admin port, and a config without it would move the admin endpoint away.
// A test that reads Caddy's log replaces defaultLog with its own.
const globalOptions = `{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	persist_config off
` + defaultLog + `}
`

// defaultLog sends Caddy's log to the file TestMain names.
const defaultLog = `	log {
		output file {$OAUTH2_CADDY_LOG}
	}
`

// withLog is globalOptions with Caddy's log at DEBUG in path, and more
// global options.
func withLog(path, global string) string {
	return strings.Replace(globalOptions, defaultLog, "\tlog {\n\t\toutput file "+path+"\n\t\tlevel DEBUG\n\t}\n\t"+global+"\n", 1)
}

// site is a config serving one oauth2_server block at base, with a
// trivial upstream behind it.
func site(block string) string {
	return globalOptions + base + " {\n" + block + "\n\trespond \"upstream\" 200\n}\n"
}

// start loads config into the shared in-process Caddy.
func start(t *testing.T, config string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(quiet{t})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	settle()
	return tester
}

// quiet is a test whose config dump by caddytest, when the test fails, goes
// to Caddy's log instead of the test's output.
type quiet struct{ testing.TB }

func (q quiet) Logf(format string, args ...any) {
	if !strings.HasPrefix(format, "----------- failed with config") {
		q.TB.Logf(format, args...)
		return
	}
	if f, err := os.OpenFile(caddyLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		fmt.Fprintf(f, "%s: "+format+"\n", append([]any{q.Name()}, args...)...)
		f.Close()
	}
	q.TB.Logf("the config is in %s", caddyLog)
}

// settle waits until the previous config's server no longer takes
// connections. A reload starts the new server, then shuts the old one down
// in the background; both accept on the same listener for a moment, and
// with the tests' grace_period of 1ns the old one closes what it accepted
// unanswered (a client sees EOF or a reset). Caddy behaves so by design: an
// operator's grace period would let the old server answer. Three answered
// requests in a row, each on a new connection, are taken as the sign that
// the old server is gone.
func settle() {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	answered := 0
	for deadline := time.Now().Add(2 * time.Second); answered < 3 && time.Now().Before(deadline); {
		resp, err := client.Get("http://127.0.0.1:9080/.well-known/settle")
		if err != nil {
			answered = 0
			time.Sleep(10 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered++
	}
}

func get(t *testing.T, tester *caddytest.Tester, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, tester, req)
}

func do(t *testing.T, tester *caddytest.Tester, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := tester.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// noNullsOrEmptyStrings fails if a JSON document holds null or "" anywhere.
func noNullsOrEmptyStrings(t *testing.T, name string, body []byte) {
	t.Helper()
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", name, err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case nil:
			t.Errorf("%s: %s is null", name, path)
		case string:
			if v == "" {
				t.Errorf("%s: %s is an empty string", name, path)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]any:
			for k, e := range v {
				walk(path+"."+k, e)
			}
		}
	}
	walk("$", doc)
}
