package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/admin"
	"rostergate/policy"
	"rostergate/storage"
	"rostergate/subscription"
)

// maxBatch bounds how many stanzas share one transaction.
const maxBatch = 2048

// Stanzas parsed and not yet handled are bounded in bytes, not only in
// count: at most maxBigQueued of those retaining more than bigStanza bytes
// (an IQ's payload, a message body, up to the stanza size limit each) wait
// at a time, so a flood of large stanzas holds a few MiB, not maxBatch times
// the limit. The parser waits for room; nothing else does.
const (
	bigStanza    = 2 << 10
	maxBigQueued = 64
)

// ErrNotConnected is returned by outbound actions while no stream is up: the
// stanza could not be sent, so the state is left as it was.
var ErrNotConnected = errors.New("component: not connected to the server")

// errReplyKept is a state committed whose reply could not be written: it
// waits in the outbox for the next stream.
var errReplyKept = errors.New("state stored, reply kept for the next connection")

type itemKey struct{ entity, contact string }

// batch collects the state changes of several stanzas and the stanzas that
// report them: the changes are committed in one transaction, and only then
// is out written to the stream.
type batch struct {
	changes []storage.Change
	items   map[itemKey]storage.Item // this batch's view of items it changed
	gone    map[itemKey]bool         // items this batch deleted
	out     bytes.Buffer             // every stanza to send, in order
	durable bytes.Buffer             // the stanzas that report state changes: kept in the outbox
	queued  []*storage.Request       // held requests, announced to the admins once committed (with their ids)
	fetched map[itemKey]storage.Item // items as stored, read ahead for the batch (Sub "none" when there is none)
	keys    []storage.Key            // the keys prefetch reads
	now     time.Time
}

func newBatch() *batch {
	return &batch{items: map[itemKey]storage.Item{}, gone: map[itemKey]bool{}, fetched: map[itemKey]storage.Item{}, now: time.Now()}
}

// maxKeptBuffer is the largest output buffer a batch keeps for reuse: a
// burst of big replies does not pin its memory.
const maxKeptBuffer = 4 << 20

// reset empties b for reuse, keeping its allocations (a stream's batches
// alternate between two: measured, reuse halves the garbage per decision).
func (b *batch) reset() {
	clear(b.changes)
	b.changes = b.changes[:0]
	clear(b.items)
	clear(b.gone)
	clear(b.fetched)
	clear(b.queued)
	b.queued = b.queued[:0]
	b.keys = b.keys[:0]
	for _, buf := range []*bytes.Buffer{&b.out, &b.durable} {
		if buf.Cap() > maxKeptBuffer {
			*buf = bytes.Buffer{}
		}
		buf.Reset()
	}
	b.now = time.Now()
}

// readLoop reads stanzas and handles them in batches, in three stages that
// overlap. One goroutine parses the stream.
// This one takes a stanza, then whatever else has already been parsed (up to
// maxBatch), reads the items they need in one query, and decides them all;
// meanwhile the batch before is committed and its replies written by a
// goroutine of its own (see launchLocked). A batch is launched only once the
// one before it has landed, so the commits and the writes keep the order of
// the stream. It never waits for input while a batch is open, so a partial
// stanza or an idle stream delays no reply.
func (c *Component) readLoop(ctx context.Context, d *xml.Decoder, pr *prefixReader) error {
	ch := make(chan *element, maxBatch)
	big := make(chan struct{}, maxBigQueued)
	errc := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(ch)
		for {
			el, err := nextLimited(d, pr)
			if err != nil {
				c.readEnded.Store(true)
				errc <- err
				return
			}
			if el.retained() > bigStanza {
				select {
				case big <- struct{}{}:
					el.big = true
				case <-done:
					return
				}
			}
			select {
			case ch <- el:
			case <-done:
				return
			}
		}
	}()
	defer func() {
		c.mu.Lock()
		_ = c.landLocked()
		c.mu.Unlock()
	}()
	els := make([]*element, 0, maxBatch)
	// The batch being decided and the one in flight: a batch is decided
	// only once the one before the one in flight has landed, so two suffice.
	var batches [2]*batch
	turn := 0
	for el := range ch {
		els = append(els[:0], el)
	drain:
		for len(els) < maxBatch {
			select {
			case el, ok := <-ch:
				if !ok {
					break drain
				}
				els = append(els, el)
			default:
				break drain
			}
		}
		c.mu.Lock()
		if c.closed {
			// Our </stream:stream> is out, so no reply could follow: the
			// stanzas are left unanswered and the state unchanged, rather
			// than committing a state whose report would never be sent.
			c.mu.Unlock()
			for _, el := range els {
				c.log.Warn("stanza after shutdown not handled", "name", el.Name, "type", el.Type, "from", el.From)
			}
			release(els, big)
			continue
		}
		b := batches[turn]
		if b == nil {
			b = newBatch()
			batches[turn] = b
		} else {
			b.reset()
		}
		turn ^= 1
		c.prefetch(ctx, b, els)
		for _, el := range els {
			c.handle(ctx, b, el)
		}
		release(els, big)
		err := c.landLocked()
		if err == nil {
			c.launchLocked(ctx, b)
		}
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
	c.mu.Lock()
	err := c.landLocked()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return <-errc
}

// release gives back the big-stanza tokens of els and forgets them, so
// that a burst of large stanzas is not kept for the stream's life.
func release(els []*element, big chan struct{}) {
	for _, el := range els {
		if el.big {
			<-big
		}
	}
	clear(els)
}

// flight is a batch being committed and sent while the next one is decided.
type flight struct {
	b    *batch
	done chan struct{} // closed when the batch has landed: committed and sent, or failed
	err  error
}

// launchLocked commits and sends b on a goroutine of its own; c.mu is held,
// and no batch is in flight.
func (c *Component) launchLocked(ctx context.Context, b *batch) {
	if len(b.changes) == 0 && b.out.Len() == 0 && len(b.queued) == 0 {
		return
	}
	f := &flight{b: b, done: make(chan struct{})}
	c.inflight = f
	w := c.w
	go func() {
		defer close(f.done)
		f.err = c.commit(ctx, b)
		if f.err != nil {
			// Closing may reset the connection and drop what the batch
			// before wrote but the kernel had not sent: the next stream
			// replays the whole outbox (duplicates are harmless).
			c.delivered = 0
			// Nothing more may be committed or sent on this stream: its
			// end makes readLoop return at once, and the session reconnect
			// (replaying what the outbox holds), even if no stanza follows.
			w.abort(f.err)
		}
	}()
}

// landLocked waits for the batch in flight, if any; c.mu is held. It returns
// the error of a batch that failed on this stream (the stream is then
// ended), whoever waited for it.
func (c *Component) landLocked() error {
	if f := c.inflight; f != nil {
		<-f.done
		c.inflight = nil
		if f.err != nil && c.flightErr == nil {
			c.flightErr = f.err
		}
	}
	return c.flightErr
}

// usable waits for the batch in flight to land and reports whether the
// stream can still carry what follows: up, not closing, no batch failed on it.
func (c *Component) usable() bool {
	c.lock()
	defer c.mu.Unlock()
	return c.usableLocked()
}

// usableLocked is usable without the wait; c.mu is held.
func (c *Component) usableLocked() bool {
	return c.w != nil && !c.closed && c.flightErr == nil
}

// lock takes the state lock once the batch in flight has landed: what runs
// under it sees every decision committed and sent, and what it commits comes
// after them.
func (c *Component) lock() {
	c.mu.Lock()
	_ = c.landLocked()
}

// prefetch reads the stored items the presences of a batch are about, in
// one query, for lookup. Items changed by the batch in flight are not read:
// lookup takes them from it.
func (c *Component) prefetch(ctx context.Context, b *batch, els []*element) {
	keys := b.keys[:0]
	defer func() { b.keys = keys[:0] }()
	for _, el := range els {
		if el.Name != "presence" {
			continue
		}
		if _, ok := subscription.ParseKind(el.Type); !ok {
			continue
		}
		a, _, err := c.address(el)
		if err != nil {
			continue
		}
		k := itemKey{a.entity, a.contact}
		if f := c.inflight; f != nil {
			if _, ok := f.b.view(k); ok {
				continue
			}
		}
		if _, dup := b.fetched[k]; dup {
			continue
		}
		b.fetched[k] = storage.Item{Entity: a.entity, Contact: a.contact, Sub: storage.SubNone}
		keys = append(keys, storage.Key{Entity: a.entity, Contact: a.contact})
	}
	if len(keys) == 0 {
		return
	}
	items, err := c.opts.Store.GetMany(ctx, keys)
	if err != nil {
		// lookup reads them one by one instead.
		c.log.Warn("reading roster items", "err", err, "items", len(keys))
		clear(b.fetched)
		return
	}
	for _, it := range items {
		b.fetched[itemKey{it.Entity, it.Contact}] = it
	}
}

// view returns the item as b left it, if b changed or deleted it.
func (b *batch) view(k itemKey) (storage.Item, bool) {
	if it, ok := b.items[k]; ok {
		return it, true
	}
	if b.gone[k] {
		return storage.Item{Entity: k.entity, Contact: k.contact, Sub: storage.SubNone}, true
	}
	return storage.Item{}, false
}

// commit writes the batch's changes, with the stanzas that report them kept
// in the outbox, then sends its stanzas. When the commit fails nothing is
// sent: no stanza reports a state that was not stored. When the send fails
// the replies wait in the outbox for the next stream.
func (c *Component) commit(ctx context.Context, b *batch) error {
	var id int64
	if len(b.changes) > 0 || b.durable.Len() > 0 {
		if c.w == nil || c.closed {
			return ErrNotConnected
		}
		var err error
		id, err = c.opts.Store.Commit(ctx, storage.Batch{Changes: b.changes, Send: b.durable.String(), Delivered: c.delivered})
		if err != nil {
			c.log.Error("storing state failed; replies withheld", "err", err, "changes", len(b.changes))
			return fmt.Errorf("component: commit: %w", err)
		}
		c.delivered = 0
	}
	for _, q := range b.queued {
		c.tellAdmins(b, admin.QueuedNotice(c.domain.String(), *q, c.entityJID(q.Entity)), "")
	}
	if b.out.Len() == 0 {
		return nil
	}
	if c.w == nil {
		return ErrNotConnected
	}
	// Whether the server's side had ended before this write: after that, a
	// write that succeeds locally may still never be read.
	ended := c.readEnded.Load()
	if err := c.w.write(b.out.Bytes()); err != nil {
		if id > 0 {
			return fmt.Errorf("component: %w: %w", errReplyKept, err)
		}
		return fmt.Errorf("component: %w", err)
	}
	if id > 0 && !ended {
		c.delivered = id
	}
	return nil
}

func (c *Component) handle(ctx context.Context, b *batch, el *element) {
	switch el.Name {
	case "presence":
		c.handlePresence(ctx, b, el)
	case "iq":
		c.handleIQ(b, el)
	case "message":
		c.handleMessage(b, el)
	default:
		c.log.Warn("unknown stanza ignored", "name", el.Name, "from", el.From)
	}
}

// address is a stanza's parsed addressing: the contact's bare JID and the
// entity at our domain it was sent to.
type address struct {
	contact  string // normalised bare JID
	entity   string // normalised localpart
	resource string // resource the stanza was addressed to, if any
	to       string // normalised full "to", for replies
}

// address returns el's parsed addressing (see parseAddress), parsed once.
func (c *Component) address(el *element) (address, bool, error) {
	if !el.parsed {
		el.addr, el.canReply, el.addrErr = c.parseAddress(el)
		el.parsed = true
	}
	return el.addr, el.canReply, el.addrErr
}

// parseAddress checks from and to. It returns an error naming what is wrong,
// and whether a reply can be addressed (from is usable).
func (c *Component) parseAddress(el *element) (address, bool, error) {
	if el.From == "" {
		return address{}, false, errors.New("no from")
	}
	from, err := jid.Parse(el.From)
	if err != nil {
		return address{}, false, fmt.Errorf("bad from %q: %w", el.From, err)
	}
	a := address{contact: from.Bare().String()}
	if el.To == "" {
		return a, true, errors.New("no to")
	}
	to, err := jid.Parse(el.To)
	if err != nil {
		return a, true, fmt.Errorf("bad to %q: %w", el.To, err)
	}
	if to.Domainpart() != c.domain.Domainpart() {
		return a, true, fmt.Errorf("to %q is not at %s", el.To, c.domain)
	}
	a.entity, a.resource, a.to = to.Localpart(), to.Resourcepart(), to.String()
	return a, true, nil
}

// lookup returns the item as this batch sees it: as the batch changed it,
// or the batch in flight did, or as stored.
func (c *Component) lookup(ctx context.Context, b *batch, entity, contact string) (storage.Item, error) {
	k := itemKey{entity, contact}
	if it, ok := b.view(k); ok {
		return it, nil
	}
	if f := c.inflight; f != nil {
		if it, ok := f.b.view(k); ok {
			return it, nil
		}
	}
	if it, ok := b.fetched[k]; ok {
		return it, nil
	}
	it, err := c.opts.Store.Get(ctx, entity, contact)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Item{Entity: entity, Contact: contact, Sub: "none"}, nil
	}
	return it, err
}

func machineItem(it storage.Item) (subscription.Item, error) {
	s, err := subscription.Compose(it.Sub, it.PendingOut, it.PendingIn)
	return subscription.Item{State: s, Approved: it.Approved}, err
}

// decide runs a new request through the limits and the policy, and logs the
// decision once.
func (c *Component) decide(b *batch, a address) policy.Decision {
	l := c.live.Load()
	_, known := l.entities[a.entity]
	d := policy.Decision{}
	if over := c.overRate(l, a.contact, b.now); over != "" {
		d = c.overLimit(l, a, over)
	} else {
		d = l.policy.Decide(policy.Request{Contact: a.contact, Entity: a.entity, KnownEntity: known})
		if d.Action == policy.Review {
			if over := c.overPendingCap(l, a.contact); over != "" {
				d = c.overLimit(l, a, over)
			}
		}
	}
	c.log.Info("decision", "entity", c.entityJID(a.entity), "contact", a.contact,
		"action", string(d.Action), "rule", d.Reason, "subscribe_back", d.SubscribeBack)
	return d
}

// overLimit is the decision for a request over a limit: the configured
// limit action, counted.
func (c *Component) overLimit(l *live, a address, limit string) policy.Decision {
	c.limitHits[limit]++
	c.log.Warn("request over a limit", "limit", limit, "entity", c.entityJID(a.entity), "contact", a.contact,
		"action", string(l.Limits.Action), "count", c.limitHits[limit])
	return policy.Decision{Action: l.Limits.Action, Reason: "limit " + limit}
}

func (c *Component) handlePresence(ctx context.Context, b *batch, el *element) {
	kind, ok := subscription.ParseKind(el.Type)
	if !ok {
		// Available and unavailable presence from contacts needs no answer;
		// an error is never answered, so that no loop can start.
		if el.Type == "error" {
			c.log.Debug("presence error received", "from", el.From, "to", el.To)
		}
		return
	}
	a, canReply, err := c.address(el)
	if err != nil {
		c.log.Warn("presence dropped", "type", el.Type, "reason", err)
		if canReply {
			// from is usable: tell the sender what is wrong (RFC 6120 §8.3.3.8).
			presenceError(&b.out, c.domain.String(), el, "modify", "jid-malformed")
		}
		return
	}
	before, err := c.lookup(ctx, b, a.entity, a.contact)
	if err != nil {
		c.log.Error("reading roster item", "entity", a.entity, "contact", a.contact, "err", err)
		return
	}
	cur, err := machineItem(before)
	if err != nil {
		c.log.Error("corrupt roster item", "entity", a.entity, "contact", a.contact, "err", err)
		return
	}
	r := subscription.Inbound(cur, kind)
	ev := &storage.Event{Kind: kind.String(), Actor: a.contact, Interface: "stream", Detail: r.Note}
	if r.Decide {
		d := c.decide(b, a)
		ev.Action, ev.Rule = string(d.Action), d.Reason
		if d.Message != "" && d.Action != policy.Drop {
			// The rule's message follows the stanzas the decision sends.
			defer message(&b.out, c.entityJID(a.entity), a.contact, c.newID(), "chat", d.Message)
		}
		switch d.Action {
		case policy.Accept:
			acc := subscription.Accept(r.Item)
			r.Item, r.Send = acc.Item, acc.Send
			if d.SubscribeBack {
				back := subscription.Outbound(r.Item, subscription.Subscribe)
				r.Item, r.Send = back.Item, append(r.Send, back.Send...)
			}
		case policy.Reject:
			r = subscription.Reject(r.Item)
		case policy.Review:
			c.record(b, before, r.Item, nil, ev, &storage.Request{
				Entity: a.entity, Contact: a.contact, Rule: d.Reason, SubscribeBack: d.SubscribeBack, Created: b.now,
			}, "")
			return
		default: // drop: nothing stored, nothing sent
			return
		}
	} else if r.Note == "pre-approved" {
		ev.Action = "accept"
		ev.Rule = "pre-approved"
	}
	if !r.Changed(cur) && kind == subscription.Probe {
		ev = nil // probes are answered, not audited
	} else if !r.Changed(cur) && ev.Action == "" {
		ev = nil
		if r.Note != "" {
			c.log.Debug("no change", "kind", kind.String(), "entity", c.entityJID(a.entity), "contact", a.contact, "note", r.Note)
		}
	} else if ev.Action == "" {
		ev.Action = "state"
	}
	// Only a probe of a full JID is about one resource (RFC 6121 §4.3.2);
	// any other stanza to a full JID is handled as sent to the bare JID.
	probed := ""
	if kind == subscription.Probe {
		probed = a.resource
	}
	c.record(b, before, r.Item, r.Send, ev, nil, probed)
}

// record adds the new state of an item to the batch, with its audit event
// and the stanzas that report it. before is the item as stored.
func (c *Component) record(b *batch, before storage.Item, after subscription.Item, send []subscription.Send, ev *storage.Event, queue *storage.Request, resource string) {
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
		ch := storage.Change{Item: it, Queue: queue, Audit: ev}
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
			c.countHeld(it.Contact, 1)
		}
		if ch.Dequeue {
			c.countHeld(it.Contact, -1)
		}
		if ch.Delete {
			delete(b.items, k)
			b.gone[k] = true
		} else {
			b.items[k] = it
			delete(b.gone, k)
		}
		if changed {
			c.log.Debug("state", "entity", c.entityJID(it.Entity), "contact", it.Contact, "from", beforeState.String(), "to", after.State.String())
		}
	}
	start := b.out.Len()
	c.encode(b, it.Entity, it.Contact, send, resource)
	if changed || ev != nil {
		b.durable.Write(b.out.Bytes()[start:])
	}
}

// encode appends the stanzas the machine asked for, each with a fresh id.
func (c *Component) encode(b *batch, entity, contact string, send []subscription.Send, resource string) {
	from := c.entityJID(entity)
	for _, s := range send {
		switch s {
		case subscription.SendPresence:
			c.currentPresence(&b.out, entity, contact, resource)
		case subscription.SendUnavailable:
			presence(&b.out, from+"/"+c.opts.Resource, contact, c.newID(), "unavailable", "", "")
		default:
			presence(&b.out, from, contact, c.newID(), s.String(), "", "")
		}
	}
}

// Act makes the entity send a subscription presence of kind k to contact
// (subscribe, subscribed, unsubscribe or unsubscribed), through the same state
// machine as inbound stanzas: the new state is committed, then the stanza is
// sent. actor and iface are recorded in the audit log.
func (c *Component) Act(ctx context.Context, entity, contact string, k subscription.Kind, actor, iface string) error {
	if k == subscription.Probe || k == 0 {
		return fmt.Errorf("component: %s is not an outbound action", k)
	}
	cj, err := jid.Parse(contact)
	if err != nil {
		return fmt.Errorf("component: contact %q: %w", contact, err)
	}
	contact = cj.Bare().String()
	if entity != "" {
		ej, err := jid.New(entity, c.domain.Domainpart(), "")
		if err != nil {
			return fmt.Errorf("component: entity %q is not a valid localpart: %w", entity, err)
		}
		entity = ej.Localpart()
	}
	c.lock()
	defer c.mu.Unlock()
	if !c.usableLocked() {
		return ErrNotConnected
	}
	b := newBatch()
	before, err := c.lookup(ctx, b, entity, contact)
	if err != nil {
		return fmt.Errorf("component: %w", err)
	}
	cur, err := machineItem(before)
	if err != nil {
		return fmt.Errorf("component: %w", err)
	}
	r := subscription.Outbound(cur, k)
	ev := &storage.Event{Kind: "send " + k.String(), Action: "state", Actor: actor, Interface: iface, Detail: r.Note}
	c.record(b, before, r.Item, r.Send, ev, nil, "")
	c.log.Info("outbound", "entity", c.entityJID(entity), "contact", contact, "kind", k.String(),
		"from", cur.State.String(), "to", r.Item.State.String(), "actor", actor)
	err = c.commit(ctx, b)
	if err != nil && !errors.Is(err, errReplyKept) {
		c.recount(ctx)
	}
	return err
}
