package endpoints

import (
	"context"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// lookupClient finds a client configured in the Caddyfile, then a
// registered one.
func (s *Server) lookupClient(ctx context.Context, id string) (*storage.Client, error) {
	if c, ok := s.staticClients[id]; ok {
		return c, nil
	}
	return s.cfg.Store.GetClient(ctx, id)
}

// confidential reports whether a client authenticates with a secret.
func confidential(c *storage.Client) bool {
	return len(c.SecretHash) > 0
}
