package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rostergate/internal/pgtest"
	"rostergate/roster"
	"rostergate/store"
)

var t0 = time.UnixMilli(1_700_000_000_123).UTC()

// openDSN opens a store on dsn, closed when t ends.
func openDSN(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// connect opens a plain connection to dsn, closed when t ends.
func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestOpenTogether: instances opening a new database at once do not race:
// each opens, and every migration is applied once.
func TestOpenTogether(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			db, err := Open(t.Context(), dsn)
			if err == nil {
				db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	ms, err := parseMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := connect(t, dsn).Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	var want []int32
	for _, m := range ms {
		want = append(want, int32(m.version))
	}
	if !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	if err := openDSN(t, dsn).Check(t.Context()); err != nil {
		t.Error(err)
	}
}

// TestNewerSchema: a schema newer than the code is refused.
func TestNewerSchema(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	openDSN(t, dsn)
	if _, err := connect(t, dsn).Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES (999, '0999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(t.Context(), dsn); err == nil {
		db.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
}

// TestUpgradeWhileHeld: an older schema is upgraded only while no running
// instance holds the store.
func TestUpgradeWhileHeld(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	old := openDSN(t, dsn)
	release, err := old.Hold(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	next := append(slices.Clone(ms), migration{version: len(ms) + 1, name: "9999_test.sql", sql: `CREATE TABLE upgraded (v int)`})
	if db, err := open(t.Context(), dsn, next); !errors.Is(err, store.ErrHeld) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("upgrade while held: %v, want store.ErrHeld", err)
	}
	release()
	db, err := open(t.Context(), dsn, next)
	if err != nil {
		t.Fatalf("upgrade once released: %v", err)
	}
	defer db.Close()
	if _, err := connect(t, dsn).Exec(t.Context(), `SELECT * FROM upgraded`); err != nil {
		t.Errorf("the new migration's table: %v", err)
	}
}

// TestHold: one holder per database, across DBs (as across processes);
// release is idempotent; a holder whose connection is cut, or that is
// closed, lets go.
func TestHold(t *testing.T) {
	s := pgtest.Start(t)
	dsn := s.NewDatabase(t)
	a, b := openDSN(t, dsn), openDSN(t, dsn)
	ctx := t.Context()
	release, err := a.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Hold(ctx); !errors.Is(err, store.ErrHeld) {
		t.Fatalf("second Hold: %v, want store.ErrHeld", err)
	}
	// Another database is another store.
	other := openDSN(t, s.NewDatabase(t))
	if r, err := other.Hold(ctx); err != nil {
		t.Errorf("Hold of another database: %v", err)
	} else {
		r()
	}
	release()
	release()
	rb, err := b.Hold(ctx)
	if err != nil {
		t.Fatalf("Hold after release: %v", err)
	}
	if _, err := a.Hold(ctx); !errors.Is(err, store.ErrHeld) {
		t.Fatalf("Hold while the other holds: %v, want store.ErrHeld", err)
	}

	t.Run("connection terminated", func(t *testing.T) {
		s.TerminateConnections(t, dsn)
		r, err := a.Hold(ctx)
		if err != nil {
			t.Fatalf("Hold after the holder's connection was terminated: %v", err)
		}
		rb() // the old holder's release, its connection gone: harmless
		if _, err := b.Hold(ctx); !errors.Is(err, store.ErrHeld) {
			t.Errorf("the old holder's release let go of the new holder's lock: %v", err)
		}
		r()
		// The pools' connections were cut too; the stores work again.
		if err := a.Writable(ctx); err != nil {
			t.Errorf("Writable after the connections were cut: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, err := Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Hold(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := a.Hold(ctx)
		if err != nil {
			t.Fatalf("Hold after the holder closed: %v", err)
		}
		r()
	})
}

// TestCommitKilled: a batch whose connection is cut mid-way (blocked on
// its last statement, the outbox's, with everything else sent) leaves
// nothing behind, sets no ids, and the store takes the next batch.
func TestCommitKilled(t *testing.T) {
	s := pgtest.Start(t)
	dsn := s.NewDatabase(t)
	db := openDSN(t, dsn)
	ctx := t.Context()
	if _, err := db.Commit(ctx, store.Batch{Changes: []store.Change{{Item: roster.Item{Entity: "e", Contact: "old@x", Sub: roster.SubBoth, Updated: t0}}}}); err != nil {
		t.Fatal(err)
	}

	blocker := connect(t, dsn)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE outbox IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var changes []store.Change
	for i := range 500 {
		changes = append(changes, store.Change{
			Item:  roster.Item{Entity: "e", Contact: fmt.Sprintf("c%03d@x", i), Sub: roster.SubNone, PendingIn: true},
			Queue: &roster.Request{Rule: "r"},
			Audit: &roster.Event{Kind: "subscribe", Action: "review"},
		})
	}
	changes = append(changes, store.Change{Item: roster.Item{Entity: "e", Contact: "old@x"}, Delete: true})
	b := store.Batch{Changes: changes, Send: "<x/>", BotEvents: []store.BotEvent{{Entity: "e", Type: "message", Data: `{}`}}}
	done := make(chan error, 1)
	go func() { _, err := db.Commit(ctx, b); done <- err }()

	// Wait (bounded) until the commit waits for the outbox's lock, then
	// cut that session alone: cutting the blocker too could free the lock
	// and let the commit finish before its own cut arrives.
	watch := connect(t, s.DSN("postgres"))
	var pid int32
	for try := 0; ; try++ {
		err := watch.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' LIMIT 1`, dbName(t, dsn)).Scan(&pid)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if try == 500 {
			t.Fatal("the commit never waited for the outbox's lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := watch.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Commit succeeded though its connection was cut")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Commit did not return within 30 s of its connection being cut")
	}
	if err := tx.Rollback(ctx); err != nil { // the outbox's lock goes
		t.Fatal(err)
	}
	if changes[0].Queue.ID != 0 || changes[0].Audit.ID != 0 || b.BotEvents[0].ID != 0 {
		t.Errorf("ids set by a failed Commit: %d, %d, %d", changes[0].Queue.ID, changes[0].Audit.ID, b.BotEvents[0].ID)
	}
	if _, err := db.Get(ctx, "e", "old@x"); err != nil {
		t.Errorf("the item the failed batch deleted: %v", err)
	}
	n := 0
	if err := db.Items(ctx, store.Filter{AllEntities: true}, func(roster.Item) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("%d items, %v; want the 1 from before", n, err)
	}
	if rs, err := db.Requests(ctx); err != nil || len(rs) != 0 {
		t.Errorf("Requests = %d, %v", len(rs), err)
	}
	if out, err := db.Outbox(ctx); err != nil || len(out) != 0 {
		t.Errorf("Outbox = %+v, %v", out, err)
	}
	if evs, _, err := db.BotEvents(ctx, "e", 0, 10); err != nil || len(evs) != 0 {
		t.Errorf("BotEvents = %+v, %v", evs, err)
	}
	if page, err := db.AuditPage(ctx, store.AuditQuery{Limit: 10}); err != nil || len(page) != 0 {
		t.Errorf("audit = %d rows, %v", len(page), err)
	}
	// The store takes the next batch.
	if _, err := db.Commit(ctx, b); err != nil {
		t.Fatalf("the batch again: %v", err)
	}
	if rs, err := db.Requests(ctx); err != nil || len(rs) != 500 {
		t.Errorf("Requests = %d, %v; want 500", len(rs), err)
	}
	if err := db.Check(ctx); err != nil {
		t.Error(err)
	}
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// TestTimesAndOrder: times come back in UTC to the millisecond, and keys
// sort bytewise, whatever the database's locale, whether the items went in
// by the upsert or by COPY (New).
func TestTimesAndOrder(t *testing.T) {
	for _, isNew := range []bool{false, true} {
		t.Run(fmt.Sprintf("new=%t", isNew), func(t *testing.T) {
			db := openDSN(t, pgtest.Start(t).NewDatabase(t))
			ctx := t.Context()
			in := t0.Add(456_789 * time.Nanosecond).In(time.FixedZone("UTC+1", 3600))
			var changes []store.Change
			for _, c := range []string{"é@x", "a@x", "Z@x", "b@x"} {
				changes = append(changes, store.Change{Item: roster.Item{Entity: "e", Contact: c, Sub: roster.SubNone, PendingIn: true, PendingSince: in, Updated: in}, New: isNew})
			}
			if _, err := db.Commit(ctx, store.Batch{Changes: changes}); err != nil {
				t.Fatal(err)
			}
			var got []string
			err := db.Items(ctx, store.Filter{Entity: "e"}, func(it roster.Item) error {
				got = append(got, it.Contact)
				if it.Updated != t0 || it.PendingSince != t0 {
					t.Errorf("%s: Updated %v, PendingSince %v; want exactly %v", it.Contact, it.Updated, it.PendingSince, t0)
				}
				return nil
			})
			if want := []string{"Z@x", "a@x", "b@x", "é@x"}; err != nil || !slices.Equal(got, want) {
				t.Errorf("Items = %q, %v; want %q", got, err, want)
			}
		})
	}
}

// TestCopyValues: what goes in by COPY (copy.go) comes back as it went in:
// times before PostgreSQL's epoch (2000) and after, to the millisecond;
// text that is not UTF-8 or holds NUL as textOf makes it; a pending_since
// that is NULL; bot event data as its bytes.
func TestCopyValues(t *testing.T) {
	db := openDSN(t, pgtest.Start(t).NewDatabase(t))
	ctx := t.Context()
	before := time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)
	ev := roster.Event{At: before, Entity: "e", Contact: "ü@x", Kind: "subscribe", Action: "accept", Detail: "bad \xff byte, NUL \x00 gone", Actor: "ü@x"}
	bot := store.BotEvent{Entity: "e", At: t0, Type: "subscription", Data: `{"jid": "ü@x", "n": [1, 2]}`}
	b := store.Batch{
		Changes: []store.Change{
			{Item: roster.Item{Entity: "e", Contact: "ü@x", Sub: roster.SubFrom, Updated: before}, New: true, Audit: &ev},
			{Item: roster.Item{Entity: "", Contact: "d@x", Sub: roster.SubTo, PendingOut: true, Approved: true, Updated: t0}, New: true},
		},
		BotEvents: []store.BotEvent{bot},
	}
	if _, err := db.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	it, err := db.Get(ctx, "e", "ü@x")
	if err != nil || it.Updated != before || !it.PendingSince.IsZero() || it.Sub != roster.SubFrom || it.PendingOut || it.PendingIn || it.Approved {
		t.Errorf("Get = %+v, %v; want from, updated %v", it, err, before)
	}
	it, err = db.Get(ctx, "", "d@x")
	if err != nil || it.Updated != t0 || it.Sub != roster.SubTo || !it.PendingOut || it.PendingIn || !it.Approved {
		t.Errorf("Get = %+v, %v; want to, pending out, approved, updated %v", it, err, t0)
	}
	got, err := db.AuditPage(ctx, store.AuditQuery{Limit: 10})
	want := ev
	want.Detail = "bad \uFFFD byte, NUL  gone"
	if err != nil || len(got) != 1 || got[0] != want {
		t.Errorf("AuditPage = %+v, %v; want %+v", got, err, want)
	}
	evs, _, err := db.BotEvents(ctx, "e", 0, 10)
	bot.ID = b.BotEvents[0].ID
	if err != nil || len(evs) != 1 || evs[0] != bot {
		t.Errorf("BotEvents = %+v, %v; want %+v", evs, err, bot)
	}
}
