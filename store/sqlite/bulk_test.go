package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"rostergate/roster"
	"rostergate/store"
	"slices"
	"strings"
	"testing"
	"time"
)

// applySequential is the reference for Commit's bulk statements: each
// change applied on its own, item, dequeue, queue, audit, in order, with one
// statement per row.
func applySequential(ctx context.Context, db *DB, changes []store.Change) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	now := time.Now()
	for _, c := range changes {
		it := c.Item
		switch {
		case it.Contact == "" || (it.Sub == "" && !c.Delete):
		case c.Delete || it.Empty():
			if _, err := tx.ExecContext(ctx, `DELETE FROM roster WHERE entity = ? AND contact = ?`, it.Entity, it.Contact); err != nil {
				return err
			}
		default:
			updated := it.Updated
			if updated.IsZero() {
				updated = now
			}
			var since sql.NullInt64
			if it.PendingIn {
				since = sql.NullInt64{Int64: millis(it.PendingSince), Valid: true}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO roster (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entity, contact) DO UPDATE SET
				sub = excluded.sub, pending_out = excluded.pending_out, pending_in = excluded.pending_in,
				approved = excluded.approved, pending_since = excluded.pending_since, updated = excluded.updated`,
				it.Entity, it.Contact, it.Sub, boolInt(it.PendingOut), boolInt(it.PendingIn), boolInt(it.Approved), since, millis(updated)); err != nil {
				return err
			}
		}
		if c.Dequeue {
			if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE entity = ? AND contact = ?`, it.Entity, it.Contact); err != nil {
				return err
			}
		}
		if q := c.Queue; q != nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE entity = ? AND contact = ?`, it.Entity, it.Contact); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO requests (entity, contact, rule, subscribe_back, created) VALUES (?, ?, ?, ?, ?)`,
				it.Entity, it.Contact, q.Rule, boolInt(q.SubscribeBack), millis(q.Created)); err != nil {
				return err
			}
		}
		if e := c.Audit; e != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO audit (at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, millis(e.At), e.Entity, e.Contact, e.Kind, e.Action, e.Rule,
				e.From, e.To, e.Actor, e.Interface, e.Detail); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// dump returns the whole content of the tables Commit writes, ids of
// requests and audit rows left out.
func dump(t *testing.T, db *DB) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	if err := db.Items(ctx, store.Filter{AllEntities: true}, func(it roster.Item) error {
		fmt.Fprintf(&b, "item %+v\n", it)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rs, err := db.Requests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.ID = 0
		fmt.Fprintf(&b, "request %+v\n", r)
	}
	if err := db.Events(ctx, time.Time{}, func(e roster.Event) error {
		e.ID = 0
		fmt.Fprintf(&b, "event %+v\n", e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestCommitMatchesSequential runs random batches (the same item changed
// several times in one batch, queued, dequeued, deleted, awkward strings)
// through Commit and through the one-row-at-a-time reference, and compares
// everything stored.
func TestCommitMatchesSequential(t *testing.T) {
	ctx := context.Background()
	bulk, _ := openTest(t)
	ref, _ := openTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	contacts := []string{"a@example.org", "b@example.org", `q"uote\@example.org`, "ünï@example.org", "tab\t@example.org"}
	subs := []string{roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth}
	batches, changes := 0, 0
	for round := range 300 {
		n := 1 + rng.IntN(12)
		batch := make([]store.Change, 0, n)
		for i := range n {
			it := roster.Item{
				Entity:     []string{"", "e1", "e2"}[rng.IntN(3)],
				Contact:    contacts[rng.IntN(len(contacts))],
				Sub:        subs[rng.IntN(len(subs))],
				PendingOut: rng.IntN(2) == 0,
				PendingIn:  rng.IntN(2) == 0,
				Approved:   rng.IntN(4) == 0,
				Updated:    t0.Add(time.Duration(round*100+i) * time.Millisecond),
			}
			if it.PendingIn {
				it.PendingSince = t0.Add(time.Duration(round) * time.Second)
			}
			c := store.Change{Item: it}
			switch rng.IntN(6) {
			case 0:
				c.Delete = true
			case 1:
				if it.PendingIn {
					c.Queue = &roster.Request{Rule: "rule 1", SubscribeBack: rng.IntN(2) == 0, Created: it.PendingSince}
				}
			case 2:
				c.Dequeue = true
			case 3:
				c.Item.Sub = "" // audit only
			}
			if rng.IntN(3) > 0 {
				c.Audit = &roster.Event{At: it.Updated, Entity: it.Entity, Contact: it.Contact, Kind: "subscribe", Action: "state",
					From: "none", To: "from", Actor: it.Contact, Interface: "stream", Detail: "d\n\"x\"\\\x01"}
			}
			batch = append(batch, c)
		}
		errRef := applySequential(ctx, ref, slices.Clone(batch))
		errBulk := bulk.Apply(ctx, batch)
		if (errRef == nil) != (errBulk == nil) {
			t.Fatalf("round %d: sequential err %v, bulk err %v\nbatch %+v", round, errRef, errBulk, batch)
		}
		if errBulk == nil {
			batches++
			changes += len(batch)
		}
	}
	if got, want := dump(t, bulk), dump(t, ref); got != want {
		t.Fatalf("bulk and sequential differ after %d batches\nbulk:\n%s\nsequential:\n%s", batches, got, want)
	}
	if batches < 100 {
		t.Fatalf("only %d of 300 batches committed: the test exercises too little", batches)
	}
	t.Logf("%d batches, %d changes committed identically", batches, changes)
}

func TestCommitRejectsKeysNotUTF8(t *testing.T) {
	db, _ := openTest(t)
	err := db.Apply(context.Background(), []store.Change{{Item: roster.Item{Entity: "e", Contact: "bad\xff@example.org", Sub: roster.SubFrom}}})
	if err == nil || !strings.Contains(err.Error(), "change 0") || !strings.Contains(err.Error(), "must be UTF-8") {
		t.Fatalf("Apply = %v, want an error naming change 0 and UTF-8", err)
	}
}
