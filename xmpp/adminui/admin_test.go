package adminui

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"reflect"
	"rostergate/roster"
	"rostergate/store"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- fakes ----

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeOps implements Ops in memory and records every call that changes
// something or takes arguments.
type fakeOps struct {
	mu         sync.Mutex
	domain     string
	entities   []string
	pending    []roster.Request
	pendingErr error
	rosters    map[string][]roster.Item
	allow      []string
	deny       []string
	noWeb      bool
	calls      []string
}

func newFake() *fakeOps {
	return &fakeOps{
		domain:   "bots.localhost",
		entities: []string{"", "helpdesk", "sales"},
		pending: []roster.Request{
			{ID: 12, Entity: "helpdesk", Contact: "alice@localhost", Rule: "rule 2", Created: t0.Add(-3 * time.Hour)},
			{ID: 13, Entity: "sales", Contact: "bob@example.com", Rule: "default", Created: t0.Add(-5 * time.Minute)},
			{ID: 14, Entity: "", Contact: "carol@localhost", Rule: "rule 1", SubscribeBack: true, Created: t0.Add(-50 * time.Hour)},
		},
		rosters: map[string][]roster.Item{
			"helpdesk": {
				{Entity: "helpdesk", Contact: "alice@localhost", Sub: roster.SubBoth},
				{Entity: "helpdesk", Contact: "bob@localhost", Sub: roster.SubNone, PendingIn: true, Approved: true},
				{Entity: "helpdesk", Contact: "dave@localhost", Sub: roster.SubFrom, PendingOut: true},
			},
		},
		allow: []string{"*@localhost", "bob@example.com"},
		deny:  []string{"*@spam.example"},
	}
}

func (f *fakeOps) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeOps) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeOps) Domain() string     { return f.domain }
func (f *fakeOps) Entities() []string { return f.entities }

func (f *fakeOps) Pending(context.Context) ([]roster.Request, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pendingErr != nil {
		return nil, f.pendingErr
	}
	return slices.Clone(f.pending), nil
}

func (f *fakeOps) Decide(_ context.Context, actor roster.Actor, ids []int64, approve bool) ([]roster.Outcome, error) {
	f.record("Decide %v %v %s %s", ids, approve, actor.JID, actor.Via)
	f.mu.Lock()
	defer f.mu.Unlock()
	var outs []roster.Outcome
	for _, id := range ids {
		if id == 99 {
			outs = append(outs, roster.Outcome{ID: id, Err: errors.New("database is locked")})
			continue
		}
		i := slices.IndexFunc(f.pending, func(r roster.Request) bool { return r.ID == id })
		if i < 0 {
			outs = append(outs, roster.Outcome{ID: id, Err: fmt.Errorf("request %d: %w", id, store.ErrNotFound)})
			continue
		}
		outs = append(outs, roster.Outcome{ID: id, Request: f.pending[i]})
		f.pending = slices.Delete(f.pending, i, i+1)
	}
	return outs, nil
}

func (f *fakeOps) Explain(_ context.Context, contact, entity string) (roster.Explanation, error) {
	f.record("Explain %s %s", contact, entity)
	if !strings.Contains(contact, "@") && !strings.Contains(contact, ".") && contact != "carol" {
		return roster.Explanation{}, fmt.Errorf("contact %q is not a JID", contact)
	}
	if !strings.Contains(entity, "@") && entity != f.domain {
		entity += "@" + f.domain
	}
	ex := roster.Explanation{Contact: strings.ToLower(contact), Entity: strings.ToLower(entity), KnownEntity: entity != "nosuch@"+f.domain}
	if contact == "carol" {
		ex.Contact, ex.Note = "carol@localhost", `"carol" has no domain: read as carol@localhost (the first of [policy] local_domains)`
	}
	if strings.HasSuffix(ex.Contact, "@localhost") {
		ex.Action, ex.SubscribeBack, ex.Rule = "accept", true, `rule 2: contact="*@localhost" -> accept, subscribe_back`
	} else {
		ex.Action, ex.Rule, ex.Message = "reject", "default -> reject", "Not <allowed> & sorry"
		ex.Groups = []string{"rule 1 group staff: " + ex.Contact + " is not a member (groups file); rule does not match"}
	}
	return ex, nil
}

func (f *fakeOps) Roster(_ context.Context, entity string, _ int) ([]roster.Item, error) {
	// As the service does: a localpart or a JID at the domain.
	entity, err := roster.ParseEntity(f.domain, entity)
	if err != nil {
		return nil, err
	}
	f.record("Roster %q", entity)
	if entity == "broken" {
		return nil, errors.New("disk on fire")
	}
	return f.rosters[entity], nil
}

func (f *fakeOps) LoginMessage(_ context.Context, admin string) (string, error) {
	f.record("LoginMessage %s", admin)
	if f.noWeb {
		return "", errors.New("there is no web page ([http] listen is not set)")
	}
	return "Your login link: https://rg.example.com/login/rgl_x", nil
}

func (f *fakeOps) InviteMessage(_ context.Context, actor roster.Actor, entity string, ttl time.Duration, uses int, back bool) (string, error) {
	f.record("InviteMessage %s %s %s %d %v", actor, entity, ttl, uses, back)
	return "Invite #1 to " + entity, nil
}

func (f *fakeOps) Invites(context.Context) ([]store.Invite, error) {
	return []store.Invite{
		{ID: 1, Entity: "helpdesk", Creator: "root@localhost", MaxUses: 1, Uses: 1},
		{ID: 2, Entity: "sales", Creator: "cli:root", MaxUses: 5, Uses: 2, Expires: t0.Add(time.Hour), SubscribeBack: true},
	}, nil
}

func (f *fakeOps) RevokeInvite(_ context.Context, actor roster.Actor, id int64) (bool, error) {
	f.record("RevokeInvite %s %d", actor, id)
	switch id {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	return false, fmt.Errorf("gate: invite %d: %w", id, store.ErrNotFound)
}

func (f *fakeOps) Lists(context.Context) ([]string, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.allow), slices.Clone(f.deny), nil
}

func (f *fakeOps) EditList(_ context.Context, actor roster.Actor, list string, add bool, pattern string) (bool, error) {
	f.record("EditList %s %v %s %s %s", list, add, pattern, actor.JID, actor.Via)
	f.mu.Lock()
	defer f.mu.Unlock()
	l := &f.allow
	if list == "deny" {
		l = &f.deny
	}
	if strings.Contains(pattern, "[") {
		return false, fmt.Errorf("bad pattern %q: unclosed [", pattern)
	}
	i := slices.Index(*l, pattern)
	switch {
	case add && i >= 0:
		return false, fmt.Errorf("%q is already in the %s list", pattern, list)
	case add:
		*l = append(*l, pattern)
	case i < 0:
		return false, fmt.Errorf("%q is not in the %s list", pattern, list)
	default:
		*l = slices.Delete(*l, i, i+1)
	}
	return true, nil
}

const admin = "admin@localhost"

func newTest(t *testing.T) (*Handler, *fakeOps, *clock) {
	t.Helper()
	f := newFake()
	c := &clock{t: t0}
	return New(f, c.now), f, c
}

// ---- parsing our output ----

type xCommand struct {
	XMLName   xml.Name `xml:"http://jabber.org/protocol/commands command"`
	Node      string   `xml:"node,attr"`
	SessionID string   `xml:"sessionid,attr"`
	Status    string   `xml:"status,attr"`
	Actions   *struct {
		Execute  string    `xml:"execute,attr"`
		Complete *struct{} `xml:"complete"`
	} `xml:"actions"`
	Notes []struct {
		Type string `xml:"type,attr"`
		Text string `xml:",chardata"`
	} `xml:"note"`
	X *xForm `xml:"jabber:x:data x"`
}

type xForm struct {
	Type         string   `xml:"type,attr"`
	Title        string   `xml:"title"`
	Instructions []string `xml:"instructions"`
	Fields       []xField `xml:"field"`
}

type xField struct {
	Var      string    `xml:"var,attr"`
	Type     string    `xml:"type,attr"`
	Label    string    `xml:"label,attr"`
	Required *struct{} `xml:"required"`
	Values   []string  `xml:"value"`
	Options  []xOption `xml:"option"`
}

type xOption struct {
	Label string `xml:"label,attr"`
	Value string `xml:"value"`
}

func (x *xForm) field(t *testing.T, v string) xField {
	t.Helper()
	if x == nil {
		t.Fatalf("no form")
	}
	for _, f := range x.Fields {
		if f.Var == v {
			return f
		}
	}
	t.Fatalf("form has no field %q: %+v", v, x.Fields)
	return xField{}
}

func (c xCommand) note() string {
	var s []string
	for _, n := range c.Notes {
		s = append(s, n.Type+": "+n.Text)
	}
	return strings.Join(s, "\n")
}

func parseReply(t *testing.T, payload string) xCommand {
	t.Helper()
	var c xCommand
	if err := xml.Unmarshal([]byte(payload), &c); err != nil {
		t.Fatalf("reply does not parse: %v\n%s", err, payload)
	}
	return c
}

type xError struct {
	XMLName xml.Name `xml:"error"`
	Type    string   `xml:"type,attr"`
	Any     []struct {
		XMLName xml.Name
		Text    string `xml:",chardata"`
	} `xml:",any"`
}

// execOK runs Execute and fails unless it returns a result.
func execOK(t *testing.T, h *Handler, actor, raw string) xCommand {
	t.Helper()
	payload, e := h.Execute(context.Background(), actor, []byte(raw))
	if e != nil {
		t.Fatalf("Execute(%s) = error %v", raw, e)
	}
	return parseReply(t, payload)
}

// start executes node and checks the executing reply.
func start(t *testing.T, h *Handler, node string) xCommand {
	t.Helper()
	c := execOK(t, h, admin, `<command xmlns='http://jabber.org/protocol/commands' node='`+node+`' action='execute'/>`)
	if c.Status != "executing" || c.SessionID == "" || c.Node != node {
		t.Fatalf("start %s: status=%q sessionid=%q node=%q", node, c.Status, c.SessionID, c.Node)
	}
	if c.Actions == nil || c.Actions.Execute != "complete" || c.Actions.Complete == nil {
		t.Fatalf("start %s: actions = %+v", node, c.Actions)
	}
	if c.X == nil || c.X.Type != "form" {
		t.Fatalf("start %s: no form of type form: %+v", node, c.X)
	}
	return c
}

func submit(node, sid, fields string) string {
	return `<command xmlns='http://jabber.org/protocol/commands' node='` + node + `' sessionid='` + sid + `' action='complete'><x xmlns='jabber:x:data' type='submit'>` + fields + `</x></command>`
}

// ---- ad-hoc ----

func TestCommandsAndDisco(t *testing.T) {
	h, f, _ := newTest(t)
	want := []Command{
		{"pending", "Pending requests"}, {"approve", "Approve requests"}, {"reject", "Reject requests"},
		{"explain", "Explain a decision"}, {"roster", "Roster of an entity"}, {"lists", "Allow and deny lists"},
	}
	if got := h.Commands(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Commands() = %v", got)
	}
	h.Commands()[0].Node = "mutated"
	if h.Commands()[0].Node != "pending" {
		t.Fatal("Commands() shares its slice")
	}

	var items struct {
		XMLName xml.Name `xml:"http://jabber.org/protocol/disco#items query"`
		Node    string   `xml:"node,attr"`
		Items   []struct {
			JID  string `xml:"jid,attr"`
			Node string `xml:"node,attr"`
			Name string `xml:"name,attr"`
		} `xml:"item"`
	}
	if err := xml.Unmarshal([]byte(h.DiscoItems()), &items); err != nil {
		t.Fatal(err)
	}
	if items.Node != NSCommands || len(items.Items) != len(want) {
		t.Fatalf("DiscoItems = %+v", items)
	}
	for i, it := range items.Items {
		if it.JID != f.domain || it.Node != want[i].Node || it.Name != want[i].Name {
			t.Errorf("item %d = %+v", i, it)
		}
	}

	for _, c := range want {
		payload, ok := h.DiscoInfo(c.Node)
		if !ok {
			t.Fatalf("DiscoInfo(%q) not ok", c.Node)
		}
		var info struct {
			XMLName  xml.Name `xml:"http://jabber.org/protocol/disco#info query"`
			Node     string   `xml:"node,attr"`
			Identity []struct {
				Category string `xml:"category,attr"`
				Type     string `xml:"type,attr"`
				Name     string `xml:"name,attr"`
			} `xml:"identity"`
			Features []struct {
				Var string `xml:"var,attr"`
			} `xml:"feature"`
		}
		if err := xml.Unmarshal([]byte(payload), &info); err != nil {
			t.Fatal(err)
		}
		if info.Node != c.Node || len(info.Identity) != 1 || info.Identity[0].Category != "automation" ||
			info.Identity[0].Type != "command-node" || info.Identity[0].Name != c.Name {
			t.Errorf("DiscoInfo(%q) = %+v", c.Node, info)
		}
		var feats []string
		for _, f := range info.Features {
			feats = append(feats, f.Var)
		}
		if !reflect.DeepEqual(feats, []string{NSCommands, "jabber:x:data"}) {
			t.Errorf("DiscoInfo(%q) features = %v", c.Node, feats)
		}
	}
	if _, ok := h.DiscoInfo("nope"); ok {
		t.Error("DiscoInfo(nope) ok")
	}
	if _, ok := h.DiscoInfo(""); ok {
		t.Error(`DiscoInfo("") ok`)
	}

	// The domain is escaped.
	f.domain = `a'b"<c>&d`
	items.Items = nil
	if err := xml.Unmarshal([]byte(h.DiscoItems()), &items); err != nil || items.Items[0].JID != f.domain {
		t.Fatalf("escaped domain: %v %+v", err, items.Items)
	}
}

func TestPendingFlow(t *testing.T) {
	tests := []struct {
		name      string
		fields    string
		wantCalls []string
		noteType  string
		note      []string
		remaining []int64
	}{{
		name:   "approve some, reject others",
		fields: `<field var='FORM_TYPE' type='hidden'><value>x</value></field><field var='approve'><value>12</value><value>14</value></field><field var='reject'><value>13</value></field>`,
		wantCalls: []string{
			"Decide [12 14] true admin@localhost adhoc",
			"Decide [13] false admin@localhost adhoc",
		},
		noteType: "info",
		note: []string{
			"Approved #12 (alice@localhost → helpdesk@bots.localhost)",
			"Approved #14 (carol@localhost → bots.localhost)",
			"Rejected #13 (bob@example.com → sales@bots.localhost)",
		},
	}, {
		name:      "approve only, with field types as sent back",
		fields:    `<field var='approve' type='list-multi'><value>13</value></field><field var='reject' type='list-multi'/>`,
		wantCalls: []string{"Decide [13] true admin@localhost adhoc"},
		noteType:  "info",
		note:      []string{"Approved #13 (bob@example.com → sales@bots.localhost)"},
		remaining: []int64{12, 14},
	}, {
		name:      "nothing chosen",
		fields:    `<field var='approve'/><field var='reject'/>`,
		noteType:  "info",
		note:      []string{"Nothing chosen; no request was decided."},
		remaining: []int64{12, 13, 14},
	}, {
		name:      "empty form",
		fields:    ``,
		noteType:  "info",
		note:      []string{"Nothing chosen; no request was decided."},
		remaining: []int64{12, 13, 14},
	}, {
		name:   "some not pending, a bad value, a duplicate, one in both lists",
		fields: `<field var='approve'><value>12</value><value>77</value><value>#12</value><value>14</value></field><field var='reject'><value>abc</value><value>14</value><value>99</value></field>`,
		wantCalls: []string{
			"Decide [12 77] true admin@localhost adhoc",
			"Decide [99] false admin@localhost adhoc",
		},
		noteType: "warn",
		note: []string{
			"Approved #12 (alice@localhost → helpdesk@bots.localhost)",
			"#77: not pending",
			"#99: database is locked",
			"#14: chosen to approve and to reject; left pending",
			`"abc" is not a request id`,
		},
		remaining: []int64{13, 14},
	}, {
		name:      "none pending any more",
		fields:    `<field var='reject'><value>70</value><value>71</value></field>`,
		wantCalls: []string{"Decide [70 71] false admin@localhost adhoc"},
		noteType:  "error",
		note:      []string{"#70: not pending", "#71: not pending"},
		remaining: []int64{12, 13, 14},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, c := newTest(t)
			c.advance(time.Second)
			form := start(t, h, "pending")
			if form.X.Title != "Pending requests" {
				t.Errorf("title %q", form.X.Title)
			}
			wantOpts := []xOption{
				{"#12 alice@localhost → helpdesk (rule 2, 3h ago)", "12"},
				{"#13 bob@example.com → sales (default, 5m ago)", "13"},
				{"#14 carol@localhost → bots.localhost (rule 1, 2d ago)", "14"},
			}
			for _, v := range []string{"approve", "reject"} {
				fld := form.X.field(t, v)
				if fld.Type != "list-multi" || !reflect.DeepEqual(fld.Options, wantOpts) || len(fld.Values) != 0 {
					t.Errorf("field %s = %+v", v, fld)
				}
			}
			if f.takeCalls() != nil {
				t.Fatal("calls before the submission")
			}

			done := execOK(t, h, admin, submit("pending", form.SessionID, tt.fields))
			if done.Status != "completed" || done.SessionID != form.SessionID || done.Node != "pending" {
				t.Errorf("completed reply: %+v", done)
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", calls, tt.wantCalls)
			}
			if want := tt.noteType + ": " + strings.Join(tt.note, "\n"); done.note() != want {
				t.Errorf("note =\n%s\nwant\n%s", done.note(), want)
			}
			var ids []int64
			for _, r := range f.pending {
				ids = append(ids, r.ID)
			}
			if !reflect.DeepEqual(ids, tt.remaining) {
				t.Errorf("pending afterwards = %v, want %v", ids, tt.remaining)
			}
			// The session is over.
			if _, e := h.Execute(context.Background(), admin, []byte(submit("pending", form.SessionID, tt.fields))); e == nil || e.Specific != "bad-sessionid" {
				t.Errorf("second submission: %v", e)
			}
		})
	}
}

func TestPendingEmptyAndMany(t *testing.T) {
	for _, node := range []string{"pending", "approve", "reject"} {
		t.Run(node+" empty", func(t *testing.T) {
			h, f, _ := newTest(t)
			f.pending = nil
			c := execOK(t, h, admin, `<command xmlns='http://jabber.org/protocol/commands' node='`+node+`'/>`)
			if c.Status != "completed" || c.note() != "info: No pending requests" || c.X != nil || c.Actions != nil {
				t.Errorf("reply %+v", c)
			}
			if h.sessionCount() != 0 {
				t.Error("a session was kept")
			}
		})
	}
	t.Run("more than a form shows", func(t *testing.T) {
		h, f, _ := newTest(t)
		f.pending = nil
		for i := 1; i <= maxOptions+5; i++ {
			f.pending = append(f.pending, roster.Request{ID: int64(i), Entity: "helpdesk", Contact: fmt.Sprintf("u%d@localhost", i), Created: t0})
		}
		c := start(t, h, "pending")
		if n := len(c.X.field(t, "approve").Options); n != maxOptions {
			t.Errorf("%d options", n)
		}
		if got := c.X.field(t, "reject").Options[0]; got.Label != "#1 u1@localhost → helpdesk (just now)" {
			t.Errorf("first option %+v", got)
		}
		if !strings.Contains(strings.Join(c.X.Instructions, " "), fmt.Sprintf("%d pending requests, oldest first. Showing the oldest %d.", maxOptions+5, maxOptions)) {
			t.Errorf("instructions %q", c.X.Instructions)
		}
		// Text clients show values, not labels, until chosen: the requests
		// are in the instructions too.
		if in := strings.Join(c.X.Instructions, "\n"); !strings.Contains(in, "\n#1 u1@localhost → helpdesk (just now)") || strings.Contains(in, fmt.Sprintf("#%d ", maxOptions+1)) {
			t.Errorf("instructions do not list the requests shown: %q", in)
		}
	})
}

func TestApproveRejectFlow(t *testing.T) {
	tests := []struct {
		node, fields string
		wantCall     string
		note         string
	}{
		{"approve", `<field var='ids'><value>13</value><value>12</value></field>`, "Decide [13 12] true admin@localhost adhoc",
			"info: Approved #13 (bob@example.com → sales@bots.localhost)\nApproved #12 (alice@localhost → helpdesk@bots.localhost)"},
		{"reject", `<field var='ids' type='list-multi'><value>14</value><value>40</value></field>`, "Decide [14 40] false admin@localhost adhoc",
			"warn: Rejected #14 (carol@localhost → bots.localhost)\n#40: not pending"},
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			h, f, _ := newTest(t)
			c := start(t, h, tt.node)
			ids := c.X.field(t, "ids")
			if ids.Type != "list-multi" || ids.Required == nil || len(ids.Options) != 3 || ids.Options[2].Value != "14" {
				t.Errorf("ids field %+v", ids)
			}
			if len(c.X.Fields) != 1 {
				t.Errorf("fields %+v", c.X.Fields)
			}
			done := execOK(t, h, admin, submit(tt.node, c.SessionID, tt.fields))
			if done.Status != "completed" || done.note() != tt.note {
				t.Errorf("completed: %s %q", done.Status, done.note())
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, []string{tt.wantCall}) {
				t.Errorf("calls %q", calls)
			}
		})
	}
}

func TestExplainFlow(t *testing.T) {
	tests := []struct {
		name, fields string
		wantCall     string
		note         string
		result       map[string][]string
	}{{
		name:     "accept",
		fields:   `<field var='contact' type='jid-single'><value>Alice@localhost</value></field><field var='entity' type='list-single'><value>helpdesk@bots.localhost</value></field>`,
		wantCall: "Explain Alice@localhost helpdesk@bots.localhost",
		note:     `info: alice@localhost → helpdesk@bots.localhost: accept, subscribe back (rule 2: contact="*@localhost" -> accept, subscribe_back)`,
		result: map[string][]string{
			"contact": {"alice@localhost"}, "entity": {"helpdesk@bots.localhost"}, "action": {"accept"},
			"rule": {`rule 2: contact="*@localhost" -> accept, subscribe_back`}, "subscribe_back": {"true"}, "message": nil, "groups": nil,
		},
	}, {
		name:     "reject with a message, the domain itself",
		fields:   `<field var='contact'><value> mallory@evil.example </value></field><field var='entity'><value>bots.localhost</value></field>`,
		wantCall: "Explain mallory@evil.example bots.localhost",
		note:     `info: mallory@evil.example → bots.localhost: reject (default -> reject)`,
		result: map[string][]string{
			"contact": {"mallory@evil.example"}, "entity": {"bots.localhost"}, "action": {"reject"},
			"rule": {"default -> reject"}, "subscribe_back": {"false"}, "message": {"Not <allowed> & sorry"},
			"groups": {"rule 1 group staff: mallory@evil.example is not a member (groups file); rule does not match"},
		},
	}, {
		name:     "an error from Explain",
		fields:   `<field var='contact'><value>nonsense</value></field><field var='entity'><value>sales@bots.localhost</value></field>`,
		wantCall: "Explain nonsense sales@bots.localhost",
		note:     `error: explain: contact "nonsense" is not a JID`,
	}, {
		name:   "no contact",
		fields: `<field var='entity'><value>sales@bots.localhost</value></field>`,
		note:   "error: No contact given.",
	}, {
		name:   "no entity",
		fields: `<field var='contact'><value>a@b</value></field>`,
		note:   "error: No entity chosen.",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _ := newTest(t)
			c := start(t, h, "explain")
			contact := c.X.field(t, "contact")
			if contact.Type != "jid-single" || contact.Required == nil {
				t.Errorf("contact field %+v", contact)
			}
			entity := c.X.field(t, "entity")
			wantOpts := []xOption{{"bots.localhost", "bots.localhost"}, {"helpdesk@bots.localhost", "helpdesk@bots.localhost"}, {"sales@bots.localhost", "sales@bots.localhost"}}
			if entity.Type != "list-single" || !reflect.DeepEqual(entity.Options, wantOpts) || !reflect.DeepEqual(entity.Values, []string{"bots.localhost"}) {
				t.Errorf("entity field %+v", entity)
			}
			done := execOK(t, h, admin, submit("explain", c.SessionID, tt.fields))
			if done.Status != "completed" || done.note() != tt.note {
				t.Errorf("completed: %s %q", done.Status, done.note())
			}
			var want []string
			if tt.wantCall != "" {
				want = []string{tt.wantCall}
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, want) {
				t.Errorf("calls %q", calls)
			}
			if tt.result == nil {
				if done.X != nil {
					t.Errorf("a result form after an error: %+v", done.X)
				}
				return
			}
			if done.X == nil || done.X.Type != "result" {
				t.Fatalf("result form %+v", done.X)
			}
			for v, vals := range tt.result {
				if got := done.X.field(t, v).Values; !reflect.DeepEqual(got, vals) {
					t.Errorf("field %s = %q, want %q", v, got, vals)
				}
			}
			if typ := done.X.field(t, "subscribe_back").Type; typ != "boolean" {
				t.Errorf("subscribe_back type %q", typ)
			}
		})
	}
}

func TestRosterFlow(t *testing.T) {
	tests := []struct {
		name, entity string
		wantCall     string
		note         string
		items        []string
	}{
		{"helpdesk", "helpdesk@bots.localhost", `Roster "helpdesk"`, "info: helpdesk@bots.localhost has 3 roster items:\n" +
			"alice@localhost: both\nbob@localhost: none, pending-in, pre-approved\ndave@localhost: from, pending-out", []string{
			"alice@localhost: both",
			"bob@localhost: none, pending-in, pre-approved",
			"dave@localhost: from, pending-out",
		}},
		{"the domain, empty", "bots.localhost", `Roster ""`, "info: bots.localhost has 0 roster items.", nil},
		{"error", "broken@bots.localhost", `Roster "broken"`, "error: roster: disk on fire", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _ := newTest(t)
			c := start(t, h, "roster")
			if e := c.X.field(t, "entity"); e.Type != "list-single" || len(e.Options) != 3 {
				t.Errorf("entity field %+v", e)
			}
			done := execOK(t, h, admin, submit("roster", c.SessionID, `<field var='entity'><value>`+tt.entity+`</value></field>`))
			if done.Status != "completed" || done.note() != tt.note {
				t.Errorf("completed: %s %q", done.Status, done.note())
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, []string{tt.wantCall}) {
				t.Errorf("calls %q", calls)
			}
			if strings.HasPrefix(tt.note, "error") {
				return
			}
			items := done.X.field(t, "items")
			if done.X.Type != "result" || items.Type != "text-multi" || !reflect.DeepEqual(items.Values, tt.items) {
				t.Errorf("items %+v", items)
			}
		})
	}
}

func TestListsFlow(t *testing.T) {
	tests := []struct {
		name, fields string
		calls        []string
		noteType     string
		note         []string
		allow, deny  []string
	}{{
		name:   "add and remove",
		fields: `<field var='allow' type='text-multi'><value>*@localhost</value><value>*@friends.example</value><value></value><value>*@friends.example</value></field><field var='deny' type='text-multi'><value>*@spam.example</value><value>eve@evil.example</value></field>`,
		calls: []string{
			"EditList allow false bob@example.com admin@localhost adhoc",
			"EditList allow true *@friends.example admin@localhost adhoc",
			"EditList deny true eve@evil.example admin@localhost adhoc",
		},
		noteType: "info",
		note:     []string{`allow: removed "bob@example.com"`, `allow: added "*@friends.example"`, `deny: added "eve@evil.example"`},
		allow:    []string{"*@localhost", "*@friends.example"},
		deny:     []string{"*@spam.example", "eve@evil.example"},
	}, {
		name:   "a bad pattern; the rest applied",
		fields: `<field var='allow'><value>*@localhost</value><value>bob@example.com</value><value>x[</value><value>*@ok.example</value></field><field var='deny'/>`,
		calls: []string{
			"EditList allow true x[ admin@localhost adhoc",
			"EditList allow true *@ok.example admin@localhost adhoc",
			"EditList deny false *@spam.example admin@localhost adhoc",
		},
		noteType: "warn",
		note:     []string{`allow: could not add "x[": bad pattern "x[": unclosed [`, `allow: added "*@ok.example"`, `deny: removed "*@spam.example"`},
		allow:    []string{"*@localhost", "bob@example.com", "*@ok.example"},
		deny:     nil,
	}, {
		name:     "several lines in one value; deny not submitted",
		fields:   "<field var='allow'><value>*@localhost\nbob@example.com\r\nnew@example.com</value></field>",
		calls:    []string{"EditList allow true new@example.com admin@localhost adhoc"},
		noteType: "info",
		note:     []string{`allow: added "new@example.com"`},
		allow:    []string{"*@localhost", "bob@example.com", "new@example.com"},
		deny:     []string{"*@spam.example"},
	}, {
		name:     "unchanged",
		fields:   `<field var='allow'><value>bob@example.com</value><value>*@localhost</value></field><field var='deny'><value>*@spam.example</value></field>`,
		noteType: "info",
		note:     []string{"No changes."},
		allow:    []string{"*@localhost", "bob@example.com"},
		deny:     []string{"*@spam.example"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _ := newTest(t)
			c := start(t, h, "lists")
			if a := c.X.field(t, "allow"); a.Type != "text-multi" || !reflect.DeepEqual(a.Values, []string{"*@localhost", "bob@example.com"}) {
				t.Errorf("allow field %+v", a)
			}
			if d := c.X.field(t, "deny"); d.Type != "text-multi" || !reflect.DeepEqual(d.Values, []string{"*@spam.example"}) {
				t.Errorf("deny field %+v", d)
			}
			done := execOK(t, h, admin, submit("lists", c.SessionID, tt.fields))
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, tt.calls) {
				t.Errorf("calls =\n%q\nwant\n%q", calls, tt.calls)
			}
			if want := tt.noteType + ": " + strings.Join(tt.note, "\n"); done.Status != "completed" || done.note() != want {
				t.Errorf("completed: %s\n%s\nwant\n%s", done.Status, done.note(), want)
			}
			if done.X == nil || done.X.Type != "result" {
				t.Fatalf("result form %+v", done.X)
			}
			if got := done.X.field(t, "allow").Values; !reflect.DeepEqual(got, tt.allow) {
				t.Errorf("allow now %q, want %q", got, tt.allow)
			}
			if got := done.X.field(t, "deny").Values; !reflect.DeepEqual(got, tt.deny) {
				t.Errorf("deny now %q, want %q", got, tt.deny)
			}
		})
	}
}

// A change made by someone else between the form and its submission is kept:
// the submission applies only what this admin changed.
func TestListsConcurrentEdit(t *testing.T) {
	h, f, _ := newTest(t)
	c := start(t, h, "lists")
	f.allow = append(f.allow, "other@example.com")
	execOK(t, h, admin, submit("lists", c.SessionID, `<field var='allow'><value>*@localhost</value></field>`))
	if !reflect.DeepEqual(f.allow, []string{"*@localhost", "other@example.com"}) {
		t.Errorf("allow = %q", f.allow)
	}
}

func TestCancel(t *testing.T) {
	h, f, _ := newTest(t)
	for _, how := range []string{
		`<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='SID' action='cancel'/>`,
		`<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='SID' action='complete'><x xmlns='jabber:x:data' type='cancel'/></command>`,
	} {
		c := start(t, h, "pending")
		raw := strings.ReplaceAll(how, "SID", c.SessionID)
		done := execOK(t, h, admin, raw)
		if done.Status != "canceled" || done.SessionID != c.SessionID || done.X != nil {
			t.Errorf("cancel reply %+v", done)
		}
		if _, e := h.Execute(context.Background(), admin, []byte(submit("pending", c.SessionID, `<field var='approve'><value>12</value></field>`))); e == nil || e.Specific != "bad-sessionid" {
			t.Errorf("submission after cancel: %v", e)
		}
	}
	// Canceling before starting is harmless.
	done := execOK(t, h, admin, `<command xmlns='http://jabber.org/protocol/commands' node='roster' action='cancel'/>`)
	if done.Status != "canceled" {
		t.Errorf("cancel without session: %+v", done)
	}
	if calls := f.takeCalls(); calls != nil {
		t.Errorf("calls %q", calls)
	}
}

func TestExecuteErrors(t *testing.T) {
	h, f, _ := newTest(t)
	sid := start(t, h, "pending").SessionID
	tests := []struct {
		name, actor, raw          string
		typ, cond, specific, text string
	}{
		{"unknown node", admin, `<command xmlns='http://jabber.org/protocol/commands' node='nope' action='execute'/>`,
			"cancel", "item-not-found", "", `no command "nope"`},
		{"no node", admin, `<command xmlns='http://jabber.org/protocol/commands'/>`,
			"cancel", "item-not-found", "", `no command ""`},
		{"unknown session", admin, submit("pending", "deadbeef", ""),
			"modify", "bad-request", "bad-sessionid", "unknown or expired session"},
		{"session of another admin", "other@localhost", submit("pending", sid, ""),
			"modify", "bad-request", "bad-sessionid", "unknown or expired session"},
		{"node not matching the session", admin, submit("roster", sid, ""),
			"modify", "bad-request", "", `session ` + sid + ` is for command "pending"`},
		{"unknown action", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `' action='jump'/>`,
			"modify", "bad-request", "malformed-action", `unknown action "jump"`},
		{"unknown action without session", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' action='Execute'/>`,
			"modify", "bad-request", "malformed-action", `unknown action "Execute"`},
		{"prev", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `' action='prev'/>`,
			"modify", "bad-request", "bad-action", `action "prev" is not allowed here; use complete`},
		{"complete without session", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' action='complete'/>`,
			"modify", "bad-request", "bad-action", `action "complete" needs a session; execute the command first`},
		{"submission without a form", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `' action='complete'/>`,
			"modify", "bad-request", "bad-payload", "a submitted data form is needed"},
		{"execute without a form", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `'><note>hi</note></command>`,
			"modify", "bad-request", "bad-payload", "a submitted data form is needed"},
		{"form of type form", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `'><x xmlns='jabber:x:data' type='form'/></command>`,
			"modify", "bad-request", "bad-payload", `the data form must be of type submit, not "form"`},
		{"form in the wrong namespace", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `'><x type='submit'/></command>`,
			"modify", "bad-request", "bad-payload", "a submitted data form is needed"},
		{"malformed form", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='` + sid + `'><x xmlns='jabber:x:data' type='submit'><bogus/></x></command>`,
			"modify", "bad-request", "bad-payload", "malformed command: data form: unexpected element {jabber:x:data bogus}"},
		{"not XML", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending'`,
			"modify", "bad-request", "bad-payload", "malformed command: XML syntax error on line 1: unexpected EOF"},
		{"empty", admin, ``,
			"modify", "bad-request", "", "expected a <command xmlns='http://jabber.org/protocol/commands'/> element"},
		{"another element", admin, `<query xmlns='jabber:iq:version'/>`,
			"modify", "bad-request", "", "expected a <command xmlns='http://jabber.org/protocol/commands'/> element"},
		{"command in another namespace", admin, `<command xmlns='urn:example' node='pending'/>`,
			"modify", "bad-request", "", "expected a <command xmlns='http://jabber.org/protocol/commands'/> element"},
		{"too large", admin, `<command xmlns='http://jabber.org/protocol/commands' node='pending'>` + strings.Repeat(" ", maxRaw) + `</command>`,
			"modify", "bad-request", "", "command too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, e := h.Execute(context.Background(), tt.actor, []byte(tt.raw))
			if e == nil {
				t.Fatalf("no error; payload %s", payload)
			}
			if payload != "" {
				t.Errorf("payload with an error: %s", payload)
			}
			if e.Type != tt.typ || e.Condition != tt.cond || e.Specific != tt.specific || e.Text != tt.text {
				t.Errorf("error = %#v\nwant type=%s cond=%s specific=%s text=%q", e, tt.typ, tt.cond, tt.specific, tt.text)
			}
			var x xError
			if err := xml.Unmarshal([]byte(e.XML()), &x); err != nil {
				t.Fatalf("XML() does not parse: %v", err)
			}
			if x.Type != tt.typ || x.Any[0].XMLName != (xml.Name{Space: "urn:ietf:params:xml:ns:xmpp-stanzas", Local: tt.cond}) {
				t.Errorf("XML() = %s", e.XML())
			}
		})
	}
	if calls := f.takeCalls(); calls != nil {
		t.Errorf("calls %q", calls)
	}
	// The session survived every bad request and still works.
	done := execOK(t, h, admin, submit("pending", sid, `<field var='approve'><value>12</value></field>`))
	if done.Status != "completed" {
		t.Errorf("after the errors: %+v", done)
	}
}

// Clients submit with action complete, execute or none; next is not offered.
func TestSubmitActions(t *testing.T) {
	for _, action := range []string{"complete", "execute", ""} {
		t.Run("action "+action, func(t *testing.T) {
			h, f, _ := newTest(t)
			sid := start(t, h, "reject").SessionID
			raw := strings.Replace(submit("reject", sid, `<field var='ids'><value>13</value></field>`), ` action='complete'`, ` action='`+action+`'`, 1)
			if action == "" {
				raw = strings.Replace(raw, ` action=''`, ``, 1)
			}
			if c := execOK(t, h, admin, raw); c.Status != "completed" || c.note() != "info: Rejected #13 (bob@example.com → sales@bots.localhost)" {
				t.Errorf("reply %+v", c)
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, []string{"Decide [13] false admin@localhost adhoc"}) {
				t.Errorf("calls %q", calls)
			}
		})
	}
	t.Run("next", func(t *testing.T) {
		h, _, _ := newTest(t)
		sid := start(t, h, "reject").SessionID
		raw := strings.Replace(submit("reject", sid, `<field var='ids'><value>13</value></field>`), `'complete'`, `'next'`, 1)
		if _, e := h.Execute(context.Background(), admin, []byte(raw)); e == nil || e.Specific != "bad-action" {
			t.Errorf("error %v", e)
		}
	})
}

// Of two submissions racing for one session, exactly one is carried out.
func TestSubmitRace(t *testing.T) {
	for range 50 {
		h, f, _ := newTest(t)
		sid := start(t, h, "approve").SessionID
		raw := []byte(submit("approve", sid, `<field var='ids'><value>12</value></field>`))
		var wg sync.WaitGroup
		errs := make([]*Error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = h.Execute(context.Background(), admin, raw)
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("errors %v, %v", errs[0], errs[1])
		}
		if calls := f.takeCalls(); len(calls) != 1 {
			t.Fatalf("calls %q", calls)
		}
	}
}

func TestPendingError(t *testing.T) {
	h, f, _ := newTest(t)
	f.pendingErr = errors.New("database is locked")
	_, e := h.Execute(context.Background(), admin, []byte(`<command xmlns='http://jabber.org/protocol/commands' node='pending'/>`))
	if e == nil || e.Condition != "internal-server-error" || e.Type != "wait" || e.Text != "database is locked" {
		t.Errorf("error %#v", e)
	}
}

func TestErrorXML(t *testing.T) {
	tests := []struct {
		name string
		e    Error
		xml  string
		str  string
	}{
		{"full", Error{"modify", "bad-request", "bad-sessionid", `no <session> & "such"`},
			`<error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no &lt;session&gt; &amp; &#34;such&#34;</text><bad-sessionid xmlns='http://jabber.org/protocol/commands'/></error>`,
			`adminui: bad-request (bad-sessionid): no <session> & "such"`},
		{"bare", Error{Type: "cancel", Condition: "item-not-found"},
			`<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`,
			`adminui: item-not-found`},
		{"bad names are replaced", Error{Type: "x'y", Condition: "<evil/>", Specific: "a b"},
			`<error type='cancel'><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`,
			`adminui: <evil/> (a b)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.XML(); got != tt.xml {
				t.Errorf("XML() =\n%s\nwant\n%s", got, tt.xml)
			}
			if got := tt.e.Error(); got != tt.str {
				t.Errorf("Error() = %q, want %q", got, tt.str)
			}
			var x xError
			if err := xml.Unmarshal([]byte(tt.e.XML()), &x); err != nil {
				t.Errorf("does not parse: %v", err)
			}
		})
	}
}

func TestSessionExpiry(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration
		ok    bool
	}{
		{"just in time", SessionTTL - time.Second, true},
		{"at the limit", SessionTTL, false},
		{"long after", 3 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, c := newTest(t)
			sid := start(t, h, "approve").SessionID
			c.advance(tt.after)
			payload, e := h.Execute(context.Background(), admin, []byte(submit("approve", sid, `<field var='ids'><value>12</value></field>`)))
			if tt.ok {
				if e != nil || parseReply(t, payload).Status != "completed" {
					t.Errorf("Execute = %s, %v", payload, e)
				}
				return
			}
			if e == nil || e.Condition != "bad-request" || e.Specific != "bad-sessionid" {
				t.Errorf("Execute = %s, %v", payload, e)
			}
			if h.sessionCount() != 0 {
				t.Errorf("%d sessions kept", h.sessionCount())
			}
		})
	}
	t.Run("expired sessions are dropped when one starts", func(t *testing.T) {
		h, _, c := newTest(t)
		for range 5 {
			start(t, h, "lists")
		}
		c.advance(SessionTTL)
		start(t, h, "lists")
		if n := h.sessionCount(); n != 1 {
			t.Errorf("%d sessions", n)
		}
	})
}

func TestSessionEviction(t *testing.T) {
	h, _, c := newTest(t)
	first := start(t, h, "lists").SessionID
	var last string
	for range MaxSessions {
		c.advance(time.Millisecond)
		last = start(t, h, "lists").SessionID
	}
	if n := h.sessionCount(); n != MaxSessions {
		t.Fatalf("%d sessions", n)
	}
	if _, e := h.Execute(context.Background(), admin, []byte(submit("lists", first, ""))); e == nil || e.Specific != "bad-sessionid" {
		t.Errorf("oldest session not evicted: %v", e)
	}
	if c := execOK(t, h, admin, submit("lists", last, "")); c.Status != "completed" {
		t.Errorf("newest: %+v", c)
	}
}

func TestEscaping(t *testing.T) {
	h, f, _ := newTest(t)
	evil := `x'"<y>&z@localhost`
	f.pending = []roster.Request{{ID: 5, Entity: "help'desk", Contact: evil, Rule: `rule "<1>"`, Created: t0}}
	f.allow = []string{"]]><evil/>", "\x00bad\x01"}
	c := start(t, h, "pending")
	if got := c.X.field(t, "approve").Options[0].Label; got != `#5 `+evil+` → help'desk (rule "<1>", just now)` {
		t.Errorf("label %q", got)
	}
	payload, e := h.Execute(context.Background(), admin, []byte(submit("pending", c.SessionID, `<field var='approve'><value>5</value><value>6</value></field>`)))
	if e != nil || !strings.Contains(payload, ")\n#6: not pending</note>") {
		t.Errorf("line breaks in notes are not literal: %s %v", payload, e)
	}
	done := parseReply(t, payload)
	if want := `warn: Approved #5 (` + evil + ` → help'desk@bots.localhost)` + "\n#6: not pending"; done.note() != want {
		t.Errorf("note %q", done.note())
	}
	l := start(t, h, "lists")
	if got := l.X.field(t, "allow").Values; !reflect.DeepEqual(got, []string{"]]><evil/>", "\uFFFDbad\uFFFD"}) {
		t.Errorf("allow %q", got)
	}
}

// ---- chat ----

func TestParseChat(t *testing.T) {
	tests := []struct {
		name, body string
		want       ChatCommand
		err        string
	}{
		{"empty", "", ChatCommand{Verb: "help"}, ""},
		{"blank", " \t\n ", ChatCommand{Verb: "help"}, ""},
		{"help", "HELP", ChatCommand{Verb: "help"}, ""},
		{"help with a topic", "help approve", ChatCommand{Verb: "help"}, ""},
		{"pending", "  Pending ", ChatCommand{Verb: "pending"}, ""},
		{"pending with an argument", "pending all", ChatCommand{}, `pending: unexpected argument "all" (usage: pending)`},
		{"approve one", "approve 12", ChatCommand{Verb: "approve", IDs: []int64{12}}, ""},
		{"approve several", "Approve  #12 13\t#14", ChatCommand{Verb: "approve", IDs: []int64{12, 13, 14}}, ""},
		{"approve with commas and duplicates", "approve 12,13, #12 ,14", ChatCommand{Verb: "approve", IDs: []int64{12, 13, 14}}, ""},
		{"approve nothing", "approve", ChatCommand{}, `approve: no request id given (usage: approve ID…)`},
		{"approve commas only", "approve , ,", ChatCommand{}, `approve: no request id given (usage: approve ID…)`},
		{"approve abc", "approve 12 abc", ChatCommand{}, `approve: "abc" is not a request id (usage: approve ID…)`},
		{"approve zero", "approve 0", ChatCommand{}, `approve: "0" is not a request id (usage: approve ID…)`},
		{"approve negative", "approve -3", ChatCommand{}, `approve: "-3" is not a request id (usage: approve ID…)`},
		{"approve plus", "approve +3", ChatCommand{}, `approve: "+3" is not a request id (usage: approve ID…)`},
		{"approve hash alone", "approve #", ChatCommand{}, `approve: "#" is not a request id (usage: approve ID…)`},
		{"approve double hash", "approve ##4", ChatCommand{}, `approve: "##4" is not a request id (usage: approve ID…)`},
		{"approve overflow", "approve 9223372036854775808", ChatCommand{}, `approve: "9223372036854775808" is not a request id (usage: approve ID…)`},
		{"approve max", "approve 9223372036854775807", ChatCommand{Verb: "approve", IDs: []int64{9223372036854775807}}, ""},
		{"approve too many", "approve " + manyIDs(maxChatIDs+1), ChatCommand{}, `approve: too many ids, at most 100 at once (usage: approve ID…)`},
		{"reject", "REJECT #7", ChatCommand{Verb: "reject", IDs: []int64{7}}, ""},
		{"reject long garbage", "reject " + strings.Repeat("x", 50), ChatCommand{}, `reject: "` + strings.Repeat("x", 40) + `…" is not a request id (usage: reject ID…)`},
		{"explain", "explain Alice@localhost helpdesk", ChatCommand{Verb: "explain", Args: []string{"Alice@localhost", "helpdesk"}}, ""},
		{"explain one", "explain alice@localhost", ChatCommand{}, `explain: missing entity (usage: explain CONTACT ENTITY)`},
		{"explain none", "explain", ChatCommand{}, `explain: missing contact and entity (usage: explain CONTACT ENTITY)`},
		{"explain three", "explain a b c", ChatCommand{}, `explain: too many arguments, expected 2 (usage: explain CONTACT ENTITY)`},
		{"roster", "roster helpdesk@bots.localhost", ChatCommand{Verb: "roster", Args: []string{"helpdesk@bots.localhost"}}, ""},
		{"roster none", "roster", ChatCommand{}, `roster: missing entity (usage: roster ENTITY)`},
		{"lists", "LISTS", ChatCommand{Verb: "lists"}, ""},
		{"lists extra", "lists allow", ChatCommand{}, `lists: unexpected argument "allow" (usage: lists)`},
		{"allow", "allow *@Example.com", ChatCommand{Verb: "allow", Args: []string{"*@Example.com"}}, ""},
		{"allow none", "allow", ChatCommand{}, `allow: missing pattern (usage: allow PATTERN)`},
		{"allow two", "allow a b", ChatCommand{}, `allow: too many arguments, expected 1 (usage: allow PATTERN)`},
		{"deny", "deny *@spam.example", ChatCommand{Verb: "deny", Args: []string{"*@spam.example"}}, ""},
		{"unallow", "unallow *@x", ChatCommand{Verb: "unallow", Args: []string{"*@x"}}, ""},
		{"undeny", "Undeny *@x", ChatCommand{Verb: "undeny", Args: []string{"*@x"}}, ""},
		{"undeny none", "undeny", ChatCommand{}, `undeny: missing pattern (usage: undeny PATTERN)`},
		{"unknown", "foo bar", ChatCommand{}, `unknown command "foo"; send "help" for the list`},
		{"unknown keeps case", "Approve12", ChatCommand{}, `unknown command "Approve12"; send "help" for the list`},
		{"unknown control chars", "\x01x", ChatCommand{}, `unknown command "\x01x"; send "help" for the list`},
		{"non-breaking space", "approve\u00a012", ChatCommand{Verb: "approve", IDs: []int64{12}}, ""},
		{"invite", "invite helpdesk", ChatCommand{Verb: "invite", Args: []string{"helpdesk"}, TTL: 72 * time.Hour, Uses: 1}, ""},
		{"invite with options", "Invite sales USES=5 back ttl=30m", ChatCommand{Verb: "invite", Args: []string{"sales"}, TTL: 30 * time.Minute, Uses: 5, Back: true}, ""},
		{"invite without end", "invite sales ttl=0", ChatCommand{Verb: "invite", Args: []string{"sales"}, Uses: 1}, ""},
		{"invite nothing", "invite", ChatCommand{}, `invite: missing entity (usage: invite ENTITY [uses=N] [ttl=72h] [back])`},
		{"invite bad uses", "invite sales uses=0", ChatCommand{}, `invite: uses="0" is not a count of 1 or more (usage: invite ENTITY [uses=N] [ttl=72h] [back])`},
		{"invite bad ttl", "invite sales ttl=3days", ChatCommand{}, `invite: ttl="3days" is not a duration such as 24h or 30m (usage: invite ENTITY [uses=N] [ttl=72h] [back])`},
		{"invite twice", "invite sales back back", ChatCommand{}, `invite: "back" given twice (usage: invite ENTITY [uses=N] [ttl=72h] [back])`},
		{"invite unknown option", "invite sales forever", ChatCommand{}, `invite: unexpected argument "forever" (usage: invite ENTITY [uses=N] [ttl=72h] [back])`},
		{"invites", "invites", ChatCommand{Verb: "invites"}, ""},
		{"uninvite", "uninvite 3 #4", ChatCommand{Verb: "uninvite", IDs: []int64{3, 4}}, ""},
		{"uninvite bad", "uninvite x", ChatCommand{}, `uninvite: "x" is not an invite id (usage: uninvite ID…)`},
		{"uninvite nothing", "uninvite", ChatCommand{}, `uninvite: no invite id given (usage: uninvite ID…)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChat(tt.body)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseChat(%q) error = %v, want %s", tt.body, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseChat(%q): %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseChat(%q) = %#v, want %#v", tt.body, got, tt.want)
			}
		})
	}
}

func manyIDs(n int) string {
	var s []string
	for i := 1; i <= n; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return strings.Join(s, " ")
}

func TestChat(t *testing.T) {
	help := h0().help()
	tests := []struct {
		name, body string
		setup      func(*fakeOps)
		want       string
		calls      []string
	}{
		{"empty is help", "", nil, help, nil},
		{"help", "help", nil, help, nil},
		{"pending", "pending", nil, "#12 alice@localhost → helpdesk@bots.localhost (rule 2, 3h ago)\n" +
			"#13 bob@example.com → sales@bots.localhost (default, 5m ago)\n" +
			"#14 carol@localhost → bots.localhost (rule 1, 2d ago)\n" +
			`Answer with "approve ID…" or "reject ID…".`, nil},
		{"login", "login", nil, "Your login link: https://rg.example.com/login/rgl_x", []string{"LoginMessage admin@localhost"}},
		{"login without a web page", "LOGIN", func(f *fakeOps) { f.noWeb = true }, "login: there is no web page ([http] listen is not set)", []string{"LoginMessage admin@localhost"}},
		{"login takes no argument", "login me", nil, `login: unexpected argument "me" (usage: login)`, nil},
		{"pending none", "pending", func(f *fakeOps) { f.pending = nil }, "No pending requests.", nil},
		{"pending error", "pending", func(f *fakeOps) { f.pendingErr = errors.New("database is locked") }, "pending: database is locked", nil},
		{"approve", "approve #12 13", nil, "Approved #12 (alice@localhost → helpdesk@bots.localhost)\nApproved #13 (bob@example.com → sales@bots.localhost)",
			[]string{"Decide [12 13] true admin@localhost chat"}},
		{"reject, one not pending", "reject 14 #15 99", nil, "Rejected #14 (carol@localhost → bots.localhost)\n#15: not pending\n#99: database is locked",
			[]string{"Decide [14 15 99] false admin@localhost chat"}},
		{"approve usage", "approve abc", nil, `approve: "abc" is not a request id (usage: approve ID…)`, nil},
		{"explain accept", "explain Alice@localhost helpdesk", nil,
			`alice@localhost → helpdesk@bots.localhost: accept, subscribe back (rule 2: contact="*@localhost" -> accept, subscribe_back)`,
			[]string{"Explain Alice@localhost helpdesk"}},
		{"explain reject", "explain bob@example.com bots.localhost", nil,
			"bob@example.com → bots.localhost: reject (default -> reject)\n" +
				"rule 1 group staff: bob@example.com is not a member (groups file); rule does not match\nMessage to the requester: Not <allowed> & sorry",
			[]string{"Explain bob@example.com bots.localhost"}},
		{"explain error", "explain nonsense helpdesk", nil, `explain: contact "nonsense" is not a JID`, []string{"Explain nonsense helpdesk"}},
		{"explain a name without a domain", "explain carol helpdesk", nil,
			"Note: \"carol\" has no domain: read as carol@localhost (the first of [policy] local_domains).\n" +
				`carol@localhost → helpdesk@bots.localhost: accept, subscribe back (rule 2: contact="*@localhost" -> accept, subscribe_back)`,
			[]string{"Explain carol helpdesk"}},
		{"explain no entity", "explain a@localhost nosuch", nil,
			`a@localhost → nosuch@bots.localhost: accept, subscribe back (rule 2: contact="*@localhost" -> accept, subscribe_back)` +
				"\nnosuch@bots.localhost is not an [[entity]]: unknown_entity applies.",
			[]string{"Explain a@localhost nosuch"}},
		{"roster of no entity", "roster nosuch", nil, `roster: nosuch@bots.localhost is not an entity (no [[entity]] with local = "nosuch").`, []string{`Roster "nosuch"`}},
		{"roster by localpart", "roster helpdesk", nil,
			"helpdesk@bots.localhost has 3 roster items:\nalice@localhost: both\nbob@localhost: none, pending-in, pre-approved\ndave@localhost: from, pending-out",
			[]string{`Roster "helpdesk"`}},
		{"roster by JID", "roster HelpDesk@Bots.Localhost/x", nil,
			"helpdesk@bots.localhost has 3 roster items:\nalice@localhost: both\nbob@localhost: none, pending-in, pre-approved\ndave@localhost: from, pending-out",
			[]string{`Roster "helpdesk"`}},
		{"roster of the domain", "roster bots.localhost", nil, "bots.localhost has no roster items.", []string{`Roster ""`}},
		{"roster error", "roster broken", nil, "roster: disk on fire", []string{`Roster "broken"`}},
		{"lists", "lists", nil, "allow list (2):\n  *@localhost\n  bob@example.com\ndeny list (1):\n  *@spam.example", nil},
		{"lists empty", "lists", func(f *fakeOps) { f.allow, f.deny = nil, nil }, "allow list: empty\ndeny list: empty", nil},
		{"allow", "allow *@friends.example", nil, `Added "*@friends.example" to the allow list.`,
			[]string{"EditList allow true *@friends.example admin@localhost chat"}},
		{"allow bad", "allow x[", nil, `allow: bad pattern "x[": unclosed [`, []string{"EditList allow true x[ admin@localhost chat"}},
		{"deny", "DENY *@spam2.example", nil, `Added "*@spam2.example" to the deny list.`,
			[]string{"EditList deny true *@spam2.example admin@localhost chat"}},
		{"unallow", "unallow bob@example.com", nil, `Removed "bob@example.com" from the allow list.`,
			[]string{"EditList allow false bob@example.com admin@localhost chat"}},
		{"undeny missing", "undeny nobody@example.com", nil, `undeny: "nobody@example.com" is not in the deny list`,
			[]string{"EditList deny false nobody@example.com admin@localhost chat"}},
		{"unknown", "foo", nil, `unknown command "foo"; send "help" for the list`, nil},
		{"invite", "invite helpdesk uses=3 back", nil, "Invite #1 to helpdesk", []string{"InviteMessage admin@localhost (chat) helpdesk 72h0m0s 3 true"}},
		{"invites", "invites", nil, "#1 helpdesk@bots.localhost by root@localhost: 1/1 used, no end — used up\n" +
			"#2 sales@bots.localhost by cli:root: 2/5 used, until 2026-03-01 13:00 UTC, subscribes back — usable", nil},
		{"uninvite", "uninvite 1 2 3", nil, "#1 revoked: a request that carries it now goes through the policy\n#2 was revoked already\n#3: no such invite",
			[]string{"RevokeInvite admin@localhost (chat) 1", "RevokeInvite admin@localhost (chat) 2", "RevokeInvite admin@localhost (chat) 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, f, _ := newTest(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			if got := h.Chat(context.Background(), admin, tt.body); got != tt.want {
				t.Errorf("Chat(%q) =\n%s\nwant\n%s", tt.body, got, tt.want)
			}
			if calls := f.takeCalls(); !reflect.DeepEqual(calls, tt.calls) {
				t.Errorf("calls %q, want %q", calls, tt.calls)
			}
		})
	}
}

// The command line prints what came of a decision in the words the chat
// commands use.
func TestOutcomeLines(t *testing.T) {
	outs := []roster.Outcome{
		{ID: 12, Request: roster.Request{ID: 12, Entity: "helpdesk", Contact: "alice@localhost"}},
		{ID: 40, Err: fmt.Errorf("request 40: %w", store.ErrNotFound)},
		{ID: 41, Err: errors.New("database is locked")},
		{ID: 42},
	}
	lines, ok := OutcomeLines("bots.localhost", true, []int64{12, 40, 41, 42, 43}, outs)
	want := []string{"Approved #12 (alice@localhost → helpdesk@bots.localhost)", "#40: not pending", "#41: database is locked", "Approved #42", "#43: no outcome"}
	if !reflect.DeepEqual(lines, want) || ok != 2 {
		t.Errorf("OutcomeLines = %q, %d; want %q, 2", lines, ok, want)
	}
	if lines, _ := OutcomeLines("bots.localhost", false, []int64{12}, outs[:1]); lines[0] != "Rejected #12 (alice@localhost → helpdesk@bots.localhost)" {
		t.Errorf("rejected: %q", lines)
	}
}

func h0() *Handler { return New(newFake(), nil) }

func TestChatHelp(t *testing.T) {
	help := h0().Chat(context.Background(), admin, "help")
	for verb := range chatVerbs {
		if !strings.Contains(help, "\n  "+verb) {
			t.Errorf("help does not list %q:\n%s", verb, help)
		}
	}
	if !strings.Contains(help, "xmpp:bots.localhost?command") {
		t.Errorf("help does not link the ad-hoc commands:\n%s", help)
	}
}

func TestChatPendingLimit(t *testing.T) {
	h, f, _ := newTest(t)
	f.pending = nil
	for i := 1; i <= maxChatLines+3; i++ {
		f.pending = append(f.pending, roster.Request{ID: int64(i), Entity: "helpdesk", Contact: "u@localhost", Created: t0})
	}
	lines := strings.Split(h.Chat(context.Background(), admin, "pending"), "\n")
	if len(lines) != maxChatLines+2 || lines[maxChatLines] != "… and 3 more" || lines[0] != "#1 u@localhost → helpdesk@bots.localhost (just now)" {
		t.Errorf("%d lines: %q …", len(lines), lines[maxChatLines:])
	}
}

// ---- concurrency ----

func TestConcurrent(t *testing.T) {
	h, _, _ := newTest(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				payload, e := h.Execute(context.Background(), admin, []byte(`<command xmlns='http://jabber.org/protocol/commands' node='lists'/>`))
				if e != nil {
					t.Error(e)
					return
				}
				var c xCommand
				if err := xml.Unmarshal([]byte(payload), &c); err != nil {
					t.Error(err)
					return
				}
				if _, e := h.Execute(context.Background(), admin, []byte(submit("lists", c.SessionID, ""))); e != nil {
					t.Error(e)
				}
				h.Chat(context.Background(), admin, fmt.Sprintf("approve %d", 12+i%3))
			}
		}()
	}
	wg.Wait()
}

// ---- fuzzing ----

func FuzzParseChat(f *testing.F) {
	for _, s := range []string{"", "help", "approve 12 #13", "approve 12,13", "reject abc", "explain a b", "explain a",
		"roster helpdesk", "allow *@x", "undeny *@y", "lists", "pending", "foo", "approve #", "APPROVE\u00a0#9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cmd, err := ParseChat(body)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		v, ok := chatVerbs[cmd.Verb]
		if !ok {
			t.Fatalf("unknown verb %q accepted", cmd.Verb)
		}
		switch {
		case v.args == -1:
			if len(cmd.IDs) == 0 || len(cmd.IDs) > maxChatIDs {
				t.Errorf("%d ids", len(cmd.IDs))
			}
			for _, id := range cmd.IDs {
				if id <= 0 {
					t.Errorf("id %d", id)
				}
			}
		case v.args >= 0 && len(cmd.Args) != v.args:
			t.Errorf("%s with %d args", cmd.Verb, len(cmd.Args))
		}
		// The handler never panics on it either.
		h0().Chat(context.Background(), admin, body)
	})
}

func FuzzExecute(f *testing.F) {
	for _, s := range []string{
		``,
		`<command xmlns='http://jabber.org/protocol/commands' node='pending' action='execute'/>`,
		`<command xmlns='http://jabber.org/protocol/commands' node='lists'/>`,
		`<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='x' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='approve'><value>12</value></field><field var='reject'><value>13</value></field></x></command>`,
		`<command xmlns='http://jabber.org/protocol/commands' node='explain' sessionid='x'><x xmlns='jabber:x:data' type='submit'><title>t</title><instructions>i</instructions><field var='contact'><value>a@b</value></field></x></command>`,
		`<command xmlns='http://jabber.org/protocol/commands' node='x' action='cancel'/>`,
		`<x:command xmlns:x='http://jabber.org/protocol/commands' node='roster'><x:x/></x:command>`,
		`<command node='pending'><x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</field></x></command>`,
		`<?xml version='1.0'?><!-- c --><command xmlns='http://jabber.org/protocol/commands' node='pending'/>`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, withSession bool) {
		h, _, _ := newTest(t)
		if withSession {
			// Point any sessionid='x' at a live session of the right node.
			for _, node := range []string{"pending", "explain", "roster", "lists", "approve", "reject"} {
				if strings.Contains(raw, "'"+node+"'") {
					payload, _ := h.Execute(context.Background(), admin, []byte(`<command xmlns='http://jabber.org/protocol/commands' node='`+node+`'/>`))
					var c xCommand
					if xml.Unmarshal([]byte(payload), &c) == nil && c.SessionID != "" {
						raw = strings.ReplaceAll(raw, "sessionid='x'", "sessionid='"+c.SessionID+"'")
					}
					break
				}
			}
		}
		payload, e := h.Execute(context.Background(), admin, []byte(raw))
		if e != nil {
			if payload != "" {
				t.Errorf("payload and error")
			}
			if err := xml.Unmarshal([]byte(e.XML()), new(xError)); err != nil {
				t.Errorf("error XML does not parse: %v\n%s", err, e.XML())
			}
			return
		}
		if err := xml.Unmarshal([]byte(payload), new(xCommand)); err != nil {
			t.Errorf("payload does not parse: %v\n%s", err, payload)
		}
	})
}

// A request decided already: the answer says by whom and when.
func TestOutcomeLinesDecided(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 30, 0, 0, time.UTC)
	err := fmt.Errorf("%w: %w", &roster.DecidedError{ID: 3, Action: "reject", Actor: "admin@localhost", Via: "chat", At: at}, store.ErrNotFound)
	lines, ok := OutcomeLines("bots.localhost", true, []int64{3, 4}, []roster.Outcome{{ID: 3, Err: err}, {ID: 4, Err: store.ErrNotFound}})
	want := []string{"#3: not pending: was already rejected by admin@localhost (chat) at 2026-12-02 06:30 UTC", "#4: not pending"}
	if ok != 0 || !slices.Equal(lines, want) {
		t.Errorf("lines %q (%d ok), want %q", lines, ok, want)
	}
}
