package bolt

import (
	"fmt"
	"path/filepath"
	"regexp"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func init() {
	caddy.RegisterModule(Module{})
}

// Module is the embedded storage (the default): one bbolt file, locked by
// one process, shared by the sites of that process that name it and
// across config reloads.
type Module struct {
	// The bbolt file. Default: `oauth2_server/<issuer>.db` in Caddy's data
	// directory. Placeholders such as {env.X} are resolved at load.
	Path string `json:"path,omitempty"`

	key string
}

// CaddyModule returns the Caddy module information.
func (Module) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oauth2_server.storage.bolt", New: func() caddy.Module { return new(Module) }}
}

// Provision resolves the path's placeholders.
func (m *Module) Provision(caddy.Context) error {
	if m.Path == "" {
		return nil
	}
	path, err := caddy.NewReplacer().ReplaceOrErr(m.Path, true, true)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	m.Path = path
	return nil
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9.\-]+`)

// DefaultPath is the file of an issuer without a configured path, e.g.
// https://mcp.example.com/t1 -> <data dir>/oauth2_server/mcp.example.com_t1.db.
func DefaultPath(issuer string) string {
	name := issuer
	for _, prefix := range []string{"https://", "http://"} {
		if len(name) > len(prefix) && name[:len(prefix)] == prefix {
			name = name[len(prefix):]
		}
	}
	return filepath.Join(caddy.AppDataDir(), "oauth2_server", unsafeFileChars.ReplaceAllString(name, "_")+".db")
}

// OpenBackend implements storage.BackendModule.
func (m *Module) OpenBackend(o storage.OpenOptions) (storage.Backend, func() error, error) {
	if m.Path == "" {
		m.Path = DefaultPath(o.Issuer)
	}
	key, err := Key(m.Path)
	if err != nil {
		return nil, nil, err
	}
	file, err := Acquire(key, Options{SweepInterval: o.SweepInterval, Logger: o.Logger, Audit: o.Audit, Observe: o.Observe})
	if err != nil {
		return nil, nil, err
	}
	m.key = key
	return file, func() error { return Release(key) }, nil
}

// Describe implements storage.BackendModule.
func (m *Module) Describe() string {
	if m.key != "" {
		return m.key
	}
	return m.Path
}

// Shared implements storage.BackendModule: a bbolt file is one process's.
func (m *Module) Shared() bool { return false }

// UnmarshalCaddyfile reads `storage bolt { path <file> }` (the handler
// reads the short form `storage <file>` itself).
func (m *Module) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // bolt
	if d.NextArg() {
		m.Path = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "path":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Path = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("storage bolt: unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ storage.BackendModule = (*Module)(nil)
	_ caddy.Provisioner     = (*Module)(nil)
	_ caddyfile.Unmarshaler = (*Module)(nil)
)
