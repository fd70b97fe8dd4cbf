// Package postgres keeps the authorization servers' state in PostgreSQL,
// so that several Caddy instances share it with the guarantees of one:
// single use by conditional writes and row locks in READ COMMITTED (no
// retry loops, deterministic winners), revocations announced to every
// node with LISTEN/NOTIFY in the committing transaction, migrations
// embedded and applied under an advisory lock.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"go.uber.org/zap"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage"
)

// SchemaVersion is the number of migrations this build applies; a
// database schema with more is refused.
const SchemaVersion = 3

//go:embed migrations/*.sql
var migrations embed.FS

// Config is how to reach the database.
type Config struct {
	// DSN is a PostgreSQL connection URL or keyword/value string.
	DSN string
	// Schema holds the tables ("oauth2" by default); several issuers may
	// share one, or use one each.
	Schema string
	// MaxConnections bounds the pool (default 20).
	MaxConnections int32
	// Logger receives the listener's and the sweeper's lines.
	Logger *zap.Logger
	// Observe, when set, is told the duration of every operation.
	Observe func(op string, d time.Duration)
}

// DB is one PostgreSQL schema holding the state of one or more
// authorization servers; ForIssuer gives the Store of each.
type DB struct {
	pool        *pgxpool.Pool
	schema      string
	channel     string // the NOTIFY channel of revocations
	log         *zap.Logger
	observe     func(op string, d time.Duration)
	revocations atomic.Uint64
	revoked     revokedSet    // every unexpired revocation, kept by the listener
	keyChanges  atomic.Uint64 // moves when a node stores a signing key
	listener    *listener
	// maxStaleness is how long the listener may be lost before Synced
	// turns false.
	maxStaleness time.Duration
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects, applies the migrations and starts listening for
// revocations. It fails (never hangs) when the database is unreachable.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Schema == "" {
		cfg.Schema = "oauth2"
	}
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("schema %q: use lowercase letters, digits and '_'", cfg.Schema)
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 20
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, errors.New("the dsn is not a PostgreSQL connection string") // the error may quote the password
	}
	pc.MaxConns = cfg.MaxConnections
	pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", redact(err))
	}
	d := &DB{pool: pool, schema: cfg.Schema, channel: "oauth2_revocations_" + cfg.Schema, log: cfg.Logger, observe: cfg.Observe, maxStaleness: DefaultMaxStaleness}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if d.listener, err = d.listen(ctx, pc.ConnConfig); err != nil {
		pool.Close()
		return nil, err
	}
	return d, nil
}

// redact keeps a connection error from printing the DSN's password.
func redact(err error) error {
	return errors.New(passwordInURL.ReplaceAllString(err.Error(), "://$1:xxxxx@"))
}

var passwordInURL = regexp.MustCompile(`://([^:/@]+):[^@]*@`)

// migrate applies the embedded migrations under tern's advisory lock,
// refusing a schema newer than this build.
func (d *DB) migrate(ctx context.Context) error {
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", redact(err))
	}
	defer conn.Release()
	// CREATE SCHEMA IF NOT EXISTS is not safe against itself: nodes
	// starting at once would fail on the catalog's unique index.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", d.lock("schema")); err != nil {
		return fmt.Errorf("locking schema %s: %w", d.schema, err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", d.lock("schema"))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+d.schema); err != nil {
		return fmt.Errorf("creating schema %s: %w", d.schema, err)
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), d.schema+".schema_version")
	if err != nil {
		return fmt.Errorf("preparing migrations: %w", err)
	}
	files, _ := fs.Sub(migrations, "migrations")
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	current, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading the schema version: %w", err)
	}
	if current > SchemaVersion {
		return fmt.Errorf("schema %s is at version %d, newer than this build understands (%d): upgrade caddy-oauth2-server or use another schema", d.schema, current, SchemaVersion)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating schema %s: %w", d.schema, err)
	}
	return nil
}

// Close stops listening and closes the pool.
func (d *DB) Close() error {
	d.listener.stop()
	d.pool.Close()
	return nil
}

// ForIssuer implements storage.Backend.
func (d *DB) ForIssuer(issuer string) storage.Store {
	return &issuerStore{DB: d, issuer: issuer}
}

// Revocations implements storage.Store: it moves with every revocation
// this node commits and every one another node announces, and whenever
// the listener reconnects (a notice may have been missed).
func (d *DB) Revocations() uint64 { return d.revocations.Load() }

// lock is the advisory lock number of a purpose in this schema.
func (d *DB) lock(purpose string) int64 {
	h := fnv.New64a()
	h.Write([]byte("caddy-oauth2-server\x00" + d.schema + "\x00" + purpose))
	return int64(h.Sum64())
}

// tx runs fn in one READ COMMITTED transaction, committed when fn
// returns nil.
func (d *DB) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	defer d.timed(op, time.Now())
	return storage.Answer(pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn))
}

func (d *DB) timed(op string, start time.Time) {
	if d.observe != nil {
		d.observe(op, time.Since(start))
	}
}

// querier is a pool, a transaction or a connection inside one.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// announce notifies every node of revocations, inside tx: the notices go
// out when tx commits, never before, never if it aborts (the caller adds
// them to this node's set once tx has committed: committed).
func (d *DB) announce(ctx context.Context, tx querier, revs ...revocation) error {
	for _, v := range revs {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", d.channel, v.notice()); err != nil {
			return err
		}
	}
	return nil
}

// revoke runs fn in a transaction that announces the revocations fn
// returns; once it has committed they are in this node's set at once.
func (s *issuerStore) revoke(ctx context.Context, op string, fn func(tx pgx.Tx) ([]revocation, error)) error {
	var revs []revocation
	err := s.tx(ctx, op, func(tx pgx.Tx) error {
		var err error
		if revs, err = fn(tx); err != nil {
			return err
		}
		return s.announce(ctx, tx, revs...)
	})
	if err == nil {
		s.committed(ctx, revs...)
	}
	return err
}

// committed applies this node's own committed revocations at once (its
// listener hears them a moment later, to no effect).
func (d *DB) committed(ctx context.Context, revs ...revocation) {
	for _, v := range revs {
		if v.Kind == revokeReload {
			if err := d.revoked.load(ctx, d.pool); err != nil {
				d.log.Warn("reloading the revocations", zap.Error(err))
			}
			return
		}
	}
	d.revoked.add(revs...)
}

// Interface guards
var (
	_ storage.Backend = (*DB)(nil)
	_ storage.Store   = (*issuerStore)(nil)
)
