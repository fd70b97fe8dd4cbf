package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
	"github.com/go-jose/go-jose/v4"
)

// TestAdminAPI exercises every route against a running Caddy, a subtest
// per route.
func TestAdminAPI(t *testing.T) {
	flowServer(t, dcr)
	alice := signedIn(t)
	tokens := tokensFor(t, alice, nil)

	t.Run("servers", func(t *testing.T) {
		status, body := adminCall(t, http.MethodGet, "", nil)
		var servers []map[string]any
		json.Unmarshal(body, &servers)
		if status != 200 || len(servers) != 1 || servers[0]["issuer"] != base || servers[0]["live_grants"].(float64) < 1 || servers[0]["storage"] == "" {
			t.Fatalf("GET /oauth2/: %d %s", status, body)
		}
	})
	t.Run("clients", func(t *testing.T) {
		// Clients: a machine client, its secret once.
		status, body := adminCall(t, http.MethodPost, "clients", map[string]any{"client_name": "Nightly job", "grant_types": []string{"client_credentials"}, "scope": "mcp:read"})
		var machine map[string]any
		json.Unmarshal(body, &machine)
		secret, _ := machine["client_secret"].(string)
		if status != http.StatusCreated || secret == "" || machine["origin"] != "admin" {
			t.Fatalf("POST clients: %d %s", status, body)
		}
		id := machine["client_id"].(string)
		resp, cc := tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth(id, secret))
		if resp.StatusCode != 200 {
			t.Fatalf("the created client's token: %d %v", resp.StatusCode, cc)
		}
		status, body = adminCall(t, http.MethodGet, "clients", nil)
		if status != 200 || !strings.Contains(string(body), `"client_id": "pub1"`) || !strings.Contains(string(body), `"origin": "caddyfile"`) ||
			!strings.Contains(string(body), id) || strings.Contains(string(body), secret) || strings.Contains(string(body), "secret_hash") || strings.Contains(string(body), `"client_secret"`) {
			t.Fatalf("GET clients: %d %s", status, body)
		}
		status, body = adminCall(t, http.MethodDelete, "clients/pub1", nil)
		wantStatus(t, "delete a Caddyfile client", status, body, http.StatusConflict)
		status, body = adminCall(t, http.MethodDelete, "clients/nobody", nil)
		wantStatus(t, "delete an unknown client", status, body, http.StatusNotFound)
		status, body = adminCall(t, http.MethodPost, "clients", map[string]any{"client_name": "x", "grant_types": []string{"implicit"}})
		wantStatus(t, "bad client", status, body, http.StatusBadRequest)
		// A client with keys, and what is refused of keys.
		key := newClientKey(t)
		status, body = adminCall(t, http.MethodPost, "clients", map[string]any{"client_name": "Agent", "grant_types": []string{"client_credentials"}, "jwks": json.RawMessage(key.jwks(t))})
		var agent map[string]any
		json.Unmarshal(body, &agent)
		if status != http.StatusCreated || agent["client_secret"] != nil || agent["token_endpoint_auth_method"] != "private_key_jwt" || agent["jwks"] == nil {
			t.Fatalf("POST a client with keys: %d %s", status, body)
		}
		if resp, body := tokenRequest(t, key.assertionForm(t, agent["client_id"].(string))); resp.StatusCode != 200 {
			t.Fatalf("the client with keys: %d %v", resp.StatusCode, body)
		}
		for name, extra := range map[string]map[string]any{
			"jwks and jwks_uri":  {"jwks": json.RawMessage(key.jwks(t)), "jwks_uri": "https://agent.test/jwks.json"},
			"a private key":      {"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.private}}}},
			"keys with a secret": {"jwks": json.RawMessage(key.jwks(t)), "token_endpoint_auth_method": "client_secret_basic"},
		} {
			req := map[string]any{"client_name": "x", "grant_types": []string{"client_credentials"}}
			maps.Copy(req, extra)
			status, body = adminCall(t, http.MethodPost, "clients", req)
			wantStatus(t, name, status, body, http.StatusBadRequest)
		}
		req, _ := http.NewRequest(http.MethodPost, adminBase+"clients", strings.NewReader("{"))
		if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("bad JSON: %d", resp.StatusCode)
		}
		status, body = adminCall(t, http.MethodDelete, "clients/"+id, nil)
		wantStatus(t, "delete the created client", status, body, http.StatusNoContent)
		if p := callAPI(t, cc["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the deleted client's token: %d", p.resp.StatusCode)
		}
	})
	t.Run("grants and inspection", func(t *testing.T) {
		// Grants of alice, then revoked.
		status, body := adminCall(t, http.MethodGet, "grants?user=alice", nil)
		var grants []map[string]any
		json.Unmarshal(body, &grants)
		if status != 200 || len(grants) != 1 || grants[0]["client_id"] != "pub1" || grants[0]["client_name"] != "Public One" || grants[0]["refresh_tokens"].(float64) != 1 {
			t.Fatalf("GET grants: %d %s", status, body)
		}
		status, body = adminCall(t, http.MethodGet, "tokens/inspect", nil)
		wantStatus(t, "inspect with GET", status, body, http.StatusMethodNotAllowed)
		status, body = adminCall(t, http.MethodPost, "tokens/inspect", map[string]string{"token": tokens["access_token"].(string)})
		if status != 200 || !strings.Contains(string(body), `"valid": true`) || !strings.Contains(string(body), grants[0]["id"].(string)) {
			t.Fatalf("inspect: %d %s", status, body)
		}
		status, body = adminCall(t, http.MethodDelete, "grants/"+grants[0]["id"].(string), nil)
		if status != 200 || !strings.Contains(string(body), `"revoked": 1`) {
			t.Fatalf("DELETE grant: %d %s", status, body)
		}
		if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the revoked grant's access token: %d", p.resp.StatusCode)
		}
		if resp, body := tokenRequest(t, refreshForm(tokens["refresh_token"].(string))); resp.StatusCode != 400 {
			t.Errorf("the revoked grant's refresh token: %d %v", resp.StatusCode, body)
		}
		status, body = adminCall(t, http.MethodPost, "tokens/inspect", map[string]string{"token": tokens["access_token"].(string)})
		if !strings.Contains(string(body), `"valid": false`) || !strings.Contains(string(body), "revoked") {
			t.Errorf("inspect after revocation: %s", body)
		}
		// The next authorization asks for consent again.
		if p := alice.get(authorizeQuery(newPKCE(), nil)); p.field("request_id") == "" {
			t.Errorf("consent is still remembered: %d", p.resp.StatusCode)
		}
		status, body = adminCall(t, http.MethodDelete, "grants?client=pub2", nil)
		wantStatus(t, "revoke a client's grants (none)", status, body, http.StatusOK)
		status, body = adminCall(t, http.MethodDelete, "grants", nil)
		wantStatus(t, "revoke everything", status, body, http.StatusBadRequest)
	})
	t.Run("keys", func(t *testing.T) {
		// Keys and rotation.
		status, body := adminCall(t, http.MethodGet, "keys", nil)
		if status != 200 || !strings.Contains(string(body), `"signing": true`) || strings.Contains(string(body), "pkcs8") || strings.Contains(string(body), `"d":`) {
			t.Fatalf("GET keys: %d %s", status, body)
		}
		status, body = adminCall(t, http.MethodPost, "keys/rotate", nil)
		var next map[string]any
		json.Unmarshal(body, &next)
		if status != 200 || next["kid"] == nil {
			t.Fatalf("rotate: %d %s", status, body)
		}
		if jwks := newBrowser(t).get("/.well-known/jwks.json").body; !strings.Contains(jwks, next["kid"].(string)) {
			t.Errorf("the new key is not published: %s", jwks)
		}
		status, body = adminCall(t, http.MethodPost, "keys/rotate", nil)
		wantStatus(t, "rotate while a rotation is pending (it replaces the pending key)", status, body, http.StatusOK)
	})
	t.Run("backup and export", func(t *testing.T) {
		// Backup and export stream.
		status, body := adminCall(t, http.MethodGet, "backup", nil)
		if status != 200 || len(body) < 4096 {
			t.Fatalf("backup: %d, %d bytes", status, len(body))
		}
		status, body = adminCall(t, http.MethodGet, "export", nil)
		if status != 200 || !strings.Contains(string(body), `"type":"refresh_family"`) {
			t.Fatalf("export: %d %s", status, body)
		}
	})
	t.Run("unknown routes and issuers", func(t *testing.T) {
		status, body := adminCall(t, http.MethodGet, "nope", nil)
		wantStatus(t, "unknown route", status, body, http.StatusNotFound)
		status, body = adminCall(t, http.MethodGet, "clients?issuer=https://other.test", nil)
		wantStatus(t, "unknown issuer", status, body, http.StatusNotFound)
	})
}

// TestAdminAmbiguousIssuer: with two servers, issuer= is required.
func TestAdminAmbiguousIssuer(t *testing.T) {
	dir := t.TempDir()
	block := func(origin string) string {
		return origin + " {\n\toauth2_server {\n\t\tissuer " + origin + "\n\t\tresource " + origin + "/mcp\n\t\tstorage " + filepath.Join(dir, "shared.db") + "\n\t}\n\trespond ok\n}\n"
	}
	start(t, globalOptions+block(siteA)+block(siteB))
	status, body := adminCall(t, http.MethodGet, "clients", nil)
	if status != http.StatusBadRequest || !strings.Contains(string(body), "several oauth2_server handlers run") {
		t.Fatalf("ambiguous: %d %s", status, body)
	}
	if status, body := adminCall(t, http.MethodGet, "clients?issuer="+url.QueryEscape(siteB), nil); status != 200 {
		t.Fatalf("with issuer: %d %s", status, body)
	}
	out, err := caddyCLI(t, "", "oauth2", "clients", "--address", "localhost:2999")
	if err == nil || !strings.Contains(out, "several oauth2_server handlers run") {
		t.Fatalf("CLI without --issuer: %v %s", err, out)
	}
	out, err = caddyCLI(t, "", "oauth2", "servers", "--address", "localhost:2999")
	if err != nil || !strings.Contains(out, siteA) || !strings.Contains(out, siteB) || !strings.Contains(out, "ISSUER") {
		t.Fatalf("CLI servers: %v %s", err, out)
	}
}

// TestCLI runs every `caddy oauth2` command against the running Caddy,
// then against the storage file with Caddy stopped.
func TestCLI(t *testing.T) {
	storagePath, _ := flowServer(t, "")
	tokens := tokensFor(t, signedIn(t), nil)
	cli := func(args ...string) string {
		t.Helper()
		out, err := caddyCLI(t, "", append([]string{"oauth2"}, append(args, "--address", "localhost:2999")...)...)
		if err != nil {
			t.Fatalf("caddy oauth2 %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	if out := cli("clients"); !strings.Contains(out, "CLIENT_ID") || !strings.Contains(out, "pub1") || !strings.Contains(out, "caddyfile") {
		t.Errorf("clients: %s", out)
	}
	out := cli("clients", "add", "--name", "CI job", "--grant-type", "client_credentials", "--scope", "mcp:read", "--json")
	var added map[string]any
	if err := json.Unmarshal([]byte(out), &added); err != nil || added["client_secret"] == nil {
		t.Fatalf("clients add --json: %s", out)
	}
	if resp, _ := tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth(added["client_id"].(string), added["client_secret"].(string))); resp.StatusCode != 200 {
		t.Errorf("the client the CLI created: %d", resp.StatusCode)
	}
	// A client with keys: no secret; it gets tokens with assertions, each
	// once.
	key := newClientKey(t)
	jwksPath := filepath.Join(t.TempDir(), "agent.jwks.json")
	if err := os.WriteFile(jwksPath, key.jwks(t), 0o600); err != nil {
		t.Fatal(err)
	}
	out = cli("clients", "add", "--name", "Agent", "--grant-type", "client_credentials", "--jwks-file", jwksPath, "--json")
	var agent map[string]any
	if err := json.Unmarshal([]byte(out), &agent); err != nil || agent["client_secret"] != nil {
		t.Fatalf("clients add --jwks-file --json: %s", out)
	}
	form := key.assertionForm(t, agent["client_id"].(string))
	if resp, body := tokenRequest(t, form); resp.StatusCode != 200 {
		t.Errorf("the client with keys: %d %v", resp.StatusCode, body)
	}
	if resp, body := tokenRequest(t, form); resp.StatusCode != 401 || body["error_description"] != "client_assertion: this assertion (its jti) was used before" {
		t.Errorf("its assertion again: %d %v", resp.StatusCode, body)
	}
	if out := cli("clients"); !strings.Contains(out, agent["client_id"].(string)) || !strings.Contains(out, "private_key_jwt") {
		t.Errorf("clients after adding one with keys: %s", out)
	}
	if out := cli("grants", "--user", "alice"); !strings.Contains(out, "alice") || !strings.Contains(out, "Public One (pub1)") {
		t.Errorf("grants: %s", out)
	}
	if out := cli("keys"); !strings.Contains(out, "ES256") || !strings.Contains(out, "true") {
		t.Errorf("keys: %s", out)
	}
	if out, err := caddyCLI(t, tokens["access_token"].(string), "oauth2", "inspect", "-", "--address", "localhost:2999"); err != nil || !strings.Contains(out, "true") || !strings.Contains(out, "access_token") {
		t.Errorf("inspect -: %v %s", err, out)
	}
	exportPath := filepath.Join(t.TempDir(), "export.jsonl")
	cli("export", exportPath)
	if out := cli("clients", "delete", added["client_id"].(string)); !strings.Contains(out, "deleted") {
		t.Errorf("clients delete: %s", out)
	}
	if out, err := caddyCLI(t, "", "oauth2", "keys", "retire", "-AbC", "--address", "localhost:2999"); err == nil || !strings.Contains(out, `unknown shorthand flag: 'A' in -AbC (an argument that starts with "-" goes after "--", as in: caddy oauth2 keys retire -- -AbC)`) {
		t.Errorf("an argument that looks like a flag: %v %s", err, out)
	}
	if out, err := caddyCLI(t, "", "oauth2", "keys", "retire", "--address", "localhost:2999", "--", "-AbC"); err == nil || strings.Contains(out, "flag") || !strings.Contains(out, "not found (HTTP 404)") {
		t.Errorf("an argument after --: %v %s", err, out)
	}
	if out, err := caddyCLI(t, "", "oauth2", "clients", "delete", "pub1", "--address", "localhost:2999"); err == nil || !strings.Contains(out, "configured in the Caddyfile") || strings.Count(strings.TrimSpace(out), "\n") > 1 {
		t.Errorf("deleting a Caddyfile client: %v %q", err, out)
	}
	if out := cli("revoke", "--user", "alice"); !strings.Contains(out, "revoked 1: the grants of user alice (refresh tokens, live access tokens, remembered consent)") {
		t.Errorf("revoke --user: %s", out)
	}
	if out, err := caddyCLI(t, "", "oauth2", "clients", "--address", "localhost:1"); err == nil ||
		!strings.Contains(out, "reaching Caddy's admin API at localhost:1:") || !strings.Contains(out, "is Caddy running? Name its admin address with --address or its config with --config") {
		t.Errorf("an unreachable admin API: %v %s", err, out)
	}
	// --config names the running config: only the answer is printed.
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	os.WriteFile(cfg, []byte("{\n\tadmin localhost:2999\n}\nhttp://localhost:9999 {\n\trespond   ok\n}\n"), 0o600)
	if out, err := caddyCLI(t, "", "oauth2", "servers", "--config", cfg); err != nil || strings.Contains(out, `"level"`) || !strings.Contains(out, base) {
		t.Errorf("--config: %v %s", err, out)
	}
	if out, err := caddyCLI(t, "", "oauth2", "revoke", "--address", "localhost:2999"); err == nil || !strings.Contains(out, "exactly one") {
		t.Errorf("revoke without a target: %v %s", err, out)
	}
	if out := cli("keys", "rotate"); !strings.Contains(out, "NEW KID") {
		t.Errorf("keys rotate: %s", out)
	}

	cli("clients", "add", "--name", "Kept", "--grant-type", "client_credentials")

	// Offline: another config lets go of the file; the CLI opens it.
	flowServer(t, "")
	off := func(args ...string) (string, error) {
		return caddyCLI(t, "", append([]string{"oauth2"}, append(args, "--storage", storagePath, "--issuer", base)...)...)
	}
	if out, err := off("clients"); err != nil || !strings.Contains(out, "Kept") || !strings.Contains(out, "admin") {
		t.Errorf("offline clients: %v %s", err, out)
	}
	if out, err := off("grants"); err != nil || !strings.Contains(out, "ID") {
		t.Errorf("offline grants: %v %s", err, out)
	}
	if out, err := off("keys"); err != nil || !strings.Contains(out, "ES256") {
		t.Errorf("offline keys: %v %s", err, out)
	}
	if out, err := off("import", exportPath); err == nil || !strings.Contains(out, "use client_credentials: import with --keep-privileges") {
		t.Errorf("offline import of a machine client without --keep-privileges: %v %s", err, out)
	}
	if out, err := off("import", exportPath, "--keep-privileges"); err == nil || !strings.Contains(out, "differs") {
		t.Errorf("offline import over changed records: %v %s", err, out)
	}
	// One issuer in the file: --issuer is not needed.
	if out, err := caddyCLI(t, "", "oauth2", "clients", "--storage", storagePath); err != nil || !strings.Contains(out, "Kept") {
		t.Errorf("offline without issuer: %v %s", err, out)
	}
	// Two: the error lists them.
	two, err := bolt.Open(storagePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := two.ForIssuer("https://other.example").PutClient(context.Background(), &storage.Client{ID: "o", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	two.Close()
	if out, err := caddyCLI(t, "", "oauth2", "clients", "--storage", storagePath); err == nil ||
		!strings.Contains(out, "the file holds several authorization servers; name one with --issuer: "+base+", https://other.example") {
		t.Errorf("offline without issuer, two issuers: %v %s", err, out)
	}
}

// TestBackupDuringRefreshBurst: the CLI's backup, taken while refreshes
// run, opens, is consistent and holds every token issued before it began.
func TestBackupDuringRefreshBurst(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	const clients = 8
	current := make([]string, clients)
	for i := range current {
		current[i] = tokensFor(t, b, nil)["refresh_token"].(string)
	}
	before := append([]string(nil), current...)
	var mu sync.Mutex
	var stop atomic.Bool
	var wg sync.WaitGroup
	var rotations atomic.Int32
	for i := range clients {
		wg.Go(func() {
			for !stop.Load() {
				mu.Lock()
				rt := current[i]
				mu.Unlock()
				p := newBrowser(t).post("/oauth/token", refreshForm(rt))
				if p.resp.StatusCode != 200 {
					t.Errorf("refresh: %d %s", p.resp.StatusCode, p.body)
					return
				}
				mu.Lock()
				current[i] = jsonField(t, p.body, "refresh_token")
				mu.Unlock()
				rotations.Add(1)
			}
		})
	}
	for rotations.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	out, err := caddyCLI(t, "", "oauth2", "backup", path, "--address", "localhost:2999")
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v %s", err, out)
	}
	t.Logf("%d rotations around the backup", rotations.Load())
	s, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("opening the backup: %v", err)
	}
	defer s.Close()
	if err := s.CheckConsistency(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, rt := range before {
		if _, _, err := s.ForIssuer(base).GetRefreshToken(context.Background(), rt, time.Now()); err != nil {
			t.Errorf("client %d: a refresh token issued before the backup is missing: %v", i, err)
		}
	}
}

// TestExportImportIntoEmptyFile: an export imported into a new file gives
// a server where every client and grant works.
func TestExportImportIntoEmptyFile(t *testing.T) {
	flowServer(t, dcr)
	_, reg := registerJSON(t, `{"client_name":"Exported","redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`)
	regID := reg["client_id"].(string)
	b := signedIn(t)
	pub := tokensFor(t, b, nil)
	mine := tokensFor(t, b, map[string]string{"client_id": regID}, "client_id", regID)
	exportPath := filepath.Join(t.TempDir(), "export.jsonl")
	if out, err := caddyCLI(t, "", "oauth2", "export", exportPath, "--address", "localhost:2999"); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	flowServer(t, dcr) // a new, empty storage file
	out, err := caddyCLI(t, "", "oauth2", "import", exportPath, "--address", "localhost:2999")
	if err != nil || !strings.Contains(out, "IMPORTED") || !strings.Contains(out, "1 session") {
		t.Fatalf("import: %v %s", err, out)
	}
	for name, form := range map[string]url.Values{
		"Caddyfile client":  refreshForm(pub["refresh_token"].(string)),
		"registered client": refreshForm(mine["refresh_token"].(string), "client_id", regID),
	} {
		if resp, body := tokenRequest(t, form); resp.StatusCode != 200 {
			t.Errorf("%s's refresh token after the import: %d %v", name, resp.StatusCode, body)
		}
	}
	// The session was left out: alice signs in again; her consent came
	// along, so there is no consent screen.
	if p := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": regID})); p.resp.StatusCode != http.StatusSeeOther || p.location().Path != "/oauth/login" {
		t.Fatalf("an imported session signed alice in: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	b.signIn("alice", alicePassword)
	codeFrom(t, b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": regID})), "https://client.test/cb", "xyz")
}

// TestImportIsUntrusted: an import is held to registration's rules: a
// client with a javascript: redirect URI is refused, a trusted one needs
// --keep-privileges, imported clients are labelled imported, and sessions,
// pending consents and codes are left out.
func TestImportIsUntrusted(t *testing.T) {
	flowServer(t, dcr)
	dir := t.TempDir()
	now := time.Now()
	write := func(name string, recs ...storage.ExportRecord) string {
		var buf strings.Builder
		for _, r := range recs {
			line, _ := json.Marshal(r)
			buf.Write(line)
			buf.WriteByte('\n')
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(buf.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	client := func(c storage.Client) storage.ExportRecord {
		c.Issuer = base
		raw, _ := json.Marshal(c)
		return storage.ExportRecord{Type: storage.ExportClient, Record: raw}
	}
	hashed := func(typ, secret string, v any) storage.ExportRecord {
		raw, _ := json.Marshal(v)
		return storage.ExportRecord{Type: typ, Hash: storage.Hash(secret), Record: raw}
	}
	evil := client(storage.Client{ID: "evil", Name: "Evil", RedirectURIs: []string{"javascript:alert(document.cookie)//"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", Trusted: true, IntrospectAll: true, CreatedAt: now})
	trusted := client(storage.Client{ID: "first-party", Name: "First party", RedirectURIs: []string{"https://app.test/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none", Trusted: true, CreatedAt: now, Origin: storage.OriginAdmin})
	session := hashed(storage.ExportSession, "bobs-cookie-0123456789", storage.Session{Issuer: base, Subject: "bob", AuthTime: now, ExpiresAt: now.Add(time.Hour)})

	evilPath := write("evil.jsonl", evil, session)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"javascript: redirect, trusted": {[]string{evilPath}, `client "evil": it is trusted (skips consent): import with --keep-privileges if you mean it`},
		"javascript: redirect, kept":    {[]string{evilPath, "--keep-privileges"}, `client "evil": redirect URI "javascript:alert(document.cookie)//": scheme "javascript" is not allowed`},
		"trusted, no flag":              {[]string{write("trusted.jsonl", trusted)}, "it is trusted (skips consent): import with --keep-privileges if you mean it"},
	} {
		out, err := caddyCLI(t, "", append([]string{"oauth2", "import", "--address", "localhost:2999"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v %s", name, err, out)
		}
	}
	if _, body := adminCall(t, http.MethodGet, "clients", nil); strings.Contains(string(body), "evil") || strings.Contains(string(body), "first-party") {
		t.Fatalf("a refused import stored a client: %s", body)
	}

	ok := write("ok.jsonl", trusted, session)
	out, err := caddyCLI(t, "", "oauth2", "import", ok, "--keep-privileges", "--address", "localhost:2999")
	if err != nil || !strings.Contains(out, "1 session") {
		t.Fatalf("import with --keep-privileges: %v %s", err, out)
	}
	_, body := adminCall(t, http.MethodGet, "clients", nil)
	var clients []map[string]any
	json.Unmarshal(body, &clients)
	found := false
	for _, c := range clients {
		if c["client_id"] == "first-party" {
			found = c["origin"] == "imported" && c["trusted"] == true
		}
	}
	if !found {
		t.Fatalf("the imported client: %s", body)
	}
	// bob's session was left out: his cookie signs nobody in.
	b := newBrowser(t)
	b.client.Jar.SetCookies(&url.URL{Scheme: "http", Host: "localhost:9080"}, []*http.Cookie{{Name: "oauth2_session", Value: "bobs-cookie-0123456789", Path: "/"}})
	p := b.get(authorizeQuery(newPKCE(), map[string]string{"client_id": "first-party", "redirect_uri": "https://app.test/cb"}))
	if p.resp.StatusCode != http.StatusSeeOther || p.location().Path != "/oauth/login" {
		t.Fatalf("an imported session was honoured: %d %v", p.resp.StatusCode, p.resp.Header)
	}
	// The same import again adds nothing and is no conflict.
	if out, err := caddyCLI(t, "", "oauth2", "import", ok, "--keep-privileges", "--address", "localhost:2999"); err != nil || !strings.Contains(out, "0 ") {
		t.Fatalf("the same import again: %v %s", err, out)
	}
}

// TestKeyRotationUnderLoad: tokens issued and used continuously across a
// rotation are never refused; the new key signs after the prepublish time.
func TestKeyRotationUnderLoad(t *testing.T) {
	flowServer(t, `signing_key_prepublish 1s
		client machine {
			secret machine-secret-0123456789
			grant_types client_credentials
		}`)
	var stop atomic.Bool
	var refused, calls atomic.Int32
	kids := sync.Map{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			var old []string
			for !stop.Load() {
				resp, body := tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}, "Authorization", basicAuth("machine", "machine-secret-0123456789"))
				if resp.StatusCode != 200 {
					refused.Add(1)
					continue
				}
				tok := body["access_token"].(string)
				kids.Store(tokenKID(tok), true)
				old = append(old, tok)
				for _, t2 := range []string{tok, old[0]} { // a new token, and the oldest one
					calls.Add(1)
					if p := callAPI(t, t2, "/mcp"); p.resp.StatusCode != 200 {
						refused.Add(1)
					}
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	status, body := adminCall(t, http.MethodPost, "keys/rotate", nil)
	if status != 200 {
		t.Fatalf("rotate: %d %s", status, body)
	}
	time.Sleep(1800 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	n := 0
	kids.Range(func(any, any) bool { n++; return true })
	t.Logf("%d guard calls across the rotation, %d refused, %d signing keys seen", calls.Load(), refused.Load(), n)
	if refused.Load() != 0 {
		t.Fatalf("%d refusals across the rotation", refused.Load())
	}
	if n != 2 {
		t.Fatalf("%d signing keys signed tokens, want the old and the new", n)
	}
}

// tokenKID is the kid of a JWT's header.
func tokenKID(tok string) string {
	head, _, _ := strings.Cut(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(head)
	var h struct{ Kid string }
	json.Unmarshal(raw, &h)
	return h.Kid
}

// TestScheduledKeyRotation: signing_key_rotation rotates by itself, and
// the next key is published before it signs.
func TestScheduledKeyRotation(t *testing.T) {
	_, logPath := flowServer(t, "signing_key_rotation 1s\n signing_key_prepublish 400ms")
	first := newBrowser(t).get("/.well-known/jwks.json").body
	if strings.Count(first, `"kid"`) != 1 {
		t.Fatalf("the JWKS before any rotation: %s", first)
	}
	// The key set published is what counts (the admin API reads the
	// storage, which a rotation writes a moment before the node reloads).
	deadline := time.Now().Add(10 * time.Second)
	for {
		jwks := newBrowser(t).get("/.well-known/jwks.json").body
		if strings.Count(jwks, `"kid"`) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the JWKS does not publish a second key after 10s: %s", jwks)
		}
		time.Sleep(100 * time.Millisecond)
	}
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), `"event":"key_rotated"`) || !strings.Contains(string(logs), `"by":"schedule"`) {
		t.Error("no key_rotated audit event by the schedule")
	}
}

// TestReauthorizationWithinTheSecond: after the operator revokes alice's
// grants, an authorization she completes within the same second gives a
// token the guard and tokens/inspect accept (a token's iat has whole
// seconds; the revocation has not).
func TestReauthorizationWithinTheSecond(t *testing.T) {
	flowServer(t, "")
	b := signedIn(t)
	old := tokensFor(t, b, nil)
	for attempt := 0; ; attempt++ {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
		revokedAt := time.Now()
		status, body := adminCall(t, http.MethodDelete, "grants?user=alice", nil)
		if status != http.StatusOK {
			t.Fatalf("DELETE grants?user=alice: %d %s", status, body)
		}
		fresh := tokensFor(t, b, nil)
		claims := verifyAccessToken(t, fresh["access_token"].(string))
		if int64(claims["iat"].(float64)) != revokedAt.Unix() {
			if attempt == 3 {
				t.Fatal("the re-authorization never completed within the revocation's second")
			}
			continue
		}
		if p := callAPI(t, fresh["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
			t.Fatalf("the new token at the guard: %d %s", p.resp.StatusCode, p.body)
		}
		status, body = adminCall(t, http.MethodPost, "tokens/inspect", map[string]string{"token": fresh["access_token"].(string)})
		if status != http.StatusOK || !strings.Contains(string(body), `"valid": true`) {
			t.Fatalf("tokens/inspect of the new token: %d %s", status, body)
		}
		if p := callAPI(t, old["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the token issued before the revocation: %d", p.resp.StatusCode)
		}
		return
	}
}

// TestKeyRotationForASuspectKey: with a scheduled rotation pending, the
// operator rotates anyway (the pending key is replaced), rotates at once
// (--now), and retires the old key: what it signed is refused at once,
// even a token the guard had already verified. The key that signs cannot
// be retired.
func TestKeyRotationForASuspectKey(t *testing.T) {
	flowServer(t, "signing_key_rotation 1h\n signing_key_prepublish 1h")
	// Key ids are base64url thumbprints: one in 64 starts with "-", so
	// they go after "--", and the flags before it.
	cli := func(args ...string) (string, error) {
		flags := []string{"--address", "localhost:2999"}
		if i := slices.Index(args, "--"); i >= 0 {
			args = append(append(slices.Clone(args[:i]), flags...), args[i:]...)
		} else {
			args = append(args, flags...)
		}
		return caddyCLI(t, "", append([]string{"oauth2"}, args...)...)
	}
	b := signedIn(t)
	tokens := tokensFor(t, b, nil)
	oldKID := tokenKID(tokens["access_token"].(string))
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("the token before: %d", p.resp.StatusCode)
	}
	// A rotation pending (as a schedule would leave one), then another.
	if out, err := cli("keys", "rotate"); err != nil {
		t.Fatalf("keys rotate: %v %s", err, out)
	}
	out, err := cli("keys", "rotate")
	if err != nil || !strings.Contains(out, "NEW KID") {
		t.Fatalf("keys rotate while a rotation is pending: %v %s", err, out)
	}
	_, body := adminCall(t, http.MethodGet, "keys", nil)
	var keys []map[string]any
	if json.Unmarshal(body, &keys); len(keys) != 2 {
		t.Fatalf("the pending key was not replaced: %s", body)
	}
	// At once: new tokens carry the new key.
	if out, err := cli("keys", "rotate", "--now"); err != nil {
		t.Fatalf("keys rotate --now: %v %s", err, out)
	}
	fresh := tokensFor(t, b, nil)
	newKID := tokenKID(fresh["access_token"].(string))
	if newKID == oldKID {
		t.Fatal("a token after rotate --now is signed by the old key")
	}
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("a token of the old key after rotate --now (it verifies until its tokens expire): %d", p.resp.StatusCode)
	}
	if out, err := cli("keys", "retire", "--", newKID); err == nil || !strings.Contains(out, "the key signs now: rotate first") {
		t.Errorf("retiring the signing key: %v %s", err, out)
	}
	if out, err := cli("keys", "retire", "--", oldKID); err != nil || !strings.Contains(out, "retired "+oldKID) {
		t.Fatalf("keys retire: %v %s", err, out)
	}
	if p := callAPI(t, tokens["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a token of the retired key: %d", p.resp.StatusCode)
	}
	if p := callAPI(t, fresh["access_token"].(string), "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Errorf("a token of the new key: %d", p.resp.StatusCode)
	}
	if jwks := newBrowser(t).get("/.well-known/jwks.json").body; strings.Contains(jwks, oldKID) {
		t.Errorf("the JWKS still publishes the retired key: %s", jwks)
	}
	if out, err := cli("keys", "retire", "no-such-kid"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("retiring an unknown key: %v %s", err, out)
	}
}

// TestDeletedClientLosesItsTokens: deleting a client revokes what it holds, at the guard's next
// request.
func TestDeletedClientLosesItsTokens(t *testing.T) {
	flowServer(t, dcr+`
		client rs {
			secret rs-secret-0123456789abcdef
			grant_types client_credentials
			introspect
		}`)
	_, out := registerJSON(t, `{"redirect_uris":["https://client.test/cb"],"token_endpoint_auth_method":"none"}`)
	id := out["client_id"].(string)
	tokens := tokensFor(t, signedIn(t), map[string]string{"client_id": id}, "client_id", id)
	access, refresh := tokens["access_token"].(string), tokens["refresh_token"].(string)
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusOK {
		t.Fatalf("before delete: %d", p.resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodDelete, out["registration_client_uri"].(string), nil)
	req.Header.Set("Authorization", "Bearer "+out["registration_access_token"].(string))
	if p := newBrowser(t).do(req); p.resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", p.resp.StatusCode, p.body)
	}
	if p := callAPI(t, access, "/mcp"); p.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(p.body, "revoked") {
		t.Fatalf("the deleted client's access token at the guard: %d %s", p.resp.StatusCode, p.body)
	}
	for name, tok := range map[string]string{"access": access, "refresh": refresh} {
		p := newBrowser(t).post("/oauth/introspect", url.Values{"token": {tok}}, "Authorization", basicAuth("rs", "rs-secret-0123456789abcdef"))
		if p.body != `{"active":false}` {
			t.Errorf("introspection of the deleted client's %s token: %s", name, p.body)
		}
	}
}
