package component

import (
	"bytes"
	"testing"

	"rostergate/xmpp/stanza"
)

// What one Write sends is counted by its stanzas at the top level: child
// elements, escaped markup in text and attributes, keepalives and the
// stream's end are not stanzas.
func TestCountWritten(t *testing.T) {
	var b bytes.Buffer
	stanza.PresenceWith(&b, "a@b", "c@d", "1", "", "away", "<presence> & <iq/>", "<c xmlns='x' ver='a/b='/>")
	stanza.Presence(&b, "a@b", "c@d", "2", "subscribed", "", "")
	stanza.Message(&b, "a@b", "c@d", "3", "chat", "<message><body>hi</body></message>")
	stanza.MessageThread(&b, "a@b", "c@d", "3", "chat", "x", "t")
	stanza.IQResult(&b, &stanza.Element{From: "a@b", To: "c@d", ID: "4"}, "<query xmlns='jabber:iq:version'><name>rostergate</name></query>")
	stanza.IQResult(&b, &stanza.Element{From: "a@b", To: "c@d", ID: "5"}, "")
	stanza.PresenceError(&b, "a@b", &stanza.Element{From: "c@d", ID: "6"}, "modify", "bad-request")
	for _, tc := range []struct {
		in   string
		want StanzaCounts
	}{
		{b.String(), StanzaCounts{Presence: 3, Message: 2, IQ: 2}},
		{" ", StanzaCounts{}},
		{"</stream:stream>", StanzaCounts{}},
		{"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>", StanzaCounts{}},
		{"<iq type='get' from='d' to='d' id='p'><ping xmlns='urn:xmpp:ping'/></iq>", StanzaCounts{IQ: 1}},
	} {
		var c stanzaCounter
		c.addWritten([]byte(tc.in))
		if got := c.load(); got != tc.want {
			t.Errorf("counted %+v in %s, want %+v", got, tc.in, tc.want)
		}
	}
	var c stanzaCounter
	if n := testing.AllocsPerRun(100, func() { c.addWritten(b.Bytes()); c.add("iq") }); n != 0 {
		t.Errorf("counting allocates: %.0f allocations a write", n)
	}
}

// Stats over a real session: the stream is up while it is, the stanzas
// received and written are counted by kind, and a dropped stream is a
// reconnect.
func TestStatsOverASession(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	if s := h.comp.Stats(); !s.Up || s.Reconnects != 0 {
		t.Fatalf("connected: %+v, want up, no reconnect", s)
	}
	before := h.comp.Stats()
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>")
	c.send(t, "<message from='alice@good.example' to='helpdesk@bots.localhost' type='chat'><body>hi</body></message>")
	c.send(t, ping)
	// subscribed and the presence for the subscribe; service-unavailable for
	// the message (no bot, no auto_reply); the pong.
	c.expect(t, "<presence from='helpdesk@bots.localhost' to='alice@good.example' id='ID' type='subscribed'/><presence from='helpdesk@bots.localhost/rostergate' to='alice@good.example' id='ID'><show>away</show><status>Ask &lt;me&gt;</status>"+helpdeskFace+"</presence>"+
		"<message type='error' from='helpdesk@bots.localhost' to='alice@good.example'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"+pong)
	s := h.comp.Stats()
	// The IQs include the echo of the committed reply's write: written,
	// and routed back by the server.
	if in := (StanzaCounts{Presence: s.In.Presence - before.In.Presence, Message: s.In.Message - before.In.Message, IQ: s.In.IQ - before.In.IQ}); in != (StanzaCounts{1, 1, 2}) {
		t.Errorf("received: %+v, want a presence, a message, the ping and the echo", in)
	}
	if out := (StanzaCounts{Presence: s.Out.Presence - before.Out.Presence, Message: s.Out.Message - before.Out.Message, IQ: s.Out.IQ - before.Out.IQ}); out != (StanzaCounts{2, 1, 2}) {
		t.Errorf("written: %+v, want 2 presences, a message, the pong and the echo", out)
	}
	c.Close()
	h.srv.next(t) // the component is back
	if s := h.comp.Stats(); s.Reconnects != 1 {
		t.Errorf("after the stream dropped once: %d reconnects, want 1", s.Reconnects)
	}
	h.stop()
	h.wait(t)
	if s := h.comp.Stats(); s.Up {
		t.Error("stopped: still up")
	}
}
