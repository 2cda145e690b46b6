// Package component is rostergate's XEP-0114 external component: it connects
// to the server, keeps the stream alive and reconnects when it drops, and
// plays the contact's side of RFC 6121 presence subscriptions for every JID
// at its domain, with the state in a Store and the decisions from a Policy.
//
// It answers XEP-0030 service discovery, XEP-0199 ping and XEP-0092 software
// version, and service-unavailable to any other IQ.
package component

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"rostergate/admin"
	"rostergate/storage"
)

// Store keeps the roster items, review queue and audit log.
type Store interface {
	// Get returns the item of contact on entity's roster, or an error
	// matching storage.ErrNotFound.
	Get(ctx context.Context, entity, contact string) (storage.Item, error)
	// GetMany returns the stored items among keys, in any order; keys with
	// no item are left out.
	GetMany(ctx context.Context, keys []storage.Key) ([]storage.Item, error)
	// Commit writes a batch of changes, with the stanzas that report them
	// kept in an outbox, in one transaction, and returns the outbox id.
	Commit(ctx context.Context, b storage.Batch) (int64, error)
	// Outbox returns what was committed but not known to be delivered.
	Outbox(ctx context.Context) ([]storage.Outgoing, error)
	// Delivered deletes the outbox rows up to id.
	Delivered(ctx context.Context, id int64) error
	// Items streams the items that match f to fn.
	Items(ctx context.Context, f storage.Filter, fn func(storage.Item) error) error
	// Requests returns the pending review requests, oldest first.
	Requests(ctx context.Context) ([]storage.Request, error)
	// Request returns one pending review request, or storage.ErrNotFound.
	Request(ctx context.Context, id int64) (storage.Request, error)
	// Lists returns the allow and deny lists.
	Lists(ctx context.Context) (allow, deny []string, err error)
	// EditList adds or removes a pattern, with its audit event.
	EditList(ctx context.Context, list, pattern string, add bool, ev *storage.Event) (bool, error)
	// WaitingActions returns the command line's actions not yet carried out.
	WaitingActions(ctx context.Context) ([]storage.Action, error)
	// FinishAction marks an action carried out.
	FinishAction(ctx context.Context, id int64, result string) error
}

// Entity is a configured JID at the component domain.
type Entity struct {
	Local  string // normalised localpart; "" is the domain itself
	Name   string
	Show   string // "", away, chat, dnd or xa
	Status string
}

// Options configure a Component.
type Options struct {
	Domain    string // the component's domain, normalised
	Server    string // host:port of the server's component listener
	Secret    string
	Resource  string        // resource of the entities' available presence; default "rostergate"
	Keepalive time.Duration // idle time before a whitespace keepalive; default 60 s
	// MaxStanzaBytes bounds one stanza from the server; a larger one ends
	// the stream with policy-violation. Default 64 KiB.
	MaxStanzaBytes int64
	Settings
	Store   Store
	Logger  *slog.Logger
	Version string // reported by XEP-0092

	// MinBackoff and MaxBackoff bound the reconnect delay; defaults 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Dial connects to Server; default a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Component is one external component connection and the entities behind it.
type Component struct {
	opts   Options
	log    *slog.Logger
	domain jid.JID
	live   atomic.Pointer[live] // settings in force
	admin  *admin.Handler

	idPrefix string
	idSeq    atomic.Uint64

	// mu serialises state transitions: one batch at a time is decided,
	// committed and sent, from the stream or from an outbound action.
	// The fields below it are guarded by it.
	mu sync.Mutex
	w  *writer // the live stream, nil when disconnected
	// inflight is the batch being committed and sent while the next is
	// decided (see readLoop); flightErr the error that ended the pipeline
	// on this stream. Everything else that changes state takes the lock with
	// lock(), which waits for the batch in flight to land first.
	inflight  *flight
	flightErr error
	closed    bool // </stream:stream> sent: nothing more is handled on this stream
	// delivered is the newest outbox row written to the stream; the next
	// commit deletes the rows up to it.
	delivered int64
	// readEnded is set once the server's side of the stream has ended: what
	// is written after that may never be read, so it stays in the outbox.
	readEnded atomic.Bool
	// pending counts held requests, in all and per contact domain, for the
	// caps in Limits; counted from the store on each connect.
	pendingTotal  int
	pendingDomain map[string]int
	limitHits     map[string]int // requests over a limit, by limit
	adminQ        chan *element  // admins' commands for the admin worker of the live stream
	offline       atomic.Bool    // shutting down: current presence is unavailable

	connected chan struct{} // closed and replaced on each connect; for tests
	connMu    sync.Mutex
}

// New validates opts and returns a Component ready to Run.
func New(opts Options) (*Component, error) {
	if opts.Policy == nil || opts.Store == nil {
		return nil, errors.New("component: Policy and Store are required")
	}
	d, err := jid.Parse(opts.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("component: bad domain %q", opts.Domain)
	}
	if opts.Resource == "" {
		opts.Resource = "rostergate"
	}
	if opts.Keepalive <= 0 {
		opts.Keepalive = 60 * time.Second
	}
	if opts.MaxStanzaBytes <= 0 {
		opts.MaxStanzaBytes = 64 << 10
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			dl := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
			return dl.DialContext(ctx, "tcp", addr)
		}
	}
	var rnd [6]byte
	_, _ = crand.Read(rnd[:])
	c := &Component{
		opts:          opts,
		log:           opts.Logger,
		domain:        d,
		idPrefix:      "rg-" + hex.EncodeToString(rnd[:]) + "-",
		connected:     make(chan struct{}),
		pendingDomain: map[string]int{},
		limitHits:     map[string]int{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	allow, deny, err := opts.Store.Lists(ctx)
	if err != nil {
		return nil, fmt.Errorf("component: %w", err)
	}
	l, err := newLive(opts.Settings, allow, deny, nil)
	if err != nil {
		return nil, err
	}
	c.live.Store(l)
	c.admin = admin.New(adminOps{c}, time.Now)
	return c, nil
}

// Connected returns a channel that is closed when the next stream is up and
// its presence resync has been sent.
func (c *Component) Connected() <-chan struct{} {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.connected
}

func (c *Component) signalConnected() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	close(c.connected)
	c.connected = make(chan struct{})
}

// newID returns a fresh stanza id: a reply never reuses the request's id
// (RFC 6121 §3.1.4).
func (c *Component) newID() string {
	return c.idPrefix + strconv.FormatUint(c.idSeq.Add(1), 36)
}

// entityJID returns the bare JID of the entity with localpart local.
func (c *Component) entityJID(local string) string {
	if local == "" {
		return c.domain.String()
	}
	return local + "@" + c.domain.String()
}

// IsAuthError reports whether err is the server refusing the component's
// credentials or domain: a configuration error that retrying will not mend.
func IsAuthError(err error) bool {
	se, ok := asStreamError(err)
	if !ok {
		return false
	}
	switch se.Condition() {
	case "not-authorized", "host-unknown", "bad-format", "invalid-namespace", "improper-addressing":
		return true
	}
	return false
}

// Run connects and serves until ctx is cancelled, reconnecting with
// exponential backoff and jitter when the stream drops. It returns nil after a
// clean shutdown, and an error when the server refuses the very first
// handshake (a wrong secret or an unknown domain).
func (c *Component) Run(ctx context.Context) error {
	backoff := c.opts.MinBackoff
	everUp := false
	for {
		start := time.Now()
		up, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		everUp = everUp || up
		if !everUp && IsAuthError(err) {
			return err
		}
		// Only a stream that stayed up a while resets the backoff: a server
		// that accepts and then drops the stream is not hammered.
		if up && time.Since(start) >= c.opts.MaxBackoff {
			backoff = c.opts.MinBackoff
		}
		// Half the delay fixed, half random: servers restarting under many
		// components do not see them all come back at once.
		delay := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		msg := "connection lost, reconnecting"
		if !up {
			msg = "could not connect, retrying"
		}
		c.log.Warn(msg, "server", c.opts.Server, "err", err, "backoff", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

// session runs one connection: handshake, resync, serve. up reports whether
// the handshake succeeded.
func (c *Component) session(ctx context.Context) (up bool, err error) {
	conn, err := c.opts.Dial(ctx, c.opts.Server)
	if err != nil {
		return false, fmt.Errorf("component: connecting to %s: %w", c.opts.Server, err)
	}
	defer conn.Close()
	bc := newBufConn(conn)
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err = component.NewSession(hctx, c.domain, []byte(c.opts.Secret), bc)
	cancel()
	if err != nil {
		if se, ok := asStreamError(err); ok {
			return false, fmt.Errorf("component: handshake as %s with %s refused: %w", c.domain, c.opts.Server, se)
		}
		return false, fmt.Errorf("component: handshake as %s with %s: %w", c.domain, c.opts.Server, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c.log.Info("connected", "domain", c.domain.String(), "server", c.opts.Server)

	w := newWriter(conn, 30*time.Second)
	pr := &prefixReader{prefix: []byte(streamHeader), r: bc, max: c.opts.MaxStanzaBytes}
	d := xml.NewDecoder(pr)

	defer func() {
		c.lock()
		c.w = nil
		c.mu.Unlock()
	}()
	c.lock()
	c.w = w
	c.flightErr = nil
	c.closed = false
	c.readEnded.Store(false)
	c.offline.Store(false)
	c.adminQ = make(chan *element, adminQueue)
	adminQ := c.adminQ
	err = c.countPending(ctx)
	if err == nil {
		// Replies left unsent by the last stream go first, before anything
		// new can be committed and sent.
		err = c.replay(ctx, w)
	}
	c.mu.Unlock()
	if err != nil {
		return true, fmt.Errorf("component: after connecting: %w", err)
	}

	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close() // before the wait: unblocks a write in progress
	defer stop()
	readErr := make(chan error, 1)
	// The store outlives the stream's context: a stanza that arrives while
	// shutting down is still decided and committed before the stream closes.
	go func() { readErr <- c.readLoop(context.WithoutCancel(sctx), d, pr) }()
	wg.Go(func() { c.keepalive(sctx, w, bc) })
	wg.Go(func() { c.adminWorker(sctx, adminQ) })
	wg.Go(func() { c.housekeeping(sctx) })
	wg.Go(func() {
		if err := c.resync(sctx, w); err != nil && sctx.Err() == nil {
			c.log.Error("resync after connecting failed", "err", err)
			_ = conn.Close() // the next connection tries again
			return
		}
		c.signalConnected()
	})

	select {
	case err := <-readErr:
		c.closeStream(w, err)
		return true, err
	case <-ctx.Done():
	}
	c.shutdown(w)
	// Wait for the server's </stream:stream> after ours, but not for long.
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	<-readErr
	c.log.Info("disconnected", "domain", c.domain.String())
	return true, nil
}

// asStreamError finds a stream error in err, whether it came from our
// reader or from mellium's handshake.
func asStreamError(err error) (*StreamError, bool) {
	var se *StreamError
	if errors.As(err, &se) {
		return se, true
	}
	var me stream.Error
	if errors.As(err, &me) {
		return &StreamError{Err: me}, true
	}
	return nil, false
}

// keepalive writes a single space when the stream has been idle for the
// keepalive interval, so NATs and the server keep it open. When the server
// has sent nothing for that long, it pings the component's own domain through
// the server (which routes it back to us, and our answer back again); if
// still nothing arrives within another interval the server is stalled, and
// the stream is closed so that the session reconnects.
func (c *Component) keepalive(ctx context.Context, w *writer, bc *bufConn) {
	t := time.NewTicker(c.opts.Keepalive / 2)
	defer t.Stop()
	pinged := false
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if w.idle(now) >= c.opts.Keepalive {
				if err := w.write([]byte(" ")); err != nil {
					return
				}
			}
			quiet := bc.sinceRead(now)
			switch {
			case quiet < c.opts.Keepalive:
				pinged = false
			case !pinged:
				pinged = true
				d := c.domain.String()
				if err := w.write([]byte("<iq type='get' from='" + d + "' to='" + d + "' id='" + c.newID() + "'><ping xmlns='" + nsPing + "'/></iq>")); err != nil {
					return
				}
			case quiet >= 2*c.opts.Keepalive:
				c.log.Error("server stalled: nothing received, not even the answer to a ping; reconnecting", "quiet", quiet.Round(time.Millisecond))
				_ = bc.Close()
				return
			}
		}
	}
}

// shutdown sends unavailable to every subscriber and closes the stream.
func (c *Component) shutdown(w *writer) {
	c.offline.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.broadcast(ctx, w, []string{"from", "both"}, false)
	if err != nil {
		c.log.Error("sending unavailable on shutdown", "err", err, "sent", n)
	} else {
		c.log.Info("sent unavailable to subscribers", "count", n)
	}
	c.lock()
	defer c.mu.Unlock()
	c.closed = true
	_ = w.write([]byte("</stream:stream>"))
	if c.delivered > 0 && w.failed() == nil {
		if err := c.opts.Store.Delivered(ctx, c.delivered); err != nil {
			c.log.Error("clearing the outbox", "err", err)
		}
		c.delivered = 0
	}
}

// closeStream ends a stream the server ended or broke: our own
// </stream:stream> after the server's (RFC 6120 §4.4), or a
// not-well-formed stream error when the server sent bad XML (§4.9.3.13).
func (c *Component) closeStream(w *writer, err error) {
	var syn *xml.SyntaxError
	switch {
	case errors.Is(err, errStreamClosed):
		_ = w.write([]byte("</stream:stream>"))
	case errors.Is(err, errTooLarge):
		_ = w.write([]byte("<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>stanza too large</text></stream:error></stream:stream>"))
	case errors.As(err, &syn):
		_ = w.write([]byte("<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"))
	}
}

// replay writes what the outbox holds, oldest first; c.mu is held: replies committed but
// not written because the stream broke, or because the process died between
// commit and write. After a crash the last batch may have got out already
// and is sent twice; it reports the current state, and subscription
// stanzas are idempotent (RFC 6121 §3).
func (c *Component) replay(ctx context.Context, w *writer) error {
	rows, err := c.opts.Store.Outbox(ctx)
	if err != nil || len(rows) == 0 {
		return err
	}
	n := 0
	for _, r := range rows {
		if r.ID <= c.delivered {
			continue // written on the last stream; only its deletion was pending
		}
		if err := w.write([]byte(r.Stanzas)); err != nil {
			return fmt.Errorf("component: replaying the outbox: %w", err)
		}
		n++
	}
	if err := c.opts.Store.Delivered(ctx, rows[len(rows)-1].ID); err != nil {
		return fmt.Errorf("component: %w", err)
	}
	c.delivered = 0
	if n > 0 {
		c.log.Info("outbox replayed: replies committed but not sent before", "batches", n)
	}
	return nil
}

// resync sends current presence to every contact that holds a subscription
// to an entity, and probes every contact an entity is subscribed to: what
// was missed while the stream was down.
func (c *Component) resync(ctx context.Context, w *writer) error {
	n, err := c.broadcast(ctx, w, nil, true)
	if err != nil {
		return err
	}
	c.log.Info("presence resync sent", "stanzas", n)
	return nil
}

// broadcastPage is how many items broadcast reads and writes under the state
// lock at a time: small enough that replies to live requests wait little.
const broadcastPage = 1000

// broadcast walks the items (of every entity, with a Sub in subs, or all) in
// pages and writes the entity's current presence to each contact with From,
// and with probe a probe to each contact with To. Each page is read and
// written under the state lock, so a page never reports a state that a
// concurrent stanza has already changed. It returns the stanzas written.
func (c *Component) broadcast(ctx context.Context, w *writer, subs []string, probe bool) (int, error) {
	var b bytes.Buffer
	n := 0
	var after *storage.Key
	for {
		rows, err := c.broadcastPage(ctx, w, &b, storage.Filter{AllEntities: true, Subs: subs, After: after, Limit: broadcastPage}, probe, &after)
		n += rows.stanzas
		if err != nil {
			return n, fmt.Errorf("component: broadcast: %w", err)
		}
		if rows.items < broadcastPage {
			return n, nil
		}
	}
}

type pageCount struct{ items, stanzas int }

func (c *Component) broadcastPage(ctx context.Context, w *writer, b *bytes.Buffer, f storage.Filter, probe bool, after **storage.Key) (pageCount, error) {
	c.lock()
	defer c.mu.Unlock()
	var pc pageCount
	b.Reset()
	err := c.opts.Store.Items(ctx, f, func(it storage.Item) error {
		pc.items++
		*after = &storage.Key{Entity: it.Entity, Contact: it.Contact}
		if it.Sub == "from" || it.Sub == "both" {
			c.currentPresence(b, it.Entity, it.Contact, "")
			pc.stanzas++
		}
		if probe && (it.Sub == "to" || it.Sub == "both") {
			presence(b, c.entityJID(it.Entity), it.Contact, c.newID(), "probe", "", "")
			pc.stanzas++
		}
		return nil
	})
	if err != nil {
		return pc, err
	}
	return pc, w.write(b.Bytes())
}

// currentPresence appends the entity's current presence to contact: its
// configured show and status from its resource, or unavailable when
// shutting down. A probe of another resource gets that resource unavailable.
func (c *Component) currentPresence(b *bytes.Buffer, entity, contact, probedResource string) {
	from := c.entityJID(entity) + "/" + c.opts.Resource
	if probedResource != "" && probedResource != c.opts.Resource {
		presence(b, c.entityJID(entity)+"/"+probedResource, contact, c.newID(), "unavailable", "", "")
		return
	}
	if c.offline.Load() {
		presence(b, from, contact, c.newID(), "unavailable", "", "")
		return
	}
	l := c.live.Load()
	e, known := l.entities[entity]
	if !known && !l.UnknownOnline {
		presence(b, from, contact, c.newID(), "unavailable", "", "")
		return
	}
	presence(b, from, contact, c.newID(), "", e.Show, e.Status)
}
