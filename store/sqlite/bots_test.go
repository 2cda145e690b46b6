package sqlite

import (
	"context"
	"testing"
)

// A cursor is written without its own fsync, and the writer connection is
// back at synchronous=FULL after it: the roster's commits stay durable.
func TestSetCursorKeepsFullSync(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	for _, id := range []int64{3, 7} {
		if err := db.SetCursor(ctx, "webhook:bot", id); err != nil {
			t.Fatal(err)
		}
		var sync int
		if err := db.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if sync != 2 {
			t.Fatalf("after SetCursor, synchronous = %d, want 2 (FULL)", sync)
		}
	}
	if id, _, err := db.Cursor(ctx, "webhook:bot"); err != nil || id != 7 {
		t.Errorf("Cursor = %d, %v", id, err)
	}
}
