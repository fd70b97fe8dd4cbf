package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

func init() {
	caddy.RegisterModule(Module{})
}

// DefaultMaxStaleness is how long a node may go without confirming it
// knows every revocation before protected requests are refused.
const DefaultMaxStaleness = 5 * time.Second

// Module is the cluster storage: PostgreSQL, shared by every Caddy
// instance that names the same database and schema.
type Module struct {
	// The connection URL, e.g. postgres://user:pass@host:5432/db?sslmode=verify-full.
	// Required; use a placeholder ({env.DATABASE_URL}), resolved at load.
	// Never printed: errors and the admin API show the host and database.
	DSN string `json:"dsn,omitempty"`
	// The schema holding the tables; several issuers may share one, or
	// use one each. Default: oauth2.
	Schema string `json:"schema,omitempty"`
	// The largest number of connections of this node. Default: 20.
	MaxConnections int `json:"max_connections,omitempty"`
	// How long this node may be unsure that it knows every revocation
	// (its listening connection lost, the database unreachable) before
	// protected requests get 503. Default: 5s.
	RevocationMaxStaleness caddy.Duration `json:"revocation_max_staleness,omitempty"`

	key string
}

// CaddyModule returns the Caddy module information.
func (Module) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.oauth2_server.storage.postgres", New: func() caddy.Module { return new(Module) }}
}

// Provision resolves placeholders and checks the settings.
func (m *Module) Provision(caddy.Context) error {
	if m.DSN == "" {
		return errors.New("storage postgres: dsn is required")
	}
	dsn, err := caddy.NewReplacer().ReplaceOrErr(m.DSN, true, true)
	if err != nil {
		return fmt.Errorf("storage postgres: dsn: %w", err)
	}
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return errors.New("storage postgres: dsn is not a PostgreSQL connection string")
	}
	m.DSN = dsn
	if m.Schema == "" {
		m.Schema = "oauth2"
	}
	if !schemaName.MatchString(m.Schema) {
		return fmt.Errorf("storage postgres: schema %q: use lowercase letters, digits and '_'", m.Schema)
	}
	if m.MaxConnections < 0 || m.RevocationMaxStaleness < 0 {
		return errors.New("storage postgres: max_connections and revocation_max_staleness must not be negative")
	}
	if m.RevocationMaxStaleness == 0 {
		m.RevocationMaxStaleness = caddy.Duration(DefaultMaxStaleness)
	}
	return nil
}

// handles shares one pool (and listener, and sweeper) per database and
// schema across the handlers and config reloads of a process.
var handles = caddy.NewUsagePool()

type handle struct {
	db        *DB
	stopSweep context.CancelFunc
	swept     chan struct{}
}

func (h *handle) Destruct() error {
	h.stopSweep()
	<-h.swept
	return h.db.Close()
}

// OpenBackend implements storage.BackendModule.
func (m *Module) OpenBackend(o storage.OpenOptions) (storage.Backend, func() error, error) {
	sum := sha256.Sum256([]byte(m.DSN + "\x00" + m.Schema))
	key := "postgres:" + hex.EncodeToString(sum[:])
	val, _, err := handles.LoadOrNew(key, func() (caddy.Destructor, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := Open(ctx, Config{DSN: m.DSN, Schema: m.Schema, MaxConnections: int32(m.MaxConnections), Logger: o.Logger, Observe: o.Observe})
		if err != nil {
			return nil, err
		}
		db.maxStaleness = time.Duration(m.RevocationMaxStaleness)
		sweepCtx, stop := context.WithCancel(context.Background())
		h := &handle{db: db, stopSweep: stop, swept: make(chan struct{})}
		go func() {
			defer close(h.swept)
			storage.Sweep(sweepCtx, db, o.SweepInterval, o.Logger, o.Audit)
		}()
		return h, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("storage postgres (%s): %w", m.Describe(), err)
	}
	m.key = key
	return val.(*handle).db, func() error { _, err := handles.Delete(key); return err }, nil
}

// Describe implements storage.BackendModule: host, database and schema,
// never the credentials.
func (m *Module) Describe() string {
	cfg, err := pgxpool.ParseConfig(m.DSN)
	if err != nil {
		return "postgres (schema " + m.Schema + ")"
	}
	c := cfg.ConnConfig
	return (&url.URL{Scheme: "postgres", Host: c.Host + ":" + strconv.Itoa(int(c.Port)), Path: "/" + c.Database}).String() + " schema " + m.Schema
}

// Shared implements storage.BackendModule.
func (m *Module) Shared() bool { return true }

// UnmarshalCaddyfile reads `storage postgres { dsn …; schema …;
// max_connections …; revocation_max_staleness … }`.
func (m *Module) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // postgres
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.Errf("storage postgres: %s: expected one value", opt)
		}
		v := d.Val()
		if d.NextArg() {
			return d.Errf("storage postgres: %s: expected one value, got more", opt)
		}
		switch opt {
		case "dsn":
			m.DSN = v
		case "schema":
			m.Schema = v
		case "max_connections":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("storage postgres: max_connections %q is not a positive number", v)
			}
			m.MaxConnections = n
		case "revocation_max_staleness":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("storage postgres: revocation_max_staleness %q is not a positive duration", v)
			}
			m.RevocationMaxStaleness = caddy.Duration(dur)
		default:
			return d.Errf("storage postgres: unrecognized subdirective %q", opt)
		}
	}
	return nil
}

// Ping implements storage.Pinger.
func (d *DB) Ping(ctx context.Context) error { return d.pool.Ping(ctx) }

// Synced implements storage.Syncer: the listener is connected, or lost
// its connection less than revocation_max_staleness ago.
func (d *DB) Synced() bool { return d.listener.current(d.maxStaleness) }

// Interface guards
var (
	_ storage.BackendModule = (*Module)(nil)
	_ caddy.Provisioner     = (*Module)(nil)
	_ caddyfile.Unmarshaler = (*Module)(nil)
	_ storage.Pinger        = (*DB)(nil)
	_ storage.Syncer        = (*DB)(nil)
)

// CountEvents implements storage.EventCounter, on the database clock.
func (d *DB) CountEvents(ctx context.Context, key []byte, window time.Duration, record bool) (int, error) {
	defer d.timed("count_events", time.Now())
	var n int
	err := d.pool.QueryRow(ctx, `WITH recorded AS (
			INSERT INTO rate_events (key, expires_at) SELECT $1, clock_timestamp() + make_interval(secs => $2) WHERE $3 RETURNING 1)
		SELECT (SELECT count(*) FROM rate_events WHERE key = $1 AND at > clock_timestamp() - make_interval(secs => $2))
			+ (SELECT count(*) FROM recorded)`, key, window.Seconds(), record).Scan(&n)
	return n, err
}

// KeyChanges implements storage.KeyWatcher.
func (d *DB) KeyChanges() uint64 { return d.keyChanges.Load() }

var (
	_ storage.EventCounter = (*DB)(nil)
	_ storage.KeyWatcher   = (*DB)(nil)
)
