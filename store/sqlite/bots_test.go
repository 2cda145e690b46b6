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

func TestOneObject(t *testing.T) {
	for s, want := range map[string]bool{
		`{}`: true, `{"a":"}]"}`: true, `{"a":"\"}"}`: true, `{"a":[{"b":1}]}`: true,
		``: false, `{`: false, `[]`: false, `{}]`: false, `{}],["presence",0,{}`: false, `{} {}`: false,
		`{"a":"\"}`: false, `{"a":1}x`: false, ` {}`: false,
	} {
		if got := oneObject(s); got != want {
			t.Errorf("oneObject(%q) = %v, want %v", s, got, want)
		}
	}
}
