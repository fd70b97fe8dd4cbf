package postgres

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/storagetest"
)

const setIssuer = "https://auth.test"

// queryCounter counts the revocation lookups a node makes in the database.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) observe(op string, _ time.Duration) {
	if op == "access_token_revoked" {
		q.n.Add(1)
	}
}

// TestRevokedSetFollowsEveryNode: every kind of revocation committed at
// node A (an access token, a family, reuse detection, a grant, a user, a
// deleted client, a sweep) is in node B's memory within moments, and B
// answers from it without a query, exactly as the query would.
func TestRevokedSetFollowsEveryNode(t *testing.T) {
	a := openSchema(t)
	var queries queryCounter
	b, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: a.schema, Observe: queries.observe})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sa, sb := a.ForIssuer(setIssuer).(*issuerStore), b.ForIssuer(setIssuer).(*issuerStore)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	family := func(id, sub, client string) {
		storagetest.StartFamily(t, sa, storage.RefreshFamily{ID: id, ClientID: client, Subject: sub, Resource: "https://api.test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
			id+"-rt", storage.RefreshToken{ExpiresAt: now.Add(time.Hour)})
	}
	family("f-fam", "carol", "c1")
	family("f-reuse", "dave", "c1")
	family("f-grant", "alice", "c1")
	family("f-client", "erin", "c3")
	if err := sa.PutClient(ctx, &storage.Client{ID: "c4", ExpiresAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	family("f-swept", "frank", "c4")

	issued := now.Add(-time.Minute) // before the revocations
	cases := []struct {
		name    string
		ref     storage.AccessTokenRef
		revoked bool
	}{
		{"revoked jti", storage.AccessTokenRef{ID: "jti-1", ClientID: "c9", Subject: "zed", IssuedAt: issued}, true},
		{"another jti", storage.AccessTokenRef{ID: "jti-2", ClientID: "c9", Subject: "zed", IssuedAt: issued}, false},
		{"revoked family", storage.AccessTokenRef{ID: "j", FamilyID: "f-fam", ClientID: "c1", Subject: "carol", IssuedAt: issued}, true},
		{"reused family", storage.AccessTokenRef{ID: "j", FamilyID: "f-reuse", ClientID: "c1", Subject: "dave", IssuedAt: issued}, true},
		{"grant", storage.AccessTokenRef{ID: "j", ClientID: "c1", Subject: "alice", Resource: "https://api.test", IssuedAt: issued}, true},
		{"grant, issued after", storage.AccessTokenRef{ID: "j", ClientID: "c1", Subject: "alice", Resource: "https://api.test", IssuedAt: now.Add(time.Minute)}, false},
		{"grant, another resource", storage.AccessTokenRef{ID: "j", ClientID: "c1", Subject: "alice", Resource: "https://other.test", IssuedAt: issued}, false},
		{"user", storage.AccessTokenRef{ID: "j", ClientID: "c2", Subject: "bob", IssuedAt: issued}, true},
		{"another user", storage.AccessTokenRef{ID: "j", ClientID: "c2", Subject: "bobby", IssuedAt: issued}, false},
		{"deleted client", storage.AccessTokenRef{ID: "j", ClientID: "c3", Subject: "anyone", IssuedAt: issued}, true},
		{"deleted client's family", storage.AccessTokenRef{ID: "j", FamilyID: "f-client", ClientID: "c3", Subject: "erin", IssuedAt: now.Add(time.Minute)}, true},
		{"swept client's family", storage.AccessTokenRef{ID: "j", FamilyID: "f-swept", ClientID: "c4", Subject: "frank", IssuedAt: now.Add(time.Minute)}, true},
		{"untouched", storage.AccessTokenRef{ID: "j", FamilyID: "f-none", ClientID: "c1", Subject: "carol", IssuedAt: issued}, false},
	}

	// B has loaded the (empty) set, and answers from memory.
	for _, tc := range cases {
		if got, err := sb.AccessTokenRevoked(ctx, tc.ref); err != nil || got {
			t.Fatalf("%s before any revocation: %v %v", tc.name, got, err)
		}
	}
	if n := queries.n.Load(); n != 0 {
		t.Fatalf("B queried the database %d times for revocations", n)
	}

	start := time.Now()
	if err := sa.RevokeAccessToken(ctx, "jti-1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := sa.RevokeRefreshFamily(ctx, "f-fam", now); err != nil {
		t.Fatal(err)
	}
	next := storage.RefreshToken{ExpiresAt: now.Add(time.Hour)}
	if _, _, err := sa.RotateRefreshToken(ctx, storage.Rotation{Presented: "f-reuse-rt", ClientID: "c1", NextToken: "f-reuse-2", Next: next, Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sa.RotateRefreshToken(ctx, storage.Rotation{Presented: "f-reuse-rt", ClientID: "c1", NextToken: "f-reuse-3", Next: next, Now: time.Now()}); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("presenting the parent again: %v, want reuse", err)
	}
	if n, err := sa.RevokeGrants(ctx, storage.GrantFilter{Subject: "alice", ClientID: "c1", Resource: "https://api.test"}, now, now.Add(time.Hour)); err != nil || len(n) != 1 {
		t.Fatalf("revoking alice's grant: %d %v", len(n), err)
	}
	if _, err := sa.RevokeGrants(ctx, storage.GrantFilter{Subject: "bob"}, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.DeleteClient(ctx, "c3", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeleteExpired(ctx, now); err != nil { // revokes c4's family, and asks every node to reload
		t.Fatal(err)
	}

	// B follows: the last revocation reaches it within moments.
	last := cases[len(cases)-2].ref
	for revoked, _ := sb.revoked.revoked(setIssuer, last); !revoked; revoked, _ = sb.revoked.revoked(setIssuer, last) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("B's set never heard of the sweep")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("nine revocations at A were in B's memory after %v", time.Since(start))
	for _, tc := range cases {
		mem, err := sb.AccessTokenRevoked(ctx, tc.ref)
		if err != nil || mem != tc.revoked {
			t.Errorf("%s: B answers revoked=%v (%v), want %v", tc.name, mem, err, tc.revoked)
		}
		if own, _ := sa.AccessTokenRevoked(ctx, tc.ref); own != tc.revoked {
			t.Errorf("%s: A answers revoked=%v from its own commits, want %v", tc.name, own, tc.revoked)
		}
		if sql, err := sb.revokedInDatabase(ctx, tc.ref); err != nil || sql != mem {
			t.Errorf("%s: the database says revoked=%v (%v), B's memory %v", tc.name, sql, err, mem)
		}
	}
	if n := queries.n.Load(); n != int64(len(cases)) { // the comparisons' own queries only
		t.Errorf("B made %d revocation queries, want %d", n-int64(len(cases)), 0)
	}

	// The sweep forgets what expired, in the database and in memory.
	later := now.Add(2 * time.Hour)
	for _, db := range []*DB{a, b} {
		if _, err := db.DeleteExpired(ctx, later); err != nil {
			t.Fatal(err)
		}
	}
	sb.revoked.mu.RLock()
	n := len(sb.revoked.ids) + len(sb.revoked.scoped)
	sb.revoked.mu.RUnlock()
	if n != 0 {
		t.Errorf("B keeps %d expired revocations after the sweep", n)
	}
}

// TestRevokedSetAfterReconnect: while the listener is down a node asks
// the database; a revocation whose notice it missed is in its set once
// it reconnects.
func TestRevokedSetAfterReconnect(t *testing.T) {
	pgtest.Need(t, cluster)
	var queries queryCounter
	db, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: cluster.Schema(t), Observe: queries.observe})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := db.ForIssuer(setIssuer).(*issuerStore)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cluster.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// A revocation whose notice never came (written behind the node's
	// back): the set does not have it, the database does.
	if _, err := conn.Exec(ctx, "INSERT INTO "+db.schema+".revoked_access_tokens (jti, expires_at) VALUES ('missed', now() + interval '1 hour')"); err != nil {
		t.Fatal(err)
	}
	ref := storage.AccessTokenRef{ID: "missed"}
	if revoked, _ := s.AccessTokenRevoked(ctx, ref); revoked || queries.n.Load() != 0 {
		t.Fatalf("before the reconnect: revoked %v after %d queries; want an answer from memory", revoked, queries.n.Load())
	}

	var dropped int
	if err := conn.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
		listenerName(db.schema)).Scan(&dropped); err != nil || dropped != 1 {
		t.Fatalf("terminated %d listeners (%v)", dropped, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for db.listener.connected.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never noticed it was dropped")
		}
		time.Sleep(time.Millisecond)
	}
	// Lost: asked in the database (or, reconnected already, from memory
	// loaded anew); either way revoked.
	if revoked, err := s.AccessTokenRevoked(ctx, ref); err != nil || !revoked {
		t.Fatalf("while reconnecting: revoked %v %v", revoked, err)
	}
	for !db.listener.connected.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the listener never reconnected")
		}
		time.Sleep(time.Millisecond)
	}
	queries.n.Store(0)
	if revoked, _ := s.AccessTokenRevoked(ctx, ref); !revoked || queries.n.Load() != 0 {
		t.Fatalf("after the reconnect: revoked %v after %d queries; want revoked, from memory", revoked, queries.n.Load())
	}
}

// TestRevokedSetWhileDisconnected: a node whose listener is down never
// answers from its set (it may have missed a notice).
func TestRevokedSetWhileDisconnected(t *testing.T) {
	var queries queryCounter
	pgtest.Need(t, cluster)
	db, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: cluster.Schema(t), Observe: queries.observe})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.listener.stop()
	db.listener.setConnected(false)
	s := db.ForIssuer(setIssuer)
	if _, err := s.AccessTokenRevoked(context.Background(), storage.AccessTokenRef{ID: "x"}); err != nil || queries.n.Load() != 1 {
		t.Fatalf("%d queries (%v), want 1", queries.n.Load(), err)
	}
}

// TestForgedNotices: a role that may only connect can send notices on
// the revocation channel (PostgreSQL checks no privilege on NOTIFY). A
// notice naming a revocation the database does not hold changes nothing;
// one that re-dates a real revocation does not shorten it; a stream of
// malformed notices costs at most one reload a second.
func TestForgedNotices(t *testing.T) {
	a := openSchema(t)
	b := secondNode(t, a)
	ctx := context.Background()
	sa, sb := a.ForIssuer(setIssuer).(*issuerStore), b.ForIssuer(setIssuer).(*issuerStore)

	// mallory may connect and nothing else.
	admin, err := pgx.Connect(ctx, cluster.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := "mallory_" + a.schema
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'mallory'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	cfg, err := pgx.ParseConfig(cluster.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User, cfg.Password = role, "mallory"
	mallory, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close(ctx)
	if _, err := mallory.Exec(ctx, "SELECT count(*) FROM "+a.schema+".token_revocations"); err == nil {
		t.Fatal("mallory can read the schema: the test role has more than CONNECT")
	}
	forge := func(payload string) {
		t.Helper()
		if _, err := mallory.Exec(ctx, "SELECT pg_notify($1, $2)", a.channel, payload); err != nil {
			t.Fatalf("NOTIFY as mallory: %v", err)
		}
	}
	// heard waits until B has applied a real revocation committed at A
	// after the forged notices: notices arrive in order.
	marker := 0
	heard := func() {
		t.Helper()
		marker++
		jti := "marker-" + strconv.Itoa(marker)
		if err := sa.RevokeAccessToken(ctx, jti, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			if revoked, _ := sb.revoked.revoked(setIssuer, storage.AccessTokenRef{ID: jti}); revoked {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("B never heard the marker")
			}
		}
	}
	now := time.Now()
	bobLater := storage.AccessTokenRef{ID: "j", ClientID: "c1", Subject: "bob", IssuedAt: now.Add(time.Minute)}

	// (a) Every token of bob, later ones included, with no row behind it.
	forge(`{"k":"sub","iss":"` + setIssuer + `","sub":"bob","at":"2999-01-01T00:00:00Z","exp":"2999-01-01T00:00:00Z"}`)
	forge(`{"k":"jti","id":"innocent","exp":"2999-01-01T00:00:00Z"}`)
	heard()
	for _, ref := range []storage.AccessTokenRef{bobLater, {ID: "innocent"}} {
		if revoked, err := sb.AccessTokenRevoked(ctx, ref); err != nil || revoked {
			t.Errorf("%+v after forged notices: revoked %v (%v)", ref, revoked, err)
		}
	}

	// (b) A real revocation re-dated into the past, then swept at B.
	storagetest.StartFamily(t, sa, storage.RefreshFamily{ID: "f-real", ClientID: "c1", Subject: "carol", Resource: "https://api.test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		"f-real-rt", storage.RefreshToken{ExpiresAt: now.Add(time.Hour)})
	storagetest.StartFamily(t, sa, storage.RefreshFamily{ID: "f-dave", ClientID: "c1", Subject: "dave", Resource: "https://api.test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		"f-dave-rt", storage.RefreshToken{ExpiresAt: now.Add(time.Hour)})
	if err := sa.RevokeRefreshFamily(ctx, "f-real", now); err != nil {
		t.Fatal(err)
	}
	if n, err := sa.RevokeGrants(ctx, storage.GrantFilter{Subject: "dave", ClientID: "c1", Resource: "https://api.test"}, now, now.Add(time.Hour)); err != nil || len(n) != 1 {
		t.Fatalf("revoking dave's grant: %d %v", len(n), err)
	}
	heard()
	past := now.Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	forge(`{"k":"family","iss":"` + setIssuer + `","id":"f-real","exp":"` + past + `"}`)
	forge(`{"k":"grant","iss":"` + setIssuer + `","sub":"dave","cid":"c1","res":"https://api.test","at":"` + past + `","exp":"` + past + `"}`)
	heard()
	if _, err := b.DeleteExpired(ctx, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	b.revoked.prune(now.Add(time.Minute))
	for _, ref := range []storage.AccessTokenRef{
		{ID: "j2", FamilyID: "f-real", ClientID: "c1", Subject: "carol", IssuedAt: now.Add(-time.Minute)},
		{ID: "j3", ClientID: "c1", Subject: "dave", Resource: "https://api.test", IssuedAt: now.Add(-time.Minute)},
	} {
		mem, err := sb.AccessTokenRevoked(ctx, ref)
		sql, _ := sb.revokedInDatabase(ctx, ref)
		if err != nil || !mem || !sql {
			t.Errorf("%+v after re-dating notices and a sweep: memory %v (%v), database %v; want both revoked", ref, mem, err, sql)
		}
	}

	// (c) A stream of malformed and reload notices: at most one reload a
	// second, and B stays current.
	before := b.listener.reloaded.Load()
	start := time.Now()
	for i := range 300 {
		if i%2 == 0 {
			forge("not json " + strconv.Itoa(i))
		} else {
			forge(`{"k":"reload"}`)
		}
	}
	heard()
	time.Sleep(reloadInterval + 200*time.Millisecond) // the pending reload happens
	elapsed := time.Since(start)
	reloads := b.listener.reloaded.Load() - before
	if max := int64(elapsed/reloadInterval) + 1; reloads < 1 || reloads > max {
		t.Errorf("%d reloads in %v for 300 notices, want between 1 and %d", reloads, elapsed, max)
	}
	if !b.listener.connected.Load() {
		t.Error("B's listener dropped its connection")
	}
}
