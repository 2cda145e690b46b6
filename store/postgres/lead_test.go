package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"rostergate/internal/pgtest"
	"rostergate/roster"
	"rostergate/store"
)

// bound is the longest any wait of these tests lasts; how long things took
// is logged, not asserted.
const bound = 30 * time.Second

type leadResult struct {
	l   *lease
	err error
}

// goLead calls db.Lead in a goroutine, bounded, and reports on the channel.
func goLead(t *testing.T, db *DB, id string) <-chan leadResult {
	t.Helper()
	ch := make(chan leadResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), bound)
		defer cancel()
		l, err := db.Lead(ctx, store.Instance{ID: id})
		r := leadResult{err: err}
		if err == nil {
			r.l = l.(*lease)
		}
		ch <- r
	}()
	return ch
}

// await waits, bounded, for a Lead of goLead.
func await(t *testing.T, ch <-chan leadResult) *lease {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Lead: %v", r.err)
		}
		t.Cleanup(r.l.Release)
		return r.l
	case <-time.After(bound + 5*time.Second):
		t.Fatal("Lead did not return")
		return nil
	}
}

func mustLead(t *testing.T, db *DB, id string) *lease {
	t.Helper()
	return await(t, goLead(t, db, id))
}

// awaitLost waits, bounded, until l's Lost is closed, and returns when.
func awaitLost(t *testing.T, l *lease) time.Time {
	t.Helper()
	select {
	case <-l.Lost():
		return time.Now()
	case <-time.After(bound):
		t.Fatal("Lost was not closed")
		return time.Time{}
	}
}

// waitUntil polls cond, bounded.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate ends one server process (the lead's session), and waits for
// it to exit.
func terminate(t *testing.T, admin *pgx.Conn, pid uint32) {
	t.Helper()
	var ok bool
	if err := admin.QueryRow(t.Context(), `SELECT pg_terminate_backend($1, 5000)`, int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate backend %d: %t, %v", pid, ok, err)
	}
}

func itemBatch(contact string) store.Batch {
	return store.Batch{
		Changes: []store.Change{{
			Item:  roster.Item{Entity: "e", Contact: contact, Sub: roster.SubBoth},
			Audit: &roster.Event{Entity: "e", Contact: contact, Kind: "subscribe", Action: "accept", Actor: contact},
		}},
		Send:      "<presence/>",
		BotEvents: []store.BotEvent{{Entity: "e", Type: "presence", Data: `{}`}},
	}
}

func isFenced(err error) bool { return errors.Is(err, store.ErrFenced) }

// TestLeadStandby: of two instances, the first leads and the second waits,
// both listed; the first's Release hands the lead over; Hold fails while
// one is active.
func TestLeadStandby(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	a, b, cli := openDSN(t, dsn), openDSN(t, dsn), openDSN(t, dsn)
	ctx := t.Context()
	if r, err := cli.Hold(ctx); err != nil {
		t.Fatalf("Hold with no instance: %v", err)
	} else {
		r()
	}
	la := mustLead(t, a, "a")
	if _, err := a.Lead(ctx, store.Instance{ID: "again"}); err == nil {
		t.Error("a second Lead of one DB succeeded")
	}
	ch := goLead(t, b, "b")
	waitUntil(t, "b listed as a standby", func() bool {
		ins, err := cli.Instances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(ins) == 2 && ins[1].ID == "b" && !ins[1].Active
	})
	ins, err := cli.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := ins[0]; a.ID != "a" || !a.Active || a.Since.IsZero() || a.Host == "" || a.PID == 0 || a.Seen.IsZero() {
		t.Errorf("Instances()[0] = %+v, want a, active", a)
	}
	if b := ins[1]; !b.Since.IsZero() {
		t.Errorf("the standby's Since = %v", b.Since)
	}
	select {
	case r := <-ch:
		t.Fatalf("the second Lead returned while the first leads: %v", r.err)
	default:
	}
	// A standby that gives up: Lead returns, its wait on the server and
	// its row go.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = cli.Lead(cctx, store.Instance{ID: "c"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lead with its ctx ended: %v", err)
	}
	t.Logf("a standby's Lead returned %v after its ctx ended", time.Since(start)-300*time.Millisecond)
	waitUntil(t, "the given-up standby's wait gone from the server", func() bool {
		var n int
		if err := cli.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'rostergate lead'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 2
	})
	if ins, err := cli.Instances(ctx); err != nil || len(ins) != 2 {
		t.Errorf("Instances after a standby gave up = %+v, %v; want a and b", ins, err)
	}
	if _, err := cli.Hold(ctx); !errors.Is(err, store.ErrHeld) {
		t.Errorf("Hold while an instance is active: %v, want store.ErrHeld", err)
	}
	if _, err := a.Commit(ctx, itemBatch("a1@x")); err != nil {
		t.Fatalf("the active one's Commit: %v", err)
	}
	// The command line (which never leads) writes unchecked.
	if _, err := cli.QueueAction(ctx, "cli:root", "decide", "{}"); err != nil {
		t.Errorf("QueueAction of the command line: %v", err)
	}

	start = time.Now()
	la.Release()
	lb := await(t, ch)
	t.Logf("Release to the standby's Lead: %v", time.Since(start))
	select {
	case <-la.Lost():
	default:
		t.Error("Lost not closed by Release")
	}
	la.Release() // again: nothing
	if _, err := a.Commit(ctx, itemBatch("a2@x")); !isFenced(err) {
		t.Errorf("Commit after Release: %v, want store.ErrFenced", err)
	}
	if _, err := b.Commit(ctx, itemBatch("b1@x")); err != nil {
		t.Errorf("the new active one's Commit: %v", err)
	}
	ins, err = cli.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].ID != "b" || !ins[0].Active {
		t.Errorf("Instances = %+v, want b alone, active", ins)
	}
	lb.Release()
	if r, err := cli.Hold(ctx); err != nil {
		t.Errorf("Hold once released: %v", err)
	} else {
		r()
	}
	// Lead again, after a release: a DB leads again.
	la2 := mustLead(t, a, "a")
	if _, err := a.Commit(ctx, itemBatch("a3@x")); err != nil {
		t.Errorf("Commit after leading again: %v", err)
	}
	la2.Release()
}

// writes are the DB's writes a running instance makes, each expected to be
// fenced.
func writes(db *DB) map[string]func(context.Context) error {
	hash := make([]byte, 32)
	key := store.WebKey{Hash: hash, Kind: store.KindSession, JID: "admin@x", Created: t0, Expires: t0.Add(time.Hour)}
	ignore := func(_ any, err error) error { return err }
	return map[string]func(context.Context) error{
		"Commit":    func(ctx context.Context) error { return ignore(db.Commit(ctx, itemBatch("fenced@x"))) },
		"Delivered": func(ctx context.Context) error { return db.Delivered(ctx, 1<<40) },
		"EditList": func(ctx context.Context) error {
			return ignore(db.EditList(ctx, "allow", "*@fenced", true, &roster.Event{Action: "allow"}))
		},
		"QueueAction":   func(ctx context.Context) error { return ignore(db.QueueAction(ctx, "x", "decide", "{}")) },
		"FinishAction":  func(ctx context.Context) error { return db.FinishAction(ctx, 1, "{}") },
		"TrimBotEvents": func(ctx context.Context) error { return ignore(db.TrimBotEvents(ctx, t0.Add(1000*time.Hour), 0)) },
		"CreateToken":   func(ctx context.Context) error { return ignore(db.CreateToken(ctx, hash, nil, false)) },
		"RevokeToken":   func(ctx context.Context) error { return db.RevokeToken(ctx, 1) },
		"TokenUsed":     func(ctx context.Context) error { return db.TokenUsed(ctx, 1, "e", t0) },
		"SetCursor":     func(ctx context.Context) error { return db.SetCursor(ctx, "fenced", 1) },
		"DeleteCursor":  func(ctx context.Context) error { return db.DeleteCursor(ctx, "c") },
		"SetPresence":   func(ctx context.Context) error { return db.SetPresence(ctx, "e", &store.Presence{Show: "dnd"}) },
		"CreateWebKey":  func(ctx context.Context) error { return db.CreateWebKey(ctx, key) },
		"TakeWebKey":    func(ctx context.Context) error { return ignore(db.TakeWebKey(ctx, hash, store.KindSession, t0)) },
		"WebKey(touch)": func(ctx context.Context) error {
			return ignore(db.WebKey(ctx, hash, store.KindSession, t0, time.Minute))
		},
		"DeleteWebKey": func(ctx context.Context) error { return db.DeleteWebKey(ctx, hash) },
		"TrimWebKeys":  func(ctx context.Context) error { return ignore(db.TrimWebKeys(ctx, t0.Add(1000*time.Hour))) },
		"Import": func(ctx context.Context) error {
			return db.Import(ctx, store.ImportRecords{Lists: []store.ListEntry{{List: "deny", Pattern: "*@imported"}}})
		},
	}
}

// TestLeadFenced: the active one's lead session is cut; the standby takes
// over; the old one learns it (Lost), and its writes are refused and
// write nothing, by itself and, asked, by the server; the new one's go in.
func TestLeadFenced(t *testing.T) {
	s := pgtest.Start(t)
	dsn := s.NewDatabase(t)
	a, b, cli := openDSN(t, dsn), openDSN(t, dsn), openDSN(t, dsn)
	admin := connect(t, s.DSN("postgres"))
	ctx := t.Context()
	la := mustLead(t, a, "a")
	if _, err := a.Commit(ctx, itemBatch("before@x")); err != nil {
		t.Fatal(err)
	}
	// The state every fenced write would change, so that a write that
	// went in shows.
	if _, err := cli.CreateToken(ctx, make([]byte, 32), []string{"e"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.QueueAction(ctx, "cli:root", "decide", "{}"); err != nil {
		t.Fatal(err)
	}
	if err := cli.CreateWebKey(ctx, store.WebKey{Hash: make([]byte, 32), Kind: store.KindSession, JID: "admin@x", Created: t0, Expires: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := cli.SetCursor(ctx, "c", 7); err != nil {
		t.Fatal(err)
	}
	snap := snapshot(t, cli)

	ch := goLead(t, b, "b")
	waitUntil(t, "b waiting", func() bool {
		ins, err := cli.Instances(ctx)
		return err == nil && len(ins) == 2
	})
	start := time.Now()
	terminate(t, admin, la.pid)
	lb := await(t, ch)
	took := time.Since(start)
	lost := awaitLost(t, la)
	t.Logf("lead session ended: the standby leads after %v, the old one's Lost after %v", took, lost.Sub(start))

	for name, w := range writes(a) {
		if err := w(ctx); !isFenced(err) {
			t.Errorf("%s of the old active one: %v, want store.ErrFenced", name, err)
		}
	}
	// The server's check, the DB's own set aside.
	a.serverFenceOnly = true
	for name, w := range writes(a) {
		err := w(ctx)
		if !isFenced(err) || !isCode(err, fencedCode) {
			t.Errorf("%s of the old active one, checked by the server: %v, want store.ErrFenced from the server", name, err)
		}
	}
	if got := snapshot(t, cli); got != snap {
		t.Errorf("the fenced writes changed the store:\n%s\nwant\n%s", got, snap)
	}
	if _, err := b.Commit(ctx, itemBatch("after@x")); err != nil {
		t.Errorf("the new active one's Commit: %v", err)
	}
	// The command line writes unchecked, whoever leads.
	if _, err := cli.QueueAction(ctx, "cli:root", "decide", "{}"); err != nil {
		t.Errorf("QueueAction of the command line: %v", err)
	}
	lb.Release()
}

// snapshot is the store's state as text, to compare.
func snapshot(t *testing.T, db *DB) string {
	t.Helper()
	var out string
	for _, q := range []string{
		`SELECT string_agg(entity || '/' || contact || '/' || sub, ',' ORDER BY entity, contact) FROM items`,
		`SELECT count(*)::text || '/' || coalesce(max(id), 0)::text FROM audit`,
		`SELECT count(*)::text FROM outbox`,
		`SELECT count(*)::text FROM bot_events`,
		`SELECT string_agg(list || pattern, ',' ORDER BY list, pattern) FROM lists`,
		`SELECT string_agg(id::text || coalesce(done::text, '-'), ',' ORDER BY id) FROM actions`,
		`SELECT string_agg(id::text || coalesce(last_used::text, '-') || coalesce(revoked::text, '-'), ',' ORDER BY id) FROM tokens`,
		`SELECT count(*)::text FROM bot_entities`,
		`SELECT string_agg(name || id::text, ',' ORDER BY name) FROM cursors`,
		`SELECT count(*)::text FROM entity_presence`,
		`SELECT string_agg(expires::text, ',') FROM web_keys`,
	} {
		var s *string
		if err := db.pool.QueryRow(t.Context(), q).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if s != nil {
			out += *s
		}
		out += "\n"
	}
	return out
}
