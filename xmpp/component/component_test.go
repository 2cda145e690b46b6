package component

import (
	"context"
	"encoding/xml"
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

const (
	// A ping after the stanzas under test: its answer shows that everything
	// before it was handled.
	ping = "<iq from='a@b' to='bots.localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
	pong = "<iq type='result' from='bots.localhost' to='a@b' id='p1'/>"
	hdr  = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='bots.localhost'>"
)

func TestHandshakeBytes(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	if c.header != hdr {
		t.Errorf("header:\n got %s\nwant %s", c.header, hdr)
	}
	// sha1 of the stream id "3f2a1b" followed by the secret, in lower-case hex (XEP-0114 §3).
	if want := "<handshake>f95a23904b706fe8aa8c44a365bc3887e6cba248</handshake>"; c.handshake != want {
		t.Errorf("handshake:\n got %s\nwant %s", c.handshake, want)
	}
}

func TestWrongSecret(t *testing.T) {
	h := start(t, "wrong", nil)
	err := h.wait(t)
	if !IsAuthError(err) {
		t.Fatalf("Run = %v, want an auth error", err)
	}
	for _, want := range []string{"not-authorized", "Invalid handshake", "bots.localhost"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// Prosody answers a header for a domain it does not know with its own header
// and host-unknown, before any handshake.
func TestHostUnknown(t *testing.T) {
	srv := newFakeServer(t, "s3cret")
	srv.onOpen = func(c net.Conn) {
		c.Write([]byte("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x1'><stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"))
	}
	h := start(t, "s3cret", func(o *testOpts) { o.Server = srv.addr() })
	err := h.wait(t)
	if !IsAuthError(err) || !strings.Contains(err.Error(), "host-unknown") {
		t.Fatalf("Run = %v, want host-unknown", err)
	}
}

// Openfire refuses a domain it does not accept, or a second connection for
// a connected one, with a stream header that has no id, then closes the
// connection: no stream error. Before the first connection succeeds Run
// tries refusedAttempts times (the second connection may be an old one the
// server has not dropped yet), then stops with the causes named. A header
// with an id that is then closed is only a broken connection, retried.
func TestRefusedWithoutID(t *testing.T) {
	srv := newFakeServer(t, "s3cret")
	var opens atomic.Int32
	srv.onOpen = func(c net.Conn) {
		opens.Add(1)
		c.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><stream:stream xmlns:stream="http://etherx.jabber.org/streams" xmlns="jabber:component:accept" from="bots.localhost">`))
		c.Close()
	}
	h := start(t, "s3cret", func(o *testOpts) { o.Server = srv.addr() })
	err := h.wait(t)
	if !IsAuthError(err) || !errors.Is(err, ErrRefusedWithoutID) {
		t.Fatalf("Run = %v, want ErrRefusedWithoutID", err)
	}
	if n := opens.Load(); n != refusedAttempts {
		t.Errorf("gave up after %d connections, want %d", n, refusedAttempts)
	}
	for _, want := range []string{"bots.localhost", "without an id", "whitelist", "second connection"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A header with an id, then the end: retried, however often.
	srv2 := newFakeServer(t, "s3cret")
	var opens2 atomic.Int32
	enough := make(chan struct{})
	srv2.onOpen = func(c net.Conn) {
		if opens2.Add(1) == 2*refusedAttempts {
			close(enough)
		}
		c.Write([]byte(`<?xml version="1.0"?><stream:stream xmlns:stream="http://etherx.jabber.org/streams" xmlns="jabber:component:accept" id="x1" from="bots.localhost">`))
		c.Close()
	}
	h2 := start(t, "s3cret", func(o *testOpts) { o.Server = srv2.addr() })
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d connections within 10 s, want %d", opens2.Load(), 2*refusedAttempts)
	}
	h2.stop()
	if err := h2.wait(t); err != nil {
		t.Errorf("Run after a stream closed %d times = %v, want nil", 2*refusedAttempts, err)
	}
	for head, want := range map[string]bool{
		`<stream:stream xmlns:stream="http://etherx.jabber.org/streams" from="b">`:                    true,
		`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='x'>`: false,
		`<stream:stream xmlns:stream="http://etherx.jabber.org/streams" from="b"`:                     false, // not whole
		``: false,
		`<stream:stream xmlns:stream="http://etherx.jabber.org/streams" xml:id="x">`: true,
	} {
		if got := headerWithoutID([]byte(head)); got != want {
			t.Errorf("headerWithoutID(%q) = %t, want %t", head, got, want)
		}
	}
}

func TestSubscribeFlows(t *testing.T) {
	tests := []struct {
		name, in, want string
		state          string          // the stored item afterwards, "" = no item
		held           *roster.Request // the request held for review, if any (ID and Created not compared)
	}{
		{
			name:  "accepted one way",
			in:    "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>",
			want:  "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence>",
			state: "from",
		},
		{
			name:  "accepted with subscribe back",
			in:    "<presence from='Bob@Both.Example/phone' to='HelpDesk@bots.localhost' type='subscribe'/>",
			want:  "<presence from='helpdesk@bots.localhost' to='bob@both.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='bob@both.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence><presence from='helpdesk@bots.localhost' to='bob@both.example' id='ID' type='subscribe'>" + helpdeskNick + "</presence>",
			state: "from+out",
		},
		{
			name: "rejected",
			in:   "<presence from='eve@bad.example' to='helpdesk@bots.localhost' type='subscribe' id='c2'/>",
			want: "<presence from='helpdesk@bots.localhost' to='eve@bad.example' id='ID' type='unsubscribed'/>",
		},
		{
			name: "unknown entity rejected",
			in:   "<presence from='alice@good.example' to='nobody@bots.localhost' type='subscribe'/>",
			want: "<presence from='nobody@bots.localhost' to='alice@good.example' id='ID' type='unsubscribed'/>",
		},
		{
			name:  "a rule's message goes to the requester",
			in:    "<presence from='carol@msg.example' to='helpdesk@bots.localhost' type='subscribe'/>",
			want:  "<message from='helpdesk@bots.localhost' to='carol@msg.example' id='ID' type='chat'><body>Your request awaits approval</body></message>",
			state: "none+in",
			held:  &roster.Request{Entity: "helpdesk", Contact: "carol@msg.example", Rule: "rule 5"},
		},
		{
			name:  "review holds it",
			in:    "<presence from='carol@other.example' to='helpdesk@bots.localhost' type='subscribe'/>",
			want:  "",
			state: "none+in",
			held:  &roster.Request{Entity: "helpdesk", Contact: "carol@other.example", Rule: "default"},
		},
		{
			name:  "review that will subscribe back, from a full JID",
			in:    "<presence from='Dan@Back.Example/phone' to='HelpDesk@bots.localhost' type='subscribe'/>",
			want:  "",
			state: "none+in",
			held:  &roster.Request{Entity: "helpdesk", Contact: "dan@back.example", Rule: "rule 6", SubscribeBack: true},
		},
		{
			name:  "subscribe to a full JID is for the bare JID",
			in:    "<presence from='alice@good.example' to='helpdesk@bots.localhost/desk' type='subscribe'/>",
			want:  "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence>",
			state: "from",
		},
		{
			name: "probe from a stranger",
			in:   "<presence from='mallory@other.example/x' to='helpdesk@bots.localhost' type='probe'/>",
			want: "<presence from='helpdesk@bots.localhost' to='mallory@other.example' id='ID' type='unsubscribed'/>",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, "s3cret", nil)
			c := h.first(t)
			c.send(t, tc.in)
			// A ping after the stanza: its reply shows everything before it was handled.
			c.send(t, "<iq from='bots.localhost' to='bots.localhost' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
			c.expect(t, tc.want+"<iq type='result' from='bots.localhost' to='bots.localhost' id='p1'/>")
			var items []roster.Item
			h.db.Items(context.Background(), store.Filter{AllEntities: true}, func(it roster.Item) error {
				items = append(items, it)
				return nil
			})
			got := ""
			if len(items) == 1 {
				got = items[0].Sub
				if items[0].PendingOut {
					got += "+out"
				}
				if items[0].PendingIn {
					got += "+in"
				}
			} else if len(items) > 1 {
				t.Fatalf("items: %+v", items)
			}
			if got != tc.state {
				t.Errorf("stored state = %q, want %q", got, tc.state)
			}
			reqs, err := h.db.Requests(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.held == nil && len(reqs) != 0:
				t.Errorf("held: %+v, want none", reqs)
			case tc.held != nil && len(reqs) != 1:
				t.Errorf("held: %+v, want one: %+v", reqs, *tc.held)
			case tc.held != nil:
				r := reqs[0]
				if r.ID <= 0 || r.Created.IsZero() {
					t.Errorf("held request without its id or time: %+v", r)
				}
				r.ID, r.Created = 0, time.Time{}
				if r != *tc.held {
					t.Errorf("held: %+v, want %+v", r, *tc.held)
				}
				if n := h.eng.Held(); n != 1 {
					t.Errorf("held count %d, want 1", n)
				}
			}
		})
	}
}

// A contact already subscribed asks again: the entity answers subscribed
// (RFC 6121 §3.1.3) and nothing changes.
func TestDuplicateSubscribe(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.send(t, ping)
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence>"+
		"<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/>"+pong)
	n := 0
	h.db.Events(context.Background(), time.Time{}, func(roster.Event) error { n++; return nil })
	if n != 1 {
		t.Errorf("%d audit events, want 1 (the duplicate is not a decision)", n)
	}
}

func TestDropSendsAndStoresNothing(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='x@spam.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.send(t, "<presence from='x@spam.example' to='helpdesk@bots.localhost' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
	c.send(t, ping)
	c.expect(t, pong)
	if _, err := h.db.Get(context.Background(), "helpdesk", "x@spam.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get = %v, want not found", err)
	}
}

func TestIQ(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ping", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='result' from='bots.localhost' to='a@localhost/r' id='1'/>"},
		{"version", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='2'><query xmlns='jabber:iq:version'/></iq>",
			"<iq type='result' from='bots.localhost' to='a@localhost/r' id='2'><query xmlns='jabber:iq:version'><name>rostergate</name><version>test</version></query></iq>"},
		{"disco info of the domain", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='3'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
			"<iq type='result' from='bots.localhost' to='a@localhost/r' id='3'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='component' type='generic' name='rostergate'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/><feature var='http://jabber.org/protocol/commands'/></query></iq>"},
		{"disco info of an entity", "<iq from='a@localhost/r' to='helpdesk@bots.localhost' type='get' id='4'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
			"<iq type='result' from='helpdesk@bots.localhost' to='a@localhost/r' id='4'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='bot' name='Help Desk'/><feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/><feature var='vcard-temp'/></query></iq>"},
		{"disco info of a stranger", "<iq from='a@localhost/r' to='nobody@bots.localhost' type='get' id='5'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
			"<iq type='error' from='nobody@bots.localhost' to='a@localhost/r' id='5'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"ping of a stranger", "<iq from='a@localhost/r' to='nobody@bots.localhost' type='get' id='5b'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='error' from='nobody@bots.localhost' to='a@localhost/r' id='5b'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"ping of another resource", "<iq from='a@localhost/r' to='helpdesk@bots.localhost/other' type='get' id='5c'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='error' from='helpdesk@bots.localhost/other' to='a@localhost/r' id='5c'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"ping of the entity's resource", "<iq from='a@localhost/r' to='helpdesk@bots.localhost/rostergate' type='get' id='5d'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='result' from='helpdesk@bots.localhost/rostergate' to='a@localhost/r' id='5d'/>"},
		{"disco items", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='6'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
			"<iq type='result' from='bots.localhost' to='a@localhost/r' id='6'><query xmlns='http://jabber.org/protocol/disco#items'><item jid='helpdesk@bots.localhost' name='Help Desk'/></query></iq>"},
		{"unknown get", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='7'><query xmlns='jabber:iq:last'/></iq>",
			"<iq type='error' from='bots.localhost' to='a@localhost/r' id='7'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"set", "<iq from='a@localhost/r' to='bots.localhost' type='set' id='8'><query xmlns='jabber:iq:roster'/></iq>",
			"<iq type='error' from='bots.localhost' to='a@localhost/r' id='8'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"malformed to", "<iq from='a@localhost/r' to='@@bots.localhost' type='get' id='9'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='error' from='bots.localhost' to='a@localhost/r' id='9'><error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"vCard of an entity (XEP-0054)", "<iq from='a@localhost/r' to='helpdesk@bots.localhost' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>",
			"<iq type='result' from='helpdesk@bots.localhost' to='a@localhost/r' id='v1'><vCard xmlns='vcard-temp'><FN>Help Desk</FN><NICKNAME>helpdesk &amp; co</NICKNAME></vCard></iq>"},
		{"disco info of the caps node (XEP-0115 §6.2)", "<iq from='a@localhost/r' to='helpdesk@bots.localhost/rostergate' type='get' id='c1'><query xmlns='http://jabber.org/protocol/disco#info' node='rostergate#" + helpdeskVer + "'/></iq>",
			"<iq type='result' from='helpdesk@bots.localhost/rostergate' to='a@localhost/r' id='c1'><query xmlns='http://jabber.org/protocol/disco#info' node='rostergate#" + helpdeskVer + "'><identity category='client' type='bot' name='Help Desk'/><feature var='http://jabber.org/protocol/caps'/><feature var='http://jabber.org/protocol/disco#info'/><feature var='http://jabber.org/protocol/disco#items'/><feature var='jabber:iq:version'/><feature var='urn:xmpp:ping'/><feature var='vcard-temp'/></query></iq>"},
		{"disco info of another node", "<iq from='a@localhost/r' to='helpdesk@bots.localhost' type='get' id='c2'><query xmlns='http://jabber.org/protocol/disco#info' node='rostergate#x'/></iq>",
			"<iq type='error' from='helpdesk@bots.localhost' to='a@localhost/r' id='c2'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"vCard of the domain, no entity", "<iq from='a@localhost/r' to='bots.localhost' type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>",
			"<iq type='error' from='bots.localhost' to='a@localhost/r' id='v2'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"vCard of a stranger", "<iq from='a@localhost/r' to='nobody@bots.localhost' type='get' id='v3'><vCard xmlns='vcard-temp'/></iq>",
			"<iq type='error' from='nobody@bots.localhost' to='a@localhost/r' id='v3'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"vCard set", "<iq from='a@localhost/r' to='helpdesk@bots.localhost' type='set' id='v4'><vCard xmlns='vcard-temp'><FN>x</FN></vCard></iq>",
			"<iq type='error' from='helpdesk@bots.localhost' to='a@localhost/r' id='v4'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
		{"bad type", "<iq from='a@localhost/r' to='bots.localhost' type='fetch' id='10'><ping xmlns='urn:xmpp:ping'/></iq>",
			"<iq type='error' from='bots.localhost' to='a@localhost/r' id='10'><error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"},
	}
	h := start(t, "s3cret", nil)
	c := h.first(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.send(t, tc.in)
			c.expect(t, tc.want)
		})
	}
}

// A stream error or a dropped connection makes the component reconnect,
// resend presence to its subscribers and probe its contacts.
func TestReconnectResync(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='bob@both.example' to='helpdesk@bots.localhost' type='subscribe' id='s'/>")
	c.send(t, "<presence from='bob@both.example' to='helpdesk@bots.localhost' type='subscribed' id='t'/>")
	c.send(t, ping)
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='bob@both.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='bob@both.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence><presence from='helpdesk@bots.localhost' to='bob@both.example' id='ID' type='subscribe'>"+helpdeskNick+"</presence>"+pong)

	// A stanza sent after the replies were read proves them delivered;
	// without it they may count as unconfirmed and be replayed first.
	c.send(t, ping)
	c.expect(t, pong)

	resync := "<presence from='helpdesk@bots.localhost/rostergate' to='bob@both.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence><presence from='helpdesk@bots.localhost' to='bob@both.example' id='ID' type='probe'/>"
	c.send(t, "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
	c2 := h.srv.next(t)
	c2.expect(t, resync)
	c2.Close()
	c3 := h.srv.next(t)
	c3.expect(t, resync)
}

func TestShutdownSendsUnavailable(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='s'/>")
	c.send(t, ping)
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence>"+pong)
	h.stop()
	c.expect(t, "<presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID' type='unavailable'/></stream:stream>")
	c.send(t, "</stream:stream>")
	if err := h.wait(t); err != nil {
		t.Fatalf("Run after a clean shutdown = %v, want nil", err)
	}
}

func TestKeepalive(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.Keepalive = 40 * time.Millisecond })
	c := h.first(t)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadByte()
	if err != nil || b != ' ' {
		t.Fatalf("read %q, %v; want a whitespace keepalive", b, err)
	}
}

// A subscriber's probe gets the entity's presence; a probe of a full JID gets
// only that resource's presence (RFC 6121 §4.3.2), and a probe never cancels
// a pre-approval.
func TestProbes(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	avail := "<presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence>"
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/>"+avail)
	c.send(t, "<presence from='alice@good.example/phone' to='helpdesk@bots.localhost' type='probe'/>")
	c.expect(t, avail)
	// A probe of the full JID learns only that the resource is available
	// (RFC 6121 §4.3.2).
	c.send(t, "<presence from='alice@good.example/phone' to='helpdesk@bots.localhost/rostergate' type='probe'/>")
	c.expect(t, "<presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'/>")
	c.send(t, "<presence from='alice@good.example/phone' to='helpdesk@bots.localhost/other' type='probe'/>")
	c.expect(t, "<presence from='helpdesk@bots.localhost/other' to='alice@good.example' id='ID' type='unavailable'/>")

	if err := h.eng.Act(context.Background(), roster.Actor{JID: "test", Via: "test"}, "helpdesk", "dave@other.example", subscription.Subscribed); err != nil {
		t.Fatal(err)
	}
	c.send(t, "<presence from='dave@other.example' to='helpdesk@bots.localhost' type='probe'/>")
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='dave@other.example' id='ID' type='unsubscribed'/>")
	it, err := h.db.Get(context.Background(), "helpdesk", "dave@other.example")
	if err != nil || !it.Approved {
		t.Fatalf("pre-approval after a probe: %+v, %v", it, err)
	}
	// An entity removed from the config still has subscribers: they see it
	// offline, from its bare JID, for it has no resource (RFC 6121 §4.3.2).
	if err := h.db.Apply(context.Background(), []store.Change{{Item: roster.Item{Entity: "old", Contact: "bob@x.example", Sub: "from"}}}); err != nil {
		t.Fatal(err)
	}
	c.send(t, "<presence from='bob@x.example/pc' to='old@bots.localhost' type='probe'/>")
	c.expect(t, "<presence from='old@bots.localhost' to='bob@x.example' id='ID' type='unavailable'/>")

	// The pre-approved contact's request is accepted without the policy (which would review it).
	c.send(t, "<presence from='dave@other.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='dave@other.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='dave@other.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence>")
}

// A reply committed and written after the server closed the stream (its
// </stream:stream> already received) may never have been read: it is kept
// in the outbox and sent first on the next stream; the outbox is then
// empty.
func TestOutboxReplayAfterDrop(t *testing.T) {
	var fs *flakyStore
	log := newLogWatch(t)
	ended := log.on("engine: stream from the server ended: ")
	h := start(t, "s3cret", func(o *testOpts) {
		flaky(&fs)(o)
		o.Logger = log.logger()
	})
	c := h.first(t)
	// The commit is held until the engine has read the server's close, so
	// the reply is written after it, every time: the lost-reply window.
	release := fs.hold(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe'/></stream:stream>")
	fs.commitStarted(t)
	waitClosed(t, ended, 10*time.Second, "the engine seeing the server's </stream:stream>")
	release()
	subscribed := "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/>"
	avail := "<presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>" + helpdeskFace + "</presence>"
	// The write itself succeeds: the reply and then our </stream:stream>
	// reach the old stream (which a real server, having closed it, may
	// discard).
	c.expect(t, subscribed+avail+"</stream:stream>")
	c.Close()
	c2 := h.srv.next(t)
	// The replayed reply, then the resync's presence.
	c2.expect(t, subscribed+avail+avail)
	c2.send(t, ping)
	c2.expect(t, pong)
	if out, err := h.db.Outbox(context.Background()); err != nil || len(out) != 0 {
		t.Errorf("outbox after replay: %+v, %v", out, err)
	}
}

// The component answers the server's </stream:stream> with its own, and bad
// XML with a not-well-formed stream error, then reconnects.
func TestServerCloses(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "</stream:stream>")
	c.expect(t, "</stream:stream>")
	c2 := h.srv.next(t)
	c2.send(t, "<presence from='a@b' to='helpdesk@bots.localhost' type='probe'><<</presence>")
	c2.expect(t, "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
	c3 := h.srv.next(t)
	c3.send(t, ping)
	c3.expect(t, pong)
}

// Approving a held request whose rule asked to subscribe back sends
// subscribed, the presence and subscribe; the request leaves the queue.
func TestApproveSubscribeBack(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='x@back.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	c.send(t, ping)
	c.expect(t, pong)
	reqs, err := h.db.Requests(context.Background())
	if err != nil || len(reqs) != 1 || !reqs[0].SubscribeBack {
		t.Fatalf("held: %+v %v", reqs, err)
	}
	out := h.eng.DecideHeld(context.Background(), []int64{reqs[0].ID, reqs[0].ID, 999}, true, roster.Actor{JID: "admin@example.com", Via: "test"})
	if out[0].Err != nil || out[1].Err == nil || out[2].Err == nil {
		t.Errorf("outcomes: %+v", out)
	}
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='x@back.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='x@back.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence><presence from='helpdesk@bots.localhost' to='x@back.example' id='ID' type='subscribe'>"+helpdeskNick+"</presence>")
	if reqs, _ := h.db.Requests(context.Background()); len(reqs) != 0 {
		t.Errorf("still held: %+v", reqs)
	}
	if total := h.eng.Held(); total != 0 {
		t.Errorf("held count %d after the approval, want 0", total)
	}
}

// Bad addresses: a usable from gets jid-malformed; an unusable one is dropped
// (no reply can be addressed); nothing panics.
func TestMalformedAddresses(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='alice@good.example/x' to='a@b@bots.localhost' type='subscribe' id='m1'/>")
	c.expect(t, "<presence type='error' from='bots.localhost' to='alice@good.example/x' id='m1'><error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
	for _, in := range []string{
		"<presence from='@@' to='helpdesk@bots.localhost' type='subscribe'/>",
		"<presence to='helpdesk@bots.localhost' type='subscribe'/>",
		"<presence from='a@b/' to='helpdesk@bots.localhost' type='probe'/>",
		"<iq from='' to='bots.localhost' type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>",
		"<presence from='alice@good.example' to='bad@bots.localhost' type='error'/>",
		"<presence from='alice@good.example' to='x@other.example' type='subscribe' id='m2'/>",
	} {
		c.send(t, in)
	}
	c.send(t, ping)
	c.expect(t, "<presence type='error' from='bots.localhost' to='alice@good.example' id='m2'><error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"+pong)
}

// The secret never reaches the log, not even at debug level, on success or
// on a refused handshake.
func TestSecretNotLogged(t *testing.T) {
	const secret = "Sup3r-Secret-Value"
	var log syncBuffer
	srv := newFakeServer(t, secret)
	for _, s := range []string{secret, secret + "-wrong"} {
		db, err := sqlite.Open(context.Background(), t.TempDir()+"/rg.db")
		if err != nil {
			t.Fatal(err)
		}
		comp, _, _, err := newStack(testOpts{
			Options: Options{Server: srv.addr(), Secret: s,
				Logger: hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Debug})},
			Domain: "bots.localhost", Settings: engine.Settings{Policy: testPolicy(t)}, Store: db})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- comp.Run(ctx) }()
		if s == secret {
			srv.next(t)
			cancel()
		}
		err = <-done
		cancel()
		db.Close()
		if s != secret && (err == nil || !strings.Contains(err.Error(), "not-authorized")) {
			t.Errorf("wrong secret: Run = %v, want not-authorized", err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
	if strings.Contains(log.String(), secret) {
		t.Errorf("the log shows the secret:\n%s", log.String())
	}
}

// The capabilities an entity's presence advertises hash what its disco#info
// answers, recomputed here from the answer itself (XEP-0115 §5.4).
func TestCapsMatchDisco(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe'/>")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	got, err := readUntil(c.r, "</presence>") // subscribed, then the available presence
	if err != nil {
		t.Fatalf("reading the answer: %v (%s)", err, got)
	}
	m := regexp.MustCompile(`<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='([^']+)' ver='([^']+)'/>`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no capabilities in %s", got)
	}
	c.send(t, "<iq from='alice@good.example/pc' to='helpdesk@bots.localhost/rostergate' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info' node='"+m[1]+"#"+m[2]+"'/></iq>")
	reply, err := readUntil(c.r, "</iq>")
	if err != nil {
		t.Fatalf("reading the disco#info answer: %v (%s)", err, reply)
	}
	var q struct {
		Query struct {
			Node     string `xml:"node,attr"`
			Identity []struct {
				Category string `xml:"category,attr"`
				Type     string `xml:"type,attr"`
				Name     string `xml:"name,attr"`
			} `xml:"identity"`
			Feature []struct {
				Var string `xml:"var,attr"`
			} `xml:"feature"`
		} `xml:"query"`
	}
	if err := xml.Unmarshal([]byte(reply), &q); err != nil {
		t.Fatalf("%v: %s", err, reply)
	}
	if len(q.Query.Identity) != 1 || q.Query.Node != m[1]+"#"+m[2] {
		t.Fatalf("disco#info answer: %s", reply)
	}
	var features []string
	for _, f := range q.Query.Feature {
		features = append(features, f.Var)
	}
	id := q.Query.Identity[0]
	if ver := stanza.CapsVer(id.Category, id.Type, id.Name, features); ver != m[2] {
		t.Errorf("presence advertises ver %s, disco#info hashes to %s", m[2], ver)
	}
	if !slices.Contains(features, "http://jabber.org/protocol/caps") {
		t.Errorf("disco#info does not list the caps feature: %q", features)
	}
}
