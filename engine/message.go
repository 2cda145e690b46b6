package engine

import (
	"context"
	"strings"
	"time"

	"rostergate/xmpp/stanza"
)

// handleMessage gates a message. Messages to the domain itself go to the
// Handler (the admins' chat commands). A message to an entity reaches it
// only from a contact (a subscription either way: to, from or both), unless
// the entity accepts anyone's; others are dropped and counted, the gate
// applying to chat as to subscriptions. What gets through goes to the bot
// behind the entity (an event committed with the batch), or, with no bot,
// is answered with the entity's auto_reply, or service-unavailable (RFC 6121
// §8.5.2.2.1: no available resource for the message). A message to a JID
// that is no entity gets service-unavailable (§8.5.1). Errors are never
// answered, nor headlines (§8.5.2.2.1: "silently ignore").
func (e *Engine) handleMessage(ctx context.Context, b *batch, x *in, h Handler) {
	el := x.el
	a, canReply, err := e.address(x)
	if err != nil {
		if el.Type != "error" && el.Type != "headline" && canReply {
			stanza.Error(&b.out, "message", e.domain, el, "modify", "jid-malformed")
		}
		e.log.Debug("message dropped", "from", el.From, "to", el.To, "reason", err)
		return
	}
	if a.Entity == "" {
		h.Stanza(&b.out, el)
		return
	}
	if el.Type == "error" || el.Type == "headline" {
		return
	}
	l := e.live.Load()
	ent, known := l.entities[a.Entity]
	if !known && !l.UnknownOnline || el.Type == "groupchat" {
		// No such account (§8.5.1), or a groupchat message, which a
		// user's resource never takes (§8.5.2.1.1: "MUST NOT deliver
		// [...] MUST return a stanza error").
		stanza.Error(&b.out, "message", a.To, el, "cancel", "service-unavailable")
		return
	}
	if strings.TrimSpace(el.Body) == "" {
		return // chat states, receipts and the like need nothing
	}
	if ent.AcceptMessages != AcceptAnyone {
		it, err := e.lookup(ctx, b, a.Entity, a.Contact)
		if err != nil {
			e.log.Error("reading roster item", "entity", a.Entity, "contact", a.Contact, "err", err)
			return
		}
		if it.Sub == "none" {
			dropped := e.messagesDropped.Add(1)
			e.log.Debug("message from a non-contact dropped", "entity", e.entityJID(a.Entity), "from", el.From,
				"count", dropped)
			return
		}
	}
	// A message of a type RFC 6121 does not define is handled as normal
	// (§5.2.2).
	typ := "normal"
	if el.Type == "chat" {
		typ = "chat"
	}
	if e.hasBot(l, a.Entity) {
		e.botEvent(b, a.Entity, EventMessage, MessageEvent{From: el.From, Type: typ, Body: el.Body, Thread: el.Thread, ID: el.ID})
		return
	}
	if ent.AutoReply == "" {
		stanza.Error(&b.out, "message", a.To, el, "cancel", "service-unavailable")
		return
	}
	if !e.autoReplyDue(a.Entity, a.Contact, b.now) {
		return // answered lately: two auto-responders must not talk for ever
	}
	stanza.Message(&b.out, e.entityJID(a.Entity)+"/"+e.resource, el.From, e.NewID(), typ, ent.AutoReply)
}

// autoReplyEvery is how often one contact gets an entity's auto_reply at
// most, like a vacation responder's.
const autoReplyEvery = time.Hour

// maxAutoReplied bounds how many (entity, contact) pairs autoReplyDue
// remembers; past it the memory starts over.
const maxAutoReplied = 100_000

// autoReplyDue reports whether contact may get entity's auto_reply now,
// and if so notes it; e.mu is held.
func (e *Engine) autoReplyDue(entity, contact string, now time.Time) bool {
	k := itemKey{entity, contact}
	if last, ok := e.autoReplied[k]; ok && now.Sub(last) < autoReplyEvery {
		return false
	}
	if len(e.autoReplied) >= maxAutoReplied {
		clear(e.autoReplied)
	}
	e.autoReplied[k] = now
	return true
}

// MessagesDropped returns how many messages from non-contacts were dropped.
func (e *Engine) MessagesDropped() int { return int(e.messagesDropped.Load()) }
