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

	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := s.RedeemAuthorizationCode(ctx, code, t0.Add(time.Minute), storage.Issuance{AccessTokenID: fmt.Sprint("jti-", i)}, nil)
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
	if wins.Load() != 1 || used.Load() != 19 {
		t.Fatalf("wins=%d used=%d, want 1 and 19", wins.Load(), used.Load())
	}

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
