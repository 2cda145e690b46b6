package engine

import (
	"context"
	"slices"
	"testing"

	"rostergate/policy"
	"rostergate/roster"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

func message(typ, from, to, body string) *stanza.Element {
	return &stanza.Element{Name: "message", Type: typ, From: from, To: to, ID: "m1", Body: body}
}

// The gate applies to chat: a message reaches an entity only from a
// contact (unless it accepts anyone's), and with no bot behind the entity
// it is answered with the auto_reply, or service-unavailable; a JID that is
// no entity answers service-unavailable (RFC 6121 §8.5.1).
func TestMessages(t *testing.T) {
	e, _, w := newTestEngine(t, Settings{Entities: []Entity{
		{Local: "helpdesk", AcceptMessages: AcceptContacts},
		{Local: "quiet", AcceptMessages: AcceptAnyone},
		{Local: "echo", AutoReply: "No one reads this yet.", AcceptMessages: AcceptContacts},
	}})
	friend, stranger := contactFor(subscription.From), "stranger@other.example"
	reach(t, e, friend, subscription.From)
	if err := e.Act(context.Background(), roster.Actor{JID: "test", Via: roster.ViaCLI}, "echo", friend, subscription.Subscribe); err != nil {
		t.Fatal(err)
	}
	handle(t, e, presence("subscribed", friend, "echo@bots.localhost", "s"))

	for _, tc := range []struct {
		name string
		el   *stanza.Element
		want []string // what is sent back
		drop int      // messages dropped as from a non-contact, after it
	}{
		{"a contact, no bot, no auto_reply", message("chat", friend+"/pc", entityBare, "hi"),
			[]string{"message error " + entityBare + ">" + friend + "/pc service-unavailable"}, 0},
		{"a stranger: dropped, counted", message("chat", stranger+"/pc", entityBare, "hi"), nil, 1},
		{"a stranger to an entity that accepts anyone", message("chat", stranger+"/pc", "quiet@bots.localhost", "hi"),
			[]string{"message error quiet@bots.localhost>" + stranger + "/pc service-unavailable"}, 1},
		{"auto_reply", message("", friend+"/pc", "echo@bots.localhost", "hi"),
			[]string{"message normal echo@bots.localhost/rostergate>" + friend + "/pc"}, 1},
		{"a JID that is no entity", message("chat", stranger+"/pc", "nobody@bots.localhost", "hi"),
			[]string{"message error nobody@bots.localhost>" + stranger + "/pc service-unavailable"}, 1},
		{"an error is never answered", message("error", friend+"/pc", entityBare, "x"), nil, 1},
		{"a headline is ignored", message("headline", friend+"/pc", entityBare, "x"), nil, 1},
		{"a chat state needs nothing", message("chat", friend+"/pc", entityBare, ""), nil, 1},
		{"groupchat", message("groupchat", friend+"/pc", entityBare, "x"),
			[]string{"message error " + entityBare + ">" + friend + "/pc service-unavailable"}, 1},
	} {
		w.Reset()
		handle(t, e, tc.el)
		if got := summary(t, w); !slices.Equal(got, tc.want) {
			t.Errorf("%s: sent %q, want %q", tc.name, got, tc.want)
		}
		if got := e.MessagesDropped(); got != tc.drop {
			t.Errorf("%s: %d dropped, want %d", tc.name, got, tc.drop)
		}
	}
	// Within the hour the same contact gets no second auto_reply: two
	// auto-responders must not answer each other for ever.
	w.Reset()
	handle(t, e, message("chat", friend+"/pc", "echo@bots.localhost", "hi"))
	if w.String() != "" {
		t.Errorf("a second auto_reply within the hour: %s", w.String())
	}
	// Another contact's: the body, the type kept for chat, a fresh id.
	other := "other@good.example"
	handle(t, e, presence("subscribe", other, "echo@bots.localhost", "s2"))
	w.Reset()
	handle(t, e, message("chat", other+"/pc", "echo@bots.localhost", "hi"))
	if got := written(t, w); len(got) != 1 || got[0].Body != "No one reads this yet." || got[0].Type != "chat" || got[0].ID == "m1" || got[0].To != other+"/pc" {
		t.Errorf("auto_reply: %+v", got)
	}
	// A type RFC 6121 does not define is normal (§5.2.2), and is never
	// copied into the reply.
	hostile := "fresh@good.example"
	handle(t, e, presence("subscribe", hostile, "echo@bots.localhost", "s3"))
	w.Reset()
	handle(t, e, message("chat'><body>x</body></message><presence type='subscribed", hostile+"/pc", "echo@bots.localhost", "hi"))
	if got := written(t, w); len(got) != 1 || got[0].Name != "message" || got[0].Type != "normal" {
		t.Errorf("a hostile type: %+v\n%s", got, w.String())
	}
	// Groupchat gets an error, even from a stranger.
	w.Reset()
	handle(t, e, message("groupchat", stranger+"/pc", entityBare, ""))
	if got := summary(t, w); !slices.Equal(got, []string{"message error " + entityBare + ">" + stranger + "/pc service-unavailable"}) {
		t.Errorf("groupchat from a stranger: %q", got)
	}
	w.Reset()
	handle(t, e, message("chat", friend+"/pc", entityBare, "hi"))
	if got := written(t, w); len(got) != 1 || got[0].ID != "m1" {
		t.Errorf("the error does not carry the message's id: %+v", got)
	}
}

// With unknown_entity = accept every JID at the domain is an entity: a
// contact's message to one is answered as to a configured entity.
func TestMessageUnknownOnline(t *testing.T) {
	p, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Accept})
	if err != nil {
		t.Fatal(err)
	}
	e, _, w := newTestEngine(t, Settings{Policy: p, UnknownOnline: true})
	handle(t, e, presence("subscribe", "ann@other.example", "any@bots.localhost", "s"))
	w.Reset()
	handle(t, e, message("chat", "stranger@x.example", "any@bots.localhost", "hi"))
	if w.String() != "" || e.MessagesDropped() != 1 {
		t.Errorf("a stranger's message to an open JID: %q, %d dropped", w.String(), e.MessagesDropped())
	}
}
