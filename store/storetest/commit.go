package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testCommit commits batches of changes and reads back what they left: the
// parts of a Change (item, Dequeue, Queue, Audit) and the ids Commit sets.
func testCommit(t *testing.T, o opener) {
	ctx := context.Background()
	const alice, bob = "alice", "bob@example.org"
	base := roster.Item{Entity: alice, Contact: bob, Sub: roster.SubNone, PendingIn: true, PendingSince: t0, Updated: t0}

	for _, tc := range []struct {
		name    string
		batches [][]store.Change
		check   func(t *testing.T, s store.Store, batches [][]store.Change)
	}{
		{
			name:    "upsert inserts",
			batches: [][]store.Change{{{Item: base}}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantItem(t, s, base)
			},
		},
		{
			name: "upsert replaces",
			batches: [][]store.Change{
				{{Item: base}},
				{{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubBoth, PendingOut: true, Approved: true, Updated: t0.Add(time.Second)}}},
			},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantItem(t, s, roster.Item{Entity: alice, Contact: bob, Sub: roster.SubBoth, PendingOut: true, Approved: true, Updated: t0.Add(time.Second)})
			},
		},
		{
			name:    "component domain entity",
			batches: [][]store.Change{{{Item: roster.Item{Entity: "", Contact: bob, Sub: roster.SubFrom, Updated: t0}}}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantItem(t, s, roster.Item{Entity: "", Contact: bob, Sub: roster.SubFrom, Updated: t0})
				wantNoItem(t, s, alice, bob)
			},
		},
		{
			name:    "delete",
			batches: [][]store.Change{{{Item: base}}, {{Item: roster.Item{Entity: alice, Contact: bob}, Delete: true}}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantNoItem(t, s, alice, bob)
			},
		},
		{
			name:    "none item with nothing pending is not kept",
			batches: [][]store.Change{{{Item: base}}, {{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubNone, Updated: t0}}}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantNoItem(t, s, alice, bob)
			},
		},
		{
			name: "defaults: Updated and PendingSince become the batch time; PendingSince only while pending",
			batches: [][]store.Change{{
				{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubNone, PendingIn: true}},
				{Item: roster.Item{Entity: alice, Contact: "carol@example.org", Sub: roster.SubTo, PendingSince: t0}},
			}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				got, err := s.Get(ctx, alice, bob)
				if err != nil {
					t.Fatal(err)
				}
				if age := time.Since(got.Updated); age < 0 || age > time.Minute || !got.PendingSince.Equal(got.Updated) {
					t.Errorf("Updated = %v, PendingSince = %v; want both now", got.Updated, got.PendingSince)
				}
				got, err = s.Get(ctx, alice, "carol@example.org")
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
			batches: [][]store.Change{
				{{Item: base, Queue: &roster.Request{Entity: alice, Contact: bob, Rule: "rule 1", Created: t0}}},
				{{Item: base, Queue: &roster.Request{Rule: "rule 2", SubscribeBack: true, Created: t0.Add(time.Second)}}},
			},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				first, second := b[0][0].Queue, b[1][0].Queue
				if first.ID == 0 || second.ID == 0 || first.ID == second.ID {
					t.Fatalf("IDs %d and %d: want two distinct non-zero", first.ID, second.ID)
				}
				want := roster.Request{ID: second.ID, Entity: alice, Contact: bob, Rule: "rule 2", SubscribeBack: true, Created: t0.Add(time.Second)}
				wantRequests(t, s, want)
				got, err := s.Request(ctx, second.ID)
				if err != nil || !sameRequest(got, want) {
					t.Errorf("Request(%d) = %+v, %v; want %+v", second.ID, got, err, want)
				}
				if _, err := s.Request(ctx, first.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Request(replaced %d) err = %v, want store.ErrNotFound", first.ID, err)
				}
			},
		},
		{
			name: "requests come oldest first",
			batches: [][]store.Change{{
				{Item: roster.Item{Entity: alice, Contact: "z@x", Sub: roster.SubNone, PendingIn: true}, Queue: &roster.Request{Created: t0.Add(2 * time.Second)}},
				{Item: roster.Item{Entity: alice, Contact: "y@x", Sub: roster.SubNone, PendingIn: true}, Queue: &roster.Request{Created: t0}},
				{Item: roster.Item{Entity: "bea", Contact: "x@x", Sub: roster.SubNone, PendingIn: true}, Queue: &roster.Request{Created: t0.Add(time.Second)}},
			}},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				wantRequests(t, s,
					roster.Request{ID: b[0][1].Queue.ID, Entity: alice, Contact: "y@x", Created: t0},
					roster.Request{ID: b[0][2].Queue.ID, Entity: "bea", Contact: "x@x", Created: t0.Add(time.Second)},
					roster.Request{ID: b[0][0].Queue.ID, Entity: alice, Contact: "z@x", Created: t0.Add(2 * time.Second)})
			},
		},
		{
			name: "dequeue",
			batches: [][]store.Change{
				{{Item: base, Queue: &roster.Request{Rule: "rule 1", Created: t0}}},
				{{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubFrom, Updated: t0}, Dequeue: true}},
			},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				wantRequests(t, s)
				if _, err := s.Request(ctx, b[0][0].Queue.ID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Request after dequeue: err = %v, want store.ErrNotFound", err)
				}
				wantItem(t, s, roster.Item{Entity: alice, Contact: bob, Sub: roster.SubFrom, Updated: t0})
			},
		},
		{
			name: "dequeue only leaves the item alone",
			batches: [][]store.Change{
				{{Item: base, Queue: &roster.Request{Created: t0}}},
				{{Item: roster.Item{Entity: alice, Contact: bob}, Dequeue: true}},
			},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantRequests(t, s)
				wantItem(t, s, base)
			},
		},
		{
			name: "deleting the item deletes its request",
			batches: [][]store.Change{
				{{Item: base, Queue: &roster.Request{Created: t0}}},
				{{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubNone}}},
			},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantNoItem(t, s, alice, bob)
				wantRequests(t, s)
			},
		},
		{
			name: "queue before its item within one batch",
			batches: [][]store.Change{{
				{Item: roster.Item{Entity: alice, Contact: bob}, Queue: &roster.Request{Entity: alice, Contact: bob, Created: t0}},
				{Item: base},
			}},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				wantRequests(t, s, roster.Request{ID: b[0][0].Queue.ID, Entity: alice, Contact: bob, Created: t0})
			},
		},
		{
			name:    "New inserts",
			batches: [][]store.Change{{{Item: base, New: true}}},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantItem(t, s, base)
			},
		},
		{
			name: "New on a stored item (a wrong hint) still replaces it, once",
			batches: [][]store.Change{
				{{Item: base}},
				{
					{Item: roster.Item{Entity: alice, Contact: "new@example.org", Sub: roster.SubNone, PendingIn: true, PendingSince: t0, Updated: t0},
						New: true, Queue: &roster.Request{Created: t0}, Audit: &roster.Event{At: t0, Action: "review"}},
					{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubFrom, Updated: t0.Add(time.Second)},
						New: true, Dequeue: true, Audit: &roster.Event{At: t0, Action: "accept"}},
				},
			},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				wantItem(t, s, roster.Item{Entity: alice, Contact: bob, Sub: roster.SubFrom, Updated: t0.Add(time.Second)})
				wantItem(t, s, roster.Item{Entity: alice, Contact: "new@example.org", Sub: roster.SubNone, PendingIn: true, PendingSince: t0, Updated: t0})
				wantRequests(t, s, roster.Request{ID: b[1][0].Queue.ID, Entity: alice, Contact: "new@example.org", Created: t0})
				got := events(t, s)
				want := []roster.Event{*b[1][0].Audit, *b[1][1].Audit}
				if want[0].ID == 0 || want[1].ID <= want[0].ID {
					t.Errorf("event IDs %d, %d: want increasing non-zero", want[0].ID, want[1].ID)
				}
				if !slices.EqualFunc(got, want, sameEvent) {
					t.Errorf("Events =\n%+v\nwant\n%+v", got, want)
				}
			},
		},
		{
			name: "New: the first change of an item counts, the last decides its state",
			batches: [][]store.Change{
				{{Item: base}, {Item: roster.Item{Entity: alice, Contact: "gone@example.org", Sub: roster.SubTo, Updated: t0}}},
				{
					{Item: roster.Item{Entity: alice, Contact: bob}, Delete: true},
					{Item: roster.Item{Entity: alice, Contact: bob, Sub: roster.SubTo, Updated: t0}, New: true},
					{Item: roster.Item{Entity: alice, Contact: "gone@example.org"}, Delete: true},
					{Item: roster.Item{Entity: alice, Contact: "brief@example.org", Sub: roster.SubTo, Updated: t0}, New: true},
					{Item: roster.Item{Entity: alice, Contact: "brief@example.org"}, Delete: true},
					{Item: roster.Item{Entity: alice, Contact: "twice@example.org", Sub: roster.SubTo, Updated: t0}, New: true},
					{Item: roster.Item{Entity: alice, Contact: "twice@example.org", Sub: roster.SubBoth, Updated: t0}},
				},
			},
			check: func(t *testing.T, s store.Store, _ [][]store.Change) {
				wantItem(t, s, roster.Item{Entity: alice, Contact: bob, Sub: roster.SubTo, Updated: t0})
				wantNoItem(t, s, alice, "gone@example.org")
				wantNoItem(t, s, alice, "brief@example.org")
				wantItem(t, s, roster.Item{Entity: alice, Contact: "twice@example.org", Sub: roster.SubBoth, Updated: t0})
			},
		},
		{
			name: "audit round trip, audit-only change",
			batches: [][]store.Change{
				{{Item: base, Audit: &roster.Event{At: t0, Entity: alice, Contact: bob, Kind: "subscribe", Action: "review",
					Rule: "rule 2", From: "none", To: "none+in", Actor: bob, Interface: "stream", Detail: "held"}}},
				{{Item: roster.Item{Entity: alice, Contact: "eve@example.org"}, Audit: &roster.Event{At: t0, Entity: alice,
					Contact: "eve@example.org", Kind: "subscribe", Action: "drop", Actor: "eve@example.org", Interface: "stream"}}},
			},
			check: func(t *testing.T, s store.Store, b [][]store.Change) {
				wantNoItem(t, s, alice, "eve@example.org")
				got := events(t, s)
				want := []roster.Event{*b[0][0].Audit, *b[1][0].Audit}
				if want[0].ID == 0 || want[1].ID <= want[0].ID {
					t.Errorf("event IDs %d, %d: want increasing non-zero", want[0].ID, want[1].ID)
				}
				if !slices.EqualFunc(got, want, sameEvent) {
					t.Errorf("Events =\n%+v\nwant\n%+v", got, want)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.fresh(t)
			for _, b := range tc.batches {
				commit(t, s, b...)
			}
			tc.check(t, s, tc.batches)
			wantCheck(t, s)
		})
	}
}

// testEmptyBatch: a batch with nothing in it is a no-op.
func testEmptyBatch(t *testing.T, o opener) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		b    store.Batch
	}{
		{"zero batch", store.Batch{}},
		{"empty changes", store.Batch{Changes: []store.Change{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.fresh(t)
			id, err := s.Commit(ctx, tc.b)
			if err != nil || id != 0 {
				t.Errorf("Commit(%+v) = %d, %v; want 0, nil", tc.b, id, err)
			}
			if out, err := s.Outbox(ctx); err != nil || len(out) != 0 {
				t.Errorf("Outbox = %+v, %v; want none", out, err)
			}
			if n := len(events(t, s)); n != 0 {
				t.Errorf("%d audit events, want none", n)
			}
			wantCheck(t, s)
		})
	}
}

// testAllOrNothing: a batch that cannot commit leaves nothing behind, sets
// no ids, and the store takes the next batch.
func testAllOrNothing(t *testing.T, o opener) {
	ctx := context.Background()
	good := func() store.Change {
		return store.Change{
			Item:  roster.Item{Entity: "alice", Contact: "bob@example.org", Sub: roster.SubNone, PendingIn: true, PendingSince: t0, Updated: t0},
			Queue: &roster.Request{Rule: "rule 2", Created: t0},
			Audit: &roster.Event{At: t0, Entity: "alice", Contact: "bob@example.org", Kind: "subscribe", Action: "review"},
		}
	}
	// The contract's own reasons for a batch to fail: a queued request
	// needs its item to exist when the batch commits.
	for _, tc := range []struct {
		name string
		bad  store.Change
	}{
		{"request without item", store.Change{Item: roster.Item{Entity: "alice", Contact: "dan@example.org"},
			Queue: &roster.Request{Created: t0}}},
		{"queue and delete the same item", store.Change{Item: roster.Item{Entity: "alice", Contact: "bob@example.org"}, Delete: true,
			Queue: &roster.Request{Created: t0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.fresh(t)
			batch := []store.Change{good(), tc.bad}
			id, err := s.Commit(ctx, store.Batch{Changes: batch, Send: "<never/>"})
			if err == nil {
				t.Fatal("Commit succeeded")
			}
			if id != 0 {
				t.Errorf("failed Commit returned outbox id %d", id)
			}
			wantNoItem(t, s, "alice", "bob@example.org")
			wantNoItem(t, s, "alice", "dan@example.org")
			wantRequests(t, s)
			if n := len(events(t, s)); n != 0 {
				t.Errorf("Events: %d rows; want none", n)
			}
			if out, err := s.Outbox(ctx); err != nil || len(out) != 0 {
				t.Errorf("Outbox = %+v, %v; want none", out, err)
			}
			if batch[0].Queue.ID != 0 || batch[0].Audit.ID != 0 {
				t.Errorf("IDs set by a failed Commit: request %d, event %d", batch[0].Queue.ID, batch[0].Audit.ID)
			}
			// The store is usable again afterwards.
			commit(t, s, good())
			wantItem(t, s, good().Item)
			wantCheck(t, s)
		})
	}
}

// testOutbox: the outbox keeps a batch's stanzas, committed with its
// changes, until they are marked delivered; a failed batch leaves no outbox
// row.
func testOutbox(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	id1, err := s.Commit(ctx, store.Batch{Changes: []store.Change{{Item: roster.Item{Entity: "e", Contact: "a@x", Sub: roster.SubFrom}}}, Send: "<presence type='subscribed'/>"})
	if err != nil || id1 == 0 {
		t.Fatalf("Commit = %d, %v", id1, err)
	}
	id2, err := s.Commit(ctx, store.Batch{Send: "<presence type='unsubscribed'/>"})
	if err != nil || id2 <= id1 {
		t.Fatalf("Commit = %d, %v", id2, err)
	}
	if _, err := s.Commit(ctx, store.Batch{Changes: []store.Change{{Item: roster.Item{Entity: "e", Contact: "b@x"}, Queue: &roster.Request{}}}, Send: "<never/>"}); err == nil {
		t.Fatal("a bad change committed")
	}
	out, err := s.Outbox(ctx)
	if err != nil || len(out) != 2 || out[0].ID != id1 || out[0].Stanzas != "<presence type='subscribed'/>" ||
		out[1].ID != id2 || out[1].Stanzas != "<presence type='unsubscribed'/>" {
		t.Fatalf("Outbox = %+v, %v", out, err)
	}
	for _, g := range out {
		if age := time.Since(g.Created); age < 0 || age > time.Minute {
			t.Errorf("outbox row %d created %v, want now", g.ID, g.Created)
		}
	}
	// Delivery of the first rides on the next batch.
	if _, err := s.Commit(ctx, store.Batch{Changes: []store.Change{{Item: roster.Item{Entity: "e", Contact: "c@x", Sub: roster.SubTo}}}, Delivered: id1}); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Outbox(ctx); err != nil || len(out) != 1 || out[0].ID != id2 {
		t.Fatalf("after delivering %d: %+v, %v", id1, out, err)
	}
	if err := s.Delivered(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Outbox(ctx); err != nil || len(out) != 0 {
		t.Fatalf("after delivering all: %+v, %v", out, err)
	}
	wantCheck(t, s)
}
