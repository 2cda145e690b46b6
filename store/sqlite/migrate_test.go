package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// openAtVersion creates a database at path with the first n migrations
// applied, as an older rostergate left it.
func openAtVersion(t *testing.T, path string, n int) *sql.DB {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := createFile(path); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite3", dsn(path, url.Values{"_journal_mode": {"WAL"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	for _, m := range ms[:n] {
		if _, err := raw.Exec(m.sql); err != nil {
			t.Fatalf("migration %s: %v", m.name, err)
		}
	}
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA user_version = %d", n)); err != nil {
		t.Fatal(err)
	}
	return raw
}

// Acts an older rostergate queued as chat command lines, not carried out
// yet, are still carried out after the upgrade: the migration turns them
// into the typed requests the service reads. What it cannot read is closed
// with an error saying so; what was carried out stays as it was.
func TestMigrationTypesQueuedActs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw := openAtVersion(t, path, 3)
	for _, a := range []struct {
		verb, args string
		done       bool
	}{
		{"approve", "12 13", false},
		{"reject", "5", false},
		{"deny", "*@spam.example", false},
		{"unallow", "x.example", false},
		{"allow", "it's \"quoted\"", false},
		{"undeny", "y.example", false},
		{"approve", "1 x", false},  // not ids: cannot be read
		{"approve", "1  2", false}, // two spaces: the old command line never wrote that
		{"frobnicate", "", false},  // no such act
		{"approve", "7", true},     // carried out already
	} {
		done := any(nil)
		if a.done {
			done = 1700000000000
		}
		if _, err := raw.Exec(`INSERT INTO actions (created, actor, verb, args, done, result) VALUES (1700000000000, 'cli:root', ?, ?, ?, ?)`,
			a.verb, a.args, done, map[bool]string{true: "Approved #7", false: ""}[a.done]); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waiting, err := db.WaitingActions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type decide struct {
		IDs     []int64 `json:"ids"`
		Approve bool    `json:"approve"`
	}
	type list struct {
		List    string `json:"list"`
		Add     bool   `json:"add"`
		Pattern string `json:"pattern"`
	}
	want := []struct {
		kind string
		req  any
	}{
		{"decide", decide{[]int64{12, 13}, true}},
		{"decide", decide{[]int64{5}, false}},
		{"list", list{"deny", true, "*@spam.example"}},
		{"list", list{"allow", false, "x.example"}},
		{"list", list{"allow", true, "it's \"quoted\""}},
		{"list", list{"deny", false, "y.example"}},
	}
	if len(waiting) != len(want) {
		t.Fatalf("waiting after the upgrade: %+v, want %d", waiting, len(want))
	}
	for i, w := range want {
		a := waiting[i]
		if a.Kind != w.kind || a.Actor != "cli:root" {
			t.Errorf("act %d: kind %q actor %q, want %q", a.ID, a.Kind, a.Actor, w.kind)
			continue
		}
		d := json.NewDecoder(strings.NewReader(a.Request))
		d.DisallowUnknownFields()
		var got any
		switch w.req.(type) {
		case decide:
			var v decide
			err, got = d.Decode(&v), v
			if err == nil && (len(v.IDs) != len(w.req.(decide).IDs) || v.Approve != w.req.(decide).Approve) {
				t.Errorf("act %d: %s, want %+v", a.ID, a.Request, w.req)
			}
			for j := range v.IDs {
				if j < len(w.req.(decide).IDs) && v.IDs[j] != w.req.(decide).IDs[j] {
					t.Errorf("act %d: %s, want %+v", a.ID, a.Request, w.req)
				}
			}
		case list:
			var v list
			err, got = d.Decode(&v), v
			if err == nil && v != w.req.(list) {
				t.Errorf("act %d: %s, want %+v", a.ID, a.Request, w.req)
			}
		}
		if err != nil {
			t.Errorf("act %d: %s does not read as %T: %v (%+v)", a.ID, a.Request, w.req, err, got)
		}
	}
	for id := int64(7); id <= 10; id++ {
		a, err := db.Action(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case a.Done.IsZero():
			t.Errorf("act %d (%s %q) was left waiting", id, a.Kind, a.Request)
		case id < 10 && !strings.Contains(a.Result, "run the command again"):
			t.Errorf("act %d closed with %q, want the reason", id, a.Result)
		case id == 10 && (a.Result != "Approved #7" || a.Request != "7"):
			t.Errorf("the act carried out before changed: %+v", a)
		}
	}
	if err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}
}
