package endpoints

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
	"github.com/go-jose/go-jose/v4"
)

// Benchmarks of the token endpoint through its HTTP handler, with a real
// bbolt file (fsync on) and ES256 signing:
//
//	go test ./endpoints -run '^$' -bench 'Exchange|Refresh' -benchmem

func benchServer(b testing.TB, store ...storage.Store) *Server {
	return newTestServer(b, func(c *Config) {
		if len(store) == 1 {
			c.Storage.Store = store[0]
		}
		c.Tokens.RefreshTokenLifetime = 24 * time.Hour
		c.Tokens.RefreshFamilyLifetime = 90 * 24 * time.Hour
		c.Tokens.RefreshReuseGrace = 30 * time.Second
		c.Clients.Static[0].GrantTypes = []string{"authorization_code", "refresh_token"}
		key, err := GenerateSigningKey(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if c.Signing.Keys, err = NewKeySet([]storage.SigningKey{*key}, time.Now()); err != nil {
			b.Fatal(err)
		}
	})
}

func postToken(s *Server, form url.Values) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.token(w, r)
	return w
}

const benchVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
const benchChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

func saveCode(b testing.TB, s *Server) string {
	code := randomToken()
	now := time.Now()
	err := s.cfg.Storage.Store.SaveAuthorizationCode(context.Background(), code, &storage.AuthorizationCode{
		ClientID: "pub1", RedirectURI: "https://client.test/cb", CodeChallenge: benchChallenge, Scope: "mcp:read",
		Resource: "https://auth.test/mcp", Subject: "alice", AuthTime: now, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	return code
}

func exchange(b testing.TB, s *Server, code string) string {
	w := postToken(s, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {benchVerifier},
		"client_id": {"pub1"}, "redirect_uri": {"https://client.test/cb"}})
	if w.Code != http.StatusOK {
		b.Fatalf("exchange: %d %s", w.Code, w.Body)
	}
	var resp tokenResponse
	json.Unmarshal(w.Body.Bytes(), &resp)
	return resp.RefreshToken
}

func refresh(b testing.TB, s *Server, token string) string {
	w := postToken(s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"pub1"}})
	if w.Code != http.StatusOK {
		b.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	var resp tokenResponse
	json.Unmarshal(w.Body.Bytes(), &resp)
	return resp.RefreshToken
}

// BenchmarkAuthorizationCodeExchange: redeem a code for an access token and
// a new refresh family.
func BenchmarkAuthorizationCodeExchange(b *testing.B) {
	s := benchServer(b)
	codes := make([]string, b.N)
	for i := range codes {
		codes[i] = saveCode(b, s)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		exchange(b, s, codes[i])
	}
}

// BenchmarkRefreshRotation: one client rotating its refresh token;
// reports the median latency too.
func BenchmarkRefreshRotation(b *testing.B) {
	s := benchServer(b)
	token := exchange(b, s, saveCode(b, s))
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		token = refresh(b, s, token)
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkCeilingES256Sign: the ECDSA P-256 signature alone, the floor
// of every ES256 token.
func BenchmarkCeilingES256Sign(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("the signing input of an access token"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshRotationParallel: 32 clients rotating at once, each its
// own family; reports rotations/s and the CPU time a rotation takes
// (this process's, user and system: the server's and the benchmark's
// own requests, not PostgreSQL's), which bounds rotations/s at the
// cores divided by it. On the bbolt file, on PostgreSQL (a
// throw-away cluster on this machine, fsync on), and on PostgreSQL with
// the clients spread over three servers with a pool each, as three nodes:
//
//	go test ./endpoints -run '^$' -bench RefreshRotationParallel -benchtime 5s
func BenchmarkRefreshRotationParallel(b *testing.B) {
	b.Run("bolt", func(b *testing.B) { benchRotations(b, []*Server{benchServer(b)}) })
	b.Run("postgres", func(b *testing.B) { benchRotations(b, postgresServers(b, 1)) })
	b.Run("postgres-3-nodes", func(b *testing.B) { benchRotations(b, postgresServers(b, 3)) })
}

// postgresServers are n servers of one issuer, each with its own
// connection pool on one new schema.
func postgresServers(b *testing.B, n int) []*Server {
	pg := pgtest.Shared(b)
	schema := pg.Schema(b)
	var servers []*Server
	for range n {
		db, err := postgres.Open(context.Background(), postgres.Config{DSN: pg.DSN, Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		servers = append(servers, benchServer(b, db.ForIssuer("https://auth.test")))
	}
	return servers
}

func benchRotations(b *testing.B, servers []*Server) {
	var families []string
	for i := range 64 {
		s := servers[i%len(servers)]
		families = append(families, exchange(b, s, saveCode(b, s)))
	}
	var next atomic.Int64
	b.SetParallelism(16) // × GOMAXPROCS (2 here) = 32 concurrent clients
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1) - 1
		s, token := servers[int(i)%len(servers)], families[i]
		for pb.Next() {
			token = refresh(b, s, token)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rotations/s")
	b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/rotation")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkClientCredentials: client_credentials tokens for a machine
// client with a secret (Basic; no storage write), and for one with keys
// (private_key_jwt: the assertion's signature verified and its jti
// recorded once, a write to the bbolt file); the assertions are signed
// before the clock starts, as the client's cost:
//
//	go test ./endpoints -run '^$' -bench ClientCredentials -benchmem
func BenchmarkClientCredentials(b *testing.B) {
	s := benchServer(b)
	s.staticClients["svc"] = &storage.Client{ID: "svc", SecretHash: storage.Hash("svc-secret-0123456789"), GrantTypes: []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic"}
	s.staticClients["kc"] = &storage.Client{ID: "kc", JWKS: publicSet(b, "ec", "rsa", "ed"), GrantTypes: []string{grantClientCredentials},
		TokenEndpointAuthMethod: "private_key_jwt"}
	b.Run("client_secret_basic", func(b *testing.B) {
		body := url.Values{"grant_type": {"client_credentials"}}.Encode()
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, "https://auth.test/oauth/token", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.SetBasicAuth("svc", "svc-secret-0123456789")
			w := httptest.NewRecorder()
			s.token(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	})
	for _, c := range []struct {
		key string
		alg jose.SignatureAlgorithm
	}{{"ec", jose.ES256}, {"ed", jose.EdDSA}, {"rsa", jose.RS256}} {
		b.Run("private_key_jwt-"+string(c.alg), func(b *testing.B) {
			forms := make([]url.Values, b.N)
			for i := range forms {
				forms[i] = assertionForm(assertion(b, c.key, c.alg, clientClaims("kc")))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if w := postToken(s, forms[i]); w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkJWTBearer: an enterprise identity provider's ID-JAG redeemed
// by a client with a secret (the provider's keys cached; the jti recorded
// once, a write to the bbolt file; a grant recorded the first time). Run
// with BenchmarkClientCredentials for the ratio:
//
//	go test ./endpoints -run '^$' -bench 'ClientCredentials|JWTBearer' -benchmem
func BenchmarkJWTBearer(b *testing.B) {
	idp := newStandInIdP(b)
	s, _ := idJAGServer(b, idp)
	forms := make([]url.Values, b.N)
	for i := range forms {
		forms[i] = jagForm(idp.idJAG(b, "m"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if w := postToken(s, forms[i]); w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
