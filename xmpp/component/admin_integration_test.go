package component_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/internal/xmpptest"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/subscription"
)

// The admin interfaces, driven by real admins logged in to a real server:
// each test runs on Prosody and on ejabberd.

const domain = "bots.localhost"

func withAdmins(admins ...string) func(*engine.Settings) {
	return func(s *engine.Settings) { s.Admins = admins }
}

func messageFrom(from, contains string) func(xmpptest.Message) bool {
	return func(m xmpptest.Message) bool { return m.From == from && strings.Contains(m.Body, contains) }
}

func mustWaitMessage(t *testing.T, c *xmpptest.Client, match func(xmpptest.Message) bool) xmpptest.Message {
	t.Helper()
	m, err := c.WaitMessage(ctx(t), match)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// heldRequest has alice ask for helpdesk (held for review) and returns the
// request's id, as the admin's notification names it.
func heldRequest(t *testing.T, s *setup, admin *xmpptest.Client, user string) int64 {
	t.Helper()
	u := s.srv.NewUser(t, user)
	if err := u.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	m := mustWaitMessage(t, admin, messageFrom(domain, user+"@localhost"))
	for _, want := range []string{helpdesk, "no rule matched; held for review", "approve ", "reject ", "xmpp:" + domain + "?command;node=pending"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("notification lacks %q:\n%s", want, m.Body)
		}
	}
	id := regexp.MustCompile(`#(\d+)`).FindStringSubmatch(m.Body)
	if id == nil {
		t.Fatalf("notification names no request id:\n%s", m.Body)
	}
	n, err := strconv.ParseInt(id[1], 10, 64)
	if err != nil {
		t.Fatalf("request id %q: %v", id[1], err)
	}
	return n
}

// An admin approves a held request with the ad-hoc commands, as Gajim or
// Conversations would: disco, execute, submit the form.
func TestIntegrationAdminAdhocApprove(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationAdminAdhocApprove)
}

func testIntegrationAdminAdhocApprove(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = withAdmins("admin@localhost", "admin2@localhost")
	g := s.start()
	adm := s.srv.NewUser(t, "admin")
	adm2 := s.srv.NewUser(t, "admin2")
	id := heldRequest(t, s, adm, "alice")
	alice := s.srv.Login(t, "alice")

	items, err := adm.IQ(ctx(t), "<iq type='get' to='"+domain+"'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"pending", "approve", "reject", "explain", "roster", "lists"} {
		if !strings.Contains(items, "node='"+node+"'") && !strings.Contains(items, `node="`+node+`"`) {
			t.Errorf("disco#items lacks command %q: %s", node, items)
		}
	}
	form, err := adm.IQ(ctx(t), "<iq type='set' to='"+domain+"'><command xmlns='http://jabber.org/protocol/commands' node='pending' action='execute'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	sid := regexp.MustCompile(`sessionid=["']([^"']+)["']`).FindStringSubmatch(form)
	if sid == nil || !strings.Contains(form, fmt.Sprint(id)) || !strings.Contains(form, "alice@localhost") {
		t.Fatalf("pending form: %s", form)
	}
	done, err := adm.IQ(ctx(t), fmt.Sprintf("<iq type='set' to='%s'><command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='%s' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='approve'><value>%d</value></field></x></command></iq>", domain, sid[1], id))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(done, "completed") {
		t.Errorf("submission: %s", done)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	wantState(t, g, "alice@localhost", subscription.From)
	// The other admin sees it decided.
	mustWaitMessage(t, adm2, messageFrom(domain, "approved by admin@localhost"))
	if reqs := mustRequests(t, g.db); len(reqs) != 0 {
		t.Errorf("still pending: %+v", reqs)
	}
	audited := false
	for _, e := range mustEvents(t, g.db) {
		audited = audited || (e.Kind == "approve" && e.Actor == "admin@localhost" && e.Interface == "adhoc")
	}
	if !audited {
		t.Error("the approval is not in the audit log")
	}
}

// An admin rejects by chat command (for clients without ad-hoc commands),
// from another resource.
func TestIntegrationAdminChatReject(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationAdminChatReject)
}

func testIntegrationAdminChatReject(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = withAdmins("admin@localhost")
	g := s.start()
	adm := s.srv.NewUser(t, "admin")
	id := heldRequest(t, s, adm, "alice")
	alice := s.srv.Login(t, "alice")
	phone, err := xmpptest.Dial(ctx(t), s.srv.C2SAddr, "admin@localhost/phone", xmpptest.Password("admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := phone.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := phone.SendMessage(domain, "pending"); err != nil {
		t.Fatal(err)
	}
	mustWaitMessage(t, phone, messageFrom(domain, fmt.Sprintf("#%d alice@localhost", id)))
	if err := phone.SendMessage(domain, fmt.Sprintf("reject #%d", id)); err != nil {
		t.Fatal(err)
	}
	mustWaitMessage(t, phone, messageFrom(domain, "Rejected"))
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("none", ""))
	wantState(t, g, "alice@localhost", subscription.None)
	// Asking again: it is gone.
	if err := phone.SendMessage(domain, fmt.Sprintf("approve %d", id)); err != nil {
		t.Fatal(err)
	}
	mustWaitMessage(t, phone, messageFrom(domain, "not pending"))
}

// Anyone but an admin is refused, whatever they try, and the attempt is
// logged; they do not even see the commands.
func TestIntegrationAdminAttacker(t *testing.T) { xmpptest.EachServer(t, testIntegrationAdminAttacker) }

func testIntegrationAdminAttacker(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = withAdmins("admin@localhost")
	g := s.start()
	adm := s.srv.NewUser(t, "admin")
	id := heldRequest(t, s, adm, "alice")
	mallory := s.srv.NewUser(t, "mallory")

	items, err := mallory.IQ(ctx(t), "<iq type='get' to='"+domain+"'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>")
	if err != nil || strings.Contains(items, "<item") {
		t.Errorf("a non-admin sees commands: %s %v", items, err)
	}
	if _, err := mallory.IQ(ctx(t), "<iq type='get' to='"+domain+"'><query xmlns='http://jabber.org/protocol/disco#info' node='pending'/></iq>"); err == nil {
		t.Error("a non-admin gets the info of a command node")
	}
	for _, cmd := range []string{
		"<command xmlns='http://jabber.org/protocol/commands' node='pending' action='execute'/>",
		fmt.Sprintf("<command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='guess' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='approve'><value>%d</value></field></x></command>", id),
	} {
		_, err := mallory.IQ(ctx(t), "<iq type='set' to='"+domain+"'>"+cmd+"</iq>")
		if se, ok := err.(*xmpptest.StanzaError); !ok || se.Condition != "forbidden" || !strings.Contains(se.Text, "Only the admins of "+domain) {
			t.Errorf("non-admin command: %v, want forbidden, saying why", err)
		}
	}
	if err := mallory.SendMessage(domain, fmt.Sprintf("approve %d", id)); err != nil {
		t.Fatal(err)
	}
	m := mustWaitMessage(t, mallory, func(m xmpptest.Message) bool { return m.From == domain })
	if m.Type != "error" || m.Error != "forbidden" || !strings.Contains(m.Raw, "Only the admins of "+domain) {
		t.Errorf("non-admin chat command answered %q %q %q", m.Type, m.Error, m.Raw)
	}
	// A message addressed to the domain's resource is the same.
	if err := mallory.SendRaw("<message type='chat' to='" + domain + "/x' id='m2'><body>allow *@evil.example</body></message>"); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.IQ(ctx(t), "<iq type='get' to='"+domain+"'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
	if reqs := mustRequests(t, g.db); len(reqs) != 1 || reqs[0].ID != id {
		t.Errorf("the held request #%d was touched: %+v", id, reqs)
	}
	allow, deny, err := g.db.Lists(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(allow) != 0 || len(deny) != 0 {
		t.Errorf("a non-admin edited the lists: allow %v, deny %v", allow, deny)
	}
}

// A held request older than review_ttl is rejected, and recorded.
func TestIntegrationReviewTTL(t *testing.T) { xmpptest.EachServer(t, testIntegrationReviewTTL) }

func testIntegrationReviewTTL(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = func(st *engine.Settings) { st.ReviewTTL = 500 * time.Millisecond }
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("none", ""))
	expired := false
	for _, e := range mustEvents(t, g.db) {
		expired = expired || (e.Kind == "reject" && e.Interface == "review_ttl")
	}
	if !expired {
		t.Error("the expiry is not in the audit log")
	}
}

// A burst from one contact over contact_rate is dropped; over max_pending
// the limit action (here reject) applies.
func TestIntegrationLimits(t *testing.T) { xmpptest.EachServer(t, testIntegrationLimits) }

func testIntegrationLimits(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review, UnknownEntity: policy.Review})
	s.tweak = func(st *engine.Settings) {
		st.Limits = engine.Limits{ContactRate: limits.Rate{N: 2, Per: time.Hour}, MaxPending: 3, Action: policy.Drop}
	}
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	for i := range 6 {
		if err := alice.SendPresence(fmt.Sprintf("bot%d@%s", i, domain), "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.IQ(ctx(t), "<iq type='get' to='"+domain+"'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
	if reqs := mustRequests(t, g.db); len(reqs) != 2 {
		t.Errorf("%d held, want 2 (contact_rate 2/1h)", len(reqs))
	}
	if hits := g.eng.LimitHits(); hits["contact_rate"] != 4 {
		t.Errorf("limit hits %v, want 4 over contact_rate", hits)
	}
	// Two more contacts: the total cap of 3 holds one, drops the other.
	for _, u := range []string{"bob", "carol"} {
		c := s.srv.NewUser(t, u)
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.IQ(ctx(t), "<iq type='get' to='"+domain+"'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
			t.Fatal(err)
		}
	}
	if reqs := mustRequests(t, g.db); len(reqs) != 3 {
		t.Errorf("%d held, want 3 (max_pending)", len(reqs))
	}
	if hits := g.eng.LimitHits(); hits["max_pending"] != 1 {
		t.Errorf("limit hits %v, want 1 over max_pending", hits)
	}
}

// The allow and deny lists, edited by chat, are consulted before the rules
// at once.
func TestIntegrationLists(t *testing.T) { xmpptest.EachServer(t, testIntegrationLists) }

func testIntegrationLists(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = withAdmins("admin@localhost")
	g := s.start()
	adm := s.srv.NewUser(t, "admin")
	for _, cmd := range []string{"allow alice@localhost", "deny *@localhost"} {
		if err := adm.SendMessage(domain, cmd); err != nil {
			t.Fatal(err)
		}
		mustWaitMessage(t, adm, func(m xmpptest.Message) bool { return m.From == domain })
	}
	alice := s.srv.NewUser(t, "alice")
	bob := s.srv.NewUser(t, "bob")
	for _, c := range []*xmpptest.Client{alice, bob} {
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	mustWaitPresence(t, bob, presenceFrom(helpdesk, "unsubscribed"))
	// The deny list wins over the allow list.
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
	if err := adm.SendMessage(domain, "undeny *@localhost"); err != nil {
		t.Fatal(err)
	}
	mustWaitMessage(t, adm, func(m xmpptest.Message) bool { return m.From == domain })
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	wantState(t, g, "alice@localhost", subscription.From)
	x, err := g.eng.Explain(t.Context(), "bob@localhost", "helpdesk")
	if err != nil || x.Action != "review" {
		t.Errorf("explain bob: %+v %v", x, err)
	}
}

// An admin adds the component domain to the roster: accepted, and seen
// online while rostergate is connected, offline when it stops.
func TestIntegrationAdminSeesDomain(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationAdminSeesDomain)
}

func testIntegrationAdminSeesDomain(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	s.tweak = withAdmins("admin@localhost")
	g := s.start()
	adm := s.srv.NewUser(t, "admin")
	send(t, adm, domain, "subscribe")
	mustWaitPresence(t, adm, presenceFrom(domain, "subscribed"))
	mustWaitPresence(t, adm, presenceFrom(domain+"/rostergate", ""))
	if _, err := adm.WaitRosterItem(ctx(t), domain, func(it xmpptest.RosterItem) bool { return it.Subscription == "to" }); err != nil {
		t.Error(err)
	}
	g.stop(t)
	mustWaitPresence(t, adm, presenceFrom(domain+"/rostergate", "unavailable"))
}
