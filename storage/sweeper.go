package storage

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// DefaultSweepInterval is how often expired records are deleted by default.
const DefaultSweepInterval = 10 * time.Minute

// Expirer deletes expired records. A Store's DeleteExpired sweeps its
// whole backend (every issuer it holds), as a backend's does.
type Expirer interface {
	// DeleteExpired removes every record that can no longer be used, and
	// revokes the families of clients removed as unused; it reports what
	// it did.
	DeleteExpired(ctx context.Context, now time.Time) (Swept, error)
}

// Swept is what one sweep did.
type Swept struct {
	// Deleted counts the expired records removed.
	Deleted int
	// Revoked are the refresh families revoked because their client was
	// removed as unused.
	Revoked []RefreshFamily
}

// Sweep deletes expired records every interval (DefaultSweepInterval when
// 0) until ctx ends, logging failures, and writes a family_revoked audit
// event (by "sweep") for each family a sweep revoked.
func Sweep(ctx context.Context, s Expirer, interval time.Duration, logger, audit *zap.Logger) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	if audit == nil {
		audit = zap.NewNop()
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			swept, err := s.DeleteExpired(ctx, now)
			for _, f := range swept.Revoked {
				audit.Info("family_revoked", zap.String("iss", f.Issuer), zap.String("client_id", f.ClientID), zap.String("family_id", f.ID),
					zap.String("sub", f.Subject), zap.String("by", "sweep"), zap.String("event", "family_revoked"))
			}
			if err != nil {
				logger.Error("sweeping expired records", zap.Error(err))
				continue
			}
			logger.Debug("swept expired records", zap.Int("deleted", swept.Deleted), zap.Int("families_revoked", len(swept.Revoked)))
		}
	}
}
