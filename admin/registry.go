// Package admin is how an operator runs the authorization server: the
// Caddy admin API module admin.api.oauth2_server (routes under /oauth2/)
// and the `caddy oauth2` command, which talks to it (or, with --storage,
// opens a storage file itself). It reaches the running servers through a
// small registry the oauth2_server handler fills at provision and empties
// at cleanup.
package admin

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-oauth2/caddy-oauth2-server/endpoints"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// Site is one running authorization server.
type Site struct {
	Server      *endpoints.Server
	File        storage.Backend
	StoragePath string
	seq         uint64
}

var registry struct {
	mu    sync.Mutex
	seq   uint64
	sites map[*Site]bool
}

// Register makes a server known to the admin API; call the returned
// function at cleanup.
func Register(s Site) (unregister func()) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if registry.sites == nil {
		registry.sites = map[*Site]bool{}
	}
	registry.seq++
	s.seq = registry.seq
	site := &s
	registry.sites[site] = true
	return func() {
		registry.mu.Lock()
		defer registry.mu.Unlock()
		delete(registry.sites, site)
	}
}

// sites are the running servers by issuer: during a reload the new
// config's server (registered last) stands for its issuer.
func sites() []*Site {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	byIssuer := map[string]*Site{}
	for s := range registry.sites {
		if old, ok := byIssuer[s.Server.Issuer()]; !ok || s.seq > old.seq {
			byIssuer[s.Server.Issuer()] = s
		}
	}
	out := make([]*Site, 0, len(byIssuer))
	for _, s := range byIssuer {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Site) int { return strings.Compare(a.Server.Issuer(), b.Server.Issuer()) })
	return out
}

// find is the server an issuer names, or the only one when issuer is "".
func find(all []*Site, issuer string) (*Site, error) {
	if issuer == "" {
		switch len(all) {
		case 0:
			return nil, apiError(http.StatusNotFound, "no oauth2_server is running")
		case 1:
			return all[0], nil
		}
		var names []string
		for _, s := range all {
			names = append(names, s.Server.Issuer())
		}
		return nil, apiError(http.StatusBadRequest, "several oauth2_server handlers run; choose one with issuer= (%s)", strings.Join(names, ", "))
	}
	for _, s := range all {
		if s.Server.Issuer() == issuer {
			return s, nil
		}
	}
	return nil, apiError(http.StatusNotFound, "no oauth2_server has the issuer %q", issuer)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}
