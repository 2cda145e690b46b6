package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

// t0 is a fixed instant with millisecond precision, as storage keeps times.
var t0 = time.UnixMilli(1_700_000_000_123).UTC()

func openTest(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "roster.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db, path
}

func mustApply(t testing.TB, db *DB, changes ...Change) {
	t.Helper()
	if err := db.Apply(context.Background(), changes); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func knownVersion(t testing.TB) int {
	t.Helper()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func sameItem(a, b Item) bool {
	return a.Entity == b.Entity && a.Contact == b.Contact && a.Sub == b.Sub &&
		a.PendingOut == b.PendingOut && a.PendingIn == b.PendingIn && a.Approved == b.Approved &&
		a.PendingSince.Equal(b.PendingSince) && a.Updated.Equal(b.Updated)
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	return fi.Mode().Perm()
}

func TestOpenFileMode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     string
		existing fs.FileMode // 0: the file does not exist before Open
		want     fs.FileMode
	}{
		{name: "new file is 0600", file: "roster.db", want: 0o600},
		{name: "new file with URI characters in its name", file: "a b?c=d#e%20f&g.db", want: 0o600},
		{name: "existing 0640 file is left alone", file: "roster.db", existing: 0o640, want: 0o640},
		{name: "existing 0644 file is left alone", file: "roster.db", existing: 0o644, want: 0o644},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			if tc.existing != 0 {
				if err := os.WriteFile(path, nil, tc.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			db, err := Open(context.Background(), path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer db.Close()
			mustApply(t, db, Change{Item: Item{Entity: "alice", Contact: "bob@example.org", Sub: SubBoth}})
			if _, err := db.Get(context.Background(), "alice", "bob@example.org"); err != nil {
				t.Fatalf("Get: %v", err)
			}
			// Only the one file (and its -wal and -shm) exists: the name
			// was not cut at '?' or '#'.
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			slices.Sort(names)
			if want := []string{tc.file, tc.file + "-shm", tc.file + "-wal"}; !slices.Equal(names, want) {
				t.Fatalf("files = %q, want %q", names, want)
			}
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if got := fileMode(t, p); got != tc.want {
					t.Errorf("mode of %s = %v, want %v", filepath.Base(p), got, tc.want)
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("this is not a database\n", 200)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
	}{
		{"empty path", ""},
		{"missing directory", filepath.Join(dir, "nope", "roster.db")},
		{"not a database", notDB},
		{"a directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(context.Background(), tc.path)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.HasPrefix(err.Error(), "storage: ") {
				t.Errorf("error %q lacks the storage: prefix", err)
			}
		})
	}
}

func TestOpenPragmas(t *testing.T) {
	db, _ := openTest(t)
	for _, tc := range []struct {
		name      string
		pool      *sql.DB
		queryOnly int
	}{
		{"writer", db.w, 0},
		{"reader", db.r, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var mode string
			var sync, busy, fk, qo int
			for _, p := range []struct {
				pragma string
				dst    any
			}{
				{"journal_mode", &mode}, {"synchronous", &sync}, {"busy_timeout", &busy},
				{"foreign_keys", &fk}, {"query_only", &qo},
			} {
				if err := tc.pool.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(p.dst); err != nil {
					t.Fatalf("PRAGMA %s: %v", p.pragma, err)
				}
			}
			if mode != "wal" || sync != 2 || busy != 5000 || fk != 1 || qo != tc.queryOnly {
				t.Errorf("journal_mode=%s synchronous=%d busy_timeout=%d foreign_keys=%d query_only=%d; want wal 2 (FULL) 5000 1 %d",
					mode, sync, busy, fk, qo, tc.queryOnly)
			}
		})
	}
	if _, err := db.r.Exec(`DELETE FROM roster`); err == nil {
		t.Error("reader pool accepted a write")
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "roster.db")
	item := Item{Entity: "alice", Contact: "bob@example.org", Sub: SubTo, Updated: t0}
	var schemaVersion int
	for i := range 3 {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if i == 0 {
			mustApply(t, db, Change{Item: item})
		}
		v, err := userVersion(ctx, db.r)
		if err != nil {
			t.Fatal(err)
		}
		if v != knownVersion(t) {
			t.Errorf("open #%d: user_version = %d, want %d", i, v, knownVersion(t))
		}
		// schema_version counts schema changes: a re-run migration would bump it.
		var sv int
		if err := db.r.QueryRow("PRAGMA schema_version").Scan(&sv); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			schemaVersion = sv
		} else if sv != schemaVersion {
			t.Errorf("open #%d: schema_version = %d, was %d: the schema changed on reopen", i, sv, schemaVersion)
		}
		got, err := db.Get(ctx, "alice", "bob@example.org")
		if err != nil || !sameItem(got, item) {
			t.Errorf("open #%d: Get = %+v, %v; want %+v", i, got, err, item)
		}
		if err := db.Check(ctx); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "roster.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec("PRAGMA user_version = 7"); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err == nil {
		db.Close()
		t.Fatal("Open accepted a newer schema")
	}
	want := fmt.Sprintf("storage: database schema version 7 is newer than this rostergate (knows %d)", knownVersion(t))
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 7 {
		t.Errorf("user_version after refusal = %d, %v; want 7", v, err)
	}
}

func TestParseMigrations(t *testing.T) {
	sqlFile := &fstest.MapFile{Data: []byte("CREATE TABLE t (x);")}
	for _, tc := range []struct {
		name    string
		files   []string
		want    int
		wantErr string
	}{
		{name: "in order", files: []string{"0001_init.sql", "0002_more.sql"}, want: 2},
		{name: "gap", files: []string{"0001_init.sql", "0003_more.sql"}, wantErr: "version 3, want 2"},
		{name: "starts at 2", files: []string{"0002_init.sql"}, wantErr: "version 2, want 1"},
		{name: "bad name", files: []string{"0001_init.sql", "2_more.sql"}, wantErr: "not NNNN_name.sql"},
		{name: "none", wantErr: "no migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"m": &fstest.MapFile{Mode: fs.ModeDir}}
			for _, f := range tc.files {
				fsys["m/"+f] = sqlFile
			}
			ms, err := parseMigrations(fsys, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(ms) != tc.want {
				t.Fatalf("got %d migrations, %v; want %d", len(ms), err, tc.want)
			}
		})
	}
	if _, err := migrations(); err != nil {
		t.Errorf("embedded migrations: %v", err)
	}
}

func TestApplyRoundTrips(t *testing.T) {
	ctx := context.Background()
	const alice, bob = "alice", "bob@example.org"
	base := Item{Entity: alice, Contact: bob, Sub: SubNone, PendingIn: true, PendingSince: t0, Updated: t0}

	for _, tc := range []struct {
		name    string
		batches [][]Change
		check   func(t *testing.T, db *DB, batches [][]Change)
	}{
		{
			name:    "upsert inserts",
			batches: [][]Change{{{Item: base}}},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantItem(t, db, base)
			},
		},
		{
			name: "upsert replaces",
			batches: [][]Change{
				{{Item: base}},
				{{Item: Item{Entity: alice, Contact: bob, Sub: SubBoth, PendingOut: true, Approved: true, Updated: t0.Add(time.Second)}}},
			},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantItem(t, db, Item{Entity: alice, Contact: bob, Sub: SubBoth, PendingOut: true, Approved: true, Updated: t0.Add(time.Second)})
			},
		},
		{
			name:    "component domain entity",
			batches: [][]Change{{{Item: Item{Entity: "", Contact: bob, Sub: SubFrom, Updated: t0}}}},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantItem(t, db, Item{Entity: "", Contact: bob, Sub: SubFrom, Updated: t0})
				wantNoItem(t, db, alice, bob)
			},
		},
		{
			name:    "delete",
			batches: [][]Change{{{Item: base}}, {{Item: Item{Entity: alice, Contact: bob}, Delete: true}}},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantNoItem(t, db, alice, bob)
			},
		},
		{
			name:    "none item with nothing pending is not kept",
			batches: [][]Change{{{Item: base}}, {{Item: Item{Entity: alice, Contact: bob, Sub: SubNone, Updated: t0}}}},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantNoItem(t, db, alice, bob)
			},
		},
		{
			name: "defaults: Updated and PendingSince become the batch time; PendingSince only while pending",
			batches: [][]Change{{
				{Item: Item{Entity: alice, Contact: bob, Sub: SubNone, PendingIn: true}},
				{Item: Item{Entity: alice, Contact: "carol@example.org", Sub: SubTo, PendingSince: t0}},
			}},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				got, err := db.Get(ctx, alice, bob)
				if err != nil {
					t.Fatal(err)
				}
				if age := time.Since(got.Updated); age < 0 || age > time.Minute || !got.PendingSince.Equal(got.Updated) {
					t.Errorf("Updated = %v, PendingSince = %v; want both now", got.Updated, got.PendingSince)
				}
				got, err = db.Get(ctx, alice, "carol@example.org")
				if err != nil {
					t.Fatal(err)
				}
				if !got.PendingSince.IsZero() {
					t.Errorf("PendingSince = %v for an item not pending, want zero", got.PendingSince)
				}
			},
		},
		{
			name: "queue sets ID and replaces the request for the same pair",
			batches: [][]Change{
				{{Item: base, Queue: &Request{Entity: alice, Contact: bob, Rule: "rule 1", Created: t0}}},
				{{Item: base, Queue: &Request{Rule: "rule 2", SubscribeBack: true, Created: t0.Add(time.Second)}}},
			},
			check: func(t *testing.T, db *DB, b [][]Change) {
				first, second := b[0][0].Queue, b[1][0].Queue
				if first.ID == 0 || second.ID == 0 || first.ID == second.ID {
					t.Fatalf("IDs %d and %d: want two distinct non-zero", first.ID, second.ID)
				}
				want := Request{ID: second.ID, Entity: alice, Contact: bob, Rule: "rule 2", SubscribeBack: true, Created: t0.Add(time.Second)}
				wantRequests(t, db, want)
				got, err := db.Request(ctx, second.ID)
				if err != nil || got != want {
					t.Errorf("Request(%d) = %+v, %v; want %+v", second.ID, got, err, want)
				}
				if _, err := db.Request(ctx, first.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("Request(replaced %d) err = %v, want ErrNotFound", first.ID, err)
				}
			},
		},
		{
			name: "requests come oldest first",
			batches: [][]Change{{
				{Item: Item{Entity: alice, Contact: "z@x", Sub: SubNone, PendingIn: true}, Queue: &Request{Created: t0.Add(2 * time.Second)}},
				{Item: Item{Entity: alice, Contact: "y@x", Sub: SubNone, PendingIn: true}, Queue: &Request{Created: t0}},
				{Item: Item{Entity: "bea", Contact: "x@x", Sub: SubNone, PendingIn: true}, Queue: &Request{Created: t0.Add(time.Second)}},
			}},
			check: func(t *testing.T, db *DB, b [][]Change) {
				wantRequests(t, db,
					Request{ID: b[0][1].Queue.ID, Entity: alice, Contact: "y@x", Created: t0},
					Request{ID: b[0][2].Queue.ID, Entity: "bea", Contact: "x@x", Created: t0.Add(time.Second)},
					Request{ID: b[0][0].Queue.ID, Entity: alice, Contact: "z@x", Created: t0.Add(2 * time.Second)})
			},
		},
		{
			name: "dequeue",
			batches: [][]Change{
				{{Item: base, Queue: &Request{Rule: "rule 1", Created: t0}}},
				{{Item: Item{Entity: alice, Contact: bob, Sub: SubFrom, Updated: t0}, Dequeue: true}},
			},
			check: func(t *testing.T, db *DB, b [][]Change) {
				wantRequests(t, db)
				if _, err := db.Request(ctx, b[0][0].Queue.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("Request after dequeue: err = %v, want ErrNotFound", err)
				}
				wantItem(t, db, Item{Entity: alice, Contact: bob, Sub: SubFrom, Updated: t0})
			},
		},
		{
			name: "dequeue only leaves the item alone",
			batches: [][]Change{
				{{Item: base, Queue: &Request{Created: t0}}},
				{{Item: Item{Entity: alice, Contact: bob}, Dequeue: true}},
			},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantRequests(t, db)
				wantItem(t, db, base)
			},
		},
		{
			name: "deleting the item deletes its request",
			batches: [][]Change{
				{{Item: base, Queue: &Request{Created: t0}}},
				{{Item: Item{Entity: alice, Contact: bob, Sub: SubNone}}},
			},
			check: func(t *testing.T, db *DB, _ [][]Change) {
				wantNoItem(t, db, alice, bob)
				wantRequests(t, db)
			},
		},
		{
			name: "queue before its item within one batch",
			batches: [][]Change{{
				{Item: Item{Entity: alice, Contact: bob}, Queue: &Request{Entity: alice, Contact: bob, Created: t0}},
				{Item: base},
			}},
			check: func(t *testing.T, db *DB, b [][]Change) {
				wantRequests(t, db, Request{ID: b[0][0].Queue.ID, Entity: alice, Contact: bob, Created: t0})
			},
		},
		{
			name: "audit round trip, audit-only change",
			batches: [][]Change{
				{{Item: base, Audit: &Event{At: t0, Entity: alice, Contact: bob, Kind: "subscribe", Action: "review",
					Rule: "rule 2", From: "none", To: "none+in", Actor: bob, Interface: "stream", Detail: "held"}}},
				{{Item: Item{Entity: alice, Contact: "eve@example.org"}, Audit: &Event{At: t0, Entity: alice,
					Contact: "eve@example.org", Kind: "subscribe", Action: "drop", Actor: "eve@example.org", Interface: "stream"}}},
			},
			check: func(t *testing.T, db *DB, b [][]Change) {
				wantNoItem(t, db, alice, "eve@example.org")
				var got []Event
				if err := db.Events(ctx, time.Time{}, func(e Event) error { got = append(got, e); return nil }); err != nil {
					t.Fatal(err)
				}
				want := []Event{*b[0][0].Audit, *b[1][0].Audit}
				if want[0].ID == 0 || want[1].ID <= want[0].ID {
					t.Errorf("event IDs %d, %d: want increasing non-zero", want[0].ID, want[1].ID)
				}
				if !slices.Equal(got, want) {
					t.Errorf("Events =\n%+v\nwant\n%+v", got, want)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTest(t)
			for _, b := range tc.batches {
				mustApply(t, db, b...)
			}
			tc.check(t, db, tc.batches)
			if err := db.Check(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

func wantItem(t *testing.T, db *DB, want Item) {
	t.Helper()
	got, err := db.Get(context.Background(), want.Entity, want.Contact)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", want.Entity, want.Contact, err)
	}
	if !sameItem(got, want) {
		t.Errorf("Get(%q, %q) =\n%+v\nwant\n%+v", want.Entity, want.Contact, got, want)
	}
}

func wantNoItem(t *testing.T, db *DB, entity, contact string) {
	t.Helper()
	got, err := db.Get(context.Background(), entity, contact)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(%q, %q) = %+v, %v; want ErrNotFound", entity, contact, got, err)
	}
}

func wantRequests(t *testing.T, db *DB, want ...Request) {
	t.Helper()
	got, err := db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Requests =\n%+v\nwant\n%+v", got, want)
	}
}

func TestApplyEmptyBatch(t *testing.T) {
	db, _ := openTest(t)
	for _, b := range [][]Change{nil, {}} {
		if err := db.Apply(context.Background(), b); err != nil {
			t.Errorf("Apply(%v) = %v", b, err)
		}
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	ctx := context.Background()
	good := func() Change {
		return Change{
			Item:  Item{Entity: "alice", Contact: "bob@example.org", Sub: SubNone, PendingIn: true, PendingSince: t0, Updated: t0},
			Queue: &Request{Rule: "rule 2", Created: t0},
			Audit: &Event{At: t0, Entity: "alice", Contact: "bob@example.org", Kind: "subscribe", Action: "review"},
		}
	}
	for _, tc := range []struct {
		name    string
		bad     Change
		wantErr string
	}{
		{"bogus sub", Change{Item: Item{Entity: "alice", Contact: "carol@example.org", Sub: "bogus"}}, `change 1 ("alice", "carol@example.org"): unknown subscription state "bogus"`},
		{"request without item (foreign key at commit)", Change{Item: Item{Entity: "alice", Contact: "dan@example.org"},
			Queue: &Request{Created: t0}}, "FOREIGN KEY constraint failed"},
		{"queue and delete the same item", Change{Item: Item{Entity: "alice", Contact: "bob@example.org"}, Delete: true,
			Queue: &Request{Created: t0}}, "FOREIGN KEY constraint failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTest(t)
			batch := []Change{good(), tc.bad}
			err := db.Apply(ctx, batch)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "storage: apply: ") {
				t.Fatalf("Apply err = %v, want storage: apply: …%s", err, tc.wantErr)
			}
			wantNoItem(t, db, "alice", "bob@example.org")
			wantRequests(t, db)
			n := 0
			if err := db.Events(ctx, time.Time{}, func(Event) error { n++; return nil }); err != nil || n != 0 {
				t.Errorf("Events: %d rows, %v; want none", n, err)
			}
			if batch[0].Queue.ID != 0 || batch[0].Audit.ID != 0 {
				t.Errorf("IDs set by a failed Apply: request %d, event %d", batch[0].Queue.ID, batch[0].Audit.ID)
			}
			// The writer is usable again afterwards.
			mustApply(t, db, good())
			wantItem(t, db, good().Item)
		})
	}
}

func TestAuditAppendOnly(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	ev := &Event{At: t0, Entity: "alice", Contact: "bob@example.org", Kind: "subscribe", Action: "accept"}
	mustApply(t, db, Change{Audit: ev})
	for _, tc := range []struct{ name, sql string }{
		{"update", `UPDATE audit SET detail = 'forged' WHERE id = ?`},
		{"delete", `DELETE FROM audit WHERE id = ?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.w.ExecContext(ctx, tc.sql, ev.ID)
			if err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("%s: err = %v, want the append-only abort", tc.name, err)
			}
			var got []Event
			if err := db.Events(ctx, time.Time{}, func(e Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != *ev {
				t.Errorf("Events = %+v, want just %+v", got, *ev)
			}
		})
	}
}

func TestItemsFilter(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	items := []struct{ entity, contact, sub string }{
		{"bea", "z@x", SubBoth}, {"alice", "m@x", SubTo}, {"", "svc@x", SubFrom}, {"alice", "b@x", SubBoth},
		{"bea", "a@x", SubNone}, {"alice", "a@x", SubFrom}, {"", "adm@x", SubBoth}, {"alice", "z@x", SubNone},
	}
	var batch []Change
	for _, it := range items {
		batch = append(batch, Change{Item: Item{Entity: it.entity, Contact: it.contact, Sub: it.sub, PendingIn: it.sub == SubNone}})
	}
	mustApply(t, db, batch...)

	for _, tc := range []struct {
		name    string
		f       Filter
		want    []string
		wantErr string
	}{
		{name: "one entity", f: Filter{Entity: "alice"}, want: []string{"alice/a@x", "alice/b@x", "alice/m@x", "alice/z@x"}},
		{name: "component domain", f: Filter{}, want: []string{"/adm@x", "/svc@x"}},
		{name: "unknown entity", f: Filter{Entity: "nobody"}},
		{name: "all entities", f: Filter{Entity: "ignored", AllEntities: true}, want: []string{
			"/adm@x", "/svc@x", "alice/a@x", "alice/b@x", "alice/m@x", "alice/z@x", "bea/a@x", "bea/z@x"}},
		{name: "one sub", f: Filter{Entity: "alice", Subs: []string{SubBoth}}, want: []string{"alice/b@x"}},
		{name: "several subs, all entities", f: Filter{AllEntities: true, Subs: []string{SubFrom, SubBoth}}, want: []string{
			"/adm@x", "/svc@x", "alice/a@x", "alice/b@x", "bea/z@x"}},
		{name: "unknown sub", f: Filter{AllEntities: true, Subs: []string{"both", "bogus"}}, wantErr: `unknown subscription state "bogus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := db.Items(ctx, tc.f, func(it Item) error {
				got = append(got, it.Entity+"/"+it.Contact)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Items = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("early stop", func(t *testing.T) {
		stop := errors.New("enough")
		n := 0
		err := db.Items(ctx, Filter{AllEntities: true}, func(Item) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if err != stop || n != 3 {
			t.Errorf("err = %v after %d rows, want %v after 3", err, n, stop)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		n := 0
		err := db.Items(cctx, Filter{AllEntities: true}, func(Item) error {
			n++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || n != 1 {
			t.Errorf("err = %v after %d rows, want context.Canceled after 1", err, n)
		}
	})
}

// TestItemsWhileApply iterates with Items while Apply commits from other
// goroutines, and from inside the callback: nothing may wait for anything
// else, and the iteration sees the snapshot it started with.
func TestItemsWhileApply(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	const n = 3000
	var batch []Change
	for i := range n {
		batch = append(batch, Change{Item: Item{Entity: "e", Contact: fmt.Sprintf("c%05d@x", i), Sub: SubBoth}})
	}
	mustApply(t, db, batch...)

	// The background writers use entity "f"; the writers that run while the
	// iteration holds its snapshot write to "e", after every existing contact,
	// so a broken snapshot would show them to the iteration.
	writer := func(entity, prefix string, batches, size int) error {
		for b := range batches {
			var batch []Change
			for i := range size {
				batch = append(batch, Change{
					Item:  Item{Entity: entity, Contact: fmt.Sprintf("%s-%03d-%03d@x", prefix, b, i), Sub: SubTo},
					Audit: &Event{Kind: "subscribed", Action: "state"},
				})
			}
			if err := db.Apply(ctx, batch); err != nil {
				return err
			}
		}
		return nil
	}

	// Background writers run for the whole iteration.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Go(func() { errs <- writer("f", fmt.Sprintf("bg%d", w), 20, 50) })
	}
	// Concurrent readers, too.
	for range 2 {
		wg.Go(func() {
			errs <- db.Items(ctx, Filter{AllEntities: true, Subs: []string{SubTo}}, func(Item) error { return nil })
		})
	}

	seen := 0
	err := db.Items(ctx, Filter{Entity: "e"}, func(it Item) error {
		seen++
		switch seen {
		case 1:
			// A writer in another goroutine must finish while this
			// iteration holds its read snapshot open.
			done := make(chan error, 1)
			go func() { done <- writer("e", "mid", 10, 100) }()
			select {
			case err := <-done:
				if err != nil {
					return err
				}
			case <-time.After(30 * time.Second):
				return errors.New("Apply blocked behind an open Items iteration")
			}
		case 2:
			// Apply and Get from inside the callback.
			if err := writer("e", "inside", 1, 10); err != nil {
				return err
			}
			if _, err := db.Get(ctx, "e", "inside-000-000@x"); err != nil {
				return err
			}
		}
		if !strings.HasPrefix(it.Contact, "c") {
			return fmt.Errorf("iteration saw %s/%s, committed after it started", it.Entity, it.Contact)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Errorf("saw %d items, want the %d of the snapshot", seen, n)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	total := 0
	if err := db.Items(ctx, Filter{AllEntities: true}, func(Item) error { total++; return nil }); err != nil {
		t.Fatal(err)
	}
	if want := n + 2*20*50 + 10*100 + 10; total != want {
		t.Errorf("afterwards %d items, want %d", total, want)
	}
}

// TestTwoHandles has two DBs on one file, as the component and the CLI are,
// both writing at once: busy_timeout and BEGIN IMMEDIATE must sort it out.
func TestTwoHandles(t *testing.T) {
	ctx := context.Background()
	db1, path := openTest(t)
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for h, db := range []*DB{db1, db2} {
		wg.Go(func() {
			for i := range 200 {
				if err := db.Apply(ctx, []Change{{Item: Item{Entity: fmt.Sprint("h", h), Contact: fmt.Sprintf("c%d@x", i), Sub: SubBoth}}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, db := range []*DB{db1, db2} {
		n := 0
		if err := db.Items(ctx, Filter{AllEntities: true}, func(Item) error { n++; return nil }); err != nil || n != 400 {
			t.Errorf("Items: %d, %v; want 400", n, err)
		}
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	// Appended out of time order; two share an instant.
	ats := []time.Duration{3 * time.Second, time.Second, 2 * time.Second, time.Second, 0}
	var batch []Change
	for i, d := range ats {
		batch = append(batch, Change{Audit: &Event{At: t0.Add(d), Detail: fmt.Sprint(i)}})
	}
	mustApply(t, db, batch...)
	for _, tc := range []struct {
		name  string
		since time.Time
		want  []string
	}{
		{"everything", time.Time{}, []string{"4", "1", "3", "2", "0"}},
		{"since is inclusive", t0.Add(time.Second), []string{"1", "3", "2", "0"}},
		{"future", t0.Add(time.Hour), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			if err := db.Events(ctx, tc.since, func(e Event) error { got = append(got, e.Detail); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Events = %q, want %q", got, tc.want)
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	if err := db.Events(ctx, time.Time{}, func(Event) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("early stop: err = %v after %d, want %v after 1", err, n, stop)
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	if err := db.Check(ctx); err != nil {
		t.Errorf("fresh database: %v", err)
	}
	mustApply(t, db, Change{
		Item:  Item{Entity: "alice", Contact: "bob@example.org", Sub: SubNone, PendingIn: true},
		Queue: &Request{},
		Audit: &Event{Kind: "subscribe", Action: "review"},
	})
	if err := db.Check(ctx); err != nil {
		t.Errorf("populated database: %v", err)
	}
}

func TestNotFoundErrors(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	_, err1 := db.Get(ctx, "alice", "bob@example.org")
	_, err2 := db.Request(ctx, 42)
	for _, err := range []error{err1, err2} {
		if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "storage: ") {
			t.Errorf("err = %v, want a storage: error wrapping ErrNotFound", err)
		}
	}
}

const crashEnv = "ROSTERGATE_STORAGE_CRASH_DB"
const crashBatch = 25

// TestCrashHelper is not a test: TestCrashConsistency runs it in a child
// process, which writes batches until it is killed.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run by TestCrashConsistency")
	}
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for k := time.Now().UnixNano(); ; k++ {
		var batch []Change
		for j := range crashBatch {
			contact := fmt.Sprintf("b%d-%02d@x", k, j)
			batch = append(batch, Change{
				Item:  Item{Entity: "crash", Contact: contact, Sub: SubNone, PendingIn: true},
				Queue: &Request{Rule: fmt.Sprint(k)},
				Audit: &Event{Entity: "crash", Contact: contact, Kind: "subscribe", Action: "review", Detail: fmt.Sprint(k)},
			})
		}
		if err := db.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCrashConsistency kills a writing process with SIGKILL at arbitrary
// instants, while this process reads, and checks that only whole batches
// were kept.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "roster.db")
	reader, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	count := func(db *DB, table string) int {
		var n int
		if err := db.r.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		before := count(reader, "audit")
		deadline := time.Now().Add(20 * time.Second)
		for count(reader, "audit") < before+5*crashBatch && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(round*7) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, not by SIGKILL", round, err)
		}
		if after := count(reader, "audit"); after <= before {
			t.Fatalf("round %d: the child wrote nothing (%d audit rows)", round, after)
		}
	}

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(ctx); err != nil {
		t.Fatal(err)
	}
	items, reqs, events := count(db, "roster"), count(db, "requests"), count(db, "audit")
	if items != events || reqs != events || events%crashBatch != 0 {
		t.Errorf("%d items, %d requests, %d events: want equal counts, a multiple of %d", items, reqs, events, crashBatch)
	}
	perBatch := map[string]int{}
	if err := db.Events(ctx, time.Time{}, func(e Event) error { perBatch[e.Detail]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for k, n := range perBatch {
		if n != crashBatch {
			t.Errorf("batch %s has %d events, want %d", k, n, crashBatch)
		}
	}
	t.Logf("%d whole batches survived 4 SIGKILLs", len(perBatch))
}

func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			db, _ := openTest(b)
			ctx := context.Background()
			batch := make([]Change, size)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					contact := fmt.Sprintf("c%d@example.org", n)
					n++
					batch[i] = Change{
						Item: Item{Entity: "alice", Contact: contact, Sub: SubFrom},
						Audit: &Event{Entity: "alice", Contact: contact, Kind: "subscribe", Action: "accept",
							Rule: "rule 1", From: "none", To: "from", Actor: contact, Interface: "stream"},
					}
				}
				if err := db.Apply(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// Reading in pages with After and Limit visits every item once, in order.
func TestItemsPages(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	var batch []Change
	for _, e := range []string{"", "a", "b"} {
		for i := range 25 {
			batch = append(batch, Change{Item: Item{Entity: e, Contact: fmt.Sprintf("c%02d@x", i), Sub: SubFrom}})
		}
	}
	mustApply(t, db, batch...)
	var got []Key
	var after *Key
	for pages := 0; pages < 100; pages++ {
		n := 0
		err := db.Items(ctx, Filter{AllEntities: true, After: after, Limit: 10}, func(it Item) error {
			n++
			after = &Key{it.Entity, it.Contact}
			got = append(got, *after)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n < 10 {
			break
		}
	}
	if len(got) != 75 || got[0] != (Key{"", "c00@x"}) || got[25] != (Key{"a", "c00@x"}) || got[74] != (Key{"b", "c24@x"}) {
		t.Fatalf("pages visited %d items: first %v, last %v", len(got), got[0], got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if !(got[i-1].Entity < got[i].Entity || got[i-1].Entity == got[i].Entity && got[i-1].Contact < got[i].Contact) {
			t.Fatalf("out of order at %d: %v then %v", i, got[i-1], got[i])
		}
	}
}

// TestItemsQueryPlan guards the streaming of Items over large rosters: no
// filter may make SQLite sort, which would buffer every row first.
func TestItemsQueryPlan(t *testing.T) {
	db, _ := openTest(t)
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"entity", Filter{Entity: "alice"}},
		{"entity and subs", Filter{Entity: "alice", Subs: []string{SubTo, SubBoth}}},
		{"all", Filter{AllEntities: true}},
		{"all and subs", Filter{AllEntities: true, Subs: []string{SubFrom}}},
		{"page", Filter{AllEntities: true, After: &Key{"alice", "bob@x"}, Limit: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, args, err := itemsQuery(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := db.r.Query("EXPLAIN QUERY PLAN "+q, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, parent, notused int
				var detail string
				if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(detail, "TEMP B-TREE") {
					t.Errorf("plan of %q sorts: %s", q, detail)
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The outbox keeps a batch's stanzas, committed with its changes, until they
// are marked delivered; a failed batch leaves no outbox row.
func TestOutbox(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	id1, err := db.Commit(ctx, Batch{Changes: []Change{{Item: Item{Entity: "e", Contact: "a@x", Sub: SubFrom}}}, Send: "<presence type='subscribed'/>"})
	if err != nil || id1 == 0 {
		t.Fatalf("Commit = %d, %v", id1, err)
	}
	id2, err := db.Commit(ctx, Batch{Send: "<presence type='unsubscribed'/>"})
	if err != nil || id2 <= id1 {
		t.Fatalf("Commit = %d, %v", id2, err)
	}
	if _, err := db.Commit(ctx, Batch{Changes: []Change{{Item: Item{Entity: "e", Contact: "b@x", Sub: "bogus"}}}, Send: "<never/>"}); err == nil {
		t.Fatal("a bad change committed")
	}
	out, err := db.Outbox(ctx)
	if err != nil || len(out) != 2 || out[0].ID != id1 || out[0].Stanzas != "<presence type='subscribed'/>" || out[1].ID != id2 {
		t.Fatalf("Outbox = %+v, %v", out, err)
	}
	// Delivery of the first rides on the next batch.
	if _, err := db.Commit(ctx, Batch{Changes: []Change{{Item: Item{Entity: "e", Contact: "c@x", Sub: SubTo}}}, Delivered: id1}); err != nil {
		t.Fatal(err)
	}
	if out, _ := db.Outbox(ctx); len(out) != 1 || out[0].ID != id2 {
		t.Fatalf("after delivering %d: %+v", id1, out)
	}
	if err := db.Delivered(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if out, _ := db.Outbox(ctx); len(out) != 0 {
		t.Fatalf("after delivering all: %+v", out)
	}
}

func TestLists(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for _, step := range []struct {
		list, pattern string
		add, changed  bool
	}{
		{"allow", "*@example.org", true, true},
		{"allow", "*@example.org", true, false},
		{"deny", "spam.example", true, true},
		{"deny", "a@b", true, true},
		{"deny", "a@b", false, true},
		{"deny", "a@b", false, false},
	} {
		changed, err := db.EditList(ctx, step.list, step.pattern, step.add, &Event{Kind: "list", Action: step.list, Actor: "admin@x", Interface: "test"})
		if err != nil || changed != step.changed {
			t.Fatalf("EditList(%+v) = %t, %v", step, changed, err)
		}
	}
	if _, err := db.EditList(ctx, "maybe", "x", true, nil); err == nil {
		t.Error("unknown list accepted")
	}
	allow, deny, err := db.Lists(ctx)
	if err != nil || len(allow) != 1 || allow[0] != "*@example.org" || len(deny) != 1 || deny[0] != "spam.example" {
		t.Fatalf("Lists = %v %v %v", allow, deny, err)
	}
	n := 0
	db.Events(ctx, time.Time{}, func(Event) error { n++; return nil })
	if n != 4 {
		t.Errorf("%d audit events, want 4 (one per change)", n)
	}
}

func TestActions(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	id1, err := db.QueueAction(ctx, "cli:root", "approve", "12 13")
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := db.QueueAction(ctx, "cli:root", "deny", "*@spam.example")
	w, err := db.WaitingActions(ctx)
	if err != nil || len(w) != 2 || w[0].ID != id1 || w[0].Args != "12 13" || w[1].Verb != "deny" {
		t.Fatalf("WaitingActions = %+v, %v", w, err)
	}
	if err := db.FinishAction(ctx, id1, "Approved #12"); err != nil {
		t.Fatal(err)
	}
	if w, _ := db.WaitingActions(ctx); len(w) != 1 || w[0].ID != id2 {
		t.Fatalf("after finishing %d: %+v", id1, w)
	}
	a, err := db.ActionByID(ctx, id1)
	if err != nil || a.Done.IsZero() || a.Result != "Approved #12" {
		t.Fatalf("ActionByID = %+v, %v", a, err)
	}
	if _, err := db.ActionByID(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing action: %v", err)
	}
}

// A backup taken while writes go on is a consistent, openable copy.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for i := range 500 {
		mustApply(t, db, Change{Item: Item{Entity: "e", Contact: fmt.Sprintf("c%04d@x", i), Sub: SubFrom}})
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := db.Apply(ctx, []Change{{Item: Item{Entity: "w", Contact: fmt.Sprintf("w%06d@x", i), Sub: SubTo}}}); err != nil {
				done <- err
				return
			}
		}
	}()
	out := filepath.Join(t.TempDir(), "copy.db")
	err := db.Backup(ctx, out)
	close(stop)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", fi, err)
	}
	cp, err := Open(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	n := 0
	cp.Items(ctx, Filter{Entity: "e"}, func(Item) error { n++; return nil })
	if n != 500 {
		t.Errorf("the copy has %d items of e, want 500", n)
	}
	if err := cp.Check(ctx); err != nil {
		t.Error(err)
	}
	if err := db.Backup(ctx, out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
}
