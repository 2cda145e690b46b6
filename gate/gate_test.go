package gate_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/engine/enginetest"
	"rostergate/gate"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

const domain = "bots.localhost"

// noIQ is an engine.Handler for tests that send no IQ or message.
type noIQ struct{ t *testing.T }

func (h noIQ) Stanza(_ *bytes.Buffer, el *stanza.Element) {
	h.t.Errorf("unexpected %s handed to the Handler", el.Name)
}

// testPolicy holds every request to a known entity for review, but accepts
// good.example and rejects requests to unknown entities.
func testPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Reject,
		Rules:         []policy.Rule{{Domain: "good.example", Action: policy.Accept}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testSettings are the settings the tests run with unless they say
// otherwise: entities helpdesk and sales, testPolicy.
func testSettings(t *testing.T) engine.Settings {
	return engine.Settings{
		Entities: []engine.Entity{{Local: "helpdesk", Name: "Help desk"}, {Local: "sales"}},
		Policy:   testPolicy(t),
	}
}

// dbPath returns a fresh database path in the test's temporary directory.
func dbPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "rostergate.db")
}

// openDB opens (another handle on) the SQLite database at path.
func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing the database: %v", err)
		}
	})
	return db
}

// instance is a running rostergate as the tests see it: a Service with an
// Engine attached to a fakeWire, over its own handle on the database.
type instance struct {
	db   *sqlite.DB
	eng  *engine.Engine
	wire *enginetest.Wire
	svc  *gate.Service
}

// newInstance starts an instance over the database at path. It does not
// hold the store: the queue tests do that where they mean to.
func newInstance(t *testing.T, path string, s engine.Settings) *instance {
	t.Helper()
	ctx := context.Background()
	db := openDB(t, path)
	eng, err := engine.New(ctx, engine.Options{Domain: domain, Store: db, Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	w := &enginetest.Wire{}
	if err := eng.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	svc, err := gate.New(gate.Options{Domain: domain, Store: db, Engine: eng, Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	return &instance{db: db, eng: eng, wire: w, svc: svc}
}

// newOffline returns a command-line Service (no Engine) over its own handle
// on the database at path.
func newOffline(t *testing.T, path string, s engine.Settings, wait time.Duration) (*gate.Service, *sqlite.DB) {
	t.Helper()
	db := openDB(t, path)
	svc, err := gate.New(gate.Options{Domain: domain, Store: db, Settings: s, Wait: wait})
	if err != nil {
		t.Fatal(err)
	}
	return svc, db
}

// subscribe is a subscription request from contact to an entity.
func subscribe(contact, entity string) *stanza.Element {
	return &stanza.Element{Name: "presence", Type: "subscribe", From: contact, To: roster.EntityJID(domain, entity)}
}

// hold has the engine take subscribe presences from the contacts to
// helpdesk, which the policy holds for review, and returns the held
// requests' ids in the same order.
func (in *instance) hold(t *testing.T, contacts ...string) []int64 {
	t.Helper()
	ctx := context.Background()
	for _, c := range contacts {
		if err := in.eng.Handle(ctx, []*stanza.Element{subscribe(c, "helpdesk")}, noIQ{t}); err != nil {
			t.Fatal(err)
		}
	}
	reqs, err := in.db.Requests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(contacts))
	for i, c := range contacts {
		for _, r := range reqs {
			if r.Contact == c && r.Entity == "helpdesk" {
				ids[i] = r.ID
			}
		}
		if ids[i] == 0 {
			t.Fatalf("the request of %s is not held: %+v", c, reqs)
		}
	}
	return ids
}

// events returns the whole audit log.
func events(t *testing.T, db store.Audit) []roster.Event {
	t.Helper()
	var evs []roster.Event
	if err := db.Events(context.Background(), time.Time{}, func(ev roster.Event) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return evs
}

// eventsOf returns the audit events of one kind.
func eventsOf(t *testing.T, db store.Audit, kind string) []roster.Event {
	t.Helper()
	var out []roster.Event
	for _, ev := range events(t, db) {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// item returns contact's item on entity's roster, and whether there is one.
func item(t *testing.T, db store.Roster, entity, contact string) (roster.Item, bool) {
	t.Helper()
	it, err := db.Get(context.Background(), entity, contact)
	if errors.Is(err, store.ErrNotFound) {
		return roster.Item{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return it, true
}

// heldContacts returns the contacts of the held requests, oldest first.
func heldContacts(t *testing.T, db store.Roster) []string {
	t.Helper()
	reqs, err := db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range reqs {
		out = append(out, r.Contact)
	}
	return out
}

// putItems stores roster items as they are.
func putItems(t *testing.T, db store.Roster, items ...roster.Item) {
	t.Helper()
	changes := make([]store.Change, len(items))
	for i, it := range items {
		changes[i] = store.Change{Item: it}
	}
	if _, err := db.Commit(context.Background(), store.Batch{Changes: changes}); err != nil {
		t.Fatal(err)
	}
}

// wantErr checks err against want: "" is no error, anything else a part of
// the error's text.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestNew(t *testing.T) {
	db := openDB(t, dbPath(t))
	tests := []struct {
		name    string
		opts    gate.Options
		wantErr string
	}{
		{"no store", gate.Options{Domain: domain}, "no store"},
		{"no domain", gate.Options{Store: db}, "no domain"},
		{"offline", gate.Options{Domain: domain, Store: db}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := gate.New(tt.opts)
			wantErr(t, err, tt.wantErr)
			if err == nil && svc.Domain() != domain {
				t.Errorf("Domain() = %q, want %q", svc.Domain(), domain)
			}
			if err != nil && svc != nil {
				t.Errorf("a Service with the error: %v", err)
			}
		})
	}
}

// Pending lists the held requests oldest first, to the running instance
// and to the command line alike.
func TestPending(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		contacts []string // held, in this order
	}{
		{"none", nil},
		{"one", []string{"alice@other.example"}},
		{"oldest first", []string{"carol@other.example", "alice@other.example", "bob@third.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dbPath(t)
			in := newInstance(t, path, testSettings(t))
			ids := in.hold(t, tt.contacts...)
			offline, _ := newOffline(t, path, testSettings(t), time.Second)
			for _, svc := range []struct {
				name string
				svc  *gate.Service
			}{{"online", in.svc}, {"offline", offline}} {
				reqs, err := svc.svc.Pending(ctx)
				if err != nil {
					t.Fatalf("%s: %v", svc.name, err)
				}
				if len(reqs) != len(tt.contacts) {
					t.Fatalf("%s: %d held, want %d: %+v", svc.name, len(reqs), len(tt.contacts), reqs)
				}
				for i, r := range reqs {
					if r.ID != ids[i] || r.Contact != tt.contacts[i] || r.Entity != "helpdesk" || r.Rule != "default" || r.Created.IsZero() {
						t.Errorf("%s: request %d = %+v, want #%d from %s to helpdesk by default", svc.name, i, r, ids[i], tt.contacts[i])
					}
					if i > 0 && r.Created.Before(reqs[i-1].Created) {
						t.Errorf("%s: not oldest first: %+v", svc.name, reqs)
					}
				}
			}
		})
	}
}

func TestRoster(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	db := openDB(t, path)
	putItems(t, db,
		roster.Item{Entity: "helpdesk", Contact: "carol@other.example", Sub: roster.SubBoth},
		roster.Item{Entity: "helpdesk", Contact: "alice@other.example", Sub: roster.SubFrom},
		roster.Item{Entity: "helpdesk", Contact: "bob@other.example", Sub: roster.SubTo},
		roster.Item{Entity: "sales", Contact: "dave@other.example", Sub: roster.SubFrom},
		roster.Item{Entity: "", Contact: "erin@other.example", Sub: roster.SubFrom},
	)
	svc, _ := newOffline(t, path, testSettings(t), time.Second)
	helpdesk := []string{"alice@other.example", "bob@other.example", "carol@other.example"}
	tests := []struct {
		name    string
		entity  string
		limit   int
		want    []string // contacts, in order
		wantErr string
	}{
		{"localpart", "helpdesk", 0, helpdesk, ""},
		{"localpart, spaces around", "  helpdesk ", 0, helpdesk, ""},
		{"localpart in capitals", "HelpDesk", 0, helpdesk, ""},
		{"JID at the domain", "helpdesk@" + domain, 0, helpdesk, ""},
		{"JID at the domain, with a resource", "helpdesk@" + domain + "/rostergate", 0, helpdesk, ""},
		{"JID in capitals", "HELPDESK@BOTS.LOCALHOST", 0, helpdesk, ""},
		{"another entity", "sales@" + domain, 0, []string{"dave@other.example"}, ""},
		{"the domain itself", domain, 0, []string{"erin@other.example"}, ""},
		{"the domain itself, empty", "", 0, []string{"erin@other.example"}, ""},
		{"an entity with no items", "nobody", 0, nil, ""},
		{"limit 1", "helpdesk", 1, helpdesk[:1], ""},
		{"limit 2", "helpdesk", 2, helpdesk[:2], ""},
		{"limit over the count", "helpdesk", 10, helpdesk, ""},
		{"JID at another domain", "helpdesk@other.example", 0, nil, `"helpdesk@other.example" is not at ` + domain},
		{"a localpart with a resource", "helpdesk/phone", 0, helpdesk, ""},
		{"a domain-like localpart with a resource", "other.example/x", 0, nil, ""},
		{"not a JID", "help@desk@" + domain, 0, nil, "is not a JID"},
		{"empty localpart", "@" + domain, 0, nil, "is not a JID"},
		{"not a valid localpart", "help desk", 0, nil, `"help desk" is not a valid entity name`},
		{"localpart with a quote", `o"neil`, 0, nil, "is not a valid entity name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items, err := svc.Roster(ctx, tt.entity, tt.limit)
			wantErr(t, err, tt.wantErr)
			var got []string
			for _, it := range items {
				got = append(got, it.Contact)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Roster(%q, %d) = %q, want %q", tt.entity, tt.limit, got, tt.want)
			}
		})
	}
	t.Run("item fields", func(t *testing.T) {
		items, err := svc.Roster(ctx, "helpdesk", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Entity != "helpdesk" || items[0].Sub != roster.SubFrom || items[0].Updated.IsZero() {
			t.Errorf("items: %+v", items)
		}
	})
	t.Run("AllItems", func(t *testing.T) {
		var got []string
		err := svc.AllItems(ctx, func(it roster.Item) error {
			got = append(got, it.Entity+"/"+it.Contact)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"/erin@other.example", "helpdesk/alice@other.example", "helpdesk/bob@other.example", "helpdesk/carol@other.example", "sales/dave@other.example"}
		if !slices.Equal(got, want) {
			t.Errorf("AllItems: %q, want %q", got, want)
		}
		stop := errors.New("stop")
		n := 0
		err = svc.AllItems(ctx, func(roster.Item) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("AllItems with fn failing: %v after %d items, want stop after 1", err, n)
		}
	})
}

// Lists reads the stored lists, as the running instance edited them.
func TestLists(t *testing.T) {
	ctx := context.Background()
	type edit struct {
		list    string
		add     bool
		pattern string
	}
	tests := []struct {
		name            string
		edits           []edit
		allow, wantDeny []string
	}{
		{"empty", nil, nil, nil},
		{"one each", []edit{{"allow", true, "friends.example"}, {"deny", true, "*@spam.example"}},
			[]string{"friends.example"}, []string{"*@spam.example"}},
		{"sorted and normalised", []edit{{"deny", true, "Zed@Spam.Example"}, {"deny", true, " *@junk.example "}, {"allow", true, "b.example"}, {"allow", true, "A.example"}},
			[]string{"a.example", "b.example"}, []string{"*@junk.example", "zed@spam.example"}},
		{"removed", []edit{{"deny", true, "*@spam.example"}, {"deny", true, "*@junk.example"}, {"deny", false, "*@spam.example"}},
			nil, []string{"*@junk.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dbPath(t)
			in := newInstance(t, path, testSettings(t))
			for _, e := range tt.edits {
				if _, err := in.svc.EditList(ctx, roster.Actor{JID: "admin@example.com", Via: roster.ViaChat}, e.list, e.add, e.pattern); err != nil {
					t.Fatal(err)
				}
			}
			offline, _ := newOffline(t, path, testSettings(t), time.Second)
			for name, svc := range map[string]*gate.Service{"online": in.svc, "offline": offline} {
				allow, deny, err := svc.Lists(ctx)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !slices.Equal(allow, tt.allow) || !slices.Equal(deny, tt.wantDeny) {
					t.Errorf("%s: allow %q, deny %q; want %q, %q", name, allow, deny, tt.allow, tt.wantDeny)
				}
			}
		})
	}
}

// EditList in the running instance: the lists are edited and in force at
// once, audited with the actor.
func TestEditListOnline(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, dbPath(t), testSettings(t))
	actor := roster.Actor{JID: "admin@example.com", Via: roster.ViaAdhoc}
	steps := []struct {
		name        string
		list        string
		add         bool
		pattern     string
		wantChanged bool
		wantErr     string
		wantDecide  string // the action explained for mallory@spam.example to helpdesk afterwards
	}{
		{"add to deny", "deny", true, "*@spam.example", true, "", "reject"},
		{"add again", "deny", true, "*@SPAM.example", false, "", "reject"},
		{"remove", "deny", false, "*@spam.example", true, "", "review"},
		{"remove again", "deny", false, "*@spam.example", false, "", "review"},
		{"add to allow", "allow", true, "spam.example", true, "", "accept"},
		{"unknown list", "grey", true, "x.example", false, `unknown list "grey"`, "accept"},
		{"empty pattern", "deny", true, " ", false, "empty pattern", "accept"},
		{"pattern with a resource", "deny", true, "a@b.example/res", false, "has no resource", "accept"},
		{"bad glob", "deny", true, "[a", false, "bad pattern", "accept"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(events(t, in.db))
			changed, err := in.svc.EditList(ctx, actor, st.list, st.add, st.pattern)
			wantErr(t, err, st.wantErr)
			if changed != st.wantChanged {
				t.Errorf("changed = %t, want %t", changed, st.wantChanged)
			}
			ex, err := in.svc.Explain(ctx, "mallory@spam.example", "helpdesk")
			if err != nil {
				t.Fatal(err)
			}
			if ex.Action != st.wantDecide {
				t.Errorf("after the edit mallory@spam.example is %s (%s), want %s", ex.Action, ex.Rule, st.wantDecide)
			}
			evs := events(t, in.db)
			if st.wantErr != "" {
				if len(evs) != before {
					t.Errorf("a refused edit was audited: %+v", evs[before:])
				}
				return
			}
			if !st.wantChanged {
				return
			}
			last := evs[len(evs)-1]
			if last.Kind != st.list+" list" || last.Actor != actor.JID || last.Interface != actor.Via {
				t.Errorf("audit row %+v, want kind %q by %s", last, st.list+" list", actor)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	in := newInstance(t, dbPath(t), testSettings(t))
	start := time.Now().Add(-time.Second)
	ids := in.hold(t, "alice@other.example")
	if outs, err := in.svc.Decide(ctx, roster.Actor{JID: "admin@example.com", Via: roster.ViaChat}, ids, true); err != nil || outs[0].Err != nil {
		t.Fatalf("Decide: %v %+v", err, outs)
	}
	all := events(t, in.db)
	if len(all) != 2 {
		t.Fatalf("audit log: %+v", all)
	}
	if kinds := []string{all[0].Kind, all[1].Kind}; len(all) != 2 || !slices.Equal(kinds, []string{"subscribe", "approve"}) {
		t.Fatalf("audit log: %+v", all)
	}
	// Both rows may share a millisecond: what is since the last is what
	// has its time.
	var sinceLast []string
	for _, ev := range all {
		if !ev.At.Before(all[1].At) {
			sinceLast = append(sinceLast, ev.Kind)
		}
	}
	tests := []struct {
		name      string
		since     time.Time
		wantKinds []string
	}{
		{"everything", time.Time{}, []string{"subscribe", "approve"}},
		{"since before", start, []string{"subscribe", "approve"}},
		{"since the last", all[1].At, sinceLast},
		{"since after", time.Now().Add(time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kinds []string
			var last time.Time
			err := in.svc.Audit(ctx, tt.since, func(ev roster.Event) error {
				kinds = append(kinds, ev.Kind)
				if ev.At.Before(last) {
					t.Errorf("not oldest first: %+v", ev)
				}
				last = ev.At
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(kinds, tt.wantKinds) {
				t.Errorf("kinds %q, want %q", kinds, tt.wantKinds)
			}
		})
	}
	t.Run("fn fails", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := in.svc.Audit(ctx, time.Time{}, func(roster.Event) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("Audit returned %v after %d events, want stop after 1", err, n)
		}
	})
}

func TestEntities(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		online   *engine.Settings // the engine's settings; nil: no engine
		offline  []engine.Entity  // Options.Settings.Entities
		reloaded []engine.Entity  // if set, Reload these in the engine
		want     []string
	}{
		{"offline: from Settings", nil, []engine.Entity{{Local: "sales"}, {Local: "helpdesk"}}, nil, []string{"helpdesk", "sales"}},
		{"offline: the domain first", nil, []engine.Entity{{Local: "sales"}, {Local: ""}}, nil, []string{"", "sales"}},
		{"offline: duplicates once", nil, []engine.Entity{{Local: "b"}, {Local: "a"}, {Local: "b"}}, nil, []string{"a", "b"}},
		{"offline: none", nil, nil, nil, []string{}},
		{"online: from the engine, not Settings", &engine.Settings{Entities: []engine.Entity{{Local: "support"}, {Local: ""}}},
			[]engine.Entity{{Local: "stale"}}, nil, []string{"", "support"}},
		{"online: after a reload", &engine.Settings{Entities: []engine.Entity{{Local: "support"}}},
			[]engine.Entity{{Local: "stale"}}, []engine.Entity{{Local: "new"}, {Local: "support"}}, []string{"new", "support"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := dbPath(t)
			opts := testSettings(t)
			opts.Entities = tt.offline
			var svc *gate.Service
			if tt.online != nil {
				s := *tt.online
				s.Policy = testPolicy(t)
				in := newInstance(t, path, s)
				var err error
				svc, err = gate.New(gate.Options{Domain: domain, Store: in.db, Engine: in.eng, Settings: opts})
				if err != nil {
					t.Fatal(err)
				}
				if tt.reloaded != nil {
					s.Entities = tt.reloaded
					if err := svc.Reload(ctx, s); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				svc, _ = newOffline(t, path, opts, time.Second)
			}
			got := svc.Entities()
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("Entities() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestReload(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	in := newInstance(t, path, testSettings(t))
	offline, _ := newOffline(t, path, testSettings(t), time.Second)
	if err := offline.Reload(ctx, testSettings(t)); err == nil || !strings.Contains(err.Error(), "not the running instance") {
		t.Errorf("Reload offline: %v, want an error saying it is not the running instance", err)
	}
	bad := testSettings(t)
	bad.Policy = nil
	if err := in.svc.Reload(ctx, bad); err == nil || !strings.Contains(err.Error(), "no policy") {
		t.Errorf("Reload without a policy: %v", err)
	}
	if got := in.svc.Entities(); !slices.Equal(got, []string{"helpdesk", "sales"}) {
		t.Errorf("a failed reload changed the entities: %q", got)
	}
}

// Explain says what the policy in force (online) or the configured policy
// with the stored lists (offline) does with a request.
func TestExplain(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, contact, entity string
		wantAction            string
		wantRule              string // part of Rule
		wantContact           string
		wantEntity            string
		wantKnown             bool
		wantErr               string
	}{
		{name: "default review", contact: "alice@other.example", entity: "helpdesk",
			wantAction: "review", wantRule: "default: review", wantContact: "alice@other.example", wantEntity: "helpdesk@" + domain, wantKnown: true},
		{name: "full JID, capitals", contact: "Alice@Other.Example/phone", entity: "HELPDESK@" + domain,
			wantAction: "review", wantRule: "default", wantContact: "alice@other.example", wantEntity: "helpdesk@" + domain, wantKnown: true},
		{name: "a rule", contact: "bob@good.example", entity: "sales",
			wantAction: "accept", wantRule: `rule 1: domain="good.example" -> accept`, wantContact: "bob@good.example", wantEntity: "sales@" + domain, wantKnown: true},
		{name: "deny list", contact: "mallory@spam.example", entity: "helpdesk",
			wantAction: "reject", wantRule: `deny list "*@spam.example"`, wantContact: "mallory@spam.example", wantEntity: "helpdesk@" + domain, wantKnown: true},
		{name: "deny list before a rule", contact: "eve@good.example", entity: "helpdesk",
			wantAction: "reject", wantRule: `deny list "eve@good.example"`, wantContact: "eve@good.example", wantEntity: "helpdesk@" + domain, wantKnown: true},
		{name: "allow list", contact: "frank@friends.example", entity: "helpdesk",
			wantAction: "accept", wantRule: `allow list "friends.example"`, wantContact: "frank@friends.example", wantEntity: "helpdesk@" + domain, wantKnown: true},
		{name: "unknown entity", contact: "alice@other.example", entity: "nobody",
			wantAction: "reject", wantRule: "unknown_entity: reject", wantContact: "alice@other.example", wantEntity: "nobody@" + domain},
		{name: "bad contact", contact: "a@b@c", entity: "helpdesk", wantErr: `contact "a@b@c" is not a JID`},
		{name: "a name without a domain, and no local domain", contact: "carol", entity: "helpdesk", wantErr: `contact "carol" has no domain`},
		{name: "empty contact", contact: "", entity: "helpdesk", wantErr: "is not a JID"},
		{name: "entity at another domain", contact: "alice@other.example", entity: "helpdesk@other.example", wantErr: "is not at " + domain},
	}
	for _, mode := range []string{"online", "offline"} {
		t.Run(mode, func(t *testing.T) {
			path := dbPath(t)
			in := newInstance(t, path, testSettings(t))
			admin := roster.Actor{JID: "admin@example.com", Via: roster.ViaChat}
			svc := in.svc
			if mode == "offline" {
				// The lists are edited after the command line opened the
				// store: it reads them as stored at each call.
				svc, _ = newOffline(t, path, testSettings(t), time.Second)
			}
			for _, e := range []struct{ list, pattern string }{
				{"deny", "*@spam.example"}, {"deny", "eve@good.example"}, {"allow", "friends.example"},
			} {
				if _, err := in.svc.EditList(ctx, admin, e.list, true, e.pattern); err != nil {
					t.Fatal(err)
				}
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					ex, err := svc.Explain(ctx, tt.contact, tt.entity)
					wantErr(t, err, tt.wantErr)
					if tt.wantErr != "" {
						return
					}
					if ex.Action != tt.wantAction || !strings.Contains(ex.Rule, tt.wantRule) || ex.Contact != tt.wantContact ||
						ex.Entity != tt.wantEntity || ex.KnownEntity != tt.wantKnown {
						t.Errorf("Explain(%q, %q) = %+v, want %s by %q for %s to %s (known %t)",
							tt.contact, tt.entity, ex, tt.wantAction, tt.wantRule, tt.wantContact, tt.wantEntity, tt.wantKnown)
					}
				})
			}
		})
	}
	t.Run("offline without a policy", func(t *testing.T) {
		svc, _ := newOffline(t, dbPath(t), engine.Settings{}, time.Second)
		if _, err := svc.Explain(ctx, "alice@other.example", "helpdesk"); err == nil || !strings.Contains(err.Error(), "no policy") {
			t.Errorf("Explain without a policy: %v", err)
		}
	})
	t.Run("offline uses the configured settings", func(t *testing.T) {
		// The command line knows only the config: entities and policy
		// there, not the running instance's.
		path := dbPath(t)
		newInstance(t, path, testSettings(t))
		s := testSettings(t)
		s.Entities = []engine.Entity{{Local: "sales"}}
		svc, _ := newOffline(t, path, s, time.Second)
		ex, err := svc.Explain(ctx, "alice@other.example", "helpdesk")
		if err != nil {
			t.Fatal(err)
		}
		if ex.Action != "reject" || ex.KnownEntity {
			t.Errorf("helpdesk is not in the offline settings, yet: %+v", ex)
		}
	})
}

func TestCounters(t *testing.T) {
	tests := []struct {
		name       string
		maxPending int
		contacts   []string
		wantHeld   int
		wantHits   map[string]int
	}{
		{"nothing held", 0, nil, 0, map[string]int{}},
		{"two held", 0, []string{"alice@other.example", "bob@other.example"}, 2, map[string]int{}},
		{"over the cap", 1, []string{"alice@other.example", "bob@other.example", "carol@other.example"}, 1, map[string]int{"max_pending": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := dbPath(t)
			s := testSettings(t)
			s.Limits.MaxPending = tt.maxPending
			in := newInstance(t, path, s)
			for _, c := range tt.contacts {
				if err := in.eng.Handle(ctx, []*stanza.Element{subscribe(c, "helpdesk")}, noIQ{t}); err != nil {
					t.Fatal(err)
				}
			}
			c := in.svc.Counters()
			if c.Held != tt.wantHeld || len(c.LimitHits) != len(tt.wantHits) {
				t.Errorf("online Counters() = %+v, want held %d, hits %v", c, tt.wantHeld, tt.wantHits)
			}
			for k, v := range tt.wantHits {
				if c.LimitHits[k] != v {
					t.Errorf("online LimitHits[%q] = %d, want %d", k, c.LimitHits[k], v)
				}
			}
			offline, _ := newOffline(t, path, s, time.Second)
			if c := offline.Counters(); c.Held != 0 || c.LimitHits != nil {
				t.Errorf("offline Counters() = %+v, want zero", c)
			}
		})
	}
}

// Decide in the running instance approves and rejects held requests through
// the state machine, one outcome per id.
func TestDecideOnline(t *testing.T) {
	ctx := context.Background()
	actor := roster.Actor{JID: "admin@example.com", Via: roster.ViaChat}
	const alice, bob = "alice@other.example", "bob@other.example"
	helpdesk := "helpdesk@" + domain
	type want struct {
		notFound bool   // the outcome's error matches store.ErrNotFound
		err      string // part of the outcome's error
		contact  string // the request decided
	}
	tests := []struct {
		name      string
		ids       func(held []int64) []int64 // held: alice's then bob's
		approve   bool
		want      []want
		wantErr   string
		wantSent  []string // presences written by the decision
		wantHeld  []string // still held after
		wantItems map[string]string
	}{
		{
			name: "approve", approve: true,
			ids:       func(h []int64) []int64 { return h[:1] },
			want:      []want{{contact: alice}},
			wantSent:  []string{helpdesk + ">" + alice + " subscribed", helpdesk + "/rostergate>" + alice + " available"},
			wantHeld:  []string{bob},
			wantItems: map[string]string{alice: roster.SubFrom, bob: roster.SubNone + "+in"},
		},
		{
			name: "reject", approve: false,
			ids:       func(h []int64) []int64 { return h[1:] },
			want:      []want{{contact: bob}},
			wantSent:  []string{helpdesk + ">" + bob + " unsubscribed"},
			wantHeld:  []string{alice},
			wantItems: map[string]string{alice: roster.SubNone + "+in", bob: ""},
		},
		{
			name: "both, in the order named", approve: true,
			ids:  func(h []int64) []int64 { return []int64{h[1], h[0]} },
			want: []want{{contact: bob}, {contact: alice}},
			wantSent: []string{
				helpdesk + ">" + bob + " subscribed", helpdesk + "/rostergate>" + bob + " available",
				helpdesk + ">" + alice + " subscribed", helpdesk + "/rostergate>" + alice + " available",
			},
			wantItems: map[string]string{alice: roster.SubFrom, bob: roster.SubFrom},
		},
		{
			name: "unknown id", approve: true,
			ids:       func(h []int64) []int64 { return []int64{h[1] + 100} },
			want:      []want{{notFound: true, err: "not found"}},
			wantHeld:  []string{alice, bob},
			wantItems: map[string]string{alice: roster.SubNone + "+in", bob: roster.SubNone + "+in"},
		},
		{
			name: "unknown id among known ones", approve: false,
			ids:       func(h []int64) []int64 { return []int64{h[0], 0, h[1]} },
			want:      []want{{contact: alice}, {notFound: true}, {contact: bob}},
			wantSent:  []string{helpdesk + ">" + alice + " unsubscribed", helpdesk + ">" + bob + " unsubscribed"},
			wantItems: map[string]string{alice: "", bob: ""},
		},
		{
			name: "duplicate id", approve: true,
			ids:       func(h []int64) []int64 { return []int64{h[0], h[0]} },
			want:      []want{{contact: alice}, {notFound: true, err: "named twice"}},
			wantSent:  []string{helpdesk + ">" + alice + " subscribed", helpdesk + "/rostergate>" + alice + " available"},
			wantHeld:  []string{bob},
			wantItems: map[string]string{alice: roster.SubFrom, bob: roster.SubNone + "+in"},
		},
		{
			name: "no ids", approve: true,
			ids:       func([]int64) []int64 { return nil },
			wantErr:   "no request named",
			wantHeld:  []string{alice, bob},
			wantItems: map[string]string{alice: roster.SubNone + "+in", bob: roster.SubNone + "+in"},
		},
		{
			name: "empty ids", approve: false,
			ids:       func([]int64) []int64 { return []int64{} },
			wantErr:   "no request named",
			wantHeld:  []string{alice, bob},
			wantItems: map[string]string{alice: roster.SubNone + "+in", bob: roster.SubNone + "+in"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, dbPath(t), testSettings(t))
			held := in.hold(t, alice, bob)
			in.wire.Reset()
			auditBefore := len(events(t, in.db))
			ids := tt.ids(held)
			outs, err := in.svc.Decide(ctx, actor, ids, tt.approve)
			wantErr(t, err, tt.wantErr)
			if len(outs) != len(tt.want) {
				t.Fatalf("%d outcomes, want %d: %+v", len(outs), len(tt.want), outs)
			}
			var decided []string
			for i, o := range outs {
				w := tt.want[i]
				if o.ID != ids[i] {
					t.Errorf("outcome %d is of #%d, want #%d", i, o.ID, ids[i])
				}
				if errors.Is(o.Err, store.ErrNotFound) != w.notFound {
					t.Errorf("outcome %d: error %v, want not found: %t", i, o.Err, w.notFound)
				}
				if w.err != "" && (o.Err == nil || !strings.Contains(o.Err.Error(), w.err)) {
					t.Errorf("outcome %d: error %v, want one containing %q", i, o.Err, w.err)
				}
				if w.contact == "" && !w.notFound && w.err == "" {
					t.Fatalf("bad test case")
				}
				if w.contact != "" {
					if o.Err != nil || o.Request.Contact != w.contact || o.Request.Entity != "helpdesk" || o.Request.ID != o.ID {
						t.Errorf("outcome %d = %+v, want %s's request decided", i, o, w.contact)
					}
					decided = append(decided, w.contact)
				} else if o.Request != (roster.Request{}) {
					t.Errorf("outcome %d names a request though none was decided: %+v", i, o)
				}
			}
			if got := in.wire.Presences(); !slices.Equal(got, tt.wantSent) {
				t.Errorf("sent %q, want %q", got, tt.wantSent)
			}
			if got := heldContacts(t, in.db); !slices.Equal(got, tt.wantHeld) {
				t.Errorf("held after: %q, want %q", got, tt.wantHeld)
			}
			for c, sub := range tt.wantItems {
				it, ok := item(t, in.db, "helpdesk", c)
				got := ""
				if ok {
					got = it.Sub
					if it.PendingIn {
						got += "+in"
					}
				}
				if got != sub {
					t.Errorf("item of %s: %q, want %q", c, got, sub)
				}
			}
			// One audit row per decision, naming the actor and its interface.
			kind := "reject"
			if tt.approve {
				kind = "approve"
			}
			var audited []string
			for _, ev := range events(t, in.db)[auditBefore:] {
				if ev.Kind != kind || ev.Actor != actor.JID || ev.Interface != actor.Via || ev.Entity != "helpdesk" {
					t.Errorf("audit row %+v, want %s by %s", ev, kind, actor)
				}
				audited = append(audited, ev.Contact)
			}
			if !slices.Equal(audited, decided) {
				t.Errorf("audited decisions for %q, want %q", audited, decided)
			}
			if c := in.svc.Counters(); c.Held != len(tt.wantHeld) {
				t.Errorf("Counters().Held = %d, want %d", c.Held, len(tt.wantHeld))
			}
		})
	}
	t.Run("not connected", func(t *testing.T) {
		in := newInstance(t, dbPath(t), testSettings(t))
		held := in.hold(t, alice)
		in.eng.Detach()
		outs, err := in.svc.Decide(ctx, actor, held, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != 1 || !errors.Is(outs[0].Err, engine.ErrNotConnected) {
			t.Errorf("outcomes while detached: %+v", outs)
		}
		if got := heldContacts(t, in.db); !slices.Equal(got, []string{alice}) {
			t.Errorf("held after: %q", got)
		}
	})
}

// The entity's own acts in the running instance go through the state
// machine, are sent, and audited with the actor.
func TestActsOnline(t *testing.T) {
	ctx := context.Background()
	actor := roster.Actor{JID: "bot@example.com", Via: roster.ViaAdhoc}
	const carol = "carol@other.example"
	helpdesk := "helpdesk@" + domain
	type act func(s *gate.Service, entity, contact string) error
	subscribeAct := func(s *gate.Service, e, c string) error { return s.Subscribe(ctx, actor, e, c) }
	unsubscribeAct := func(s *gate.Service, e, c string) error { return s.Unsubscribe(ctx, actor, e, c) }
	cancelAct := func(s *gate.Service, e, c string) error { return s.Cancel(ctx, actor, e, c) }
	removeAct := func(s *gate.Service, e, c string) error { return s.Remove(ctx, actor, e, c) }
	both := roster.Item{Entity: "helpdesk", Contact: carol, Sub: roster.SubBoth}
	tests := []struct {
		name      string
		start     *roster.Item
		act       act
		entity    string
		contact   string
		wantErr   string
		wantSent  []string
		wantSub   string // "" = no item
		wantKinds []string
	}{
		{name: "subscribe", act: subscribeAct, entity: "helpdesk", contact: carol,
			wantSent: []string{helpdesk + ">" + carol + " subscribe"}, wantSub: "none+out", wantKinds: []string{"send subscribe"}},
		{name: "subscribe by JID, to a full JID", act: subscribeAct, entity: helpdesk, contact: "Carol@Other.Example/laptop",
			wantSent: []string{helpdesk + ">" + carol + " subscribe"}, wantSub: "none+out", wantKinds: []string{"send subscribe"}},
		{name: "unsubscribe", start: &both, act: unsubscribeAct, entity: "helpdesk", contact: carol,
			wantSent: []string{helpdesk + ">" + carol + " unsubscribe"}, wantSub: roster.SubFrom, wantKinds: []string{"send unsubscribe"}},
		{name: "cancel", start: &both, act: cancelAct, entity: "helpdesk", contact: carol,
			wantSent: []string{helpdesk + "/rostergate>" + carol + " unavailable", helpdesk + ">" + carol + " unsubscribed"}, wantSub: roster.SubTo, wantKinds: []string{"send unsubscribed"}},
		{name: "remove", start: &both, act: removeAct, entity: "helpdesk", contact: carol,
			wantSent:  []string{helpdesk + ">" + carol + " unsubscribe", helpdesk + "/rostergate>" + carol + " unavailable", helpdesk + ">" + carol + " unsubscribed"},
			wantKinds: []string{"send unsubscribe", "send unsubscribed"}},
		{name: "entity at another domain", act: subscribeAct, entity: "helpdesk@other.example", contact: carol, wantErr: "is not at " + domain},
		{name: "bad entity name", act: removeAct, entity: "help desk", contact: carol, wantErr: "is not a valid entity name"},
		{name: "bad contact", act: subscribeAct, entity: "helpdesk", contact: "a@b@c", wantErr: `contact "a@b@c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, dbPath(t), testSettings(t))
			if tt.start != nil {
				putItems(t, in.db, *tt.start)
			}
			before := len(events(t, in.db))
			err := tt.act(in.svc, tt.entity, tt.contact)
			wantErr(t, err, tt.wantErr)
			if got := in.wire.Presences(); !slices.Equal(got, tt.wantSent) {
				t.Errorf("sent %q, want %q", got, tt.wantSent)
			}
			it, ok := item(t, in.db, "helpdesk", carol)
			got := ""
			if ok {
				got = it.Sub
				if it.PendingOut {
					got += "+out"
				}
			}
			want := tt.wantSub
			if tt.wantErr != "" && tt.start != nil {
				want = tt.start.Sub
			}
			if got != want {
				t.Errorf("item after: %q, want %q", got, want)
			}
			var kinds []string
			for _, ev := range events(t, in.db)[before:] {
				if ev.Actor != actor.JID || ev.Interface != actor.Via {
					t.Errorf("audit row %+v, want by %s", ev, actor)
				}
				kinds = append(kinds, ev.Kind)
			}
			if !slices.Equal(kinds, tt.wantKinds) {
				t.Errorf("audited %q, want %q", kinds, tt.wantKinds)
			}
		})
	}
	t.Run("not connected", func(t *testing.T) {
		in := newInstance(t, dbPath(t), testSettings(t))
		in.eng.Detach()
		if err := in.svc.Subscribe(ctx, actor, "helpdesk", carol); !errors.Is(err, engine.ErrNotConnected) {
			t.Errorf("Subscribe while detached: %v", err)
		}
		if _, ok := item(t, in.db, "helpdesk", carol); ok {
			t.Errorf("an item was stored while detached")
		}
	})
}
