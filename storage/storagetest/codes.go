package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func testRedeemAuthorizationCodeExactlyOnce(t *testing.T, open Opener) {
	s := open(t).ForIssuer(testIssuer)
	ctx := context.Background()
	code := "code-" + strings.Repeat("x", 40)
	if err := s.SaveAuthorizationCode(ctx, code, &storage.AuthorizationCode{
		ClientID: "c1", Subject: "alice", Resource: "https://r.test", IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}); err != nil {
		t.Fatal(err)
	}

	RedeemRace(t, []storage.Store{s}, code, 20, t0.Add(time.Minute), false)

	// A replay reports what the winning redemption issued.
	c, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(2*time.Minute), storage.Issuance{AccessTokenID: "late"}, nil)
	if !errors.Is(err, storage.ErrAlreadyUsed) || c == nil || !strings.HasPrefix(c.Issued.AccessTokenID, "jti-") {
		t.Fatalf("replay = %+v, %v", c, err)
	}
	// Expired codes are gone, used or not.
	if _, err := s.GetAuthorizationCode(ctx, code, t0.Add(10*time.Minute)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("expired code: %v", err)
	}
	if _, err := s.RedeemAuthorizationCode(ctx, "unknown", t0, storage.Issuance{}, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("unknown code: %v", err)
	}
}

// RedeemRace redeems one code n times at once, the attempts spread over
// stores (one per node sharing the storage), and fails t unless exactly
// one wins and every other is told ErrAlreadyUsed. Attempt i issues the
// access token "jti-<i>" and, withFamily, starts the family "fam-<i>".
func RedeemRace(t *testing.T, stores []storage.Store, code string, n int, at time.Time, withFamily bool) {
	t.Helper()
	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var fam *storage.NewRefreshFamily
			if withFamily {
				fam = &storage.NewRefreshFamily{
					Family: storage.RefreshFamily{ID: fmt.Sprint("fam-", i), ClientID: "c1", Subject: "alice", CreatedAt: at, ExpiresAt: at.Add(time.Hour)},
					Token:  fmt.Sprint("rt-", i), First: storage.RefreshToken{ExpiresAt: at.Add(time.Hour)},
				}
			}
			_, err := stores[i%len(stores)].RedeemAuthorizationCode(context.Background(), code, at, storage.Issuance{AccessTokenID: fmt.Sprint("jti-", i)}, fam)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, storage.ErrAlreadyUsed):
				used.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || used.Load() != int32(n-1) {
		t.Fatalf("%d redemptions won and %d were told the code was used, want 1 and %d", wins.Load(), used.Load(), n-1)
	}
}
