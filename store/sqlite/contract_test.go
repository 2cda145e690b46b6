package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/storetest"
)

// TestContract runs the behaviour suite every store backend passes.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "roster.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return db
	})
}

// TestTimesUTC: storetest compares times as instants; this backend gives
// them back exactly as its package comment says, in UTC and to the
// millisecond, whatever location and precision they went in with.
func TestTimesUTC(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	in := time.UnixMilli(1_700_000_000_123).Add(456_789 * time.Nanosecond).In(time.FixedZone("UTC+1", 3600))
	want := t0 // in, to the millisecond, in UTC
	req := &roster.Request{Rule: "r", Created: in}
	ev := &roster.Event{At: in, Kind: "subscribe"}
	if _, err := db.Commit(ctx, store.Batch{Changes: []store.Change{{
		Item:  roster.Item{Entity: "e", Contact: "a@x", Sub: roster.SubNone, PendingIn: true, PendingSince: in, Updated: in},
		Queue: req,
		Audit: ev,
	}}, Send: "<x/>"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.QueueAction(ctx, "cli:root", "list", "{}"); err != nil {
		t.Fatal(err)
	}
	it, err := db.Get(ctx, "e", "a@x")
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.Request(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	var e roster.Event
	if err := db.Events(ctx, time.Time{}, func(got roster.Event) error { e = got; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		got  time.Time
	}{
		{"item Updated", it.Updated},
		{"item PendingSince", it.PendingSince},
		{"request Created", r.Created},
		{"event At", e.At},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != want {
				t.Errorf("%s = %v (%s), want exactly %v", tc.name, tc.got, tc.got.Location(), want)
			}
		})
	}
	out, err := db.Outbox(ctx)
	if err != nil || len(out) != 1 {
		t.Fatalf("Outbox = %+v, %v", out, err)
	}
	actions, err := db.WaitingActions(ctx)
	if err != nil || len(actions) != 1 {
		t.Fatalf("WaitingActions = %+v, %v", actions, err)
	}
	for _, tc := range []struct {
		name string
		got  time.Time
	}{
		{"outbox Created", out[0].Created},
		{"action Created", actions[0].Created},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got.Location() != time.UTC || tc.got.Nanosecond()%int(time.Millisecond) != 0 {
				t.Errorf("%s = %v: want UTC, whole milliseconds", tc.name, tc.got)
			}
		})
	}
}
