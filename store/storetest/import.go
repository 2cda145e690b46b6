package storetest

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testImport: exported records load as they are (ids, times, states); ids
// assigned afterwards follow the highest imported; a record stored already,
// or a request without its item, fails the whole call.
func testImport(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	h, hi := sha256.Sum256([]byte("tok")), sha256.Sum256([]byte("invite"))
	recs := store.ImportRecords{
		Items: []roster.Item{
			{Entity: "helpdesk", Contact: "alice@x.example", Sub: roster.SubBoth, Approved: true, Updated: t0},
			{Entity: "helpdesk", Contact: "bob@x.example", Sub: roster.SubNone, PendingIn: true, PendingSince: t0.Add(time.Second), Updated: t0.Add(time.Second)},
			{Entity: "", Contact: "carol@y.example", Sub: roster.SubTo, PendingOut: true, Updated: t0},
		},
		Requests: []roster.Request{{ID: 41, Entity: "helpdesk", Contact: "bob@x.example", Rule: "rule 2", SubscribeBack: true, Created: t0.Add(time.Second)}},
		Lists:    []store.ListEntry{{List: "deny", Pattern: "*@spam.example"}, {List: "allow", Pattern: "y.example"}},
		Events: []roster.Event{
			{ID: 7, At: t0, Entity: "helpdesk", Contact: "alice@x.example", Kind: "subscribe", Action: "accept", Rule: "default", From: "none", To: "from", Actor: "alice@x.example", Interface: "stream"},
			{ID: 90, At: t0.Add(time.Second), Entity: "helpdesk", Contact: "bob@x.example", Kind: "subscribe", Action: "review", Detail: "request #41"},
		},
		Tokens: []store.Token{{ID: 5, Hash: h[:], Entities: []string{"helpdesk"}, Created: t0, LastUsed: t0.Add(time.Hour)}},
		Invites: []store.Invite{{ID: 8, Hash: hi[:], Entity: "helpdesk", Creator: "root@x.example", Created: t0, Expires: t0.Add(time.Hour),
			MaxUses: 3, Uses: 2, SubscribeBack: true, Revoked: t0.Add(time.Minute)}},
		Placements: []store.Placement{{Entity: "helpdesk", Contact: "alice@x.example", Method: store.PlaceBySubscription, State: store.PlaceWaiting,
			Source: "group:sales", Detail: "asked", Attempts: 2, Sent: t0.Add(time.Hour), Created: t0, Updated: t0.Add(time.Hour)}},
	}
	if err := s.Import(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, want := range recs.Items {
		wantItem(t, s, want)
	}
	wantRequests(t, s, recs.Requests...)
	if allow, deny, err := s.Lists(ctx); err != nil || !slices.Equal(allow, []string{"y.example"}) || !slices.Equal(deny, []string{"*@spam.example"}) {
		t.Errorf("lists = %v %v, %v", allow, deny, err)
	}
	evs, err := s.AuditPage(ctx, store.AuditQuery{Limit: 10})
	if err != nil || len(evs) != 2 || !sameEvent(evs[0], recs.Events[0]) || !sameEvent(evs[1], recs.Events[1]) {
		t.Errorf("events = %+v, %v", evs, err)
	}
	tk, err := s.TokenByHash(ctx, h[:])
	if err != nil || tk.ID != 5 || !slices.Equal(tk.Entities, []string{"helpdesk"}) || !tk.Created.Equal(t0) || !tk.LastUsed.Equal(t0.Add(time.Hour)) || !tk.Revoked.IsZero() {
		t.Errorf("token = %+v, %v", tk, err)
	}

	if inv, err := s.InviteByHash(ctx, hi[:]); err != nil || !sameInvite(inv, recs.Invites[0]) {
		t.Errorf("invite = %+v, %v; want %+v", inv, err, recs.Invites[0])
	}

	if ps, err := s.Placements(ctx); err != nil || len(ps) != 1 || ps[0] != recs.Placements[0] &&
		!(ps[0].Contact == "alice@x.example" && ps[0].Sent.Equal(t0.Add(time.Hour)) && ps[0].Created.Equal(t0) && ps[0].Updated.Equal(t0.Add(time.Hour)) &&
			ps[0].Attempts == 2 && ps[0].Source == "group:sales" && ps[0].State == store.PlaceWaiting) {
		t.Errorf("placements = %+v, %v; want %+v", ps, err, recs.Placements)
	}

	// What comes next is numbered after what was imported.
	q := &roster.Request{Entity: "helpdesk", Contact: "dave@x.example", Created: t0}
	ev := &roster.Event{At: t0, Entity: "helpdesk", Contact: "dave@x.example", Action: "review"}
	commit(t, s, store.Change{Item: roster.Item{Entity: "helpdesk", Contact: "dave@x.example", Sub: roster.SubNone, PendingIn: true}, Queue: q, Audit: ev})
	if q.ID <= 41 || ev.ID <= 90 {
		t.Errorf("after the import: request id %d, event id %d; want above 41 and 90", q.ID, ev.ID)
	}
	h2 := sha256.Sum256([]byte("tok2"))
	if t2, err := s.CreateToken(ctx, h2[:], []string{"helpdesk"}, false); err != nil || t2.ID <= 5 {
		t.Errorf("a token after the import: %+v, %v; want an id above 5", t2, err)
	}
	h3 := sha256.Sum256([]byte("invite2"))
	if i2, err := s.CreateInvite(ctx, store.Invite{Hash: h3[:], Entity: "helpdesk", MaxUses: 1}, nil); err != nil || i2.ID <= 8 {
		t.Errorf("an invite after the import: %+v, %v; want an id above 8", i2, err)
	}

	// All or nothing: the second item is new, the request is stored already.
	bad := store.ImportRecords{
		Items:    []roster.Item{{Entity: "helpdesk", Contact: "erin@x.example", Sub: roster.SubNone, PendingIn: true, Updated: t0}},
		Requests: []roster.Request{{ID: 41, Entity: "helpdesk", Contact: "erin@x.example", Created: t0}},
	}
	if err := s.Import(ctx, bad); err == nil {
		t.Error("a request id stored already: no error")
	}
	wantNoItem(t, s, "helpdesk", "erin@x.example")
	orphan := store.ImportRecords{Requests: []roster.Request{{ID: 100, Entity: "helpdesk", Contact: "nobody@x.example", Created: t0}}}
	if err := s.Import(ctx, orphan); err == nil {
		t.Error("a request without its item: no error")
	}
	wantCheck(t, s)
}

// sameInvite compares invites field by field, times as instants.
func sameInvite(a, b store.Invite) bool {
	return a.ID == b.ID && string(a.Hash) == string(b.Hash) && a.Entity == b.Entity && a.Creator == b.Creator && a.Created.Equal(b.Created) &&
		a.Expires.Equal(b.Expires) && a.MaxUses == b.MaxUses && a.Uses == b.Uses && a.SubscribeBack == b.SubscribeBack && a.Revoked.Equal(b.Revoked)
}
