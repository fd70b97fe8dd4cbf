package storage

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// DefaultSweepInterval is how often expired records are deleted by default.
const DefaultSweepInterval = 10 * time.Minute

// Expirer deletes expired records: a Store, or a whole storage file.
type Expirer interface {
	DeleteExpired(ctx context.Context, now time.Time) (int, error)
}

// Sweep deletes expired records every interval (DefaultSweepInterval when
// 0) until ctx ends, logging failures.
func Sweep(ctx context.Context, s Expirer, interval time.Duration, logger *zap.Logger) {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			n, err := s.DeleteExpired(ctx, now)
			if err != nil {
				logger.Error("sweeping expired records", zap.Error(err))
				continue
			}
			logger.Debug("swept expired records", zap.Int("deleted", n))
		}
	}
}
