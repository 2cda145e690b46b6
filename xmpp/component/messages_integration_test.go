package component_test

import (
	"strings"
	"testing"

	"rostergate/engine"
	"rostergate/internal/xmpptest"
	"rostergate/subscription"
)

// Messages to the entities, on the wire. The gate applies to chat: a
// stranger's message is dropped (and counted); a contact's is answered
// with the entity's auto_reply, or service-unavailable while no bot is
// behind it; a message to a JID that is no entity gets service-unavailable
// (RFC 6121 §8.5.1). The vCard (XEP-0054) shows the entity's name and
// nickname.
func TestIntegrationMessages(t *testing.T) { xmpptest.EachServer(t, testIntegrationMessages) }

func testIntegrationMessages(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	s.tweak = func(st *engine.Settings) {
		st.Entities[0].Nick = "helpdesk"
		st.Entities = append(st.Entities, engine.Entity{Local: "echo", Name: "Echo", AutoReply: "No one reads this yet."})
	}
	g := s.start()
	alice := srv.NewUser(t, "alice")
	isFrom := func(from, typ string) func(xmpptest.Message) bool {
		return func(m xmpptest.Message) bool { return m.From == from && m.Type == typ }
	}

	// A stranger: nothing comes back, the drop is counted.
	if err := alice.SendMessage(helpdesk, "hello?"); err != nil {
		t.Fatal(err)
	}
	settle(t, alice)
	if got := g.svc.Counters().MessagesDropped; got != 1 {
		t.Errorf("messages dropped: %d, want 1", got)
	}
	// A JID that is no entity.
	if err := alice.SendMessage("nobody@bots.localhost", "anyone?"); err != nil {
		t.Fatal(err)
	}
	m, err := alice.WaitMessage(ctx(t), isFrom("nobody@bots.localhost", "error"))
	if err != nil || m.Error != "service-unavailable" {
		t.Errorf("a message to a JID that is no entity: %+v, %v", m, err)
	}

	// Contacts.
	for _, to := range []string{helpdesk, "echo@bots.localhost"} {
		send(t, alice, to, "subscribe")
		mustWaitPresence(t, alice, presenceFrom(to, "subscribed"))
	}
	wantState(t, g, "alice@localhost", subscription.From)
	if err := alice.SendMessage(helpdesk, "hello"); err != nil {
		t.Fatal(err)
	}
	m, err = alice.WaitMessage(ctx(t), isFrom(helpdesk, "error"))
	if err != nil || m.Error != "service-unavailable" {
		t.Errorf("a contact's message, no bot behind the entity: %+v, %v", m, err)
	}
	if err := alice.SendMessage("echo@bots.localhost", "hello"); err != nil {
		t.Fatal(err)
	}
	m, err = alice.WaitMessage(ctx(t), isFrom("echo@bots.localhost/rostergate", "chat"))
	if err != nil || m.Body != "No one reads this yet." {
		t.Errorf("auto_reply: %+v, %v", m, err)
	}
	if got := g.svc.Counters().MessagesDropped; got != 1 {
		t.Errorf("messages dropped: %d, want still 1", got)
	}

	// The entity's face in its presence: avatar hash (XEP-0153, none set
	// here) and capabilities (XEP-0115), as the user's server delivers it.
	p := mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", ""))
	for _, want := range []string{"vcard-temp:x:update", "http://jabber.org/protocol/caps", "node=", "ver="} {
		if !strings.Contains(p.Raw, want) {
			t.Errorf("the entity's presence %s lacks %s", p.Raw, want)
		}
	}
	reply, err := alice.IQ(ctx(t), "<iq type='get' to='"+helpdesk+"'><vCard xmlns='vcard-temp'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<FN>Help Desk</FN>", "<NICKNAME>helpdesk</NICKNAME>"} {
		if !strings.Contains(strings.ReplaceAll(reply, `"`, "'"), want) {
			t.Errorf("vCard %s lacks %s", reply, want)
		}
	}
}
