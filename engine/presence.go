package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"rostergate/directory"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
	"time"

	"mellium.im/xmpp/jid"
)

// address returns x's parsed addressing (see stanza.Element.Address),
// parsed once.
func (e *Engine) address(x *in) (stanza.Address, bool, error) {
	if !x.parsed {
		x.addr, x.canReply, x.addrErr = x.el.Address(e.domain)
		x.parsed = true
	}
	return x.addr, x.canReply, x.addrErr
}

// lookup returns the item as this batch sees it: as the batch changed it,
// or the batch in flight did, or as stored.
func (e *Engine) lookup(ctx context.Context, b *batch, entity, contact string) (roster.Item, error) {
	k := itemKey{entity, contact}
	if it, ok := b.view(k); ok {
		return it, nil
	}
	if f := e.inflight; f != nil {
		if it, ok := f.b.view(k); ok {
			return it, nil
		}
	}
	if it, ok := b.fetched[k]; ok {
		return it, nil
	}
	it, err := e.store.Get(ctx, entity, contact)
	if errors.Is(err, store.ErrNotFound) {
		return roster.Item{Entity: entity, Contact: contact, Sub: "none"}, nil
	}
	return it, err
}

func machineItem(it roster.Item) (subscription.Item, error) {
	s, err := subscription.Compose(it.Sub, it.PendingOut, it.PendingIn)
	return subscription.Item{State: s, Approved: it.Approved}, err
}

// reasonAdmin is the reason an admin may subscribe to the component domain.
const reasonAdmin = "admin of the component"

// decide runs a new request through the limits and the policy, and logs the
// decision once.
//
// A request that carries an invite's token (preauth, XEP-0379) is
// accepted with the invite when it may be used (see useInvite): after the
// rate limits (which bound the store reads that tokens cost), before the
// policy and the pending caps.
func (e *Engine) decide(ctx context.Context, b *batch, a stanza.Address, preauth string) policy.Decision {
	l := e.live.Load()
	_, known := l.entities[a.Entity]
	d := policy.Decision{}
	groups := "" // the group checks, for the log
	switch {
	case a.Entity == "" && !known && l.isAdmin(a.Contact):
		// The component itself: its admins may see it online (whatever the
		// policy says of JIDs that are no entity).
		d = policy.Decision{Action: policy.Accept, Reason: reasonAdmin}
	case !known && l.policy.UnknownEntity() == policy.Drop:
		// A JID that does not exist (RFC 6121 §8.5.1): ignored before any
		// limit could answer it.
		d = l.policy.Decide(policy.Request{Contact: a.Contact, Entity: a.Entity})
	default:
		if over := e.overRate(l, a.Contact, b.now); over != "" {
			d = e.overLimit(l, a, over)
			break
		}
		if preauth != "" && known {
			var invited bool
			if d, invited = e.useInvite(ctx, b, l, a, preauth); invited {
				break
			}
		}
		req := policy.Request{Contact: a.Contact, Entity: a.Entity, KnownEntity: known}
		rs := e.groupsOf(l, b.groups, req)
		req.Groups = memberships(rs)
		var checks []policy.GroupCheck
		d, checks = l.policy.Trace(req)
		if len(checks) > 0 {
			groups = groupLog(checks, rs)
			e.logUnavailable(a, checks, rs)
		}
		if d.Action == policy.Review {
			if over := e.overPendingCap(l, a.Contact); over != "" {
				d = e.overLimit(l, a, over)
			}
		}
	}
	e.countDecision(d.Action, d.Reason)
	args := []any{"entity", e.entityJID(a.Entity), "contact", a.Contact,
		"action", string(d.Action), "rule", d.Reason, "subscribe_back", d.SubscribeBack}
	if groups != "" {
		args = append(args, "groups", groups)
	}
	e.log.Info("decision", args...)
	return d
}

// logUnavailable logs each group rule a decision skipped because the
// directory could not say (the directory logs and counts its own failures
// once per outage; this says which request it cost).
func (e *Engine) logUnavailable(a stanza.Address, checks []policy.GroupCheck, rs map[string]directory.Result) {
	for _, c := range checks {
		if r := rs[c.Group]; r.Err != nil {
			e.log.Warn("group rule does not match: directory unavailable", "rule", c.Rule, "group", c.Group,
				"entity", e.entityJID(a.Entity), "contact", a.Contact, "err", r.Err)
		}
	}
}

// overLimit is the decision for a request over a limit: the configured
// limit action, counted.
func (e *Engine) overLimit(l *live, a stanza.Address, limit string) policy.Decision {
	e.statsMu.Lock()
	e.limitHits[limit]++
	hits := e.limitHits[limit]
	e.statsMu.Unlock()
	e.log.Warn("request over a limit", "limit", limit, "entity", e.entityJID(a.Entity), "contact", a.Contact,
		"action", string(l.Limits.Action), "count", hits)
	return policy.Decision{Action: l.Limits.Action, Reason: "limit " + limit}
}

func (e *Engine) handlePresence(ctx context.Context, b *batch, x *in) {
	el := x.el
	kind, ok := subscription.ParseKind(el.Type)
	if !ok {
		switch el.Type {
		case "", "unavailable":
			// Contacts' presence needs no answer; the bot behind an
			// entity learns of it.
			e.contactPresence(ctx, b, x)
		case "error":
			// Never answered, so that no loop can start (RFC 6120 §8.3.1).
			e.log.Debug("presence error received", "from", el.From, "to", el.To)
		default:
			e.unknownType(b, x)
		}
		return
	}
	a, canReply, err := e.address(x)
	if err != nil {
		e.log.Warn("presence dropped", "type", el.Type, "reason", err)
		if canReply {
			// from is usable: tell the sender what is wrong (RFC 6120 §8.3.3.8).
			stanza.PresenceError(&b.out, e.domain, el, "modify", "jid-malformed")
		}
		return
	}
	var pr *probe
	switch kind {
	case subscription.Probe:
		// Only a probe of a full JID is about one resource (RFC 6121
		// §4.3.2); its unsubscribed or unavailable reply mirrors its id
		// (§4.3.2.1).
		pr = &probe{resource: a.Resource, id: el.ID}
	case subscription.Subscribed, subscription.Unsubscribe, subscription.Unsubscribed:
		// RFC 6121 §8.5.3.2.2: "If no available resource or connected
		// resource exactly matches the full JID, [...] For a presence
		// stanza of type "subscribed", "unsubscribe", or "unsubscribed",
		// the server MUST ignore the stanza." A subscribe to a full JID is
		// handled as sent to the bare JID.
		if a.Resource != "" && (a.Resource != e.resource || !e.available(e.live.Load(), a.Entity)) {
			e.log.Debug("ignored: addressed to a resource the entity does not have (RFC 6121 §8.5.3.2.2)",
				"type", el.Type, "to", a.To, "from", el.From)
			return
		}
	}
	before, err := e.lookup(ctx, b, a.Entity, a.Contact)
	if err != nil {
		e.log.Error("reading roster item", "entity", a.Entity, "contact", a.Contact, "err", err)
		return
	}
	cur, err := machineItem(before)
	if err != nil {
		e.log.Error("corrupt roster item", "entity", a.Entity, "contact", a.Contact, "err", err)
		return
	}
	r := subscription.Inbound(cur, kind)
	if kind == subscription.Subscribe && !r.Decide && x.el.Preauth != "" && cur.State.PendingIn() && e.inviteHeld(ctx, b, a, before, cur, x.el.Preauth) {
		return
	}
	ev := &roster.Event{Kind: kind.String(), Actor: a.Contact, Interface: "stream", Detail: r.Note}
	if r.Decide {
		d := e.decide(ctx, b, a, x.el.Preauth)
		ev.Action, ev.Rule = string(d.Action), d.Reason
		if d.Message != "" && d.Action != policy.Drop {
			// The rule's message follows the stanzas the decision sends.
			defer stanza.Message(&b.out, e.entityJID(a.Entity), a.Contact, e.NewID(), "chat", d.Message)
		}
		switch d.Action {
		case policy.Accept:
			acc := accept(r.Item, d.SubscribeBack)
			r.Item, r.Send = acc.Item, acc.Send
		case policy.Reject:
			r = subscription.Reject(r.Item)
		case policy.Review:
			e.record(b, before, r.Item, nil, ev, &roster.Request{
				Entity: a.Entity, Contact: a.Contact, Rule: d.Reason, SubscribeBack: d.SubscribeBack, Created: b.now,
			}, nil)
			return
		default: // drop: nothing stored, nothing sent
			return
		}
	} else if r.Note == "pre-approved" {
		ev.Action = "accept"
		ev.Rule = "pre-approved"
		e.countDecision(policy.Accept, "pre-approved")
	}
	if !r.Changed(cur) && kind == subscription.Probe {
		ev = nil // probes are answered, not audited
	} else if !r.Changed(cur) && ev.Action == "" {
		ev = nil
		if r.Note != "" {
			e.log.Debug("no change", "kind", kind.String(), "entity", e.entityJID(a.Entity), "contact", a.Contact, "note", r.Note)
		}
	} else if ev.Action == "" {
		ev.Action = "state"
	}
	e.record(b, before, r.Item, r.Send, ev, nil, pr)
}

// unknownType answers a presence whose type RFC 6121 does not define: "If
// the value of the 'type' attribute is not one of the foregoing values, the
// recipient or an intermediate router SHOULD return a stanza error of
// <bad-request/>" (§4.7.1). Nothing changes.
func (e *Engine) unknownType(b *batch, x *in) {
	el := x.el
	a, canReply, err := e.address(x)
	if !canReply {
		e.log.Warn("presence of an unknown type dropped", "type", el.Type, "reason", err)
		return
	}
	from := e.domain
	if err == nil {
		from = a.To
	}
	e.log.Info("presence of an unknown type refused", "type", el.Type, "from", el.From, "to", el.To)
	stanza.PresenceError(&b.out, from, el, "modify", "bad-request")
}

// probe is the probe a presence answers.
type probe struct {
	resource string // the resource probed, if the probe was sent to a full JID
	id       string // the probe's id, mirrored by an unsubscribed or unavailable reply
}

// available reports whether entity has an available resource: rostergate
// is not going offline, and it is a configured entity or the component
// domain, or unknown_entity makes every JID at the domain available.
func (e *Engine) available(l *live, entity string) bool {
	if e.offline.Load() {
		return false
	}
	_, known := l.entities[entity]
	// The component domain is online while rostergate is: only its admins
	// can subscribe to it when it is no [[entity]].
	return known || l.UnknownOnline || entity == ""
}

// record adds the new state of an item to the batch, with its audit event
// and the stanzas that report it. before is the item as stored; pr is the
// probe answered, if any.
func (e *Engine) record(b *batch, before roster.Item, after subscription.Item, send []subscription.Send, ev *roster.Event, queue *roster.Request, pr *probe) {
	k := itemKey{before.Entity, before.Contact}
	it := before
	it.Sub = after.State.Sub()
	it.PendingOut = after.State.PendingOut()
	it.PendingIn = after.State.PendingIn()
	it.Approved = after.Approved
	switch {
	case !it.PendingIn:
		it.PendingSince = time.Time{}
	case !before.PendingIn:
		it.PendingSince = b.now
	}
	it.Updated = b.now
	beforeState, _ := subscription.Compose(before.Sub, before.PendingOut, before.PendingIn)
	changed := it.Sub != before.Sub || it.PendingOut != before.PendingOut || it.PendingIn != before.PendingIn || it.Approved != before.Approved
	if changed || ev != nil || queue != nil {
		// A stored item always has its Updated time (the stores set it):
		// a zero one is an item read as absent, which the store may insert
		// without looking for it.
		ch := store.Change{Item: it, Queue: queue, Audit: ev, New: before.Updated.IsZero()}
		ch.Delete = after.State == subscription.None && !after.Approved
		ch.Dequeue = before.PendingIn && !it.PendingIn
		if ev != nil {
			ev.At, ev.Entity, ev.Contact = b.now, it.Entity, it.Contact
			ev.From, ev.To = beforeState.String(), after.State.String()
		}
		if !changed && !ch.Delete {
			// Only an audit row or a queue entry: keep the stored item as it is.
			ch.Item = before
		}
		b.changes = append(b.changes, ch)
		if queue != nil {
			b.queued = append(b.queued, queue)
			e.countHeld(it.Contact, 1)
		}
		if ch.Dequeue {
			e.countHeld(it.Contact, -1)
		}
		if ch.Delete {
			delete(b.items, k)
			b.gone[k] = true
		} else {
			b.items[k] = it
			delete(b.gone, k)
		}
		e.itemEvents(b, it, changed, ev, queue, ch.Dequeue)
		if changed {
			e.forgetPresence(it)
		}
		if changed {
			e.log.Debug("state", "entity", e.entityJID(it.Entity), "contact", it.Contact, "from", beforeState.String(), "to", after.State.String())
		}
	}
	start := b.out.Len()
	e.encode(b, it.Entity, it.Contact, send, pr)
	if changed || ev != nil {
		b.durable.Write(b.out.Bytes()[start:])
	}
}

// encode appends the stanzas the machine asked for, each with a fresh id
// but for a probe's unsubscribed reply, which mirrors the probe's
// (RFC 6121 §4.3.2.1).
func (e *Engine) encode(b *batch, entity, contact string, send []subscription.Send, pr *probe) {
	from := e.entityJID(entity)
	for _, s := range send {
		switch {
		case s == subscription.SendPresence:
			e.currentPresence(&b.out, entity, contact, pr)
		case s == subscription.SendUnavailable:
			// "from each of the contact's available resources" (RFC 6121
			// §3.2.2, §3.3.3): none while the entity has none.
			if e.available(e.live.Load(), entity) {
				stanza.Presence(&b.out, from+"/"+e.resource, contact, e.NewID(), "unavailable", "", "")
			}
		case s == subscription.SendUnsubscribed && pr != nil:
			stanza.Presence(&b.out, from, contact, mirror(pr.id, e), "unsubscribed", "", "")
		case s == subscription.SendSubscribe:
			e.subscribe(&b.out, entity, contact)
		default:
			stanza.Presence(&b.out, from, contact, e.NewID(), s.String(), "", "")
		}
	}
}

// subscribe appends the entity's subscription request to contact, with its
// nickname (XEP-0172 §4.1).
func (e *Engine) subscribe(b *bytes.Buffer, entity, contact string) {
	nick := ""
	if ent, ok := e.live.Load().entities[entity]; ok && ent.Nick != "" {
		var n bytes.Buffer
		n.WriteString("<nick xmlns='" + stanza.NSNick + "'>")
		stanza.Esc(&n, ent.Nick)
		n.WriteString("</nick>")
		nick = n.String()
	}
	stanza.PresenceWith(b, e.entityJID(entity), contact, e.NewID(), "subscribe", "", "", nick)
}

// mirror returns a probe's id for its reply, or a fresh one if it had none.
func mirror(id string, e *Engine) string {
	if id != "" {
		return id
	}
	return e.NewID()
}

// Act makes the entity send subscription presences of the kinds given
// (subscribe, subscribed, unsubscribe or unsubscribed), in order, to
// contact, through the same state machine as inbound stanzas: the new state
// is committed, then the stanzas are sent. Removing a contact is
// unsubscribe then unsubscribed (RFC 6121 §2.5.2). The actor is recorded in
// the audit log.
func (e *Engine) Act(ctx context.Context, actor roster.Actor, entity, contact string, kinds ...subscription.Kind) error {
	if len(kinds) == 0 {
		return errors.New("engine: no act named")
	}
	for _, k := range kinds {
		if k == subscription.Probe || k == 0 {
			return fmt.Errorf("engine: %s is not an outbound act", k)
		}
	}
	return e.act(ctx, actor, entity, contact, func(subscription.Item) ([]subscription.Kind, error) { return kinds, nil })
}

// Remove takes contact off the entity's roster as RFC 6121 §2.5.2 has a
// user's server do: "If the user has a presence subscription to the
// contact, then the user's server MUST send a presence stanza of type
// "unsubscribe" [...] If the contact has a presence subscription to the
// user, then the user's server MUST send a presence stanza of type
// "unsubscribed"". A request pending either way is withdrawn or declined
// the same way, and a pre-approval cancelled. An entity that holds nothing
// for contact gets an error matching store.ErrNotFound, and nothing is sent.
func (e *Engine) Remove(ctx context.Context, actor roster.Actor, entity, contact string) error {
	return e.act(ctx, actor, entity, contact, func(cur subscription.Item) ([]subscription.Kind, error) {
		var kinds []subscription.Kind
		if cur.State.HasTo() || cur.State.PendingOut() {
			kinds = append(kinds, subscription.Unsubscribe)
		}
		if cur.State.HasFrom() || cur.State.PendingIn() || cur.Approved {
			kinds = append(kinds, subscription.Unsubscribed)
		}
		if len(kinds) == 0 {
			return nil, fmt.Errorf("engine: %s is not on the roster of %s: %w", contact, e.entityJID(entity), store.ErrNotFound)
		}
		return kinds, nil
	})
}

// act sends the kinds choose picks from the item's state before the first,
// each through the state machine, and commits them in one batch.
func (e *Engine) act(ctx context.Context, actor roster.Actor, entity, contact string, choose func(subscription.Item) ([]subscription.Kind, error)) error {
	cj, err := jid.Parse(contact)
	if err != nil {
		return fmt.Errorf("engine: contact %q: %w", contact, err)
	}
	contact = cj.Bare().String()
	if entity != "" {
		ej, err := jid.New(entity, e.domain, "")
		if err != nil {
			return fmt.Errorf("engine: entity %q is not a valid localpart: %w", entity, err)
		}
		entity = ej.Localpart()
	}
	e.lock()
	defer e.mu.Unlock()
	if !e.usableLocked() {
		return ErrNotConnected
	}
	b := newBatch()
	first, err := e.lookup(ctx, b, entity, contact)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	firstItem, err := machineItem(first)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	kinds, err := choose(firstItem)
	if err != nil {
		return err
	}
	for _, k := range kinds {
		before, err := e.lookup(ctx, b, entity, contact)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		cur, err := machineItem(before)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		r := subscription.Outbound(cur, k)
		ev := &roster.Event{Kind: "send " + k.String(), Action: "state", Actor: actor.JID, Interface: actor.Via, Detail: r.Note}
		e.record(b, before, r.Item, r.Send, ev, nil, nil)
		e.log.Info("outbound", "entity", e.entityJID(entity), "contact", contact, "kind", k.String(),
			"from", cur.State.String(), "to", r.Item.State.String(), "actor", actor.JID, "interface", actor.Via)
	}
	err = e.commit(ctx, b)
	if err != nil && !errors.Is(err, errReplyKept) {
		e.recount(ctx)
	}
	return err
}
