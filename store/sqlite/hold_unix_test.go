//go:build unix

package sqlite

import (
	"context"
	"errors"
	"strings"
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
