//go:build unix

package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"rostergate/store"
)

// TestHoldTwoHandles: the hold is on the file, not the handle: the command
// line, with a DB of its own on the same file, sees the running instance's
// hold, and the error says which file.
func TestHoldTwoHandles(t *testing.T) {
	ctx := context.Background()
	db1, path := openTest(t)
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	release, err := db1.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := db2.Hold(ctx); !errors.Is(err, store.ErrHeld) || !strings.HasPrefix(err.Error(), "sqlite: ") || !strings.Contains(err.Error(), path+".lock") {
		if err == nil {
			r()
		}
		t.Fatalf("second handle's Hold err = %v, want a sqlite: error naming %s.lock, matching store.ErrHeld", err, path)
	}
	release()
	r, err := db2.Hold(ctx)
	if err != nil {
		t.Fatalf("Hold after release: %v", err)
	}
	r()
}

// A database that needs upgrading is not upgraded under a running (older)
// rostergate that holds it: Open says why, and upgrades it once it is free.
func TestNoUpgradeUnderARunningInstance(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	openAtVersion(t, path, 3).Close()
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(ctx, path); err == nil || !errors.Is(err, store.ErrHeld) || !strings.Contains(err.Error(), "older than this rostergate's") {
		if err == nil {
			db.Close()
		}
		t.Fatalf("Open of an old database held by a running rostergate: %v, want refused", err)
	}
	f.Close() // the running rostergate stops
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := userVersion(ctx, db.r); err != nil || v != knownVersion(t) {
		t.Errorf("user_version after the upgrade: %d, %v", v, err)
	}
}
