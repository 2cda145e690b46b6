// Package postgres is rostergate's shared store: the store contract
// (package store) kept in a PostgreSQL database, through pgx (a pgxpool
// pool), so that more than one rostergate, and the command line on other
// hosts, can use one store.
//
// Its schema means what the SQLite schema means (see migrations/): the
// roster items, the held requests, the append-only audit log, the outbox,
// the allow and deny lists, the command line's acts, the bots' event logs,
// cursors, tokens and presence, and the web page's keys. Times are
// timestamptz, written to the millisecond and read back in UTC, as
// package sqlite keeps them; keys sort bytewise (COLLATE "C").
//
// [DB.Commit] writes a whole batch in one transaction: one round trip for
// its statements (a pipeline) besides BEGIN and COMMIT, the items written
// by one bulk upsert and those deleted by one bulk delete (unnest of
// arrays), the outbox row, and the rare held requests one statement each;
// then one COPY each for the new items (store.Change.New), the audit rows
// and the bot events, the cheapest way in for the server (copy.go). Every transaction that appends to the audit log or
// the bot events first takes the store's write lock (a transaction-level
// advisory lock), so that their ids grow in commit order: a reader paging
// by id never sees a later id committed before an earlier one.
//
// [Open] applies the embedded migrations in one transaction under an
// advisory lock, so that instances starting together do not race; the
// versions applied are in schema_migrations. [DB.Hold] is a session-level
// advisory lock on a connection of its own, released with it: when the
// holder's process dies or its connection is cut, PostgreSQL lets go.
//
// Several running instances share one database through [DB.Lead]: one is
// active (it holds the same lock as Hold, on a session the server ends
// once idle for the lease's timeout, Options.LeaseTimeout), the others
// wait for it; every write of an instance that has led is fenced by the
// epoch of its lead, checked in the write's own transaction (lead.go).
// Every connection's transactions are ended by the server once idle for
// the lease's timeout (idle_in_transaction_session_timeout, unless the
// DSN sets it).
//
// The DSN is pgx's (a URL or key=value pairs) and takes pgxpool's
// pool_max_conns; the default here is 16 connections, so that an Items
// callback that itself reads does not wait for a connection forever.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"rostergate/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// The advisory lock keys (bigint), each a constant of its own. Advisory
// locks are per database, so the keys need not name it.
const (
	migrateLockKey int64 = 0x726f_7374_6d69_6772 // "rostmigr": Open's migrations
	holdLockKey    int64 = 0x726f_7374_686f_6c64 // "rosthold": Hold, session-level
	writeLockKey   int64 = 0x726f_7374_7772_6974 // "rostwrit": ids in commit order
)

// defaultMaxConns is the pool's size unless the DSN says pool_max_conns.
const defaultMaxConns = 16

// rollbackTimeout bounds a rollback after a failure.
const rollbackTimeout = 5 * time.Second

// notFound names what was not found and unwraps to store.ErrNotFound.
type notFound struct{ what string }

func (e notFound) Error() string { return "postgres: " + e.what + " not found" }
func (e notFound) Unwrap() error { return store.ErrNotFound }

// DB is an open rostergate store in PostgreSQL. It is safe for concurrent
// use.
type DB struct {
	pool *pgxpool.Pool
	opts Options

	mu      sync.Mutex
	held    *pgx.Conn // the connection holding the Hold lock, if any
	leading bool      // a Lead waits, or its lease is held
	lease   *lease    // the lease Lead returned, until released or lost

	// fence is what this DB's writes check (see lead.go): 0 if it never
	// led (nothing), the epoch of its lease while it holds one, minus that
	// epoch once the lease is lost or released (refused without asking).
	fence atomic.Int64
	// leaseEnd is when the lease runs out unless a ping renews it (mono;
	// 0 without a lease): writes after it are refused.
	leaseEnd atomic.Int64
	// serverFenceOnly, in tests, leaves the fencing to the server's check
	// alone.
	serverFenceOnly bool
}

// Options tune a DB; the zero value is Open's defaults.
type Options struct {
	// LeaseTimeout bounds how long an active instance that stops answering
	// (paused, cut off, its host gone) keeps the lead (see DB.Lead), and
	// how long any transaction of this DB may sit idle before the server
	// ends its session. Default 3 s.
	LeaseTimeout time.Duration
}

// DefaultLeaseTimeout is Options.LeaseTimeout's default.
const DefaultLeaseTimeout = 3 * time.Second

// migration is one embedded schema step; applying it takes the schema from
// version-1 to version.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("postgres: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("postgres: migration %q: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("postgres: migration %q: version %d, want %d", e.Name(), v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("postgres: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, errors.New("postgres: no migrations embedded")
	}
	return ms, nil
}

// Open connects to the database of dsn and brings its schema up to date.
// A schema newer than this code knows is refused.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenOptions(ctx, dsn, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(ctx context.Context, dsn string, o Options) (*DB, error) {
	ms, err := parseMigrations(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	return openOptions(ctx, dsn, ms, o)
}

func open(ctx context.Context, dsn string, ms []migration) (*DB, error) {
	return openOptions(ctx, dsn, ms, Options{})
}

func openOptions(ctx context.Context, dsn string, ms []migration, o Options) (*DB, error) {
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = DefaultLeaseTimeout
	}
	if o.LeaseTimeout < 100*time.Millisecond {
		return nil, fmt.Errorf("postgres: open: lease timeout %v is under 100ms", o.LeaseTimeout)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	// A transaction left open by a process that stopped (paused, cut off)
	// would keep its locks, and with them a new active instance's start
	// (the bump of the lead waits for the old one's writes) and every
	// writer: the server ends such a session once idle in a transaction
	// for the lease's timeout, unless the DSN says otherwise.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(o.LeaseTimeout.Milliseconds(), 10)
	}
	// A connection the server ended while it was idle in the pool (a
	// terminated backend, a restart, a failover) has the server's last
	// words, or its end, to read: such a one is pinged, so the pool drops
	// it rather than failing the next statement with it. The others are
	// pinged after a second idle, as pgxpool does by default.
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool {
		return p.IdleDuration > time.Second || unsolicited(p.Conn.PgConn().Conn())
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool, opts: o}
	if err := db.migrate(ctx, ms); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// migrate applies the migrations the schema lacks, all in one transaction
// that first takes an advisory lock: of two instances opening a new
// database at once, the second waits, then finds the schema up to date.
// A schema that exists but is older is upgraded only while no running
// rostergate holds the store (Hold), as package sqlite does.
func (db *DB) migrate(ctx context.Context, ms []migration) error {
	known := len(ms)
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY,
		name    text NOT NULL,
		applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("postgres: migrate: read schema version: %w", err)
	}
	switch {
	case cur > known:
		return fmt.Errorf("postgres: database schema version %d is newer than this rostergate (knows %d)", cur, known)
	case cur == known:
		return nil // the rollback keeps no lock
	case cur > 0:
		var free bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, holdLockKey).Scan(&free); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
		if !free {
			return fmt.Errorf("postgres: the database's schema (version %d) is older than this rostergate's (%d), and a running rostergate holds it: stop it and start this version, which upgrades it: %w", cur, known, store.ErrHeld)
		}
	}
	for _, m := range ms[cur:] {
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return nil
}

// rollback rolls tx back (a no-op after Commit), even when ctx is done.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// Close releases a lease or a Hold still held and closes the pool.
func (db *DB) Close() error {
	db.mu.Lock()
	c, l := db.held, db.lease
	db.held = nil
	db.mu.Unlock()
	if l != nil {
		l.Release()
	}
	var err error
	if c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
		err = c.Close(ctx)
		cancel()
	}
	db.pool.Close()
	if err != nil {
		return fmt.Errorf("postgres: close: %w", err)
	}
	return nil
}

// Hold takes a session-level advisory lock on a connection of its own,
// kept until release (or Close): a second Hold, from this process or any
// other on the same database, fails with an error matching store.ErrHeld.
// PostgreSQL drops the lock with the connection, so a holder that dies,
// or whose connection is cut, lets go of the store.
func (db *DB) Hold(ctx context.Context) (release func(), err error) {
	c, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("postgres: hold: %w", err)
	}
	var ok bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, holdLockKey).Scan(&ok); err != nil {
		_ = c.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgres: hold: %w", err)
	}
	if !ok {
		_ = c.Close(context.WithoutCancel(ctx))
		return nil, heldError{db: c.Config().Database}
	}
	db.mu.Lock()
	db.held = c
	db.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			db.mu.Lock()
			if db.held == c {
				db.held = nil
			}
			db.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
			defer cancel()
			// Unlocked first, so that the lock is free when release
			// returns: a closed session's backend frees its locks only
			// once it has exited, a moment later. Should the unlock
			// fail, the lock goes with the session.
			_, _ = c.Exec(ctx, `SELECT pg_advisory_unlock($1)`, holdLockKey)
			_ = c.Close(ctx)
		})
	}, nil
}

// heldError is the store held by another instance; it matches
// store.ErrHeld.
type heldError struct{ db string }

func (e heldError) Error() string {
	return fmt.Sprintf("postgres: database %q is in use by another `rostergate run` (it holds the store's advisory lock)", e.db)
}

func (e heldError) Unwrap() error { return store.ErrHeld }

// Writable starts a read-write transaction and checks the server is not a
// standby in recovery: nil if a write transaction can start now.
func (db *DB) Writable(ctx context.Context) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("postgres: not writable: %w", err)
	}
	defer rollback(ctx, tx)
	var recovery bool
	var readOnly string
	if err := tx.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_read_only')`).Scan(&recovery, &readOnly); err != nil {
		return fmt.Errorf("postgres: not writable: %w", err)
	}
	if recovery || readOnly != "off" {
		return fmt.Errorf("postgres: not writable: the server is a standby in recovery (%t) or read-only (%s)", recovery, readOnly)
	}
	return nil
}

// Check verifies the store: the schema is the version this code knows, no
// constraint is left unvalidated, and nothing the constraints are there to
// prevent is found (a held request without its item, an item that should
// not be stored, a bot entity of no token).
func (db *DB) Check(ctx context.Context) error {
	ms, err := parseMigrations(migrationFS, "migrations")
	if err != nil {
		return err
	}
	var version int
	if err := db.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("postgres: check: %w", err)
	}
	var bad []string
	if version != len(ms) {
		bad = append(bad, fmt.Sprintf("schema version %d, want %d", version, len(ms)))
	}
	for _, c := range []struct{ what, sql string }{
		{"constraints not validated", `SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
			WHERE t.relnamespace = to_regnamespace(current_schema()) AND NOT c.convalidated`},
		{"held requests without their item", `SELECT count(*) FROM requests r
			WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.entity = r.entity AND i.contact = r.contact)`},
		{"items that should not be stored (empty, or pending_since without pending_in)", `SELECT count(*) FROM items
			WHERE (sub = 'none' AND NOT pending_out AND NOT pending_in AND NOT approved) OR (pending_since IS NOT NULL AND NOT pending_in)`},
		{"bot entities of no token", `SELECT count(*) FROM bot_entities b WHERE NOT EXISTS (SELECT 1 FROM tokens t WHERE t.id = b.token)`},
		{"lead rows missing (the table lead keeps one)", `SELECT 1 - count(*) FROM lead WHERE id = 1`},
	} {
		var n int64
		if err := db.pool.QueryRow(ctx, c.sql).Scan(&n); err != nil {
			return fmt.Errorf("postgres: check: %s: %w", c.what, err)
		}
		if n > 0 {
			bad = append(bad, fmt.Sprintf("%d %s", n, c.what))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("postgres: check: %s", strings.Join(bad, "; "))
	}
	return nil
}

var _ store.Store = (*DB)(nil)
