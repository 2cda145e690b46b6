package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testItems: what each Filter selects, in (entity, contact) order, and how
// an iteration stops.
func testItems(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	items := []struct{ entity, contact, sub string }{
		{"bea", "z@x", roster.SubBoth}, {"alice", "m@x", roster.SubTo}, {"", "svc@x", roster.SubFrom}, {"alice", "b@x", roster.SubBoth},
		{"bea", "a@x", roster.SubNone}, {"alice", "a@x", roster.SubFrom}, {"", "adm@x", roster.SubBoth}, {"alice", "z@x", roster.SubNone},
	}
	var batch []store.Change
	for _, it := range items {
		batch = append(batch, store.Change{Item: roster.Item{Entity: it.entity, Contact: it.contact, Sub: it.sub, PendingIn: it.sub == roster.SubNone}})
	}
	commit(t, s, batch...)

	for _, tc := range []struct {
		name string
		f    store.Filter
		want []string
	}{
		{name: "one entity", f: store.Filter{Entity: "alice"}, want: []string{"alice/a@x", "alice/b@x", "alice/m@x", "alice/z@x"}},
		{name: "component domain", f: store.Filter{}, want: []string{"/adm@x", "/svc@x"}},
		{name: "unknown entity", f: store.Filter{Entity: "nobody"}},
		{name: "all entities", f: store.Filter{Entity: "ignored", AllEntities: true}, want: []string{
			"/adm@x", "/svc@x", "alice/a@x", "alice/b@x", "alice/m@x", "alice/z@x", "bea/a@x", "bea/z@x"}},
		{name: "one sub", f: store.Filter{Entity: "alice", Subs: []string{roster.SubBoth}}, want: []string{"alice/b@x"}},
		{name: "several subs, all entities", f: store.Filter{AllEntities: true, Subs: []string{roster.SubFrom, roster.SubBoth}}, want: []string{
			"/adm@x", "/svc@x", "alice/a@x", "alice/b@x", "bea/z@x"}},
		{name: "limit", f: store.Filter{AllEntities: true, Limit: 3}, want: []string{"/adm@x", "/svc@x", "alice/a@x"}},
		{name: "after", f: store.Filter{AllEntities: true, After: &roster.Key{Entity: "alice", Contact: "m@x"}}, want: []string{
			"alice/z@x", "bea/a@x", "bea/z@x"}},
		{name: "after a key not stored", f: store.Filter{Entity: "alice", After: &roster.Key{Entity: "alice", Contact: "c@x"}}, want: []string{
			"alice/m@x", "alice/z@x"}},
		{name: "after, subs and limit", f: store.Filter{AllEntities: true, Subs: []string{roster.SubBoth}, After: &roster.Key{Entity: "", Contact: "adm@x"}, Limit: 2},
			want: []string{"alice/b@x", "bea/z@x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := s.Items(ctx, tc.f, func(it roster.Item) error {
				got = append(got, it.Entity+"/"+it.Contact)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Items = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("early stop", func(t *testing.T) {
		stop := errors.New("storetest: enough")
		n := 0
		err := s.Items(ctx, store.Filter{AllEntities: true}, func(roster.Item) error {
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
		err := s.Items(cctx, store.Filter{AllEntities: true}, func(roster.Item) error {
			n++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || n != 1 {
			t.Errorf("err = %v after %d rows, want context.Canceled after 1", err, n)
		}
	})
}

// testItemsPages: reading in pages with After and Limit visits every item
// once, in order.
func testItemsPages(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	var batch []store.Change
	for _, e := range []string{"", "a", "b"} {
		for i := range 25 {
			batch = append(batch, store.Change{Item: roster.Item{Entity: e, Contact: fmt.Sprintf("c%02d@x", i), Sub: roster.SubFrom}})
		}
	}
	commit(t, s, batch...)
	var got []roster.Key
	var after *roster.Key
	for range 100 {
		n := 0
		err := s.Items(ctx, store.Filter{AllEntities: true, After: after, Limit: 10}, func(it roster.Item) error {
			n++
			after = &roster.Key{Entity: it.Entity, Contact: it.Contact}
			got = append(got, *after)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n > 10 {
			t.Fatalf("a page of Limit 10 gave %d items", n)
		}
		if n < 10 {
			break
		}
	}
	if len(got) != 75 || got[0] != (roster.Key{Entity: "", Contact: "c00@x"}) || got[25] != (roster.Key{Entity: "a", Contact: "c00@x"}) || got[74] != (roster.Key{Entity: "b", Contact: "c24@x"}) {
		t.Fatalf("pages visited %d items: %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if !(got[i-1].Entity < got[i].Entity || got[i-1].Entity == got[i].Entity && got[i-1].Contact < got[i].Contact) {
			t.Fatalf("out of order at %d: %v then %v", i, got[i-1], got[i])
		}
	}
}

// testItemsWhileCommit iterates with Items while Commit runs from other
// goroutines, and from inside the callback: nothing may wait for anything
// else, and the iteration sees the snapshot it started with.
func testItemsWhileCommit(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	const n = 3000
	var batch []store.Change
	for i := range n {
		batch = append(batch, store.Change{Item: roster.Item{Entity: "e", Contact: fmt.Sprintf("c%05d@x", i), Sub: roster.SubBoth}})
	}
	commit(t, s, batch...)

	// The background writers use entity "f"; the writers that run while the
	// iteration holds its snapshot write to "e", after every existing contact,
	// so a broken snapshot would show them to the iteration.
	writer := func(entity, prefix string, batches, size int) error {
		for b := range batches {
			var batch []store.Change
			for i := range size {
				batch = append(batch, store.Change{
					Item:  roster.Item{Entity: entity, Contact: fmt.Sprintf("%s-%03d-%03d@x", prefix, b, i), Sub: roster.SubTo},
					Audit: &roster.Event{Kind: "subscribed", Action: "state"},
				})
			}
			if _, err := s.Commit(ctx, store.Batch{Changes: batch}); err != nil {
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
			errs <- s.Items(ctx, store.Filter{AllEntities: true, Subs: []string{roster.SubTo}}, func(roster.Item) error { return nil })
		})
	}

	seen := 0
	err := s.Items(ctx, store.Filter{Entity: "e"}, func(it roster.Item) error {
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
				return errors.New("storetest: Commit blocked behind an open Items iteration")
			}
		case 2:
			// Commit and Get from inside the callback.
			if err := writer("e", "inside", 1, 10); err != nil {
				return err
			}
			if _, err := s.Get(ctx, "e", "inside-000-000@x"); err != nil {
				return err
			}
		}
		if !strings.HasPrefix(it.Contact, "c") {
			return fmt.Errorf("storetest: iteration saw %s/%s, committed after it started", it.Entity, it.Contact)
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
	if got, want := count(t, s, store.Filter{AllEntities: true}), n+2*20*50+10*100+10; got != want {
		t.Errorf("afterwards %d items, want %d", got, want)
	}
	if got, want := len(events(t, s)), 2*20*50+10*100+10; got != want {
		t.Errorf("afterwards %d audit events, want %d", got, want)
	}
}

// testGetMany: the stored items among the keys, in any order, in one call.
func testGetMany(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	commit(t, s,
		store.Change{Item: roster.Item{Entity: "e1", Contact: "a@example.org", Sub: roster.SubFrom, Updated: t0}},
		store.Change{Item: roster.Item{Entity: "", Contact: `q"uote\@example.org`, Sub: roster.SubBoth, Updated: t0}},
		store.Change{Item: roster.Item{Entity: "e2", Contact: "a@example.org", Sub: roster.SubTo, PendingIn: true, PendingSince: t0, Updated: t0}},
	)
	for _, tc := range []struct {
		name string
		keys []roster.Key
		want []roster.Item // sorted by entity
	}{
		{
			name: "some stored, some not",
			keys: []roster.Key{{Entity: "e1", Contact: "a@example.org"}, {Entity: "", Contact: `q"uote\@example.org`}, {Entity: "e1", Contact: "missing@example.org"}, {Entity: "e3", Contact: "a@example.org"}},
			want: []roster.Item{
				{Entity: "", Contact: `q"uote\@example.org`, Sub: roster.SubBoth, Updated: t0},
				{Entity: "e1", Contact: "a@example.org", Sub: roster.SubFrom, Updated: t0},
			},
		},
		{
			name: "pending item",
			keys: []roster.Key{{Entity: "e2", Contact: "a@example.org"}},
			want: []roster.Item{{Entity: "e2", Contact: "a@example.org", Sub: roster.SubTo, PendingIn: true, PendingSince: t0, Updated: t0}},
		},
		{name: "none stored", keys: []roster.Key{{Entity: "e9", Contact: "a@example.org"}}},
		{name: "nil keys"},
		{name: "empty keys", keys: []roster.Key{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.GetMany(ctx, tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, func(a, b roster.Item) int { return strings.Compare(a.Entity, b.Entity) })
			if !slices.EqualFunc(got, tc.want, sameItem) {
				t.Errorf("GetMany =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
