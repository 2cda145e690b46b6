//go:build unix

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"rostergate/store"
)

// Hold takes an exclusive lock on a file beside the database (its path with
// ".lock") for as long as the process runs rostergate: two instances on one
// database would overwrite each other's state (and ejabberd would split the
// domain's traffic between them). The kernel drops the lock when the
// process dies, so a crash never leaves the store held.
func (db *DB) Hold(context.Context) (release func(), err error) {
	p := db.path + ".lock"
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: hold: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, heldError{db: db.path, lock: p}
		}
		return nil, fmt.Errorf("sqlite: hold %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// heldError is the store held by another process; it matches store.ErrHeld.
type heldError struct{ db, lock string }

func (e heldError) Error() string {
	return fmt.Sprintf("sqlite: %s is in use by another `rostergate run` (it holds %s)", e.db, e.lock)
}

func (e heldError) Unwrap() error { return store.ErrHeld }
