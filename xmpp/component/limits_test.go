package component

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
)

// What the tests against real servers check of the admin interfaces and the
// limits, here against the fake server, byte for byte and quickly.

// heldRequests returns the held requests as "entity contact rule", sorted.
func heldRequests(t *testing.T, h *harness) []string {
	t.Helper()
	reqs, err := h.db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range reqs {
		out = append(out, fmt.Sprintf("%s %s %s", r.Entity, r.Contact, r.Rule))
	}
	slices.Sort(out)
	return out
}

// storeSnapshot is what an admin's act could change in the store.
type storeSnapshot struct {
	requests    []roster.Request
	items       []roster.Item
	allow, deny []string
	events      int
}

func snapshot(t *testing.T, h *harness) storeSnapshot {
	t.Helper()
	ctx := context.Background()
	var s storeSnapshot
	var err error
	if s.requests, err = h.db.Requests(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.db.Items(ctx, store.Filter{AllEntities: true}, func(it roster.Item) error {
		s.items = append(s.items, it)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.allow, s.deny, err = h.db.Lists(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.db.Events(ctx, time.Time{}, func(roster.Event) error { s.events++; return nil }); err != nil {
		t.Fatal(err)
	}
	return s
}

// Anyone but an admin is refused, whatever they try: a chat command gets a
// forbidden message error, an ad-hoc command a forbidden IQ error, the
// commands node lists nothing, and nothing in the store changes.
func TestNonAdminRefused(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.Settings.Admins = []string{"admin@good.example"} })
	c := h.first(t)
	// A held request, which the admin is told of.
	c.send(t, "<presence from='carol@other.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.send(t, ping)
	if s := readUntilCount(t, c, pong, 1, 10*time.Second); !strings.Contains(s, "to='admin@good.example'") || !strings.Contains(s, "carol@other.example asks to subscribe") {
		t.Fatalf("the admin was not told of the held request: %s", s)
	}
	reqs, err := h.db.Requests(context.Background())
	if err != nil || len(reqs) != 1 {
		t.Fatalf("held: %+v, %v", reqs, err)
	}
	id := reqs[0].ID
	before := snapshot(t, h)

	// The admin sees the commands: the empty list below is the refusal.
	c.send(t, "<iq from='admin@good.example/r' to='bots.localhost' type='get' id='a1'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>")
	if s := readUntilCount(t, c, "</iq>", 1, 10*time.Second); !strings.Contains(s, "id='a1'") || !strings.Contains(s, "node='pending'") {
		t.Fatalf("the admin's commands: %s", s)
	}

	const mallory = "mallory@evil.example/r"
	const why = "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>Only the admins of bots.localhost can use its commands ([admin] jids in the rostergate configuration).</text>"
	forbiddenMsg := func(to, id string) string {
		return "<message type='error' from='" + to + "' to='" + mallory + "' id='" + id + "'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" + why + "</error></message>"
	}
	forbiddenIQ := func(id string) string {
		return "<iq type='error' from='bots.localhost' to='" + mallory + "' id='" + id + "'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>" + why + "</error></iq>"
	}
	for _, tc := range []struct{ name, in, want string }{
		{"disco#items of the commands node",
			"<iq from='" + mallory + "' to='bots.localhost' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>",
			"<iq type='result' from='bots.localhost' to='" + mallory + "' id='d1'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>"},
		{"disco#info of a command",
			"<iq from='" + mallory + "' to='bots.localhost' type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#info' node='pending'/></iq>",
			"<iq type='error' from='bots.localhost' to='" + mallory + "' id='d2'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"chat approve",
			fmt.Sprintf("<message from='%s' to='bots.localhost' type='chat' id='m1'><body>approve %d</body></message>", mallory, id),
			forbiddenMsg("bots.localhost", "m1")},
		{"chat allow, to the domain's resource",
			"<message from='" + mallory + "' to='bots.localhost/x' type='chat' id='m2'><body>allow *@evil.example</body></message>",
			forbiddenMsg("bots.localhost/x", "m2")},
		{"chat pending",
			"<message from='" + mallory + "' to='bots.localhost' id='m3'><body>pending</body></message>",
			forbiddenMsg("bots.localhost", "m3")},
		{"ad-hoc execute",
			"<iq from='" + mallory + "' to='bots.localhost' type='set' id='x1'><command xmlns='http://jabber.org/protocol/commands' node='pending' action='execute'/></iq>",
			forbiddenIQ("x1")},
		{"ad-hoc submit with a guessed session",
			fmt.Sprintf("<iq from='%s' to='bots.localhost' type='set' id='x2'><command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='guess' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='approve'><value>%d</value></field></x></command></iq>", mallory, id),
			forbiddenIQ("x2")},
		{"ad-hoc lists",
			"<iq from='" + mallory + "' to='bots.localhost' type='set' id='x3'><command xmlns='http://jabber.org/protocol/commands' node='lists' action='execute'/></iq>",
			forbiddenIQ("x3")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.send(t, tc.in)
			c.expect(t, tc.want)
		})
	}
	// Anything the refused commands could have set off would be out before
	// the answer to this ping (read through whatever a failed check above
	// left unread).
	c.send(t, ping)
	readUntilCount(t, c, pong, 1, 10*time.Second)
	after := snapshot(t, h)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the store changed:\nbefore %+v\n after %+v", before, after)
	}
	if n := h.eng.Held(); n != 1 {
		t.Errorf("held count %d, want 1", n)
	}
}

// bots returns n entities bot0 … bot(n-1) besides the harness's helpdesk.
func bots(o *testOpts, n int) {
	for i := range n {
		o.Settings.Entities = append(o.Settings.Entities, engine.Entity{Local: fmt.Sprintf("bot%d", i)})
	}
}

// A burst of requests from one contact beyond contact_rate goes the limit
// action's way, counted; the ones within the rate, and another contact's of
// the same domain, are held.
func TestContactRate(t *testing.T) {
	for _, action := range []policy.Action{policy.Drop, policy.Reject} {
		t.Run(string(action), func(t *testing.T) {
			h := start(t, "s3cret", func(o *testOpts) {
				bots(o, 6)
				o.Settings.Limits = engine.Limits{ContactRate: limits.Rate{N: 2, Per: time.Hour}, Action: action}
			})
			c := h.first(t)
			var want strings.Builder
			for i := range 6 {
				c.send(t, fmt.Sprintf("<presence from='alice@other.example/r' to='bot%d@bots.localhost' type='subscribe' id='s%d'/>", i, i))
				if i >= 2 && action == policy.Reject {
					fmt.Fprintf(&want, "<presence from='bot%d@bots.localhost' to='alice@other.example' id='ID' type='unsubscribed'/>", i)
				}
			}
			c.send(t, "<presence from='bob@other.example' to='bot0@bots.localhost' type='subscribe'/>")
			c.send(t, ping)
			c.expect(t, want.String()+pong)

			if got, want := heldRequests(t, h), []string{
				"bot0 alice@other.example default",
				"bot0 bob@other.example default",
				"bot1 alice@other.example default",
			}; !slices.Equal(got, want) {
				t.Errorf("held %q, want %q", got, want)
			}
			if hits := h.eng.LimitHits(); hits["contact_rate"] != 4 || len(hits) != 1 {
				t.Errorf("limit hits %v, want 4 over contact_rate and no other", hits)
			}
			if n := h.eng.Held(); n != 3 {
				t.Errorf("held count %d, want 3", n)
			}
			// Over the limit, nothing is stored but, when rejected, the
			// audit of the rejection.
			limited := 0
			h.db.Events(context.Background(), time.Time{}, func(e roster.Event) error {
				if e.Rule == "limit contact_rate" {
					limited++
					if e.Action != string(action) || e.Contact != "alice@other.example" {
						t.Errorf("audit of a request over the limit: %+v", e)
					}
				}
				return nil
			})
			if wantAudit := map[policy.Action]int{policy.Drop: 0, policy.Reject: 4}[action]; limited != wantAudit {
				t.Errorf("%d audit events over contact_rate, want %d", limited, wantAudit)
			}
			for i := 2; i < 6; i++ {
				if it, err := h.db.Get(context.Background(), fmt.Sprintf("bot%d", i), "alice@other.example"); err == nil {
					t.Errorf("item stored for a request over the limit: %+v", it)
				}
			}
		})
	}
}

// max_pending_per_domain caps the requests held from one domain, through
// the stream: the next is rejected (the limit action), other domains are
// not affected, a decided request makes room, and the count survives a
// reconnect (recounted from the store).
func TestMaxPendingPerDomain(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) {
		o.Settings.Limits = engine.Limits{MaxPendingPerDomain: 2, Action: policy.Reject}
	})
	c := h.first(t)
	subscribe := func(c *fakeConn, contact string) {
		t.Helper()
		c.send(t, "<presence from='"+contact+"' to='helpdesk@bots.localhost' type='subscribe'/>")
	}
	rejected := func(contact string) string {
		return "<presence from='helpdesk@bots.localhost' to='" + contact + "' id='ID' type='unsubscribed'/>"
	}
	avail := func(contact string) string {
		return "<presence from='helpdesk@bots.localhost/rostergate' to='" + contact + "' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence>"
	}
	hits := func(want int) {
		t.Helper()
		if got := h.eng.LimitHits(); got["max_pending_per_domain"] != want || len(got) != 1 {
			t.Errorf("limit hits %v, want %d over max_pending_per_domain and no other", got, want)
		}
	}
	for _, ct := range []string{"u1@other.example", "u2@other.example", "u3@other.example", "x@third.example"} {
		subscribe(c, ct)
	}
	c.send(t, ping)
	c.expect(t, rejected("u3@other.example")+pong)
	if got, want := heldRequests(t, h), []string{
		"helpdesk u1@other.example default",
		"helpdesk u2@other.example default",
		"helpdesk x@third.example default",
	}; !slices.Equal(got, want) {
		t.Errorf("held %q, want %q", got, want)
	}
	hits(1)

	// Approving u1 makes room for one more from other.example.
	reqs, err := h.db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var u1 int64
	for _, r := range reqs {
		if r.Contact == "u1@other.example" {
			u1 = r.ID
		}
	}
	if out := h.eng.DecideHeld(context.Background(), []int64{u1}, true, roster.Actor{JID: "test", Via: "test"}); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='u1@other.example' id='ID' type='subscribed'/>"+avail("u1@other.example"))
	subscribe(c, "u4@other.example")
	subscribe(c, "u5@other.example")
	c.send(t, ping)
	c.expect(t, rejected("u5@other.example")+pong)
	hits(2)

	// On the next stream the held requests are counted again from the
	// store: other.example is still at its cap. (One more round trip
	// first: a close that arrives within a round trip of a reply leaves
	// that reply in the outbox, to be replayed, harmlessly, on the next
	// stream; see engine's promote.)
	c.send(t, ping)
	c.expect(t, pong)
	c.send(t, "</stream:stream>")
	c.expect(t, "</stream:stream>")
	c2 := h.srv.next(t)
	c2.expect(t, avail("u1@other.example")) // the resync
	subscribe(c2, "u6@other.example")
	subscribe(c2, "y@third.example")
	c2.send(t, ping)
	c2.expect(t, rejected("u6@other.example")+pong)
	hits(3)
	if got, want := heldRequests(t, h), []string{
		"helpdesk u2@other.example default",
		"helpdesk u4@other.example default",
		"helpdesk x@third.example default",
		"helpdesk y@third.example default",
	}; !slices.Equal(got, want) {
		t.Errorf("held %q, want %q", got, want)
	}
	if n := h.eng.Held(); n != 4 {
		t.Errorf("held count %d, want 4", n)
	}
}
