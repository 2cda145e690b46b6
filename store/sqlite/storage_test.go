package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"rostergate/roster"
	"rostergate/store"
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

func mustApply(t testing.TB, db *DB, changes ...store.Change) {
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

func sameItem(a, b roster.Item) bool {
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
			mustApply(t, db, store.Change{Item: roster.Item{Entity: "alice", Contact: "bob@example.org", Sub: roster.SubBoth}})
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
			if !strings.HasPrefix(err.Error(), "sqlite: ") {
				t.Errorf("error %q lacks the sqlite: prefix", err)
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
	item := roster.Item{Entity: "alice", Contact: "bob@example.org", Sub: roster.SubTo, Updated: t0}
	var schemaVersion int
	for i := range 3 {
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if i == 0 {
			mustApply(t, db, store.Change{Item: item})
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
	newer := knownVersion(t) + 1
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA user_version = %d", newer)); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err == nil {
		db.Close()
		t.Fatal("Open accepted a newer schema")
	}
	want := fmt.Sprintf("sqlite: database schema version %d is newer than this rostergate (knows %d)", newer, knownVersion(t))
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != newer {
		t.Errorf("user_version after refusal = %d, %v; want %d", v, err, newer)
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

func wantItem(t *testing.T, db *DB, want roster.Item) {
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
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%q, %q) = %+v, %v; want store.ErrNotFound", entity, contact, got, err)
	}
}

func wantRequests(t *testing.T, db *DB, want ...roster.Request) {
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
	for _, b := range [][]store.Change{nil, {}} {
		if err := db.Apply(context.Background(), b); err != nil {
			t.Errorf("Apply(%v) = %v", b, err)
		}
	}
}

// TestCommitErrors: what SQLite refuses, with the error that says so, and
// (as storetest checks of every backend) nothing of the batch is kept, not
// even its outbox row. Unknown subscription states are refused by this
// backend; the contract does not ask it.
func TestCommitErrors(t *testing.T) {
	ctx := context.Background()
	good := func() store.Change {
		return store.Change{
			Item:  roster.Item{Entity: "alice", Contact: "bob@example.org", Sub: roster.SubNone, PendingIn: true, PendingSince: t0, Updated: t0},
			Queue: &roster.Request{Rule: "rule 2", Created: t0},
			Audit: &roster.Event{At: t0, Entity: "alice", Contact: "bob@example.org", Kind: "subscribe", Action: "review"},
		}
	}
	for _, tc := range []struct {
		name    string
		bad     store.Change
		wantErr string
	}{
		{"bogus sub", store.Change{Item: roster.Item{Entity: "alice", Contact: "carol@example.org", Sub: "bogus"}}, `change 1 ("alice", "carol@example.org"): unknown subscription state "bogus"`},
		{"request without item (foreign key at commit)", store.Change{Item: roster.Item{Entity: "alice", Contact: "dan@example.org"},
			Queue: &roster.Request{Created: t0}}, "FOREIGN KEY constraint failed"},
		{"queue and delete the same item", store.Change{Item: roster.Item{Entity: "alice", Contact: "bob@example.org"}, Delete: true,
			Queue: &roster.Request{Created: t0}}, "FOREIGN KEY constraint failed"},
	} {
		for _, via := range []struct {
			name  string
			write func(db *DB, changes []store.Change) error
		}{
			{"Apply", func(db *DB, changes []store.Change) error { return db.Apply(ctx, changes) }},
			{"Commit with Send", func(db *DB, changes []store.Change) error {
				id, err := db.Commit(ctx, store.Batch{Changes: changes, Send: "<never/>"})
				if err == nil || id != 0 {
					return fmt.Errorf("sqlite test: Commit = %d, %v; want 0 and an error", id, err)
				}
				return err
			}},
		} {
			t.Run(tc.name+"/"+via.name, func(t *testing.T) {
				db, _ := openTest(t)
				batch := []store.Change{good(), tc.bad}
				err := via.write(db, batch)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "sqlite: apply: ") {
					t.Fatalf("err = %v, want sqlite: apply: …%s", err, tc.wantErr)
				}
				wantNoItem(t, db, "alice", "bob@example.org")
				wantRequests(t, db)
				n := 0
				if err := db.Events(ctx, time.Time{}, func(roster.Event) error { n++; return nil }); err != nil || n != 0 {
					t.Errorf("Events: %d rows, %v; want none", n, err)
				}
				if out, err := db.Outbox(ctx); err != nil || len(out) != 0 {
					t.Errorf("Outbox = %+v, %v; want none", out, err)
				}
				if batch[0].Queue.ID != 0 || batch[0].Audit.ID != 0 {
					t.Errorf("IDs set by a failed write: request %d, event %d", batch[0].Queue.ID, batch[0].Audit.ID)
				}
				// The writer is usable again afterwards.
				mustApply(t, db, good())
				wantItem(t, db, good().Item)
			})
		}
	}
}

// TestItemsUnknownSub: this backend refuses a filter on a subscription
// state that does not exist, rather than select nothing.
func TestItemsUnknownSub(t *testing.T) {
	db, _ := openTest(t)
	mustApply(t, db, store.Change{Item: roster.Item{Entity: "alice", Contact: "b@x", Sub: roster.SubBoth}})
	called := false
	err := db.Items(context.Background(), store.Filter{AllEntities: true, Subs: []string{"both", "bogus"}}, func(roster.Item) error {
		called = true
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `unknown subscription state "bogus"`) || !strings.HasPrefix(err.Error(), "sqlite: items: ") {
		t.Fatalf("err = %v, want sqlite: items: …unknown subscription state \"bogus\"", err)
	}
	if called {
		t.Error("fn called for a refused filter")
	}
}

func TestAuditAppendOnly(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	ev := &roster.Event{At: t0, Entity: "alice", Contact: "bob@example.org", Kind: "subscribe", Action: "accept"}
	mustApply(t, db, store.Change{Audit: ev})
	for _, tc := range []struct{ name, sql string }{
		{"update", `UPDATE audit SET detail = 'forged' WHERE id = ?`},
		{"delete", `DELETE FROM audit WHERE id = ?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.w.ExecContext(ctx, tc.sql, ev.ID)
			if err == nil || !strings.Contains(err.Error(), "append-only") {
				t.Fatalf("%s: err = %v, want the append-only abort", tc.name, err)
			}
			var got []roster.Event
			if err := db.Events(ctx, time.Time{}, func(e roster.Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != *ev {
				t.Errorf("Events = %+v, want just %+v", got, *ev)
			}
		})
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
				if err := db.Apply(ctx, []store.Change{{Item: roster.Item{Entity: fmt.Sprint("h", h), Contact: fmt.Sprintf("c%d@x", i), Sub: roster.SubBoth}}}); err != nil {
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
		if err := db.Items(ctx, store.Filter{AllEntities: true}, func(roster.Item) error { n++; return nil }); err != nil || n != 400 {
			t.Errorf("Items: %d, %v; want 400", n, err)
		}
	}
}

// TestNotFoundErrors: storetest checks that these match store.ErrNotFound;
// here, that they are this package's errors and name what is missing.
func TestNotFoundErrors(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"Get", func() error { _, err := db.Get(ctx, "alice", "bob@example.org"); return err }, `sqlite: roster item ("alice", "bob@example.org") not found`},
		{"Request", func() error { _, err := db.Request(ctx, 42); return err }, "sqlite: request 42 not found"},
		{"Action", func() error { _, err := db.Action(ctx, 999); return err }, "sqlite: action 999 not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, store.ErrNotFound) || err.Error() != tc.want {
				t.Errorf("err = %v, want %q wrapping store.ErrNotFound", err, tc.want)
			}
		})
	}
}

const (
	crashEnv        = "ROSTERGATE_STORAGE_CRASH_DB"
	crashBatch      = 25
	crashMaxBatches = 1 << 20 // the child gives up if never killed
	crashMark       = "rostergate-crash-helper: committed"
)

// TestCrashHelper is not a test: TestCrashConsistency runs it in a child
// process, which writes batches until it is killed, and writes crashMark
// on its standard output after each commit.
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
	base := time.Now().UnixNano()
	for i := range crashMaxBatches {
		k := base + int64(i)
		var batch []store.Change
		for j := range crashBatch {
			contact := fmt.Sprintf("b%d-%02d@x", k, j)
			batch = append(batch, store.Change{
				Item:  roster.Item{Entity: "crash", Contact: contact, Sub: roster.SubNone, PendingIn: true},
				Queue: &roster.Request{Rule: fmt.Sprint(k)},
				Audit: &roster.Event{Entity: "crash", Contact: contact, Kind: "subscribe", Action: "review", Detail: fmt.Sprint(k)},
			})
		}
		if err := db.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
		fmt.Println(crashMark)
	}
	t.Fatalf("not killed after %d batches", crashMaxBatches)
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
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		before := count(reader, "audit")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill comes after 5, 7, 9 and 11 commits the child reported:
		// it goes on writing meanwhile, so the kill lands anywhere in a
		// batch. The child's output is read to its end, so it never waits
		// on a full pipe.
		target := 5 + 2*round
		reached, drained := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(drained)
			sc := bufio.NewScanner(stdout)
			n := 0
			for sc.Scan() {
				if sc.Text() == crashMark {
					if n++; n == target {
						close(reached)
					}
				}
			}
		}()
		select {
		case <-reached:
		case <-drained:
			// The child ended by itself: the checks below say how.
		case <-time.After(20 * time.Second):
			t.Errorf("round %d: the child did not report %d commits in 20s", round, target)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		<-drained
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, not by SIGKILL", round, err)
		}
		if after := count(reader, "audit"); after < before+target*crashBatch {
			t.Fatalf("round %d: %d audit rows after the child reported %d commits of %d, %d before", round, after, target, crashBatch, before)
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
	if err := db.Events(ctx, time.Time{}, func(e roster.Event) error { perBatch[e.Detail]++; return nil }); err != nil {
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
			batch := make([]store.Change, size)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					contact := fmt.Sprintf("c%d@example.org", n)
					n++
					batch[i] = store.Change{
						Item: roster.Item{Entity: "alice", Contact: contact, Sub: roster.SubFrom},
						Audit: &roster.Event{Entity: "alice", Contact: contact, Kind: "subscribe", Action: "accept",
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

// TestItemsQueryPlan guards the streaming of Items over large rosters: no
// filter may make SQLite sort, which would buffer every row first.
func TestItemsQueryPlan(t *testing.T) {
	db, _ := openTest(t)
	for _, tc := range []struct {
		name string
		f    store.Filter
	}{
		{"entity", store.Filter{Entity: "alice"}},
		{"entity and subs", store.Filter{Entity: "alice", Subs: []string{roster.SubTo, roster.SubBoth}}},
		{"all", store.Filter{AllEntities: true}},
		{"all and subs", store.Filter{AllEntities: true, Subs: []string{roster.SubFrom}}},
		{"page", store.Filter{AllEntities: true, After: &roster.Key{Entity: "alice", Contact: "bob@x"}, Limit: 1000}},
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

// A backup taken while writes go on is a consistent, openable copy.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	for i := range 500 {
		mustApply(t, db, store.Change{Item: roster.Item{Entity: "e", Contact: fmt.Sprintf("c%04d@x", i), Sub: roster.SubFrom}})
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// Bounded: the backup is over long before a million commits.
		for i := range 1_000_000 {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := db.Apply(ctx, []store.Change{{Item: roster.Item{Entity: "w", Contact: fmt.Sprintf("w%07d@x", i), Sub: roster.SubTo}}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
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
	cp.Items(ctx, store.Filter{Entity: "e"}, func(roster.Item) error { n++; return nil })
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
