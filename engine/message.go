package engine

import (
	"context"
	"strings"

	"rostergate/xmpp/stanza"
)

// handleMessage gates a message. Messages to the domain itself go to the
// Handler (the admins' chat commands). A message to an entity reaches it
// only from a contact (a subscription either way: to, from or both), unless the entity
// accepts anyone's; others are dropped and counted, the gate applying to
// chat as to subscriptions. No bot is behind an entity yet: what gets
// through is answered with the entity's auto_reply, or service-unavailable
// (RFC 6121 §8.5.2.2.1: no available resource for the message). A message
// to a JID that is no entity gets service-unavailable (§8.5.1). Errors are
// never answered, nor headlines (§8.5.2.2.1: "silently ignore").
func (e *Engine) handleMessage(ctx context.Context, b *batch, x *in, h Handler) {
	el := x.el
	a, canReply, err := e.address(x)
	if err != nil {
		if el.Type != "error" && canReply {
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
	if !known && !l.UnknownOnline {
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
			e.messagesDropped++
			e.log.Debug("message from a non-contact dropped", "entity", e.entityJID(a.Entity), "from", el.From,
				"count", e.messagesDropped)
			return
		}
	}
	if el.Type == "groupchat" || ent.AutoReply == "" {
		stanza.Error(&b.out, "message", a.To, el, "cancel", "service-unavailable")
		return
	}
	typ := el.Type
	if typ == "" {
		typ = "normal"
	}
	stanza.Message(&b.out, e.entityJID(a.Entity)+"/"+e.resource, el.From, e.NewID(), typ, ent.AutoReply)
}

// MessagesDropped returns how many messages from non-contacts were dropped.
func (e *Engine) MessagesDropped() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.messagesDropped
}
