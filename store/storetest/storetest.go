// Package storetest is the behaviour suite of the store contract (package
// store): what the decision engine relies on of any backend, checked through
// the store.Store interface alone.
//
// Every backend runs it from its own tests, and a new backend is done when
// it passes:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mybackend.Open(…) // fresh and empty
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// What is particular to one backend (file modes, pragmas, migrations, the
// text of its errors, how it copes with crashes and concurrent processes)
// stays in that backend's own tests.
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

// t0 is a fixed instant with millisecond precision, the finest every
// backend is expected to keep.
var t0 = time.UnixMilli(1_700_000_000_123).UTC()

// Run runs the suite, each part in a named subtest. open must return a
// fresh, empty store each time it is called, failing t if it cannot; Run
// closes that store when the subtest that asked for it ends, so open must
// not close it itself (it may register cleanups of its own, such as
// removing a directory: they run after the close).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	o := opener(open)
	for _, part := range []struct {
		name string
		run  func(*testing.T, opener)
	}{
		{"Commit", testCommit},
		{"EmptyBatch", testEmptyBatch},
		{"AllOrNothing", testAllOrNothing},
		{"Outbox", testOutbox},
		{"Items", testItems},
		{"ItemsPages", testItemsPages},
		{"ItemsWhileCommit", testItemsWhileCommit},
		{"GetMany", testGetMany},
		{"NotFound", testNotFound},
		{"Events", testEvents},
		{"AuditPage", testAuditPage},
		{"Lists", testLists},
		{"Actions", testActions},
		{"Hold", testHold},
		{"Check", testCheck},
		{"Writable", testWritable},
		{"BotEvents", testBotEvents},
		{"Tokens", testTokens},
		{"BotState", testBotState},
		{"WebKeys", testWebKeys},
		{"Invites", testInvites},
		{"Placements", testPlacements},
		{"Import", testImport},
	} {
		t.Run(part.name, func(t *testing.T) { part.run(t, o) })
	}
}

// opener is the open function given to Run.
type opener func(t *testing.T) store.Store

// fresh opens a store for t and closes it when t ends.
func (o opener) fresh(t *testing.T) store.Store {
	t.Helper()
	s := o(t)
	if s == nil {
		t.Fatal("storetest: open returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// commit commits changes as one batch, failing t on error.
func commit(t *testing.T, s store.Store, changes ...store.Change) {
	t.Helper()
	if _, err := s.Commit(context.Background(), store.Batch{Changes: changes}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func sameItem(a, b roster.Item) bool {
	return a.Entity == b.Entity && a.Contact == b.Contact && a.Sub == b.Sub &&
		a.PendingOut == b.PendingOut && a.PendingIn == b.PendingIn && a.Approved == b.Approved &&
		a.PendingSince.Equal(b.PendingSince) && a.Updated.Equal(b.Updated)
}

// sameRequest compares every field, times as instants (a backend need not
// give them back in the location they went in).
func sameRequest(a, b roster.Request) bool {
	return a.ID == b.ID && a.Entity == b.Entity && a.Contact == b.Contact && a.Rule == b.Rule &&
		a.SubscribeBack == b.SubscribeBack && a.Created.Equal(b.Created)
}

func sameEvent(a, b roster.Event) bool {
	at := a.At.Equal(b.At)
	a.At, b.At = time.Time{}, time.Time{}
	return at && a == b
}

func wantItem(t *testing.T, s store.Store, want roster.Item) {
	t.Helper()
	got, err := s.Get(context.Background(), want.Entity, want.Contact)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", want.Entity, want.Contact, err)
	}
	if !sameItem(got, want) {
		t.Errorf("Get(%q, %q) =\n%+v\nwant\n%+v", want.Entity, want.Contact, got, want)
	}
}

func wantNoItem(t *testing.T, s store.Store, entity, contact string) {
	t.Helper()
	got, err := s.Get(context.Background(), entity, contact)
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%q, %q) = %+v, %v; want store.ErrNotFound", entity, contact, got, err)
	}
}

func wantRequests(t *testing.T, s store.Store, want ...roster.Request) {
	t.Helper()
	got, err := s.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, sameRequest) {
		t.Errorf("Requests =\n%+v\nwant\n%+v", got, want)
	}
}

// events returns every event of the audit log.
func events(t *testing.T, s store.Store) []roster.Event {
	t.Helper()
	var got []roster.Event
	if err := s.Events(context.Background(), time.Time{}, func(e roster.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// count returns how many items f selects.
func count(t *testing.T, s store.Store, f store.Filter) int {
	t.Helper()
	n := 0
	if err := s.Items(context.Background(), f, func(roster.Item) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// wantCheck fails t unless Check finds the store consistent.
func wantCheck(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
}
