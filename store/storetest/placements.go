package storetest

import (
	"context"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testPlacements: placements are written by Commit with the items and the
// audit rows of their batch, all or nothing, updated in place, deleted,
// and read back by entity then contact.
func testPlacements(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	read := func() []store.Placement {
		t.Helper()
		ps, err := s.Placements(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	if ps := read(); len(ps) != 0 {
		t.Fatalf("fresh store: %+v", ps)
	}
	placed := store.Placement{Entity: "crm", Contact: "bob@example.com", Method: store.PlaceByPrivilege, State: store.PlacePlaced,
		Source: "group:sales", Detail: "written as both", Created: t0, Updated: t0}
	waiting := store.Placement{Entity: "crm", Contact: "alice@example.com", Method: store.PlaceBySubscription, State: store.PlaceWaiting,
		Source: "alice@example.com", Detail: "subscription sent", Attempts: 1, Sent: t0.Add(time.Second)}
	ev := &roster.Event{Entity: "crm", Contact: "bob@example.com", Kind: "place", Action: "state", Actor: "rostergate", Interface: "privilege"}
	_, err := s.Commit(ctx, store.Batch{
		Changes:    []store.Change{{Item: roster.Item{Entity: "crm", Contact: "bob@example.com", Sub: roster.SubBoth}, Audit: ev}},
		Placements: []store.PlacementChange{{Placement: placed}, {Placement: waiting}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ps := read()
	if len(ps) != 2 || ps[0].Contact != "alice@example.com" || ps[1].Contact != "bob@example.com" {
		t.Fatalf("Placements = %+v, want alice's then bob's", ps)
	}
	a, b := ps[0], ps[1]
	if a.Method != store.PlaceBySubscription || a.State != store.PlaceWaiting || a.Source != "alice@example.com" || a.Attempts != 1 ||
		!a.Sent.Equal(waiting.Sent) || a.Created.IsZero() || a.Updated.IsZero() {
		t.Errorf("alice's = %+v", a)
	}
	if b.Method != store.PlaceByPrivilege || b.State != store.PlacePlaced || b.Source != "group:sales" || b.Detail != "written as both" ||
		!b.Sent.IsZero() || !b.Created.Equal(t0) || !b.Updated.Equal(t0) {
		t.Errorf("bob's = %+v", b)
	}
	if it, err := s.Get(ctx, "crm", "bob@example.com"); err != nil || it.Sub != roster.SubBoth {
		t.Errorf("bob's item = %+v, %v", it, err)
	}
	if ev.ID == 0 {
		t.Error("the audit row's id was not set")
	}

	// Updated in place: created stays.
	a.State, a.Detail, a.Updated = store.PlaceAccepted, "accepted", t0.Add(time.Hour)
	if _, err := s.Commit(ctx, store.Batch{Placements: []store.PlacementChange{{Placement: a}}}); err != nil {
		t.Fatal(err)
	}
	if ps := read(); len(ps) != 2 || ps[0].State != store.PlaceAccepted || !ps[0].Created.Equal(a.Created) || !ps[0].Updated.Equal(a.Updated) {
		t.Errorf("after the update: %+v", ps)
	}

	// All or nothing: a placement the store refuses undoes its batch.
	bad := store.Placement{Entity: "crm", Contact: "carol@example.com", Method: "carrier pigeon", State: store.PlacePlaced}
	_, err = s.Commit(ctx, store.Batch{
		Changes:    []store.Change{{Item: roster.Item{Entity: "crm", Contact: "carol@example.com", Sub: roster.SubBoth}}},
		Placements: []store.PlacementChange{{Placement: bad}},
	})
	if err == nil {
		t.Error("a placement of an unknown method: no error")
	}
	if _, err := s.Get(ctx, "crm", "carol@example.com"); err == nil {
		t.Error("the refused batch's item was written")
	}

	// Deleted.
	if _, err := s.Commit(ctx, store.Batch{Placements: []store.PlacementChange{{Placement: store.Placement{Entity: "crm", Contact: "bob@example.com"}, Delete: true}}}); err != nil {
		t.Fatal(err)
	}
	if ps := read(); len(ps) != 1 || ps[0].Contact != "alice@example.com" {
		t.Errorf("after deleting bob's: %+v", ps)
	}
}
