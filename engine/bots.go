package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// The types of the events an entity's log holds, for the bot behind it.
const (
	EventMessage      = "message"      // a message to the entity
	EventPresence     = "presence"     // a contact's presence changed
	EventSubscription = "subscription" // a contact's subscription state changed
	EventRequest      = "request"      // a request was held, approved or rejected
)

// MessageEvent is the data of a message event.
type MessageEvent struct {
	From   string `json:"from"`
	Type   string `json:"type"`
	Body   string `json:"body"`
	Thread string `json:"thread"`
	ID     string `json:"id"`
}

// PresenceEvent is the data of a presence event.
type PresenceEvent struct {
	From   string `json:"from"`
	Type   string `json:"type"` // available or unavailable
	Show   string `json:"show"`
	Status string `json:"status"`
}

// SubscriptionEvent is the data of a subscription event: the item's new
// state, and what changed it.
type SubscriptionEvent struct {
	JID          string `json:"jid"`
	Subscription string `json:"subscription"`
	PendingIn    bool   `json:"pending_in"`
	PendingOut   bool   `json:"pending_out"`
	Change       string `json:"change"` // e.g. "subscribe received", "send unsubscribe", "approve"
	By           string `json:"by"`     // who: the contact, an admin, a token
}

// RequestEvent is the data of a request event.
type RequestEvent struct {
	JID   string `json:"jid"`
	State string `json:"state"` // held, approved, rejected or withdrawn
	Rule  string `json:"rule"`
}

// ContactPresence is one available resource of a contact, as its presence
// last said.
type ContactPresence struct {
	Resource string `json:"resource"`
	Show     string `json:"show"`
	Status   string `json:"status"`
}

// maxTracked bounds the contacts' resources whose presence the engine keeps
// for bots; past it, new resources are not kept (their events still are).
const maxTracked = 200_000

// bots is what the engine knows of the bots behind entities.
type bots struct {
	used     map[string]bool                        // entities a token was used for
	attached map[string]time.Time                   // when BotAttached last ran for each, until a refresh has read it
	readAt   time.Time                              // when the refresh in force read the store
	presence map[string]store.Presence              // the presence bots set
	contacts map[itemKey]map[string]ContactPresence // contacts' available resources, for bot entities
	tracked  int                                    // resources in contacts
}

// loadBots reads what the store keeps of bots; at New.
func (e *Engine) loadBots(ctx context.Context) error {
	used, err := e.store.BotEntities(ctx)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	ps, err := e.store.Presences(ctx)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if ps == nil {
		ps = map[string]store.Presence{}
	}
	e.bots = bots{used: map[string]bool{}, presence: ps, contacts: map[itemKey]map[string]ContactPresence{}}
	e.signal = make(chan struct{})
	for _, u := range used {
		e.bots.used[u] = true
	}
	return nil
}

// hasBot reports whether a bot is behind entity: it has a webhook, or a
// token has been used for it and the API serves; e.mu is held.
func (e *Engine) hasBot(l *live, entity string) bool {
	ent, ok := l.entities[entity]
	return ok && (ent.Webhook || e.api && e.bots.used[entity])
}

// SetBotEntities puts in force the entities whose token is in use (read
// again from the store while running: a token revoked elsewhere takes its
// bot away).
//
// read is when the store was read: an entity attached since (BotAttached,
// its use committed after that read began) is kept.
func (e *Engine) SetBotEntities(entities []string, read time.Time) {
	used := make(map[string]bool, len(entities))
	for _, ent := range entities {
		used[ent] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if read.Before(e.bots.readAt) {
		return // a refresh that read later (say, at a revocation) is in force
	}
	e.bots.readAt = read
	for ent, at := range e.bots.attached {
		if at.After(read) {
			used[ent] = true
		} else {
			delete(e.bots.attached, ent)
		}
	}
	e.bots.used = used
}

// BotAttached records that a bot uses entity (a token was used for it):
// from now on its messages and changes go to its event log, and messages
// to it are no longer answered with auto_reply.
func (e *Engine) BotAttached(entity string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bots.used[entity] = true
	if e.bots.attached == nil {
		e.bots.attached = map[string]time.Time{}
	}
	e.bots.attached[entity] = time.Now()
}

// EventsSignal returns a channel closed when events are next committed.
func (e *Engine) EventsSignal() <-chan struct{} {
	e.sigMu.Lock()
	defer e.sigMu.Unlock()
	return e.signal
}

// notifyEvents wakes whoever waits for events.
func (e *Engine) notifyEvents() {
	e.sigMu.Lock()
	defer e.sigMu.Unlock()
	close(e.signal)
	e.signal = make(chan struct{})
}

// botEvent adds an event for entity's bot to the batch, if a bot is behind
// entity; e.mu is held.
func (e *Engine) botEvent(b *batch, entity, typ string, data jsonEvent) {
	if !e.hasBot(e.live.Load(), entity) {
		return
	}
	var buf [256]byte // most events fit: one allocation, the string's
	b.events = append(b.events, store.BotEvent{Entity: entity, At: b.now, Type: typ, Data: string(data.appendJSON(buf[:0]))})
}

// itemEvents adds the events a change of an item makes for its entity's
// bot: its new state, and what became of a held request.
func (e *Engine) itemEvents(b *batch, after roster.Item, changed bool, ev *roster.Event, queue *roster.Request, dequeue bool) {
	if !e.hasBot(e.live.Load(), after.Entity) {
		return
	}
	if changed {
		se := SubscriptionEvent{JID: after.Contact, Subscription: after.Sub, PendingIn: after.PendingIn, PendingOut: after.PendingOut}
		if ev != nil {
			se.Change, se.By = ev.Kind, ev.Actor
			if ev.Interface == "stream" {
				se.Change += " received"
			}
		}
		e.botEvent(b, after.Entity, EventSubscription, se)
	}
	switch {
	case queue != nil:
		e.botEvent(b, after.Entity, EventRequest, RequestEvent{JID: after.Contact, State: "held", Rule: queue.Rule})
	case dequeue:
		st := "rejected"
		switch {
		case after.Sub == roster.SubFrom || after.Sub == roster.SubBoth:
			st = "approved"
		case ev != nil && ev.Kind == subscription.Unsubscribe.String() && ev.Interface == "stream":
			st = "withdrawn"
		}
		rule := ""
		if ev != nil {
			rule = ev.Rule
		}
		e.botEvent(b, after.Entity, EventRequest, RequestEvent{JID: after.Contact, State: st, Rule: rule})
	}
}

// contactPresence keeps a contact's presence for a bot entity the contact
// lets see it (to or both), and logs the change; e.mu is held.
func (e *Engine) contactPresence(ctx context.Context, b *batch, x *in) {
	el := x.el
	a, _, err := e.address(x)
	if err != nil || a.Entity == "" || !e.hasBot(e.live.Load(), a.Entity) {
		return
	}
	from, err := jid.Parse(el.From)
	if err != nil {
		return
	}
	it, err := e.lookup(ctx, b, a.Entity, a.Contact)
	if err != nil || (it.Sub != roster.SubTo && it.Sub != roster.SubBoth) {
		return // not a contact whose presence the entity asked for
	}
	k := itemKey{a.Entity, a.Contact}
	res := from.Resourcepart()
	rs := e.bots.contacts[k]
	old, had := rs[res]
	pe := PresenceEvent{From: el.From, Type: "available", Show: el.Show, Status: el.Status}
	if el.Type == "unavailable" {
		if !had && res != "" {
			return
		}
		pe.Type = "unavailable"
		if res == "" {
			// From the bare JID: every resource is gone.
			e.bots.tracked -= len(rs)
			delete(e.bots.contacts, k)
		} else {
			delete(rs, res)
			e.bots.tracked--
			if len(rs) == 0 {
				delete(e.bots.contacts, k)
			}
		}
	} else {
		now := ContactPresence{Resource: res, Show: el.Show, Status: el.Status}
		if had && old == now {
			return // the same again (say, answering a probe)
		}
		if !had {
			if e.bots.tracked >= maxTracked {
				e.log.Warn("too many contacts' resources to keep their presence", "max", maxTracked)
			} else {
				if rs == nil {
					rs = map[string]ContactPresence{}
					e.bots.contacts[k] = rs
				}
				e.bots.tracked++
				rs[res] = now
			}
		} else {
			rs[res] = now
		}
	}
	e.botEvent(b, a.Entity, EventPresence, pe)
}

// forgetPresence drops what is kept of a contact's presence once the
// entity no longer sees it; e.mu is held.
func (e *Engine) forgetPresence(it roster.Item) {
	if it.Sub == roster.SubTo || it.Sub == roster.SubBoth {
		return
	}
	k := itemKey{it.Entity, it.Contact}
	if rs, ok := e.bots.contacts[k]; ok {
		e.bots.tracked -= len(rs)
		delete(e.bots.contacts, k)
	}
}

// ContactPresences returns the available resources of entity's contacts
// whose presence it sees, by contact, each sorted by resource.
func (e *Engine) ContactPresences(entity string) map[string][]ContactPresence {
	e.lock() // what the batch in flight learnt is committed first
	defer e.mu.Unlock()
	out := map[string][]ContactPresence{}
	for k, rs := range e.bots.contacts {
		if k.entity != entity {
			continue
		}
		ps := slices.Collect(maps.Values(rs))
		slices.SortFunc(ps, func(a, b ContactPresence) int { return strings.Compare(a.Resource, b.Resource) })
		out[k.contact] = ps
	}
	return out
}

// entityPresence returns the entity's show and status: what its bot set,
// or else what is configured; e.mu is held.
func (e *Engine) entityPresence(l *live, entity string) (show, status string) {
	if p, ok := e.bots.presence[entity]; ok {
		return p.Show, p.Status
	}
	ent := l.entities[entity]
	return ent.Show, ent.Status
}

// ErrNotEntity is returned (wrapped) when a local part names no
// configured entity.
var ErrNotEntity = errors.New("engine: no such entity")

// ErrNotSubscriber is returned (wrapped) by SendMessage when the entity may
// message only its subscribers and the recipient is not one.
var ErrNotSubscriber = errors.New("engine: not a subscriber of the entity")

// OutMessage is a message an entity's bot sends.
type OutMessage struct {
	To     string // a bare or full JID
	Type   string // chat, normal or headline
	Body   string
	Thread string
	ID     string // "" for a fresh one
	// Reply says it answers a message that reached the entity (a webhook's
	// reply): send_to does not apply to it.
	Reply bool
}

// SendMessage sends a message from entity (its resource) to m.To, and
// returns its id. An entity may message only its subscribers (from or both)
// unless its send_to is anyone.
func (e *Engine) SendMessage(ctx context.Context, entity string, m OutMessage) (string, error) {
	to, err := jid.Parse(m.To)
	if err != nil {
		return "", fmt.Errorf("engine: to %q: %w", m.To, err)
	}
	l := e.live.Load()
	ent, ok := l.entities[entity]
	if !ok {
		return "", fmt.Errorf("engine: %q: %w", entity, ErrNotEntity)
	}
	if m.ID == "" {
		m.ID = e.NewID()
	}
	var buf bytes.Buffer
	stanza.MessageThread(&buf, e.entityJID(entity)+"/"+e.resource, to.String(), m.ID, m.Type, m.Body, m.Thread)

	e.lock()
	defer e.mu.Unlock()
	if ent.SendTo != SendAnyone && !m.Reply {
		b := newBatch()
		it, err := e.lookup(ctx, b, entity, to.Bare().String())
		if err != nil {
			return "", fmt.Errorf("engine: %w", err)
		}
		if it.Sub != roster.SubFrom && it.Sub != roster.SubBoth {
			return "", fmt.Errorf("engine: %s: %w", to.Bare(), ErrNotSubscriber)
		}
	}
	if !e.usableLocked() {
		return "", ErrNotConnected
	}
	if err := e.w.Write(buf.Bytes()); err != nil {
		return "", fmt.Errorf("engine: %w", err)
	}
	return m.ID, nil
}

// SetPresence stores the presence entity's bot sets (nil: back to the
// configured show and status), then sends it to every subscriber of the
// entity.
func (e *Engine) SetPresence(ctx context.Context, entity string, p *store.Presence) error {
	if _, ok := e.live.Load().entities[entity]; !ok {
		return fmt.Errorf("engine: %q: %w", entity, ErrNotEntity)
	}
	e.lock()
	if !e.usableLocked() {
		e.mu.Unlock()
		return ErrNotConnected
	}
	w := e.w
	if err := e.store.SetPresence(ctx, entity, p); err != nil {
		e.mu.Unlock()
		return fmt.Errorf("engine: %w", err)
	}
	if p == nil {
		delete(e.bots.presence, entity)
	} else {
		e.bots.presence[entity] = *p
	}
	e.mu.Unlock()
	var buf bytes.Buffer
	var after *roster.Key
	for {
		pc, err := e.broadcastPage(ctx, w, &buf, store.Filter{Entity: entity, Subs: []string{roster.SubFrom, roster.SubBoth}, After: after, Limit: broadcastPage}, false, &after)
		if err != nil {
			return fmt.Errorf("engine: presence: %w", err)
		}
		if pc.items < broadcastPage {
			return nil
		}
	}
}
