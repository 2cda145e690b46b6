package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testNotFound: what does not exist is reported with an error matching
// store.ErrNotFound.
func testNotFound(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "alice", "bob@example.org"); return err }},
		{"Request", func() error { _, err := s.Request(ctx, 42); return err }},
		{"Action", func() error { _, err := s.Action(ctx, 999); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("err = %v, want one matching store.ErrNotFound", err)
			}
		})
	}
}

// testEvents: Events from an instant on, oldest first, ties in the order
// they were appended.
func testEvents(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	// Appended out of time order; two share an instant.
	ats := []time.Duration{3 * time.Second, time.Second, 2 * time.Second, time.Second, 0}
	var batch []store.Change
	for i, d := range ats {
		batch = append(batch, store.Change{Audit: &roster.Event{At: t0.Add(d), Detail: fmt.Sprint(i)}})
	}
	commit(t, s, batch...)
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
			if err := s.Events(ctx, tc.since, func(e roster.Event) error { got = append(got, e.Detail); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Events = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("request decision", func(t *testing.T) {
		commit(t, s,
			store.Change{Audit: &roster.Event{At: t0, Action: "review", Detail: "request #5"}},
			store.Change{Audit: &roster.Event{At: t0.Add(time.Minute), Action: "reject", Actor: "admin@x", Interface: "chat", Detail: "request #5"}},
			store.Change{Audit: &roster.Event{At: t0, Action: "accept", Detail: "request #50"}},
		)
		ev, err := s.RequestDecision(ctx, 5)
		if err != nil || ev.Action != "reject" || ev.Actor != "admin@x" || !ev.At.Equal(t0.Add(time.Minute)) {
			t.Errorf("RequestDecision(5) = %+v, %v", ev, err)
		}
		if _, err := s.RequestDecision(ctx, 6); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RequestDecision(6) = %v, want ErrNotFound", err)
		}
	})
	t.Run("early stop", func(t *testing.T) {
		stop := errors.New("storetest: stop")
		n := 0
		if err := s.Events(ctx, time.Time{}, func(roster.Event) error { n++; return stop }); err != stop || n != 1 {
			t.Errorf("early stop: err = %v after %d, want %v after 1", err, n, stop)
		}
	})
}

// testWritable: a fresh store takes writes.
func testWritable(t *testing.T, o opener) {
	if err := o.fresh(t).Writable(context.Background()); err != nil {
		t.Errorf("Writable on a fresh store: %v", err)
	}
}

// testLists: EditList reports whether the list changed, and audits only
// what changed.
func testLists(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	for _, step := range []struct {
		name          string
		list, pattern string
		add, changed  bool
	}{
		{"add to allow", "allow", "*@example.org", true, true},
		{"add to allow again", "allow", "*@example.org", true, false},
		{"add to deny", "deny", "spam.example", true, true},
		{"add another to deny", "deny", "a@b", true, true},
		{"remove from deny", "deny", "a@b", false, true},
		{"remove from deny again", "deny", "a@b", false, false},
	} {
		changed, err := s.EditList(ctx, step.list, step.pattern, step.add, &roster.Event{Kind: "list", Action: step.list, Actor: "admin@x", Interface: "test", Detail: step.name})
		if err != nil || changed != step.changed {
			t.Fatalf("%s: EditList(%+v) = %t, %v", step.name, step, changed, err)
		}
	}
	if _, err := s.EditList(ctx, "maybe", "x", true, nil); err == nil {
		t.Error("unknown list accepted")
	}
	allow, deny, err := s.Lists(ctx)
	if err != nil || !slices.Equal(allow, []string{"*@example.org"}) || !slices.Equal(deny, []string{"spam.example"}) {
		t.Fatalf("Lists = %v %v %v", allow, deny, err)
	}
	var got []string
	for _, e := range events(t, s) {
		got = append(got, e.Detail)
	}
	if want := []string{"add to allow", "add to deny", "add another to deny", "remove from deny"}; !slices.Equal(got, want) {
		t.Errorf("audit events %q, want %q (one per change)", got, want)
	}
	t.Run("sorted", func(t *testing.T) {
		for _, p := range []string{"z@x", "b@x", "m@x"} {
			if _, err := s.EditList(ctx, "allow", p, true, nil); err != nil {
				t.Fatal(err)
			}
		}
		allow, _, err := s.Lists(ctx)
		if want := []string{"*@example.org", "b@x", "m@x", "z@x"}; err != nil || !slices.Equal(allow, want) {
			t.Errorf("allow = %q, %v; want %q", allow, err, want)
		}
	})
}

// testActions: the queue of the command line's acts.
func testActions(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	if w, err := s.WaitingActions(ctx); err != nil || len(w) != 0 {
		t.Fatalf("WaitingActions on an empty store = %+v, %v", w, err)
	}
	id1, err := s.QueueAction(ctx, "cli:root", "approve", "12 13")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := s.QueueAction(ctx, "cli:root", "deny", "*@spam.example")
	if err != nil {
		t.Fatal(err)
	}
	if id1 == 0 || id2 == id1 {
		t.Fatalf("ids %d and %d: want two distinct non-zero", id1, id2)
	}
	w, err := s.WaitingActions(ctx)
	if err != nil || len(w) != 2 || w[0].ID != id1 || w[0].Actor != "cli:root" || w[0].Kind != "approve" || w[0].Request != "12 13" ||
		w[1].ID != id2 || w[1].Kind != "deny" || w[1].Request != "*@spam.example" {
		t.Fatalf("WaitingActions = %+v, %v", w, err)
	}
	if err := s.FinishAction(ctx, id1, "Approved #12"); err != nil {
		t.Fatal(err)
	}
	if w, err := s.WaitingActions(ctx); err != nil || len(w) != 1 || w[0].ID != id2 {
		t.Fatalf("after finishing %d: %+v, %v", id1, w, err)
	}
	a, err := s.Action(ctx, id1)
	if err != nil || a.ID != id1 || a.Kind != "approve" || a.Request != "12 13" || a.Done.IsZero() || a.Result != "Approved #12" {
		t.Fatalf("Action = %+v, %v", a, err)
	}
	if age := time.Since(a.Created); age < 0 || age > time.Minute {
		t.Errorf("Action created %v, want now", a.Created)
	}
	if a, err := s.Action(ctx, id2); err != nil || !a.Done.IsZero() || a.Result != "" {
		t.Errorf("waiting Action = %+v, %v; want not done, no result", a, err)
	}
	if _, err := s.Action(ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing action: %v", err)
	}
}

// testHold: one holder at a time; the store is free again once released.
func testHold(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	for round := range 2 {
		release, err := s.Hold(ctx)
		if err != nil {
			t.Fatalf("round %d: Hold: %v", round, err)
		}
		again, err := s.Hold(ctx)
		if !errors.Is(err, store.ErrHeld) {
			if err == nil {
				again()
			}
			t.Errorf("round %d: second Hold err = %v, want one matching store.ErrHeld", round, err)
		}
		release()
	}
}

// testCheck: Check finds a store consistent, empty or not.
func testCheck(t *testing.T, o opener) {
	s := o.fresh(t)
	t.Run("fresh", func(t *testing.T) { wantCheck(t, s) })
	t.Run("populated", func(t *testing.T) {
		commit(t, s, store.Change{
			Item:  roster.Item{Entity: "alice", Contact: "bob@example.org", Sub: roster.SubNone, PendingIn: true},
			Queue: &roster.Request{},
			Audit: &roster.Event{Kind: "subscribe", Action: "review"},
		})
		if _, err := s.Commit(context.Background(), store.Batch{Send: "<x/>"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.EditList(context.Background(), "deny", "spam.example", true, &roster.Event{Kind: "list"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.QueueAction(context.Background(), "cli:root", "list", "{}"); err != nil {
			t.Fatal(err)
		}
		wantCheck(t, s)
	})
}

// testAuditPage: pages of the audit log by id, both ways, with each filter.
func testAuditPage(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	var batch []store.Change
	for i := range 10 {
		e := &roster.Event{At: t0.Add(time.Duration(i) * time.Second), Entity: "helpdesk", Contact: fmt.Sprintf("u%d@Example.com", i),
			Action: "accept", Interface: "web", Detail: fmt.Sprint(i)}
		if i%2 == 1 {
			e.Entity, e.Action, e.Interface = "", "reject", "chat"
		}
		batch = append(batch, store.Change{Audit: e})
	}
	commit(t, s, batch...)
	details := func(evs []roster.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Detail)
		}
		return out
	}
	all, err := s.AuditPage(ctx, store.AuditQuery{Limit: 100})
	if err != nil || len(all) != 10 {
		t.Fatalf("everything: %d, %v", len(all), err)
	}
	id := func(i int) int64 { return all[i].ID }
	for _, tc := range []struct {
		name string
		q    store.AuditQuery
		want []string
	}{
		{"oldest first, a page", store.AuditQuery{Limit: 3}, []string{"0", "1", "2"}},
		{"after", store.AuditQuery{Limit: 3, After: id(2)}, []string{"3", "4", "5"}},
		{"newest first", store.AuditQuery{Limit: 3, Desc: true}, []string{"9", "8", "7"}},
		{"newest before", store.AuditQuery{Limit: 3, Desc: true, Before: id(7)}, []string{"6", "5", "4"}},
		{"the domain's", store.AuditQuery{Limit: 100, HasEntity: true, Entity: ""}, []string{"1", "3", "5", "7", "9"}},
		{"an entity's", store.AuditQuery{Limit: 2, HasEntity: true, Entity: "helpdesk", Desc: true}, []string{"8", "6"}},
		{"contact, any case", store.AuditQuery{Limit: 100, Contact: "U3@EXAMPLE"}, []string{"3"}},
		{"action and via", store.AuditQuery{Limit: 100, Action: "reject", Via: "chat", Before: id(5)}, []string{"1", "3"}},
		{"since", store.AuditQuery{Limit: 100, Since: t0.Add(8 * time.Second)}, []string{"8", "9"}},
		{"nothing", store.AuditQuery{Limit: 100, Via: "api"}, nil},
	} {
		got, err := s.AuditPage(ctx, tc.q)
		if err != nil || !slices.Equal(details(got), tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.name, details(got), err, tc.want)
		}
	}
	if _, err := s.AuditPage(ctx, store.AuditQuery{}); err == nil {
		t.Error("a limit of 0: no error")
	}
}
