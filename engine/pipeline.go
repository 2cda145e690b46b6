package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
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

// errReplyKept is a state committed whose reply could not be written: it
// waits in the outbox for the next stream.
var errReplyKept = errors.New("state stored, reply kept for the next connection")

type itemKey struct{ entity, contact string }

// batch collects the state changes of several stanzas and the stanzas that
// report them: the changes are committed in one transaction, and only then
// is out written to the stream.
type batch struct {
	changes []store.Change
	items   map[itemKey]roster.Item // this batch's view of items it changed
	gone    map[itemKey]bool        // items this batch deleted
	out     bytes.Buffer            // every stanza to send, in order
	durable bytes.Buffer            // the stanzas that report state changes: kept in the outbox
	queued  []*roster.Request       // held requests, announced to the admins once committed (with their ids)
	events  []store.BotEvent        // events for the bots behind entities, committed with the batch
	fetched map[itemKey]roster.Item // items as stored, read ahead for the batch (Sub "none" when there is none)
	keys    []roster.Key            // the keys prefetch reads
	groups  batchGroups             // the directory's answers, looked up before the batch (resolveGroups)
	// inviteUses names the invites the batch's decisions used, one id
	// per use (see useInvite).
	inviteUses []int64
	// placements are written with the batch (see Place).
	placements []store.PlacementChange
	now        time.Time
}

func newBatch() *batch {
	return &batch{items: map[itemKey]roster.Item{}, gone: map[itemKey]bool{}, fetched: map[itemKey]roster.Item{}, now: time.Now()}
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
	clear(b.events)
	b.events = b.events[:0]
	b.keys = b.keys[:0]
	b.inviteUses = b.inviteUses[:0]
	b.placements = nil
	b.groups = nil
	for _, buf := range []*bytes.Buffer{&b.out, &b.durable} {
		if buf.Cap() > maxKeptBuffer {
			*buf = bytes.Buffer{}
		}
		buf.Reset()
	}
	b.now = time.Now()
}

// in is a stanza waiting to be handled, with what the engine learns of it:
// its addressing, parsed once, and whether it holds a big-stanza token.
type in struct {
	el  *stanza.Element
	big bool

	parsed   bool
	addr     stanza.Address
	canReply bool
	addrErr  error
}

// Serve handles the stanzas of src until it ends, and returns the error that
// ended it once every batch has landed; h answers IQs and messages.
//
// It works in three stages that overlap. One goroutine calls next. This one
// takes a stanza, then whatever else has already been parsed (up to
// maxBatch), reads the items they need in one query, and decides them all;
// meanwhile the batch before is committed and its replies written by a
// goroutine of its own (see launchLocked). A batch is launched only once the
// one before it has landed, so the commits and the writes keep the order of
// the stream. It never waits for input while a batch is open, so a partial
// stanza or an idle stream delays no reply.
func (e *Engine) Serve(ctx context.Context, src Source, h Handler) error {
	ch := make(chan in, maxBatch)
	big := make(chan struct{}, maxBigQueued)
	errc := make(chan error, 1)
	done := make(chan struct{})
	readerDone := make(chan struct{})
	// The reader is gone before Serve returns: what it records belongs to
	// this stream, never to the next one. (After a failed batch the wire
	// was aborted, which ends the reader's read.)
	defer func() {
		close(done)
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		defer close(ch)
		for {
			el, err := src.Next()
			if err != nil {
				// Only the server ending the stream in-band shows it was
				// still reading up to there; a broken connection shows
				// nothing.
				if closedByServer(err) {
					e.endAt.Store(src.Offset())
				}
				e.log.Debug("stream from the server ended", "reason", err, "at", src.Offset())
				errc <- err
				return
			}
			if e.Acked(el) {
				// An outbox write's echo, back from the server: ours, so
				// no one waits for an answer.
				continue
			}
			x := in{el: el}
			if el.Retained() > bigStanza {
				select {
				case big <- struct{}{}:
					x.big = true
				case <-done:
					return
				}
			}
			select {
			case ch <- x:
			case <-done:
				return
			}
		}
	}()
	defer func() {
		e.mu.Lock()
		_ = e.landLocked()
		e.mu.Unlock()
	}()
	els := make([]in, 0, maxBatch)
	// The batch being decided and the one in flight: a batch is decided
	// only once the one before the one in flight has landed, so two suffice.
	var batches [2]*batch
	turn := 0
	for x := range ch {
		els = append(els[:0], x)
	drain:
		for len(els) < maxBatch {
			select {
			case x, ok := <-ch:
				if !ok {
					break drain
				}
				els = append(els, x)
			default:
				break drain
			}
		}
		// The directory's answers, before the lock (groups.go).
		groups := e.resolveGroups(ctx, els)
		e.mu.Lock()
		if e.closed {
			// Our </stream:stream> is out, so no reply could follow: the
			// stanzas are left unanswered and the state unchanged, rather
			// than committing a state whose report would never be sent.
			e.mu.Unlock()
			for _, x := range els {
				e.log.Warn("stanza after shutdown not handled", "name", x.el.Name, "type", x.el.Type, "from", x.el.From)
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
		b.groups = groups
		e.decideAll(ctx, b, els, h)
		release(els, big)
		err := e.landLocked()
		if err == nil {
			e.launchLocked(ctx, b)
		} else {
			e.dropInvites(b) // decided, never to be committed
		}
		e.mu.Unlock()
		if err != nil {
			return err
		}
	}
	e.mu.Lock()
	err := e.landLocked()
	if err == nil {
		e.promote()
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return <-errc
}

// Handle decides els as one batch and waits for it to land: Serve without
// the pipeline, for a caller that has its stanzas at hand.
func (e *Engine) Handle(ctx context.Context, els []*stanza.Element, h Handler) error {
	xs := make([]in, len(els))
	for i, el := range els {
		xs[i] = in{el: el}
	}
	groups := e.resolveGroups(ctx, xs)
	e.lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrNotConnected
	}
	b := newBatch()
	b.groups = groups
	e.decideAll(ctx, b, xs, h)
	e.launchLocked(ctx, b)
	return e.landLocked()
}

// decideAll decides a batch's stanzas in order; e.mu is held.
func (e *Engine) decideAll(ctx context.Context, b *batch, els []in, h Handler) {
	e.prefetch(ctx, b, els)
	for i := range els {
		e.handle(ctx, b, &els[i], h)
	}
}

// release gives back the big-stanza tokens of els and forgets them, so
// that a burst of large stanzas is not kept for the stream's life.
func release(els []in, big chan struct{}) {
	for _, x := range els {
		if x.big {
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

// launchLocked commits and sends b on a goroutine of its own; e.mu is held,
// and no batch is in flight.
func (e *Engine) launchLocked(ctx context.Context, b *batch) {
	if len(b.changes) == 0 && b.out.Len() == 0 && len(b.queued) == 0 && len(b.events) == 0 {
		e.dropInvites(b)
		return
	}
	f := &flight{b: b, done: make(chan struct{})}
	e.inflight = f
	w := e.w
	go func() {
		defer close(f.done)
		f.err = e.commit(ctx, b)
		e.dropInvites(b) // when commit returned before storing anything
		if f.err != nil {
			// Closing may reset the connection and drop what the batch
			// before wrote but the kernel had not sent: the next stream
			// replays the whole outbox (duplicates are harmless).
			e.delivered, e.sent = 0, 0
			// Nothing more may be committed or sent on this stream: its
			// end makes Serve return at once, and the session reconnect
			// (replaying what the outbox holds), even if no stanza follows.
			w.Abort(f.err)
		}
	}()
}

// landLocked waits for the batch in flight, if any; e.mu is held. It returns
// the error of a batch that failed on this stream (the stream is then
// ended), whoever waited for it.
func (e *Engine) landLocked() error {
	if f := e.inflight; f != nil {
		<-f.done
		e.inflight = nil
		if f.err != nil && e.flightErr == nil {
			e.flightErr = f.err
			// The held requests it counted were not stored: count them
			// from the store (the caps and the gauge), as after any failed
			// commit.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			e.recount(ctx)
			cancel()
		}
	}
	return e.flightErr
}

// usableLocked reports whether the stream can carry what follows: up, not
// closing, no batch failed on it; e.mu is held.
func (e *Engine) usableLocked() bool {
	return e.w != nil && !e.closed && e.flightErr == nil
}

// lock takes the state lock once the batch in flight has landed: what runs
// under it sees every decision committed and sent, and what it commits comes
// after them.
func (e *Engine) lock() {
	e.mu.Lock()
	_ = e.landLocked()
}

// prefetch reads the stored items the presences of a batch are about, in
// one query, for lookup. Items changed by the batch in flight are not read:
// lookup takes them from it.
func (e *Engine) prefetch(ctx context.Context, b *batch, els []in) {
	keys := b.keys[:0]
	defer func() { b.keys = keys[:0] }()
	for i := range els {
		x := &els[i]
		if !e.wantsItem(x) {
			continue
		}
		a, _, err := e.address(x)
		if err != nil || x.el.Name != "presence" && a.Entity == "" {
			continue
		}
		k := itemKey{a.Entity, a.Contact}
		if f := e.inflight; f != nil {
			if _, ok := f.b.view(k); ok {
				continue
			}
		}
		if _, dup := b.fetched[k]; dup {
			continue
		}
		b.fetched[k] = roster.Item{Entity: a.Entity, Contact: a.Contact, Sub: roster.SubNone}
		keys = append(keys, roster.Key{Entity: a.Entity, Contact: a.Contact})
	}
	if len(keys) == 0 {
		return
	}
	items, err := e.store.GetMany(ctx, keys)
	if err != nil {
		// lookup reads them one by one instead.
		e.log.Warn("reading roster items", "err", err, "items", len(keys))
		clear(b.fetched)
		return
	}
	for _, it := range items {
		b.fetched[itemKey{it.Entity, it.Contact}] = it
	}
}

// wantsItem reports whether deciding x reads its roster item: a
// subscription presence, a message with a body, or a contact's presence to
// an entity with a bot behind it.
func (e *Engine) wantsItem(x *in) bool {
	el := x.el
	switch el.Name {
	case "message":
		return el.Body != "" && el.Type != "error" && el.Type != "headline" && el.Type != "groupchat"
	case "presence":
		if _, ok := subscription.ParseKind(el.Type); ok {
			return true
		}
		if el.Type != "" && el.Type != "unavailable" {
			return false
		}
		a, _, err := e.address(x)
		return err == nil && e.hasBot(e.live.Load(), a.Entity)
	}
	return false
}

// view returns the item as b left it, if b changed or deleted it.
func (b *batch) view(k itemKey) (roster.Item, bool) {
	if it, ok := b.items[k]; ok {
		return it, true
	}
	if b.gone[k] {
		return roster.Item{Entity: k.entity, Contact: k.contact, Sub: roster.SubNone}, true
	}
	return roster.Item{}, false
}

// commit writes the batch's changes, with the stanzas that report them kept
// in the outbox, then sends its stanzas. When the commit fails nothing is
// sent: no stanza reports a state that was not stored. When the send fails
// the replies wait in the outbox for the next stream.
//
// A reply written is not yet known to be delivered: the server may have
// closed the stream just before it arrived, with its </stream:stream> still
// on the way to us. Its outbox row is dropped only once the stream has
// shown itself alive after the write (see promote), or the server has
// answered our own </stream:stream> (Acknowledge).
func (e *Engine) commit(ctx context.Context, b *batch) error {
	var id int64
	e.promote()
	if len(b.changes) > 0 || b.durable.Len() > 0 || len(b.events) > 0 || len(b.placements) > 0 {
		if e.w == nil || e.closed {
			return ErrNotConnected
		}
		var err error
		start := time.Now()
		err = e.commitInvites(b, func() (err error) {
			id, err = e.store.Commit(ctx, store.Batch{Changes: b.changes, Send: b.durable.String(), Delivered: e.delivered, BotEvents: b.events,
				InviteUses: b.inviteUses, Placements: b.placements})
			return err
		})
		if err != nil {
			e.log.Error("storing state failed; replies withheld", "err", err, "changes", len(b.changes))
			return fmt.Errorf("engine: commit: %w", err)
		}
		if e.onCommit != nil && len(b.changes) > 0 {
			e.onCommit(time.Since(start), len(b.changes))
		}
		e.outboxDeleted(e.delivered)
		e.outboxAdd(id)
		e.delivered = 0
		if len(b.events) > 0 {
			e.notifyEvents()
		}
	} else if e.delivered > 0 {
		// Nothing to commit, but replies now known to be delivered: their
		// outbox rows go now rather than with the next state change.
		if err := e.store.Delivered(ctx, e.delivered); err != nil {
			e.log.Warn("clearing the outbox", "err", err)
		} else {
			e.outboxDeleted(e.delivered)
			e.delivered = 0
		}
	}
	for _, q := range b.queued {
		e.tellAdmins(b, QueuedNotice(e.domain, *q, e.entityJID(q.Entity), HeldReason(q.Rule, e.live.Load().Policy.Rules()), e.Inbox()), "")
	}
	if b.out.Len() == 0 {
		return nil
	}
	if e.w == nil {
		return ErrNotConnected
	}
	if id > 0 {
		e.writeEcho(&b.out, id)
	}
	if err := e.w.Write(b.out.Bytes()); err != nil {
		if id > 0 {
			return fmt.Errorf("engine: %w: %w", errReplyKept, err)
		}
		return fmt.Errorf("engine: %w", err)
	}
	if id > 0 {
		e.sent = id
	}
	return nil
}

// promote counts the outbox rows as delivered up to the newest whose echo
// came back: each write of replies ends with a ping from the component's
// domain to itself (writeEcho), which the server routes back only after it
// has routed everything written before it on the stream. Nothing else
// proves the server read a write: not a stanza of its own that came after
// (it may have been sent before ours was read), and not its close; and a
// connection that resets (our process killed with stanzas unread, say)
// throws away what the server had not read yet. What has not echoed stays
// in the outbox and is sent again on the next stream (RFC 6121 §3:
// subscription stanzas are idempotent). Called by the batch in flight, or
// under lock().
func (e *Engine) promote() {
	if e.sent == 0 {
		return
	}
	a := e.acked.Load()
	if a >= e.sent {
		e.delivered, e.sent = e.sent, 0
	} else if a > e.delivered {
		e.delivered = a
	}
}

// echoPrefix starts the id of an outbox write's echo ping.
const echoPrefix = "rg-echo-"

// writeEcho appends the echo of outbox row id: a XEP-0199 ping from the
// component's domain to itself, which the server routes back to us.
func (e *Engine) writeEcho(b *bytes.Buffer, id int64) {
	stanza.Ping(b, e.domain, e.domain, echoPrefix+strconv.FormatInt(id, 10))
}

// Acked tells the engine that an iq came back from the server: if it is
// the echo of an outbox write (see promote), the rows up to it reached the
// server. It reports whether it was one (then it goes no further: it is
// our own ping, which no one waits to see answered).
func (e *Engine) Acked(el *stanza.Element) bool {
	if el.Name != "iq" || el.Type != "get" || el.From != e.domain || !strings.HasPrefix(el.ID, echoPrefix) {
		return false
	}
	id, err := strconv.ParseInt(el.ID[len(echoPrefix):], 10, 64)
	if err != nil || id <= 0 {
		return false
	}
	for {
		cur := e.acked.Load()
		if id <= cur || e.acked.CompareAndSwap(cur, id) {
			return true
		}
	}
}

// Acknowledge tells the engine that the server closed the stream after our
// </stream:stream> (Close): if its close began after ours was written, it
// read everything written before, and the outbox rows written are
// delivered. A close that crossed ours proves nothing.
func (e *Engine) Acknowledge(ctx context.Context) {
	e.lock()
	defer e.mu.Unlock()
	if !e.closed || e.endAt.Load() < e.closeMark {
		return
	}
	e.delivered = max(e.delivered, e.sent)
	e.sent = 0
	if e.delivered > 0 {
		if err := e.store.Delivered(ctx, e.delivered); err != nil {
			e.log.Error("clearing the outbox", "err", err)
			return
		}
		e.outboxDeleted(e.delivered)
		e.delivered = 0
	}
}

func (e *Engine) handle(ctx context.Context, b *batch, x *in, h Handler) {
	switch x.el.Name {
	case "presence":
		e.handlePresence(ctx, b, x)
	case "message":
		e.handleMessage(ctx, b, x, h)
	case "iq":
		h.Stanza(&b.out, x.el)
	default:
		e.log.Warn("unknown stanza ignored", "name", x.el.Name, "from", x.el.From)
	}
}

// closedByServer reports whether err is the server ending the stream
// in-band: </stream:stream> or a stream error (RFC 6120 §4.4, §4.9).
func closedByServer(err error) bool {
	var se *stanza.StreamError
	return errors.Is(err, stanza.ErrStreamClosed) || errors.As(err, &se)
}
