package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres/pgtest"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/storagetest"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &cluster)) }

// secondNode opens another node on a's schema.
func secondNode(t *testing.T, a *DB) *DB {
	t.Helper()
	b, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: a.schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// openSchema opens a new, empty schema of the test cluster.
func openSchema(t *testing.T) *DB {
	t.Helper()
	pgtest.Need(t, cluster)
	db, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: cluster.Schema(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openSchema(t) })
}

// TestSchemaVersionGuard: a schema migrated by a newer build is refused
// and left alone.
func TestSchemaVersionGuard(t *testing.T) {
	pgtest.Need(t, cluster)
	schema := cluster.Schema(t)
	ctx := context.Background()
	db, err := Open(ctx, Config{DSN: cluster.DSN, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	conn, err := pgx.Connect(ctx, cluster.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE "+schema+".schema_version SET version = $1", SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Config{DSN: cluster.DSN, Schema: schema})
	if err == nil || !strings.Contains(err.Error(), "newer than this build understands") {
		t.Fatalf("opening a newer schema: %v", err)
	}
}

// TestDSNPasswordIsNotPrinted: a failing connection's error never shows
// the password.
func TestDSNPasswordIsNotPrinted(t *testing.T) {
	_, err := Open(context.Background(), Config{DSN: "postgres://oauth:s3cret-password@127.0.0.1:1/db?sslmode=disable&connect_timeout=2"})
	if err == nil || strings.Contains(err.Error(), "s3cret-password") {
		t.Fatalf("error %v", err)
	}
	_, err = Open(context.Background(), Config{DSN: "postgres://oauth:s3cret-password@[bad"})
	if err == nil || strings.Contains(err.Error(), "s3cret-password") {
		t.Fatalf("error %v", err)
	}
}

// TestTwoNodes: two connections to one schema behave as one store: one
// redemption of a code wins, strict rotation has one winner, and a
// revocation committed by one moves the other's revocation counter.
func TestTwoNodes(t *testing.T) {
	pgtest.Need(t, cluster)
	schema := cluster.Schema(t)
	ctx := context.Background()
	var nodes []storage.Store
	var dbs []*DB
	for range 2 {
		db, err := Open(ctx, Config{DSN: cluster.DSN, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
		nodes = append(nodes, db.ForIssuer("https://auth.test"))
	}
	now := time.Now()
	if err := nodes[0].SaveAuthorizationCode(ctx, "the-code", &storage.AuthorizationCode{ClientID: "c1", ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	storagetest.RedeemRace(t, nodes, "the-code", 40, now, true)
	storagetest.UseAssertionRace(t, nodes, "the-jti", 40, now)

	// A family's DPoP binding made at node 0 holds at node 1.
	storagetest.StartFamily(t, nodes[0], storage.RefreshFamily{ID: "bound", ClientID: "c1", Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour),
		JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, "bound-rt", storage.RefreshToken{ExpiresAt: now.Add(time.Hour)})
	if fam, _, err := nodes[1].RotateRefreshToken(ctx, storage.Rotation{Presented: "bound-rt", ClientID: "c1", NextToken: "bound-rt2",
		Next: storage.RefreshToken{ExpiresAt: now.Add(time.Hour)}, Now: time.Now(), StoreClock: true}); err != nil || fam.JKT != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
		t.Fatalf("the binding at node 1: %+v %v", fam, err)
	}
	var wg sync.WaitGroup

	// Strict rotation of one token from both nodes at once: one winner.
	storagetest.StartFamily(t, nodes[0], storage.RefreshFamily{ID: "strict", ClientID: "c1", Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		"strict-rt", storage.RefreshToken{ExpiresAt: now.Add(time.Hour)})
	var rotated, reused atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			_, _, err := nodes[i%2].RotateRefreshToken(ctx, storage.Rotation{Presented: "strict-rt", ClientID: "c1", NextToken: fmt.Sprint("next-", i),
				Next: storage.RefreshToken{ExpiresAt: now.Add(time.Hour)}, Now: time.Now(), StoreClock: true})
			switch {
			case err == nil:
				rotated.Add(1)
			case errors.Is(err, storage.ErrReused), errors.Is(err, storage.ErrRevoked):
				reused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if rotated.Load() != 1 || reused.Load() != 19 {
		t.Fatalf("strict rotation from two nodes: %d rotated, %d refused", rotated.Load(), reused.Load())
	}

	// The strict family's revocation reaches node 1 first, so that the
	// counter's next move is the revocation below.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if revoked, _ := nodes[1].AccessTokenRevoked(ctx, storage.AccessTokenRef{FamilyID: "strict"}); revoked {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("node 1 never heard of the strict family's revocation")
		}
	}
	// A revocation at node 0 reaches node 1's counter through NOTIFY.
	before := dbs[1].Revocations()
	start := time.Now()
	if err := nodes[0].RevokeAccessToken(ctx, "some-jti", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for dbs[1].Revocations() == before {
		if time.Since(start) > 5*time.Second {
			t.Fatal("node 1 never heard of the revocation")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("the revocation reached the other node after %s", time.Since(start))
	if revoked, _ := nodes[1].AccessTokenRevoked(ctx, storage.AccessTokenRef{ID: "some-jti"}); !revoked {
		t.Fatal("node 1 does not see the revocation")
	}
}

// TestCountEvents: events are counted per key over a sliding window on
// the database clock, by every node sharing the schema, and swept once
// they expire.
func TestCountEvents(t *testing.T) {
	a := openSchema(t)
	b := secondNode(t, a)
	ctx := context.Background()
	key, other := storage.Hash("login\x00user:alice"), storage.Hash("login\x00user:bob")
	for i, node := range []*DB{a, b, a} {
		n, err := node.CountEvents(ctx, key, time.Second, true)
		if err != nil || n != i+1 {
			t.Fatalf("event %d: count %d, %v", i+1, n, err)
		}
	}
	if n, err := b.CountEvents(ctx, key, time.Second, false); err != nil || n != 3 {
		t.Fatalf("count without recording: %d, %v; want 3", n, err)
	}
	if n, _ := b.CountEvents(ctx, other, time.Second, false); n != 0 {
		t.Fatalf("another key counts %d", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if n, _ := a.CountEvents(ctx, key, time.Second, false); n != 0 {
		t.Fatalf("events older than the window count: %d", n)
	}
	if _, err := a.DeleteExpired(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	var left int
	a.pool.QueryRow(ctx, "SELECT count(*) FROM rate_events").Scan(&left)
	if left != 0 {
		t.Fatalf("%d expired events left after the sweep", left)
	}
}

// TestNodesStartAtOnce: nodes opening one new schema at the same moment
// all start (CREATE SCHEMA IF NOT EXISTS alone races on the catalog).
func TestNodesStartAtOnce(t *testing.T) {
	pgtest.Need(t, cluster)
	for round := range 5 {
		schema := cluster.Schema(t)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				db, err := Open(context.Background(), Config{DSN: cluster.DSN, Schema: schema})
				if err == nil {
					db.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, node %d: %v", round, i, err)
			}
		}
	}
}
