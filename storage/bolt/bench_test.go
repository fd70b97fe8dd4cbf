package bolt

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// The ceilings the storage rows of bench/perf.sh are measured against,
// the storage cost of a refresh family, and writes during a sweep:
//
//	go test ./storage/bolt -run '^$' -bench 'Ceiling|StoragePerFamily' -benchmem
//	go test ./storage/bolt -run '^$' -bench SweepWhileWriting -benchtime 1000000x

// BenchmarkCeilingUpdate: one writer, one small durable commit (bbolt
// Update with fsync): the floor of a lone client's rotation.
func BenchmarkCeilingUpdate(b *testing.B) {
	f := openBench(b)
	value := make([]byte, 200)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := f.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "k%d", i), value)
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCeilingGroupCommit: 32 writers, one small write each, through
// the group commit: the most commits/s 32 rotating clients could get.
func BenchmarkCeilingGroupCommit(b *testing.B) {
	f := openBench(b)
	value := make([]byte, 200)
	var n atomic.Int64
	b.SetParallelism(16) // × GOMAXPROCS (2) = 32 writers
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := fmt.Appendf(nil, "k%d", n.Add(1))
			if err := f.writes.do(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, value) }); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

// BenchmarkCeilingRotations: 32 writers rotating refresh tokens of 64
// families through the store alone (no HTTP, no signing): the most
// rotations/s the file gives 32 clients. A rotation rewrites three
// records on random pages (the family, the presented token, its
// successor), so its commits write more pages than the one small write
// of BenchmarkCeilingGroupCommit.
func BenchmarkCeilingRotations(b *testing.B) {
	f := openBench(b)
	s := f.ForIssuer("https://auth.example.com")
	ctx := context.Background()
	now := time.Now()
	tokens := make([]string, 64)
	for i := range tokens {
		code, fam := rand.Text(), &storage.NewRefreshFamily{
			Family: storage.RefreshFamily{ID: rand.Text()[:22], ClientID: "c", Subject: "alice", Scope: "mcp:read",
				Resource: "https://mcp.example.com/mcp", CreatedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour)},
			Token: rand.Text(),
			First: storage.RefreshToken{Scope: "mcp:read", Resource: "https://mcp.example.com/mcp", IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)},
		}
		if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{ClientID: "c", ExpiresAt: now.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		if _, err := s.RedeemAuthorizationCode(ctx, code, now, storage.Issuance{}, fam); err != nil {
			b.Fatal(err)
		}
		tokens[i] = fam.Token
	}
	var next atomic.Int64
	writes := pageWrites(f)
	b.SetParallelism(16) // × GOMAXPROCS (2) = 32 writers
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		token := tokens[next.Add(1)-1]
		for pb.Next() {
			at, successor := time.Now(), rand.Text()
			if _, _, err := s.RotateRefreshToken(ctx, storage.Rotation{Presented: token, ClientID: "c", NextToken: successor,
				Next: storage.RefreshToken{IssuedAt: at, ExpiresAt: at.Add(time.Hour)}, Now: at}); err != nil {
				b.Error(err)
				return
			}
			token = successor
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rotations/s")
	b.ReportMetric(float64(pageWrites(f)-writes)/float64(b.N), "page-writes/op")
}

// BenchmarkStoragePerFamily: the file's growth per refresh family (the
// family, its first refresh token and indexes, as the token endpoint
// writes them, with ids as it makes them; the code is swept), over
// -benchtime families of 1,000 users on 10 clients.
func BenchmarkStoragePerFamily(b *testing.B) {
	f := openBench(b)
	s := f.ForIssuer("https://auth.example.com")
	ctx := context.Background()
	before := fileSize(b, f)
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		client, subject := fmt.Sprintf("hJ3kP0x9QbW2mN5vR8tY%02d", i%10), fmt.Sprintf("corp:u%04d@example.com", i%1000)
		code := rand.Text()
		if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{
			ClientID: client, RedirectURI: "http://127.0.0.1:33418/callback", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
			Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp", Subject: subject,
			Profile: storage.Profile{Provider: "corp", Email: "alice@example.com", Name: "Alice"}, AuthTime: now, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		}); err != nil {
			b.Fatal(err)
		}
		fam := &storage.NewRefreshFamily{
			Family: storage.RefreshFamily{ID: storage.NewRefreshFamilyID(time.Now()), ClientID: client, Subject: subject,
				Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp", CreatedAt: now, ExpiresAt: now.Add(90 * 24 * time.Hour),
				Profile: storage.Profile{Provider: "corp", Email: "alice@example.com", Name: "Alice"}, AuthTime: now},
			Token: rand.Text(),
			First: storage.RefreshToken{Scope: "mcp:read mcp:write", Resource: "https://mcp.example.com/mcp", IssuedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour)},
		}
		if _, err := s.RedeemAuthorizationCode(ctx, code, now, storage.Issuance{AccessTokenID: rand.Text()[:22], AccessTokenExpiresAt: now.Add(time.Hour),
			RefreshFamilyID: fam.Family.ID}, fam); err != nil {
			b.Fatal(err)
		}
	}
	// The codes are swept ten minutes later; what stays is the family's.
	if _, err := f.DeleteExpired(ctx, now.Add(11*time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fileSize(b, f)-before)/float64(b.N), "bytes/family")
}

// pageWrites is how many pages the file's commits have written.
func pageWrites(f *File) int64 {
	stats := f.db.Stats()
	return stats.TxStats.GetWrite()
}

func openBench(b *testing.B) *File {
	f, err := Open(b.TempDir() + "/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// fileSize is the data the file holds: its pages up to the high-water
// mark less the free ones, and less those the last commits freed, which
// the next write reuses (bbolt grows the file itself in large steps,
// ahead of what it holds).
func fileSize(b *testing.B, f *File) int64 {
	var size int64
	if err := f.db.View(func(tx *bbolt.Tx) error {
		stats := f.db.Stats()
		size = tx.Size() - int64(stats.FreePageN+stats.PendingPageN)*int64(f.db.Info().PageSize)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return size
}

// BenchmarkSweepWhileWriting: a sweep of -benchtime refresh tokens (e.g.
// 1000000x) while a writer keeps writing. In all-expired every token has
// expired (keyed in order, as the earlier figures were measured); in
// one-in-ten-expired one token in ten has, and the tokens are keyed by
// SHA-256 hashes as real ones are, so the expired ones are spread over the
// whole bucket. Reports how long writes waited on average, the longest
// any waited and how many waited more than 20 ms (the sweep deletes in
// steps, so writes interleave), and the same for the same writes with no
// sweep, for as long as the sweep took: what the disk's slowest commits
// cost alone.
func BenchmarkSweepWhileWriting(b *testing.B) {
	b.Run("all-expired", func(b *testing.B) { benchSweep(b, 1) })
	b.Run("one-in-ten-expired", func(b *testing.B) { benchSweep(b, 10) })
}

// benchSweep sweeps b.N refresh tokens, one in every of them expired.
func benchSweep(b *testing.B, every int) {
	f := openBench(b)
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	for done := 0; done < b.N; {
		err := f.db.Update(func(tx *bbolt.Tx) error {
			for end := min(done+100_000, b.N); done < end; done++ {
				key := fmt.Appendf(nil, "rt-%020d", done)
				token := storage.RefreshToken{FamilyID: "fam", Resource: "https://mcp.example.com/mcp", ExpiresAt: past}
				if every > 1 {
					key = []byte(storage.Hash(string(key)))
					if done%every != 0 {
						token.ExpiresAt = future
					}
				}
				if err := putRefreshToken(tx, key, &token, &storage.RefreshFamily{}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	var n int
	var err error
	during := writeWhile(b, f, func() {
		var swept storage.Swept
		swept, err = f.DeleteExpired(context.Background(), time.Now())
		n = swept.Deleted
	})
	took := time.Since(start)
	b.StopTimer()
	if want := (b.N + every - 1) / every; err != nil || n != want {
		b.Fatalf("swept %d of %d: %v", n, want, err)
	}
	alone := writeWhile(b, f, func() { time.Sleep(took) })
	b.ReportMetric(during.mean(), "mean-write-ms")
	b.ReportMetric(alone.mean(), "mean-write-ms-alone")
	b.ReportMetric(float64(during.longest.Microseconds())/1000, "max-write-ms")
	b.ReportMetric(float64(during.slow), "writes-over-20ms")
	b.ReportMetric(float64(alone.longest.Microseconds())/1000, "max-write-ms-alone")
	b.ReportMetric(float64(alone.slow), "writes-over-20ms-alone")
	b.ReportMetric(float64(during.writes), "writes")
}

// waits are the writes writeWhile made: how many, how long they took
// together, the longest, and how many took more than 20 ms.
type waits struct {
	writes, slow   int
	total, longest time.Duration
}

// mean is the average write, in ms.
func (w waits) mean() float64 {
	return float64(w.total.Microseconds()) / 1000 / float64(max(w.writes, 1))
}

// writeWhile keeps writing small records to f while during runs.
func writeWhile(b *testing.B, f *File, during func()) (w waits) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		value := make([]byte, 200)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if err := f.writes.do(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(fmt.Appendf(nil, "w%d", i), value) }); err != nil {
				b.Error(err)
				return
			}
			took := time.Since(start)
			w.writes++
			w.total += took
			w.longest = max(w.longest, took)
			if took > 20*time.Millisecond {
				w.slow++
			}
		}
	})
	during()
	close(stop)
	wg.Wait()
	return w
}
