// Package pgtest starts a throw-away PostgreSQL cluster for tests: a
// temporary data directory, initdb and pg_ctl (as the postgres user when
// run as root, since initdb refuses root), loopback only, a free port. Or
// it uses the database OAUTH2_TEST_POSTGRES names.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running PostgreSQL for tests.
type Cluster struct {
	// DSN reaches the cluster's postgres database.
	DSN  string
	dir  string
	ctl  string
	opts string // the server options pg_ctl start passes
	asPG bool
}

// ErrNotInstalled: no PostgreSQL server binaries on this machine.
var ErrNotInstalled = errors.New("PostgreSQL is not installed: install the Debian package postgresql (apt-get install postgresql) or set OAUTH2_TEST_POSTGRES to a database URL")

// Start starts a cluster (or returns the one OAUTH2_TEST_POSTGRES names).
func Start() (*Cluster, error) {
	if dsn := os.Getenv("OAUTH2_TEST_POSTGRES"); dsn != "" {
		return &Cluster{DSN: dsn}, nil
	}
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{ctl: filepath.Join(bin, "pg_ctl")}
	if c.dir, err = os.MkdirTemp("", "oauth2-pgtest-"); err != nil {
		return nil, err
	}
	c.asPG = os.Geteuid() == 0
	if c.asPG {
		pg, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
		c.Stop()
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.opts = fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=on -c max_connections=300", port, c.dir)
	if err := c.StartServer(); err != nil {
		c.Stop()
		return nil, err
	}
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c, nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if c.asPG {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// findBin finds the server binaries of the newest installed PostgreSQL.
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Dir(real), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", ErrNotInstalled
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StopServer stops the server (fast shutdown: sessions are disconnected),
// keeping its data, as an operator's restart or a failover does.
func (c *Cluster) StopServer() error {
	if c.dir == "" {
		return errors.New("pgtest: a cluster named by OAUTH2_TEST_POSTGRES cannot be stopped")
	}
	if out, err := c.run(c.ctl, "-D", filepath.Join(c.dir, "data"), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// StartServer starts the server again on the same port.
func (c *Cluster) StartServer() error {
	if out, err := c.run(c.ctl, "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"), "-o", c.opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the cluster and removes its directory (a cluster named by
// OAUTH2_TEST_POSTGRES is left alone).
func (c *Cluster) Stop() {
	if c.dir == "" {
		return
	}
	c.run(c.ctl, "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.dir)
}

// Schema returns a new, empty schema name; it is dropped when the test
// ends.
func (c *Cluster) Schema(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, c.DSN); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
			conn.Close(ctx)
		}
	})
	return name
}

// Main runs a package's tests with a cluster in *cluster: without
// PostgreSQL they are skipped, except under CI (CI=true), where that is a
// failure.
func Main(m *testing.M, cluster **Cluster) int {
	c, err := Start()
	if err != nil {
		if errors.Is(err, ErrNotInstalled) && strings.ToLower(os.Getenv("CI")) != "true" {
			fmt.Fprintln(os.Stderr, "pgtest: skipping the PostgreSQL tests:", err)
		} else {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			return 1
		}
	}
	*cluster = c
	code := m.Run()
	if c != nil {
		c.Stop()
	}
	return code
}

// Need skips the test when there is no cluster (see Main).
func Need(t testing.TB, c *Cluster) {
	t.Helper()
	if c == nil {
		t.Skip(ErrNotInstalled.Error())
	}
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Shared returns the test binary's cluster, started on first use (for
// packages whose other tests need no database); StopShared stops it.
// Without PostgreSQL the test is skipped, except under CI, where it fails.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = Start() })
	if shared.err != nil {
		if errors.Is(shared.err, ErrNotInstalled) && strings.ToLower(os.Getenv("CI")) != "true" {
			t.Skip(shared.err.Error())
		}
		t.Fatal(shared.err)
	}
	return shared.c
}

// StopShared stops the cluster Shared started, if any.
func StopShared() {
	if shared.c != nil {
		shared.c.Stop()
	}
}
