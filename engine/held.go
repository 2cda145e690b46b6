package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// DecideHeld approves or rejects held requests by id, through the state
// machine: approving sends subscribed (and subscribe, if the rule asked to
// subscribe back) and the entity's presence; rejecting sends unsubscribed.
// Every admin is told.
func (e *Engine) DecideHeld(ctx context.Context, ids []int64, approve bool, actor roster.Actor) []roster.Outcome {
	out := make([]roster.Outcome, len(ids))
	e.lock()
	defer e.mu.Unlock()
	if !e.usableLocked() {
		for i, id := range ids {
			out[i] = roster.Outcome{ID: id, Err: ErrNotConnected}
		}
		return out
	}
	b := newBatch()
	seen := map[int64]bool{}
	var decided []int
	for i, id := range ids {
		out[i].ID = id
		if seen[id] {
			out[i].Err = fmt.Errorf("request #%d is named twice: %w", id, store.ErrNotFound)
			continue
		}
		seen[id] = true
		req, err := e.store.Request(ctx, id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				// Say who decided it, and when, if it was.
				if ev, derr := e.store.RequestDecision(ctx, id); derr == nil {
					err = fmt.Errorf("%w: %w", &roster.DecidedError{ID: id, Action: ev.Action, Actor: ev.Actor, Via: ev.Interface, At: ev.At}, err)
				}
			}
			out[i].Err = err
			continue
		}
		before, err := e.lookup(ctx, b, req.Entity, req.Contact)
		if err != nil {
			out[i].Err = err
			continue
		}
		cur, err := machineItem(before)
		if err != nil {
			out[i].Err = err
			continue
		}
		if !cur.State.PendingIn() {
			// The contact withdrew the request meanwhile: clear the stale entry.
			b.changes = append(b.changes, store.Change{Item: roster.Item{Entity: req.Entity, Contact: req.Contact}, Dequeue: true})
			e.countHeld(req.Contact, -1)
			out[i].Err = fmt.Errorf("request #%d was withdrawn: %w", id, store.ErrNotFound)
			continue
		}
		ev := &roster.Event{Rule: req.Rule, Actor: actor.JID, Interface: actor.Via, Detail: "request #" + strconv.FormatInt(id, 10)}
		var r subscription.Result
		if approve {
			ev.Kind, ev.Action = "approve", string(policy.Accept)
			r = accept(cur, req.SubscribeBack)
		} else {
			ev.Kind, ev.Action = "reject", string(policy.Reject)
			r = subscription.Reject(cur)
		}
		e.record(b, before, r.Item, r.Send, ev, nil, nil)
		e.log.Info("held request decided", "id", id, "entity", e.entityJID(req.Entity), "contact", req.Contact,
			"action", ev.Action, "actor", actor.JID, "interface", actor.Via)
		out[i].Request = req
		decided = append(decided, i)
	}
	for _, i := range decided {
		r := out[i].Request
		e.tellAdmins(b, DecidedNotice(r, e.entityJID(r.Entity), approve, actor), actor.JID)
	}
	if err := e.commit(ctx, b); err != nil && !errors.Is(err, errReplyKept) {
		for _, i := range decided {
			out[i].Err = err
		}
		e.recount(ctx)
	} else if len(decided) > 0 {
		e.statsMu.Lock()
		e.heldDecided[heldKey{approve, actor.Via}] += uint64(len(decided))
		e.statsMu.Unlock()
	}
	return out
}

// tellAdmins adds a chat message from the domain to every admin but the
// one who acted (who gets the command's own answer).
func (e *Engine) tellAdmins(b *batch, body, except string) {
	for _, a := range e.live.Load().adminList() {
		if a != except {
			stanza.Message(&b.out, e.domain, a, e.NewID(), "chat", body)
		}
	}
}

// countPending counts the held requests from the store, for the caps; e.mu
// is held.
func (e *Engine) countPending(ctx context.Context) error {
	reqs, err := e.store.Requests(ctx)
	if err != nil {
		return err
	}
	e.pendingTotal = len(reqs)
	e.heldNow.Store(int64(e.pendingTotal))
	clear(e.pendingDomain)
	for _, r := range reqs {
		e.pendingDomain[domainOf(r.Contact)]++
	}
	return nil
}

// countHeld adds delta to the counts of held requests; e.mu is held.
func (e *Engine) countHeld(contact string, delta int) {
	e.pendingTotal += delta
	e.heldNow.Store(int64(e.pendingTotal))
	d := domainOf(contact)
	if n := e.pendingDomain[d] + delta; n > 0 {
		e.pendingDomain[d] = n
	} else {
		delete(e.pendingDomain, d)
	}
}

// recount counts the held requests again after a failed commit, whose
// changes to the counts did not happen; e.mu is held.
func (e *Engine) recount(ctx context.Context) {
	if err := e.countPending(ctx); err != nil {
		e.log.Error("counting held requests", "err", err)
	}
}

// domainOf returns the domain of a bare JID.
func domainOf(bare string) string {
	if i := strings.LastIndexByte(bare, '@'); i >= 0 {
		return bare[i+1:]
	}
	return bare
}

// overRate reports which rate limit, if any, the contact's request exceeds.
func (e *Engine) overRate(l *live, contact string, now time.Time) string {
	if !l.contacts.Allow(contact, now) {
		return "contact_rate"
	}
	if !l.domains.Allow(domainOf(contact), now) {
		return "domain_rate"
	}
	return ""
}

// overPendingCap reports which cap on held requests one more from contact
// would exceed; e.mu is held.
func (e *Engine) overPendingCap(l *live, contact string) string {
	if l.Limits.MaxPending > 0 && e.pendingTotal >= l.Limits.MaxPending {
		return "max_pending"
	}
	if l.Limits.MaxPendingPerDomain > 0 && e.pendingDomain[domainOf(contact)] >= l.Limits.MaxPendingPerDomain {
		return "max_pending_per_domain"
	}
	return ""
}

// Held returns how many requests are held, as counted for the caps.
func (e *Engine) Held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pendingTotal
}

// LimitHits returns how many requests went over each limit since start.
func (e *Engine) LimitHits() map[string]int {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	return maps.Clone(e.limitHits)
}

// Expire rejects the held requests older than review_ttl at now, if the
// settings in force give one.
func (e *Engine) Expire(ctx context.Context, now time.Time) {
	ttl := e.live.Load().ReviewTTL
	if ttl <= 0 {
		return
	}
	reqs, err := e.store.Requests(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("reading held requests", "err", err)
		}
		return
	}
	var ids []int64
	for _, r := range reqs {
		if now.Sub(r.Created) >= ttl {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	for _, o := range e.DecideHeld(ctx, ids, false, roster.Actor{JID: "rostergate", Via: roster.ViaTTL}) {
		if o.Err != nil && !errors.Is(o.Err, store.ErrNotFound) {
			e.log.Error("expiring a held request", "id", o.ID, "err", o.Err)
		} else if o.Err == nil {
			e.log.Info("held request expired", "id", o.ID, "entity", e.entityJID(o.Request.Entity), "contact", o.Request.Contact, "ttl", ttl)
		}
	}
}

// accept is the contact's request granted: subscribed and the entity's
// presence (RFC 6121 §3.1.5) and, when the rule or the held request says
// so, the entity asking back for the contact's presence (§3.1.1), unless it
// has it or has asked for it already.
func accept(cur subscription.Item, subscribeBack bool) subscription.Result {
	r := subscription.Accept(cur)
	if subscribeBack && !r.Item.State.HasTo() && !r.Item.State.PendingOut() {
		back := subscription.Outbound(r.Item, subscription.Subscribe)
		r.Item, r.Send = back.Item, append(r.Send, back.Send...)
	}
	return r
}
