package placement

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
)

// fakeEngine keeps items and placements, and records each step.
type fakeEngine struct {
	entities   []engine.Entity
	items      map[string]string // contact → sub (entity "crm")
	asked      map[string]bool   // contact → the entity's request is pending (until the sub is to or both, or refused)
	placements map[string]store.Placement
	ops        []engine.PlaceOp
	audits     []roster.Event
}

func newFake(placeIn ...string) *fakeEngine {
	return &fakeEngine{entities: []engine.Entity{{Local: "crm", Name: "CRM", PlaceIn: placeIn}},
		items: map[string]string{}, asked: map[string]bool{}, placements: map[string]store.Placement{}}
}

func (f *fakeEngine) Domain() string            { return "bots.example.com" }
func (f *fakeEngine) Entities() []engine.Entity { return f.entities }
func (f *fakeEngine) PlacementSettings() engine.Placement {
	return engine.Placement{Interval: time.Minute, ResendAfter: 24 * time.Hour}
}
func (f *fakeEngine) Item(_ context.Context, entity, contact string) (roster.Item, error) {
	sub := f.items[contact]
	if sub == "" {
		sub = roster.SubNone
	}
	pending := f.asked[contact] && sub != roster.SubTo && sub != roster.SubBoth
	return roster.Item{Entity: entity, Contact: contact, Sub: sub, PendingOut: pending}, nil
}
func (f *fakeEngine) Placements(context.Context) ([]store.Placement, error) {
	var out []store.Placement
	for _, p := range f.placements {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b store.Placement) int { return strings.Compare(a.Contact, b.Contact) })
	return out, nil
}
func (f *fakeEngine) Place(_ context.Context, op engine.PlaceOp) error {
	f.ops = append(f.ops, op)
	switch op.Step {
	case engine.PlaceWritten:
		f.items[op.Contact] = roster.SubBoth
	case engine.PlaceErased, engine.PlaceRetract:
		f.items[op.Contact] = roster.SubNone
		f.asked[op.Contact] = false
	case engine.PlaceAsk:
		f.asked[op.Contact] = true
	}
	if op.DeletePlacement {
		delete(f.placements, op.Contact)
	} else {
		p := op.Placement
		p.Entity, p.Contact = op.Entity, op.Contact
		f.placements[op.Contact] = p
	}
	return nil
}
func (f *fakeEngine) Audit(_ context.Context, ev roster.Event) error {
	f.audits = append(f.audits, ev)
	return nil
}

// steps lists the ops as "contact step state kind/via".
func (f *fakeEngine) steps() []string {
	names := map[engine.PlaceStep]string{engine.PlaceRecord: "record", engine.PlaceWritten: "written", engine.PlaceAsk: "ask",
		engine.PlaceErased: "erased", engine.PlaceRetract: "retract"}
	var out []string
	for _, op := range f.ops {
		state := op.Placement.State
		if op.DeletePlacement {
			state = "deleted"
		}
		out = append(out, fmt.Sprintf("%s %s %s %s/%s", op.Contact, names[op.Step], state, op.Audit.Kind, op.Audit.Interface))
	}
	f.ops = nil
	return out
}

type fakeDir struct {
	groups map[string][]string
	err    error
}

func (d *fakeDir) Members(_ context.Context, g string) ([]string, error) {
	if d.err != nil {
		return nil, d.err
	}
	return d.groups[g], nil
}

type fakeServer struct {
	err  error
	sets []string // "user subscription"
}

func (s *fakeServer) SetRosterItem(_ context.Context, user string, it RosterItem) error {
	s.sets = append(s.sets, user+" "+it.Subscription)
	return s.err
}

var grantBoth = Grant{NS: NSPrivilege2, Roster: "both", From: "example.com"}

func reconcile(t *testing.T, p *Placer) Summary {
	t.Helper()
	sum, err := p.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func wantSteps(t *testing.T, f *fakeEngine, want ...string) {
	t.Helper()
	if got := f.steps(); !slices.Equal(got, want) {
		t.Errorf("steps:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestGrant(t *testing.T) {
	tests := []struct {
		g      Grant
		canSet bool
		text   string
	}{
		{Grant{}, false, "no privilege advertised (XEP-0356)"},
		{Grant{NS: NSPrivilege1, From: "example.com"}, false, "example.com advertised no roster permission (urn:xmpp:privilege:1)"},
		{Grant{NS: NSPrivilege2, Roster: "get", From: "example.com"}, false, "example.com granted roster=get, not set (urn:xmpp:privilege:2)"},
		{Grant{NS: NSPrivilege2, Roster: "set", From: "example.com"}, true, "example.com granted roster=set (urn:xmpp:privilege:2)"},
		{grantBoth, true, "example.com granted roster=both (urn:xmpp:privilege:2)"},
	}
	for _, tc := range tests {
		if tc.g.CanSet() != tc.canSet || tc.g.String() != tc.text {
			t.Errorf("%+v: CanSet %v, %q; want %v, %q", tc.g, tc.g.CanSet(), tc.g.String(), tc.canSet, tc.text)
		}
	}
}

// TestPrivileged: the users listed are written through the server; one
// who holds the entity as both already is left alone, and never taken off.
func TestPrivileged(t *testing.T) {
	f := newFake("group:sales", "alice@example.com")
	f.items["erin@example.com"] = roster.SubBoth // erin's own
	dir := &fakeDir{groups: map[string][]string{"sales": {"bob@example.com", "erin@example.com"}}}
	srv := &fakeServer{}
	p := New(f, dir, srv, nil)
	p.SetGrant(grantBoth)
	if sum := reconcile(t, p); sum.Placed != 2 || sum.Asked != 0 {
		t.Errorf("summary %+v", sum)
	}
	wantSteps(t, f, "alice@example.com written placed place/privilege", "bob@example.com written placed place/privilege")
	if !slices.Equal(srv.sets, []string{"alice@example.com both", "bob@example.com both"}) {
		t.Errorf("roster sets %q", srv.sets)
	}
	if pl := f.placements["bob@example.com"]; pl.Source != "group:sales" || pl.Method != store.PlaceByPrivilege {
		t.Errorf("bob's placement %+v", pl)
	}
	// Nothing changed: nothing done.
	reconcile(t, p)
	wantSteps(t, f)
	// erin and bob leave sales: bob's item goes through the server;
	// erin's, her own, stays.
	dir.groups["sales"] = []string{"carol@example.com"}
	srv.sets = nil
	reconcile(t, p)
	wantSteps(t, f, "carol@example.com written placed place/privilege", "bob@example.com erased deleted unplace/privilege")
	if !slices.Equal(srv.sets, []string{"carol@example.com both", "bob@example.com remove"}) {
		t.Errorf("roster sets %q", srv.sets)
	}
	if f.items["erin@example.com"] != roster.SubBoth {
		t.Error("erin's own item was touched")
	}
}

// TestFallback: without the permission, the entity asks (and
// pre-approves); an answer makes it accepted; no answer is asked again
// only after resend_after.
func TestFallback(t *testing.T) {
	f := newFake("alice@example.com")
	srv := &fakeServer{}
	p := New(f, nil, srv, nil)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.SetGrant(Grant{NS: NSPrivilege2, Roster: "get", From: "example.com"})
	if sum := reconcile(t, p); sum.Asked != 1 {
		t.Errorf("summary %+v", sum)
	}
	wantSteps(t, f, "alice@example.com ask waiting place/fallback")
	if len(srv.sets) != 0 {
		t.Errorf("a roster set without the permission: %q", srv.sets)
	}
	pl := f.placements["alice@example.com"]
	if pl.Attempts != 1 || !pl.Sent.Equal(now) || !strings.Contains(pl.Detail, "granted roster=get, not set") {
		t.Errorf("placement %+v", pl)
	}
	now = now.Add(23 * time.Hour)
	reconcile(t, p)
	wantSteps(t, f) // not yet
	now = now.Add(time.Hour)
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com ask waiting place/fallback")
	if pl := f.placements["alice@example.com"]; pl.Attempts != 2 {
		t.Errorf("attempts %d, want 2", pl.Attempts)
	}
	// She accepts without asking back: said once, not asked again.
	f.items["alice@example.com"] = roster.SubTo
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com record waiting place/fallback")
	now = now.Add(48 * time.Hour)
	reconcile(t, p)
	wantSteps(t, f)
	if d := f.placements["alice@example.com"].Detail; !strings.Contains(d, "did not ask back") {
		t.Errorf("detail %q", d)
	}
	f.items["alice@example.com"] = roster.SubBoth
	if sum := reconcile(t, p); sum.Accepted != 1 {
		t.Errorf("summary %+v", sum)
	}
	wantSteps(t, f, "alice@example.com record accepted place/fallback")
	// She takes it off later: left alone from then on.
	f.items["alice@example.com"] = roster.SubNone
	f.asked["alice@example.com"] = false
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com record declined place/fallback")
	now = now.Add(72 * time.Hour)
	reconcile(t, p)
	wantSteps(t, f)
}

// TestSetFails: a privileged set the server refuses falls back, for that
// user and the rest of the stream, and the audit log says so.
func TestSetFails(t *testing.T) {
	f := newFake("alice@example.com", "bob@example.com")
	srv := &fakeServer{err: &RefusedError{Condition: "internal-server-error", Text: "Module failed to handle the query"}}
	p := New(f, nil, srv, nil)
	p.SetGrant(Grant{NS: NSPrivilege1, Roster: "both", From: "example.com"})
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com ask waiting place/fallback", "bob@example.com ask waiting place/fallback")
	if len(srv.sets) != 1 {
		t.Errorf("roster sets %q, want one (the rest of the stream falls back at once)", srv.sets)
	}
	if len(f.audits) != 1 || f.audits[0].Rule != MethodFallback || !strings.Contains(f.audits[0].Detail, "but its roster set failed: internal-server-error (Module failed to handle the query)") {
		t.Errorf("audits %+v", f.audits)
	}
	if d := f.placements["bob@example.com"].Detail; !strings.Contains(d, "failed on this stream: internal-server-error") {
		t.Errorf("bob's detail %q", d)
	}

	// A user the server does not know (Prosody: service-unavailable), or
	// no answer: that user falls back, the next is written.
	f = newFake("alice@example.com", "bob@example.com")
	srv = &fakeServer{err: &RefusedError{Condition: "service-unavailable"}}
	p = New(f, nil, srv, nil)
	p.SetGrant(grantBoth)
	reconcile(t, p)
	if len(srv.sets) != 2 || len(f.audits) != 0 {
		t.Errorf("roster sets %q, audits %+v; want both users tried, no fallback for the stream", srv.sets, f.audits)
	}
}

// TestDirectoryDown: a directory that cannot list a group takes no one
// off, nor does a group listed empty while its members were placed; the
// JIDs listed directly are still placed.
func TestDirectoryDown(t *testing.T) {
	f := newFake("group:sales", "alice@example.com")
	dir := &fakeDir{groups: map[string][]string{"sales": {"bob@example.com"}}}
	p := New(f, dir, &fakeServer{}, nil)
	p.SetGrant(grantBoth)
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com written placed place/privilege", "bob@example.com written placed place/privilege")

	dir.err = errors.New("ldap: connection refused")
	f.entities[0].PlaceIn = []string{"group:sales", "alice@example.com", "carol@example.com"}
	sum := reconcile(t, p)
	wantSteps(t, f, "carol@example.com written placed place/privilege")
	if !slices.Equal(sum.Unsure, []string{"crm@bots.example.com"}) {
		t.Errorf("unsure %q", sum.Unsure)
	}

	dir.err = nil
	dir.groups["sales"] = nil
	reconcile(t, p)
	wantSteps(t, f) // an empty group is taken for a fault

	// A group that answers without bob: bob goes.
	dir.groups["sales"] = []string{"dave@example.com"}
	reconcile(t, p)
	wantSteps(t, f, "dave@example.com written placed place/privilege", "bob@example.com erased deleted unplace/privilege")
}

// TestRemoveFallback: a user asked (not written) who is no longer listed
// is unsubscribed; a declined one's record goes without a stanza; a
// privileged item whose removal the server refuses is unsubscribed.
func TestRemoveFallback(t *testing.T) {
	f := newFake()
	f.placements["alice@example.com"] = store.Placement{Entity: "crm", Contact: "alice@example.com", Method: store.PlaceBySubscription, State: store.PlaceAccepted}
	f.placements["bob@example.com"] = store.Placement{Entity: "crm", Contact: "bob@example.com", Method: store.PlaceByPrivilege, State: store.PlaceDeclined}
	f.placements["carol@example.com"] = store.Placement{Entity: "crm", Contact: "carol@example.com", Method: store.PlaceByPrivilege, State: store.PlacePlaced}
	srv := &fakeServer{err: errors.New("forbidden")}
	p := New(f, nil, srv, nil)
	p.SetGrant(grantBoth)
	if sum := reconcile(t, p); sum.Removed != 3 {
		t.Errorf("summary %+v", sum)
	}
	wantSteps(t, f, "alice@example.com retract deleted unplace/fallback", "bob@example.com record deleted unplace/privilege",
		"carol@example.com retract deleted unplace/fallback")
	if len(f.placements) != 0 {
		t.Errorf("placements left: %+v", f.placements)
	}
}

// TestFallbackRefused: a user who refuses the entity's request
// (unsubscribed: no longer pending, not accepted) is left alone, not asked
// again every resend_after; one who never answers is asked at most
// maxAttempts times.
func TestFallbackRefused(t *testing.T) {
	f := newFake("alice@example.com", "bob@example.com")
	p := New(f, nil, &fakeServer{}, nil)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	p.SetGrant(Grant{NS: NSPrivilege2, Roster: "get", From: "example.com"})
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com ask waiting place/fallback", "bob@example.com ask waiting place/fallback")
	f.asked["alice@example.com"] = false // she answered unsubscribed
	now = now.Add(25 * time.Hour)
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com record declined place/fallback", "bob@example.com ask waiting place/fallback")
	for range 10 {
		now = now.Add(25 * time.Hour)
		reconcile(t, p)
	}
	if pl := f.placements["bob@example.com"]; pl.Attempts != maxAttempts {
		t.Errorf("bob asked %d times, want %d", pl.Attempts, maxAttempts)
	}
	if pl := f.placements["alice@example.com"]; pl.State != store.PlaceDeclined || pl.Attempts != 1 {
		t.Errorf("alice: %+v", pl)
	}
}

// TestForeignUserAsked: the grant is for the granting server's own users;
// a user of another domain is asked, without a roster set to their server.
func TestForeignUserAsked(t *testing.T) {
	f := newFake("alice@example.com", "zed@other.example")
	srv := &fakeServer{}
	p := New(f, nil, srv, nil)
	p.SetGrant(grantBoth)
	reconcile(t, p)
	wantSteps(t, f, "alice@example.com written placed place/privilege", "zed@other.example ask waiting place/fallback")
	if len(srv.sets) != 1 || srv.sets[0] != "alice@example.com both" {
		t.Errorf("roster sets %q, want alice's only", srv.sets)
	}
}
