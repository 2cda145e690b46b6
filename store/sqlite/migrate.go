package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"rostergate/store"
	"strconv"
	"sync"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded schema step; applying it takes the database
// from version-1 to version.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrations returns the embedded migrations in order. Their versions must
// run 1, 2, 3, … without gaps.
var migrations = sync.OnceValues(func() ([]migration, error) {
	return parseMigrations(migrationFS, "migrations")
})

func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("sqlite: migration %q: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("sqlite: migration %q: version %d, want %d", e.Name(), v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("sqlite: no migrations embedded")
	}
	return ms, nil
}

func userVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read schema version: %w", err)
	}
	return v, nil
}

func newerSchemaError(have, known int) error {
	return fmt.Errorf("sqlite: database schema version %d is newer than this rostergate (knows %d)", have, known)
}

// migrate brings the schema of w up to the newest embedded migration. All
// pending migrations run in one write transaction (BEGIN IMMEDIATE, because
// the writer's DSN says so), so two processes opening the same new file
// cannot both apply them, and a crash leaves the old version intact.
//
// A database that needs upgrading is upgraded only while hold succeeds: a
// running rostergate, older than this one, must not have its schema changed
// under it (a command line of the new version would otherwise do just that).
func migrate(ctx context.Context, w *sql.DB, ms []migration, hold func(context.Context) (func(), error)) error {
	known := len(ms)
	cur, err := userVersion(ctx, w)
	if err != nil {
		return err
	}
	switch {
	case cur > known:
		return newerSchemaError(cur, known)
	case cur == known:
		return nil // up to date: do not take the write lock
	}
	if cur > 0 && hold != nil {
		release, err := hold(ctx)
		if errors.Is(err, store.ErrHeld) {
			return fmt.Errorf("sqlite: the database's schema (version %d) is older than this rostergate's (%d), and a running rostergate holds it: stop it and start this version, which upgrades it: %w", cur, known, err)
		}
		if err != nil {
			return err
		}
		defer release()
	}

	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	// Another process may have migrated between the check and the lock.
	if cur, err = userVersion(ctx, tx); err != nil {
		return err
	}
	if cur > known {
		return newerSchemaError(cur, known)
	}
	for _, m := range ms[cur:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.name, err)
		}
		// PRAGMA takes no parameters; m.version is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
			return fmt.Errorf("sqlite: migration %s: set version: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: commit: %w", err)
	}
	return nil
}
