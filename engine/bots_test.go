package engine

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// botLog returns entity's events as "type data", oldest first.
func botLog(t *testing.T, e *Engine, entity string) []string {
	t.Helper()
	evs, _, err := e.store.BotEvents(context.Background(), entity, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type+" "+ev.Data)
	}
	return out
}

func eventJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// With a bot behind an entity (a webhook), what happens to it is logged,
// committed with the state: subscription changes, held requests and what
// became of them, contacts' presence changes, messages from contacts (which
// are no longer answered by rostergate). Strangers' messages are still
// dropped, and entities without a bot log nothing.
func TestBotEvents(t *testing.T) {
	e, _, w := newTestEngine(t, Settings{Entities: []Entity{{Local: "helpdesk", Webhook: true}, {Local: "plain"}}})
	friend, held := "ann@good.example", "bob@other.example"
	handle(t, e, presence("subscribe", friend, entityBare, "s1"))
	handle(t, e, presence("subscribe", held, entityBare, "s2"))
	act(t, e, held, subscription.Unsubscribed)
	act(t, e, friend, subscription.Subscribe)
	handle(t, e, presence("subscribed", friend, entityBare, "s3"))
	want := []string{
		"subscription " + eventJSON(t, SubscriptionEvent{JID: friend, Subscription: "from", Change: "subscribe received", By: friend}),
		"request " + eventJSON(t, RequestEvent{JID: held, State: "held", Rule: "default"}),
		"subscription " + eventJSON(t, SubscriptionEvent{JID: held, Subscription: "none", Change: "send unsubscribed", By: "test"}),
		"request " + eventJSON(t, RequestEvent{JID: held, State: "rejected"}),
		"subscription " + eventJSON(t, SubscriptionEvent{JID: friend, Subscription: "from", PendingOut: true, Change: "send subscribe", By: "test"}),
		"subscription " + eventJSON(t, SubscriptionEvent{JID: friend, Subscription: "both", Change: "subscribed received", By: friend}),
	}
	got := botLog(t, e, "helpdesk")
	// bob's held request first made an item None + Pending In.
	wantHeldItem := "subscription " + eventJSON(t, SubscriptionEvent{JID: held, Subscription: "none", PendingIn: true, Change: "subscribe received", By: held})
	want = slices.Insert(want, 1, wantHeldItem)
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n  %q\nwant\n  %q", got, want)
	}

	// Presence of a contact the entity sees: kept, logged on change only.
	w.Reset()
	av := &stanza.Element{Name: "presence", From: friend + "/pc", To: entityBare, Show: "away", Status: "lunch"}
	handle(t, e, av, av)
	handle(t, e, &stanza.Element{Name: "presence", From: friend + "/phone", To: entityBare})
	if ps := e.ContactPresences("helpdesk"); !slices.Equal(ps[friend], []ContactPresence{{Resource: "pc", Show: "away", Status: "lunch"}, {Resource: "phone"}}) {
		t.Errorf("ContactPresences = %+v", ps)
	}
	handle(t, e, &stanza.Element{Name: "presence", Type: "unavailable", From: friend + "/pc", To: entityBare})
	// A stranger's presence is not the entity's business.
	handle(t, e, &stanza.Element{Name: "presence", From: held + "/pc", To: entityBare})
	if ps := e.ContactPresences("helpdesk"); len(ps) != 1 || len(ps[friend]) != 1 {
		t.Errorf("ContactPresences after unavailable = %+v", ps)
	}
	got = botLog(t, e, "helpdesk")[len(want):]
	wantP := []string{
		"presence " + eventJSON(t, PresenceEvent{From: friend + "/pc", Type: "available", Show: "away", Status: "lunch"}),
		"presence " + eventJSON(t, PresenceEvent{From: friend + "/phone", Type: "available"}),
		"presence " + eventJSON(t, PresenceEvent{From: friend + "/pc", Type: "unavailable"}),
	}
	if !slices.Equal(got, wantP) {
		t.Fatalf("presence events:\n  %q\nwant\n  %q", got, wantP)
	}
	if w.String() != "" {
		t.Errorf("contacts' presence answered: %s", w.String())
	}

	// Messages: a contact's goes to the bot, unanswered; a stranger's is
	// dropped.
	w.Reset()
	handle(t, e, &stanza.Element{Name: "message", Type: "chat", From: friend + "/pc", To: entityBare, ID: "m1", Body: "help", Thread: "t1"})
	handle(t, e, message("chat", "stranger@x.example/pc", entityBare, "hi"))
	if w.String() != "" {
		t.Errorf("a message to a bot entity answered by rostergate: %s", w.String())
	}
	got = botLog(t, e, "helpdesk")
	if last := got[len(got)-1]; last != "message "+eventJSON(t, MessageEvent{From: friend + "/pc", Type: "chat", Body: "help", Thread: "t1", ID: "m1"}) {
		t.Errorf("last event %q", last)
	}
	if e.MessagesDropped() != 1 {
		t.Errorf("%d dropped, want 1", e.MessagesDropped())
	}
	// When the entity stops seeing the contact, its presence is forgotten.
	act(t, e, friend, subscription.Unsubscribe)
	if ps := e.ContactPresences("helpdesk"); len(ps) != 0 {
		t.Errorf("ContactPresences after unsubscribe = %+v", ps)
	}
	// No bot behind plain: nothing logged.
	handle(t, e, presence("subscribe", friend, "plain@bots.localhost", "s4"))
	if got := botLog(t, e, "plain"); len(got) != 0 {
		t.Errorf("plain's log: %q", got)
	}
	// Once a token is used for it, it has a bot.
	e.BotAttached("plain")
	w.Reset()
	handle(t, e, message("chat", friend+"/pc", "plain@bots.localhost", "now?"))
	if w.String() != "" || len(botLog(t, e, "plain")) != 1 {
		t.Errorf("after BotAttached: sent %q, log %q", w.String(), botLog(t, e, "plain"))
	}
}

// The long poll's wake-up: a commit with events closes the signal.
func TestEventsSignal(t *testing.T) {
	e, _, _ := newTestEngine(t, Settings{Entities: []Entity{{Local: "helpdesk", Webhook: true}}})
	sig := e.EventsSignal()
	handle(t, e, presence("subscribe", "ann@other.example", entityBare, "s1"))
	select {
	case <-sig:
	default:
		t.Fatal("no signal after events were committed")
	}
	sig = e.EventsSignal()
	handle(t, e, presence("probe", "ann@other.example", entityBare, "p"))
	select {
	case <-sig:
		t.Fatal("signal without events")
	default:
	}
}

// A bot sends as its entity: to subscribers only unless send_to is anyone;
// the presence it sets goes to the subscribers and stays across restarts.
func TestBotSends(t *testing.T) {
	e, db, w := newTestEngine(t, Settings{Entities: []Entity{{Local: "helpdesk", Webhook: true, Show: "chat", Status: "configured"}, {Local: "open", SendTo: SendAnyone}}})
	ctx := context.Background()
	sub := contactFor(subscription.From)
	reach(t, e, sub, subscription.From)
	if _, err := e.SendMessage(ctx, "helpdesk", OutMessage{To: "stranger@x.example", Type: "chat", Body: "hi"}); !errors.Is(err, ErrNotSubscriber) {
		t.Errorf("to a stranger: %v, want ErrNotSubscriber", err)
	}
	if _, err := e.SendMessage(ctx, "nobody", OutMessage{To: sub, Type: "chat", Body: "hi"}); !errors.Is(err, ErrNotEntity) {
		t.Errorf("from no entity: %v, want ErrNotEntity", err)
	}
	w.Reset()
	id, err := e.SendMessage(ctx, "helpdesk", OutMessage{To: sub + "/pc", Type: "chat", Body: "a <b> & 'c'", Thread: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	got := written(t, w)
	if len(got) != 1 || got[0].Body != "a <b> & 'c'" || got[0].ID != id || got[0].From != entityBare+"/rostergate" || got[0].To != sub+"/pc" {
		t.Errorf("sent %+v (id %q)\n%s", got, id, w.String())
	}
	if _, err := e.SendMessage(ctx, "open", OutMessage{To: "stranger@x.example", Type: "normal", Body: "hi", ID: "mine"}); err != nil {
		t.Errorf("send_to anyone: %v", err)
	}

	w.Reset()
	if err := e.SetPresence(ctx, "helpdesk", &store.Presence{Show: "dnd", Status: "busy"}); err != nil {
		t.Fatal(err)
	}
	if got := written(t, w); len(got) != 1 || got[0].To != sub || got[0].Show != "dnd" || got[0].Status != "busy" {
		t.Errorf("presence sent: %+v", got)
	}
	// A new engine over the same store answers a probe with it.
	e2, err := New(ctx, Options{Domain: "bots.localhost", Store: db, Settings: e.live.Load().Settings})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	w.Reset()
	handle(t, e2, presence("probe", sub, entityBare, "p1"))
	if got := written(t, w); len(got) != 1 || got[0].Show != "dnd" || got[0].Status != "busy" {
		t.Errorf("after a restart, a probe gets %+v", got)
	}
}

// Without the HTTP API no one reads a token-used entity's events: it has
// no bot, and its messages are answered as before.
func TestNoAPINoBot(t *testing.T) {
	e, db, w := newTestEngine(t, Settings{Entities: []Entity{{Local: "helpdesk", AcceptMessages: AcceptAnyone}}})
	e2, err := New(context.Background(), Options{Domain: "bots.localhost", Store: db, Settings: e.live.Load().Settings})
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Attach(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	e2.BotAttached("helpdesk")
	w.Reset()
	handle(t, e2, message("chat", "ann@other.example/pc", entityBare, "hi"))
	if got := summary(t, w); !slices.Equal(got, []string{"message error " + entityBare + ">ann@other.example/pc service-unavailable"}) {
		t.Errorf("sent %q", got)
	}
	if got := botLog(t, e2, "helpdesk"); len(got) != 0 {
		t.Errorf("events logged without the API: %q", got)
	}
}

// A refresh that read the store before a token's use was recorded keeps
// the entity attached meanwhile; one that read after drops what it does
// not list.
func TestSetBotEntities(t *testing.T) {
	e, _, _ := newTestEngine(t, Settings{Entities: []Entity{{Local: "a"}, {Local: "b"}}})
	read := time.Now()
	time.Sleep(time.Millisecond)
	e.BotAttached("a")
	e.SetBotEntities(nil, read)
	e.mu.Lock()
	kept := e.hasBot(e.live.Load(), "a")
	e.mu.Unlock()
	if !kept {
		t.Error("an entity attached after the read was dropped")
	}
	e.SetBotEntities([]string{"b"}, time.Now())
	e.mu.Lock()
	a, b := e.hasBot(e.live.Load(), "a"), e.hasBot(e.live.Load(), "b")
	e.mu.Unlock()
	if a || !b {
		t.Errorf("after a later read: a %v (want false), b %v (want true)", a, b)
	}
}

// The component domain, though no [[entity]], takes its admins'
// subscriptions and is online for them; anyone else's is answered as for
// any JID that is no entity (unknown_entity: reject here).
func TestAdminsSeeTheDomain(t *testing.T) {
	e, db, w := newTestEngine(t, Settings{Admins: []string{"admin@good.example"}, Entities: []Entity{{Local: "helpdesk"}}})
	handle(t, e, presence("subscribe", "admin@good.example", "bots.localhost", "s1"))
	if got := summary(t, w); !slices.Contains(got, "presence subscribed bots.localhost>admin@good.example") ||
		!slices.Contains(got, "presence available bots.localhost/rostergate>admin@good.example") {
		t.Errorf("an admin subscribing to the domain got %q", got)
	}
	if it, err := db.Get(context.Background(), "", "admin@good.example"); err != nil || it.Sub != "from" {
		t.Errorf("the admin's item: %+v, %v", it, err)
	}
	w.Reset()
	handle(t, e, presence("probe", "admin@good.example", "bots.localhost", "p1"))
	if got := summary(t, w); len(got) != 1 || got[0] != "presence available bots.localhost/rostergate>admin@good.example" {
		t.Errorf("the admin's probe: %q", got)
	}
	w.Reset()
	handle(t, e, presence("subscribe", "mallory@good.example", "bots.localhost", "s2"))
	if got := summary(t, w); len(got) != 1 || got[0] != "presence unsubscribed bots.localhost>mallory@good.example" {
		t.Errorf("a non-admin subscribing to the domain got %q", got)
	}
}

// Deciding a request decided already says by whom and when.
func TestDecideTwice(t *testing.T) {
	e, db, _ := newTestEngine(t, Settings{})
	handle(t, e, subscribe("carol@other.example"))
	reqs := held(t, db)
	if len(reqs) != 1 {
		t.Fatalf("held %+v", reqs)
	}
	ctx := context.Background()
	admin := roster.Actor{JID: "admin@good.example", Via: roster.ViaChat}
	if out := e.DecideHeld(ctx, []int64{reqs[0].ID}, false, admin); out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	out := e.DecideHeld(ctx, []int64{reqs[0].ID}, true, roster.Actor{JID: "other@good.example", Via: roster.ViaAdhoc})
	var de *roster.DecidedError
	if !errors.As(out[0].Err, &de) || !errors.Is(out[0].Err, store.ErrNotFound) || de.Actor != "admin@good.example" || de.Via != "chat" || de.Action != "reject" {
		t.Fatalf("approving a rejected request: %v", out[0].Err)
	}
	if msg := de.Error(); !strings.Contains(msg, "already rejected by admin@good.example (chat) at ") {
		t.Errorf("the text: %s", msg)
	}
}
