// Package engine is rostergate's decision engine: it plays the contact's side
// of RFC 6121 presence subscriptions for every JID at the component domain.
// It decides each subscription stanza by the state machine (package
// subscription), the limits and the policy, commits the new state and the
// stanzas that report it in one store transaction (group commit, with an
// outbox: a reply is never sent before its state is stored, nor lost
// after), and only then hands the stanzas to the stream. Held requests,
// their counts and caps, the admins' decisions, TTL expiry and the entities'
// own outbound acts go through the same path.
//
// The engine knows nothing of sockets: the XEP-0114 transport (package
// xmpp/component) attaches a Wire for each stream, feeds it the parsed
// stanzas (Serve), and routes IQs and messages through a Handler that the
// engine calls in stream order.
//
// # Locking
//
// All the invariants are here, in one place:
//   - mu serialises state transitions: one batch at a time is decided and
//     launched, from the stream or from an act (DecideHeld, Act, EditList,
//     Reload). The fields marked "mu" are guarded by it.
//   - At most one batch is in flight (committing, then being written) while
//     the next is decided; lock() takes mu and waits for it to land first, so
//     whatever runs under lock() sees every decision before it committed and
//     sent, and what it commits comes after them. Only the batch loop takes mu
//     without waiting (it decides the next batch while one is in flight, and
//     reads the in-flight batch's changes through its view).
//   - A batch that fails to commit ends the stream (Wire.Abort): nothing more
//     is committed or sent on it, and the next stream replays the outbox.
//   - live (the settings in force) is an atomic pointer, replaced whole under
//     mu by Reload and list edits; readers load it without the lock.
//   - The batch in flight runs on a goroutine of its own without mu: it
//     commits, then writes to the Wire, and reads w and closed. That is safe
//     because everything else that changes them (Attach, Detach, Close) takes
//     the lock with lock(), which waits for the batch in flight to land, and
//     the batch loop never changes them.
//   - Directory lookups for group rules are made before a batch is
//     decided, without mu (see groups.go): nothing waits on the network
//     under it.
//   - The Wire serialises its own writes; the engine writes to it from the
//     batch in flight, under lock() (acts, broadcast pages, the replayed
//     outbox, the closing element), or through Send (replies that report no
//     state).
package engine

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"mellium.im/xmpp/jid"

	"rostergate/directory"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/xmpp/stanza"
)

// Store is what the engine keeps its state in.
type Store interface {
	store.Roster
	store.Lists
	store.Bots
	RequestDecision(ctx context.Context, id int64) (roster.Event, error)
	InviteByHash(ctx context.Context, hash []byte) (store.Invite, error)
}

// Wire is the live stream, as the transport gives it to the engine.
type Wire interface {
	// Write sends p (whole stanzas) and flushes it; after an error the
	// stream is dead and every later Write fails.
	Write(p []byte) error
	// Abort ends the stream because of err: every later Write fails.
	Abort(err error)
	// Failed returns the error that broke the stream, if any.
	Failed() error
	// Received returns how many bytes of the stream the server has sent so
	// far, parsed or not: an offset in the same count as Source.Offset.
	Received() int64
}

// Source is the stream's stanzas as the transport parses them.
type Source interface {
	// Next returns the next stanza; an error ends the stream (the server
	// closed it, broke it, or sent what may not be read).
	Next() (*stanza.Element, error)
	// Offset returns where in the stream (bytes after the handshake) the
	// stanza Next last returned began, or, after an error, where the end of
	// the stream began.
	Offset() int64
}

// Handler answers the stanzas that are not presence: IQs and messages. It
// is called under the state lock, in stream order, while a batch is decided;
// what it appends to out is written after the replies to the stanzas before
// it, once their state is committed.
type Handler interface {
	Stanza(out *bytes.Buffer, el *stanza.Element)
}

// Options configure an Engine.
type Options struct {
	Domain   string // the component's domain, normalised
	Resource string // resource of the entities' available presence; default "rostergate"
	Store    Store
	Settings Settings
	Logger   hclog.Logger
	// API says the bots' HTTP API serves: an entity a token has been used
	// for has a bot behind it only then (otherwise no one would read its
	// events).
	API bool
	// OnCommit, if set, is told of each commit of state: how long the
	// store took, and how many changes the batch held. It is called by the
	// batch in flight, after the commit and before the replies are written:
	// it must be quick and must not call the engine.
	OnCommit func(d time.Duration, changes int)
	// Directory is where group rules look groups up, configured with
	// Settings.Directory here and on each Reload; nil makes one (that logs
	// nothing). Its owner closes it.
	Directory *directory.Directory
}

// ErrNotConnected is returned by acts while no stream is up: the stanza
// could not be sent, so the state is left as it was.
var ErrNotConnected = errors.New("engine: not connected to the server")

// Engine decides and records; see the package documentation.
type Engine struct {
	store    Store
	log      hclog.Logger
	domain   string // the component's domain, normalised (a domainpart)
	resource string
	live     atomic.Pointer[live] // settings in force

	reloaded chan struct{} // reloadMu: closed and replaced by each Reload
	reloadMu sync.Mutex

	idPrefix string
	idSeq    atomic.Uint64

	mu        sync.Mutex
	w         Wire    // mu: the live stream, nil when disconnected
	inflight  *flight // mu: the batch being committed and sent while the next is decided
	flightErr error   // mu: the error that ended the pipeline on this stream
	closed    bool    // mu: </stream:stream> sent: nothing more is handled on this stream
	// delivered is the newest outbox row known to have reached a live
	// stream; the next commit deletes the rows up to it. sent is the newest
	// row written and not yet known to have arrived (see promote). Both are
	// touched only by the batch in flight or under lock(). acked is the
	// newest row whose echo came back (see Acked): set by the reader.
	delivered, sent int64
	acked           atomic.Int64
	closeMark       int64 // what the server had sent when our </stream:stream> was written
	// endAt is where the stream's end began (-1 while it has not ended).
	endAt atomic.Int64
	// pendingTotal and pendingDomain (mu) count held requests, in all and
	// per contact domain, for the caps; counted from the store on Attach.
	pendingTotal  int
	pendingDomain map[string]int
	// For monitoring (stats.go), read without mu: a scrape must not wait
	// for a commit.
	statsMu         sync.Mutex             // guards limitHits and heldDecided
	limitHits       map[string]int         // statsMu: requests over a limit, by limit
	messagesDropped atomic.Int64           // messages from non-contacts dropped
	heldNow         atomic.Int64           // pendingTotal, mirrored
	autoReplied     map[itemKey]time.Time  // mu: when each contact last got an entity's auto_reply
	bots            bots                   // mu: what the engine knows of the bots behind entities
	sigMu           sync.Mutex             // guards signal
	signal          chan struct{}          // closed and replaced when bots' events are committed
	api             bool                   // the HTTP API serves (Options.API)
	inbox           atomic.Pointer[string] // SetInbox
	offline         atomic.Bool            // shutting down: current presence is unavailable
	streams         atomic.Uint64          // streams attached so far

	// For monitoring (stats.go).
	decisions   decisionCounts           // decisions on requests, by action and kind (atomics)
	heldDecided map[heldKey]uint64       // statsMu: held requests decided, by decision and interface
	outbox      []int64                  // the outbox rows' ids, oldest first; touched like delivered
	outboxDepth atomic.Int64             // len(outbox), for Stats
	onCommit    func(time.Duration, int) // Options.OnCommit
	inv         invites                  // uses of invites not committed yet
	dir         *directory.Directory     // Options.Directory: configured by New and Reload (under mu)
}

// New validates opts and returns an Engine; the allow and deny lists are
// read from the store.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Store == nil {
		return nil, errors.New("engine: no store")
	}
	d, err := jid.Parse(opts.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("engine: bad domain %q", opts.Domain)
	}
	if opts.Resource == "" {
		opts.Resource = "rostergate"
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	var rnd [6]byte
	_, _ = crand.Read(rnd[:])
	e := &Engine{
		store:         opts.Store,
		log:           opts.Logger,
		domain:        d.String(),
		resource:      opts.Resource,
		reloaded:      make(chan struct{}),
		idPrefix:      "rg-" + hex.EncodeToString(rnd[:]) + "-",
		pendingDomain: map[string]int{},
		limitHits:     map[string]int{},
		autoReplied:   map[itemKey]time.Time{},
		api:           opts.API,
		heldDecided:   map[heldKey]uint64{},
		inv:           invites{pending: map[int64]int{}},
		onCommit:      opts.OnCommit,
	}
	allow, deny, err := opts.Store.Lists(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	l, err := newLive(opts.Settings, allow, deny, nil)
	if err != nil {
		return nil, err
	}
	if e.dir = opts.Directory; e.dir == nil {
		e.dir, err = directory.New(opts.Settings.Directory, directory.Options{})
	} else {
		err = e.dir.Configure(opts.Settings.Directory)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.live.Store(l)
	if err := e.loadBots(ctx); err != nil {
		return nil, err
	}
	// What the gauges say before the first stream: the held requests and
	// the outbox as stored (Attach reads both again).
	if err := e.countPending(ctx); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	rows, err := e.store.Outbox(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: reading the outbox: %w", err)
	}
	for _, r := range rows {
		e.outbox = append(e.outbox, r.ID)
	}
	e.outboxDepth.Store(int64(len(e.outbox)))
	return e, nil
}

// Domain returns the component domain.
func (e *Engine) Domain() string { return e.domain }

// Resource returns the resource the entities are available at.
func (e *Engine) Resource() string { return e.resource }

// NewID returns a fresh stanza id: a reply never reuses the request's id
// (RFC 6121 §3.1.4).
func (e *Engine) NewID() string {
	return e.idPrefix + strconv.FormatUint(e.idSeq.Add(1), 36)
}

// entityJID returns the bare JID of the entity with localpart local.
func (e *Engine) entityJID(local string) string {
	return roster.EntityJID(e.domain, local)
}

// Attach makes w the live stream: the held requests are counted again, and
// the replies the last stream left unsent are written first, before anything
// new can be committed and sent.
func (e *Engine) Attach(ctx context.Context, w Wire) error {
	e.lock()
	defer e.mu.Unlock()
	e.streams.Add(1)
	e.w = w
	e.flightErr = nil
	e.closed = false
	e.offline.Store(false)
	e.endAt.Store(-1)
	e.closeMark = 0
	e.sent = 0 // not known to have arrived: replayed below
	if err := e.countPending(ctx); err != nil {
		return fmt.Errorf("engine: counting held requests: %w", err)
	}
	return e.replay(ctx, w)
}

// Streams returns how many streams have been attached so far: what was
// done once per stream (say, looking at held requests' age) is done again
// when it changes.
func (e *Engine) Streams() uint64 { return e.streams.Load() }

// Detach forgets the stream, once the batch in flight has landed, and what
// it told of contacts' presence: the next stream's probes tell it again.
func (e *Engine) Detach() {
	e.lock()
	defer e.mu.Unlock()
	e.w = nil
	clear(e.bots.contacts)
	e.bots.tracked = 0
}

// Sync waits for the batches decided so far to land and reports whether
// the stream can still carry what follows: up, not closing, no batch failed
// on it. An admin command calls it first, so that it sees their state and
// its reply follows theirs.
func (e *Engine) Sync() bool {
	e.lock()
	defer e.mu.Unlock()
	return e.usableLocked()
}

// Send writes stanzas that report no state change (an admin command's
// answer, say) on the live stream.
func (e *Engine) Send(p []byte) error {
	e.mu.Lock()
	w, ok := e.w, e.usableLocked()
	e.mu.Unlock()
	if !ok {
		return ErrNotConnected
	}
	return w.Write(p)
}

// Close ends the stream from our side: final (our </stream:stream>) is
// written after every batch has landed, nothing is handled after it, and
// the outbox rows delivered so far are cleared.
func (e *Engine) Close(ctx context.Context, w Wire, final []byte) {
	e.lock()
	defer e.mu.Unlock()
	e.closed = true
	_ = w.Write(final)
	e.closeMark = w.Received()
	e.promote()
	if e.delivered > 0 && w.Failed() == nil {
		if err := e.store.Delivered(ctx, e.delivered); err != nil {
			e.log.Error("clearing the outbox", "err", err)
		} else {
			e.outboxDeleted(e.delivered)
		}
		e.delivered = 0
	}
}

// replay writes what the outbox holds, oldest first; e.mu is held. These are
// replies committed but not known to have reached a live stream: the stream
// broke, or the process died between commit and write. After a crash the
// last batch may have got out already and is sent twice; it reports the
// current state, and subscription stanzas are idempotent (RFC 6121 §3).
func (e *Engine) replay(ctx context.Context, w Wire) error {
	rows, err := e.store.Outbox(ctx)
	if err != nil {
		return fmt.Errorf("engine: reading the outbox: %w", err)
	}
	e.outbox = e.outbox[:0]
	for _, r := range rows {
		e.outbox = append(e.outbox, r.ID)
	}
	e.outboxDepth.Store(int64(len(e.outbox)))
	if len(rows) == 0 {
		return nil
	}
	n := 0
	for _, r := range rows {
		if r.ID <= e.delivered {
			continue // reached the last stream; only its deletion was pending
		}
		if err := w.Write([]byte(r.Stanzas)); err != nil {
			return fmt.Errorf("engine: replaying the outbox: %w", err)
		}
		n++
	}
	// Written again, and again not yet known to have arrived.
	e.sent = rows[len(rows)-1].ID
	var echo bytes.Buffer
	e.writeEcho(&echo, e.sent)
	if err := w.Write(echo.Bytes()); err != nil {
		return fmt.Errorf("engine: replaying the outbox: %w", err)
	}
	if n > 0 {
		e.log.Info("outbox replayed: replies committed but not sent before", "batches", n)
	}
	return nil
}

// Resync sends current presence to every contact that holds a subscription
// to an entity, probes every contact an entity is subscribed to, and sends
// again every subscription request of an entity still unanswered: what was
// missed while the stream was down.
func (e *Engine) Resync(ctx context.Context, w Wire) error {
	n, err := e.broadcast(ctx, w, nil, true)
	if err != nil {
		return err
	}
	e.log.Info("presence resync sent", "stanzas", n)
	return nil
}

// GoOffline makes every entity unavailable and tells every subscriber so:
// the first step of a clean shutdown. It returns the stanzas sent.
func (e *Engine) GoOffline(ctx context.Context, w Wire) (int, error) {
	e.offline.Store(true)
	return e.broadcast(ctx, w, []string{roster.SubFrom, roster.SubBoth}, false)
}

// broadcastPage is how many items broadcast reads and writes under the state
// lock at a time: small enough that replies to live requests wait little.
const broadcastPage = 1000

// broadcast walks the items (of every entity, with a Sub in subs, or all) in
// pages and writes the entity's current presence to each contact with From
// (or its resource's unavailable presence, when going offline), and for a
// resync a probe to each contact with To and the subscribe again to each
// contact with a request pending out. Each page is read and
// written under the state lock, so a page never reports a state that a
// concurrent stanza has already changed. It returns the stanzas written.
func (e *Engine) broadcast(ctx context.Context, w Wire, subs []string, resync bool) (int, error) {
	var b bytes.Buffer
	n := 0
	var after *roster.Key
	for {
		rows, err := e.broadcastPage(ctx, w, &b, store.Filter{AllEntities: true, Subs: subs, After: after, Limit: broadcastPage}, resync, &after)
		n += rows.stanzas
		if err != nil {
			return n, fmt.Errorf("engine: broadcast: %w", err)
		}
		if rows.items < broadcastPage {
			return n, nil
		}
	}
}

type pageCount struct{ items, stanzas int }

func (e *Engine) broadcastPage(ctx context.Context, w Wire, b *bytes.Buffer, f store.Filter, resync bool, after **roster.Key) (pageCount, error) {
	e.lock()
	defer e.mu.Unlock()
	var pc pageCount
	b.Reset()
	err := e.store.Items(ctx, f, func(it roster.Item) error {
		pc.items++
		*after = &roster.Key{Entity: it.Entity, Contact: it.Contact}
		if it.Sub == roster.SubFrom || it.Sub == roster.SubBoth {
			if e.offline.Load() {
				// The entity's resource goes away (RFC 6121 §4.5.2).
				stanza.Presence(b, e.entityJID(it.Entity)+"/"+e.resource, it.Contact, e.NewID(), "unavailable", "", "")
			} else {
				e.currentPresence(b, it.Entity, it.Contact, nil)
			}
			pc.stanzas++
		}
		if !resync || !e.available(e.live.Load(), it.Entity) {
			// An entity with no available resource (no longer configured)
			// has no session to ask for presence on behalf of.
			return nil
		}
		if it.Sub == roster.SubTo || it.Sub == roster.SubBoth {
			stanza.Presence(b, e.entityJID(it.Entity), it.Contact, e.NewID(), "probe", "", "")
			pc.stanzas++
		}
		if it.PendingOut {
			// RFC 6121 §3.1.2: "If a remote contact does not approve or
			// deny the subscription request within some configurable
			// amount of time, the user's server SHOULD resend the
			// subscription request to the contact [...] (e.g., whenever a
			// new resource becomes available for the user [...])": every
			// (re)connect.
			e.subscribe(b, it.Entity, it.Contact)
			pc.stanzas++
		}
		return nil
	})
	if err != nil {
		return pc, err
	}
	return pc, w.Write(b.Bytes())
}

// currentPresence appends the entity's current presence to contact (RFC
// 6121 §4.3.2): its configured show and status from its resource while it
// is available; unavailable from its bare JID while it has no available
// resource (rostergate is going offline, or the entity is no longer
// configured). A probe of the entity's full JID gets only whether that
// resource is available, without show or status; a probe's unavailable
// reply mirrors its id (§4.3.2.1).
func (e *Engine) currentPresence(b *bytes.Buffer, entity, contact string, pr *probe) {
	bare := e.entityJID(entity)
	l := e.live.Load()
	id := e.NewID
	if pr != nil {
		id = func() string { return mirror(pr.id, e) }
	}
	switch {
	case !e.available(l, entity):
		stanza.Presence(b, bare, contact, id(), "unavailable", "", "")
	case pr != nil && pr.resource != "" && pr.resource != e.resource:
		stanza.Presence(b, bare+"/"+pr.resource, contact, id(), "unavailable", "", "")
	case pr != nil && pr.resource != "":
		stanza.Presence(b, bare+"/"+e.resource, contact, e.NewID(), "", "", "")
	default:
		show, status := e.entityPresence(l, entity)
		stanza.PresenceWith(b, bare+"/"+e.resource, contact, e.NewID(), "", show, status, l.face(entity))
	}
}
