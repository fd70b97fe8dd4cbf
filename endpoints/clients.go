package endpoints

import (
	"context"
	"fmt"
	"net/url"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// lookupClient finds a client configured in the Caddyfile, then a
// registered one (including the clients of metadata documents seen at
// the authorization endpoint). It never fetches anything.
func (s *Server) lookupClient(ctx context.Context, id string) (*storage.Client, error) {
	if c, ok := s.staticClients[id]; ok {
		return c, nil
	}
	return s.cfg.Store.GetClient(ctx, id)
}

// resolveClient is lookupClient for the authorization endpoint: an https
// client_id is (re)fetched as a client ID metadata document when its
// cached copy is stale, and kept in storage for the token endpoint.
func (s *Server) resolveClient(ctx context.Context, id string) (*storage.Client, error) {
	if _, static := s.staticClients[id]; static || s.fetcher == nil || !isMetadataDocumentURL(id) {
		return s.lookupClient(ctx, id)
	}
	c, cached, err := s.fetchMetadataClient(ctx, id)
	switch {
	case err != nil:
		s.metrics.metadataFetches.WithLabelValues("refused").Inc()
		return nil, err
	case cached:
		s.metrics.metadataFetches.WithLabelValues("cached").Inc()
	default:
		s.metrics.metadataFetches.WithLabelValues("fetched").Inc()
	}
	if err := s.cfg.Store.PutClient(ctx, c); err != nil {
		return nil, fmt.Errorf("storing the client: %v", err)
	}
	return c, nil
}

// documentHost is the host publishing a client's metadata document, or ""
// for a registered or configured client.
func documentHost(c *storage.Client) string {
	if !isMetadataDocumentURL(c.ID) {
		return ""
	}
	u, err := url.Parse(c.ID)
	if err != nil {
		return ""
	}
	return u.Host
}

// confidential reports whether a client authenticates with a secret.
func confidential(c *storage.Client) bool {
	return len(c.SecretHash) > 0
}
