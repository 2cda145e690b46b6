package engine

import (
	"context"
	"errors"
	"fmt"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// PlaceStep is what a placement does to the entity's item for a user
// ([[entity]] place_in; see package placement).
type PlaceStep int

const (
	// PlaceRecord changes no item: only the placement and its audit event
	// are written (a state seen, a failure).
	PlaceRecord PlaceStep = iota
	// PlaceWritten records that the user's server wrote the user's item as
	// both (XEP-0356, privileged roster set): the entity's item becomes
	// both, with no subscription stanza (the server sends none either);
	// the user gets the entity's presence, and is probed for theirs.
	PlaceWritten
	// PlaceAsk is the fallback: the entity sends subscribe and pre-approves
	// the user (RFC 6121 §3.4), so that the user's own request, which a
	// client sends as it accepts, is accepted at once: the user answers
	// once, and both subscriptions are in place.
	PlaceAsk
	// PlaceErased records that the user's server deleted the user's item
	// (a privileged roster set of subscription remove): the entity's item
	// goes, with no stanza.
	PlaceErased
	// PlaceRetract takes the entity off as RFC 6121 §2.5.2 has it: unsubscribe
	// and unsubscribed where they change anything (see Remove).
	PlaceRetract
)

// PlaceOp is one placement step, committed in one batch: the item's new
// state, the placement (written, or deleted with DeletePlacement) and the
// audit event; then the stanzas are sent.
type PlaceOp struct {
	Entity, Contact string
	Step            PlaceStep
	Placement       store.Placement // written unless DeletePlacement
	DeletePlacement bool
	// Audit is the event recorded (Entity, Contact, At, From and To are
	// filled in); its Kind is normally "place" or "unplace".
	Audit roster.Event
}

// Item returns the entity's item for contact as the engine sees it (an
// item it does not hold has Sub "none").
func (e *Engine) Item(ctx context.Context, entity, contact string) (roster.Item, error) {
	e.lock()
	defer e.mu.Unlock()
	it, err := e.lookup(ctx, newBatch(), entity, contact)
	if err != nil {
		return it, fmt.Errorf("engine: %w", err)
	}
	return it, nil
}

// Placements returns the placements stored, by entity then contact.
func (e *Engine) Placements(ctx context.Context) ([]store.Placement, error) {
	ps, ok := e.store.(store.Placements)
	if !ok {
		return nil, errors.New("engine: the store keeps no placements")
	}
	out, err := ps.Placements(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return out, nil
}

// Place carries out one placement step: the new state, the placement and
// its audit event are committed together, then the stanzas are sent.
func (e *Engine) Place(ctx context.Context, op PlaceOp) error {
	e.lock()
	defer e.mu.Unlock()
	if !e.usableLocked() {
		return ErrNotConnected
	}
	b := newBatch()
	before, err := e.lookup(ctx, b, op.Entity, op.Contact)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	cur, err := machineItem(before)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	next := cur
	var send []subscription.Send
	switch op.Step {
	case PlaceRecord:
	case PlaceWritten:
		next = subscription.Item{State: subscription.Both}
		send = []subscription.Send{subscription.SendPresence}
	case PlaceAsk:
		r := subscription.Outbound(cur, subscription.Subscribe)
		send = r.Send
		r = subscription.Outbound(r.Item, subscription.Subscribed)
		next, send = r.Item, append(send, r.Send...)
	case PlaceErased:
		next = subscription.Item{State: subscription.None}
	case PlaceRetract:
		if cur.State.HasTo() || cur.State.PendingOut() {
			r := subscription.Outbound(next, subscription.Unsubscribe)
			next, send = r.Item, append(send, r.Send...)
		}
		if cur.State.HasFrom() || cur.State.PendingIn() || cur.Approved {
			r := subscription.Outbound(next, subscription.Unsubscribed)
			next, send = r.Item, append(send, r.Send...)
		}
	default:
		return fmt.Errorf("engine: unknown placement step %d", op.Step)
	}
	ev := op.Audit
	e.record(b, before, next, send, &ev, nil, nil)
	if op.Step == PlaceWritten {
		// The entity is subscribed to the user now: it learns the user's
		// presence (as at each connect, RFC 6121 §4.3.1).
		stanza.Presence(&b.out, e.entityJID(op.Entity), op.Contact, e.NewID(), "probe", "", "")
	}
	p := op.Placement
	p.Entity, p.Contact = op.Entity, op.Contact
	p.Updated = b.now
	b.placements = append(b.placements, store.PlacementChange{Placement: p, Delete: op.DeletePlacement})
	e.log.Info("placement", "entity", e.entityJID(op.Entity), "contact", op.Contact, "kind", ev.Kind,
		"via", ev.Interface, "state", p.State, "from", ev.From, "to", ev.To, "detail", ev.Detail)
	err = e.commit(ctx, b)
	if err != nil && !errors.Is(err, errReplyKept) {
		e.recount(ctx)
	}
	return err
}

// Audit records ev alone in the audit log (At is filled in), committed
// before Audit returns: what the server granted a stream, say.
func (e *Engine) Audit(ctx context.Context, ev roster.Event) error {
	e.lock()
	defer e.mu.Unlock()
	if !e.usableLocked() {
		return ErrNotConnected
	}
	b := newBatch()
	ev.At = b.now
	b.changes = append(b.changes, store.Change{Audit: &ev})
	return e.commit(ctx, b)
}
