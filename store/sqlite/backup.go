package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// Backup writes a consistent copy of the database to path with SQLite's
// online backup API, while rostergate runs (writers wait only for the page
// steps, not the whole copy). path must not exist; it is created 0600. The
// copy is checked with integrity_check before Backup returns.
func (db *DB) Backup(ctx context.Context, path string) (err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("sqlite: backup: %s exists; choose a new file", path)
	}
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(abs)
		}
	}()

	dest, err := sql.Open("sqlite3", dsn(abs, url.Values{}))
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	defer dest.Close()
	dc, err := dest.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	defer dc.Close()
	sc, err := db.r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	defer sc.Close()
	err = dc.Raw(func(d any) error {
		return sc.Raw(func(s any) error {
			dconn, ok1 := d.(*sqlite3.SQLiteConn)
			sconn, ok2 := s.(*sqlite3.SQLiteConn)
			if !ok1 || !ok2 {
				return errors.New("not a SQLite connection")
			}
			b, err := dconn.Backup("main", sconn, "main")
			if err != nil {
				return err
			}
			for {
				if ctx.Err() != nil {
					b.Finish()
					return ctx.Err()
				}
				done, err := b.Step(256)
				if err != nil {
					b.Finish()
					return err
				}
				if done {
					return b.Finish()
				}
			}
		})
	})
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	var res string
	if err := dc.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		return fmt.Errorf("sqlite: backup: the copy fails integrity_check: %q %v", res, err)
	}
	return nil
}
