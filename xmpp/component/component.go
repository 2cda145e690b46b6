// Package component is rostergate's XEP-0114 transport: it connects to the
// server as an external component (the handshake of XEP-0114 §3), keeps the
// stream alive (whitespace keepalive, and a XEP-0199 ping through the server
// when it falls silent), reconnects with backoff when the stream drops, and
// resyncs presence on each connect. It feeds the stanzas it parses (package
// xmpp/stanza) to the decision engine, and routes IQs by a table (XEP-0030
// service discovery, XEP-0199 ping, XEP-0092 software version, XEP-0050
// ad-hoc commands for admins; service-unavailable to any other) and admins'
// chat commands to the admin interface (package xmpp/adminui).
package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"rostergate/engine"
	"rostergate/gate"
	"rostergate/placement"
	"rostergate/xmpp/adminui"
	"rostergate/xmpp/stanza"
)

// Options configure a Component.
type Options struct {
	Server    string // host:port of the server's component listener
	Secret    string
	Keepalive time.Duration // idle time before a whitespace keepalive; default 60 s
	// MaxStanzaBytes bounds one stanza from the server; a larger one ends
	// the stream with policy-violation. Default 64 KiB.
	MaxStanzaBytes int64
	Version        string // reported by XEP-0092

	Engine  *engine.Engine // decides and records
	Service *gate.Service  // what admins' commands act on
	Logger  hclog.Logger

	// MinBackoff and MaxBackoff bound the reconnect delay; defaults 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Dial connects to Server; default a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Component is one external component connection: the transport between
// the server and the engine.
type Component struct {
	opts   Options
	log    hclog.Logger
	eng    *engine.Engine
	svc    *gate.Service
	domain string // the component's domain, normalised
	jid    jid.JID
	admin  *adminui.Handler
	iqs    map[iqKey]iqHandler // the IQ routing table

	adminQ chan *stanza.Element // mu: admins' commands for the admin worker of the live stream
	// The live stream's placer and its advertisement's signal, and the
	// IQs sent on it that wait for an answer, by id (mu).
	placer     *placement.Placer
	advertised *once
	pending    map[string]pendingIQ
	mu         sync.Mutex

	connected chan struct{} // closed and replaced on each connect; for tests
	connMu    sync.Mutex

	// The clock and the wait between reconnects; tests replace them.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool

	// For monitoring (Stats).
	up         atomic.Bool
	reconnects atomic.Uint64
	in, out    stanzaCounter
}

// sleep waits d, or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// New validates opts and returns a Component ready to Run.
func New(opts Options) (*Component, error) {
	if opts.Engine == nil || opts.Service == nil {
		return nil, errors.New("component: Engine and Service are required")
	}
	d, err := jid.Parse(opts.Engine.Domain())
	if err != nil {
		return nil, fmt.Errorf("component: bad domain %q: %w", opts.Engine.Domain(), err)
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
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			dl := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
			return dl.DialContext(ctx, "tcp", addr)
		}
	}
	c := &Component{
		opts:      opts,
		log:       opts.Logger,
		eng:       opts.Engine,
		svc:       opts.Service,
		domain:    d.String(),
		jid:       d,
		admin:     adminui.New(opts.Service, time.Now),
		connected: make(chan struct{}),
		now:       time.Now,
		sleep:     sleep,
	}
	c.iqs = c.iqTable()
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

// ErrRefusedWithoutID is the server refusing the component the way Openfire
// does: its stream header has no id, and it closes the connection without a
// stream error.
var ErrRefusedWithoutID = errors.New("the server opened its stream without an id and closed the connection: " +
	"Openfire does this for a domain it does not accept (xmpp.component.permission = whitelist and no such " +
	"component under Server Settings → External Components) and for a second connection for a domain already connected")

// closedByPeer reports whether err is the server ending the connection
// (rather than, say, a timeout).
func closedByPeer(err error) bool {
	// encoding/xml reports the end of the input inside the open stream
	// element as a syntax error.
	var se *xml.SyntaxError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &se) && se.Msg == "unexpected EOF"
}

// refusedAttempts is how many connections in a row, before the first one
// succeeds, a server may refuse without an id before Run gives up: the
// refusal also answers a second connection for the domain, which may be
// an old one the server has not dropped yet (a quick restart).
const refusedAttempts = 4

// headerWithoutID reports whether head, the first bytes a server sent,
// hold a whole stream header without an id attribute.
func headerWithoutID(head []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(head))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return false
			}
			for _, a := range se.Attr {
				if a.Name.Local == "id" && a.Name.Space == "" {
					return false
				}
			}
			return true
		}
	}
}

// IsAuthError reports whether err is the server refusing the component's
// credentials or domain: a configuration error that retrying will not mend.
func IsAuthError(err error) bool {
	if errors.Is(err, ErrRefusedWithoutID) {
		return true
	}
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
// handshake (a wrong secret or an unknown domain), or refuses it without an
// id refusedAttempts times in a row (Openfire's answer to an unknown domain,
// and to a second connection).
func (c *Component) Run(ctx context.Context) error {
	backoff := c.opts.MinBackoff
	everUp := false
	refused := 0
	for {
		start := c.now()
		up, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		everUp = everUp || up
		if errors.Is(err, ErrRefusedWithoutID) {
			refused++
		}
		if !everUp && IsAuthError(err) && (!errors.Is(err, ErrRefusedWithoutID) || refused >= refusedAttempts) {
			return err
		}
		// Only a stream that stayed up a while resets the backoff: a server
		// that accepts and then drops the stream is not hammered.
		if up && c.now().Sub(start) >= c.opts.MaxBackoff {
			backoff = c.opts.MinBackoff
		}
		// Half the delay fixed, half random: servers restarting under many
		// components do not see them all come back at once.
		delay := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		msg := "connection lost, reconnecting"
		if !up {
			msg = "could not connect, retrying"
		}
		c.reconnects.Add(1)
		c.log.Warn(msg, "server", c.opts.Server, "err", err, "backoff", delay.Round(time.Millisecond))
		if !c.sleep(ctx, delay) {
			return nil
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
	_, err = component.NewSession(hctx, c.jid, []byte(c.opts.Secret), bc)
	cancel()
	if err != nil {
		if se, ok := asStreamError(err); ok {
			return false, fmt.Errorf("component: handshake as %s with %s refused: %w", c.domain, c.opts.Server, se)
		}
		if closedByPeer(err) && headerWithoutID(bc.serverHead()) {
			return false, fmt.Errorf("component: handshake as %s with %s refused: %w (%v)", c.domain, c.opts.Server, ErrRefusedWithoutID, err)
		}
		return false, fmt.Errorf("component: handshake as %s with %s: %w", c.domain, c.opts.Server, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c.log.Info("connected", "domain", c.domain, "server", c.opts.Server)

	bc.startStream()
	w := newWriter(conn, 30*time.Second)
	w.recv = bc.received
	w.count = &c.out
	pr := &prefixReader{prefix: []byte(stanza.StreamHeader), r: bc, max: c.opts.MaxStanzaBytes}
	src := source{xml.NewDecoder(pr), pr, pr.budget, &c.in}

	adminQ := make(chan *stanza.Element, adminQueue)
	pl := placement.New(c.eng, c.eng.Directory(), rosterSetter{c}, c.log.Named("placement"))
	adv := &once{ch: make(chan struct{})}
	c.mu.Lock()
	c.adminQ = adminQ
	c.placer, c.advertised = pl, adv
	c.pending = map[string]pendingIQ{}
	c.mu.Unlock()
	defer c.eng.Detach()
	if err := c.eng.Attach(ctx, w); err != nil {
		return true, fmt.Errorf("component: after connecting: %w", err)
	}
	c.up.Store(true)
	defer c.up.Store(false)

	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close() // before the wait: unblocks a write in progress
	defer stop()
	readErr := make(chan error, 1)
	// The store outlives the stream's context: a stanza that arrives while
	// shutting down is still decided and committed before the stream closes.
	go func() { readErr <- c.eng.Serve(context.WithoutCancel(sctx), src, router{c}) }()
	wg.Go(func() { c.keepalive(sctx, w, bc) })
	wg.Go(func() { c.adminWorker(sctx, adminQ) })
	wg.Go(func() { c.housekeeping(sctx) })
	wg.Go(func() { pl.Run(sctx, c.eng, adv.ch) })
	wg.Go(func() {
		if err := c.eng.Resync(sctx, w); err != nil && sctx.Err() == nil {
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
	// Wait for the server's </stream:stream> after ours, but not for long:
	// it shows that the server read all we wrote before ours.
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if err := <-readErr; errors.Is(err, stanza.ErrStreamClosed) {
		c.eng.Acknowledge(context.Background())
	}
	c.log.Info("disconnected", "domain", c.domain)
	return true, nil
}

// source is the stream's stanzas, parsed with pr's bounds.
type source struct {
	d      *xml.Decoder
	pr     *prefixReader
	budget func() // pr.budget, bound once: not a closure per stanza
	count  *stanzaCounter
}

func (s source) Next() (*stanza.Element, error) {
	el, err := stanza.Next(s.d, s.budget)
	if err == nil {
		s.count.add(el.Name)
	}
	return el, err
}
func (s source) Offset() int64 { return s.pr.Offset() }

// asStreamError finds a stream error in err, whether it came from our
// reader or from mellium's handshake.
func asStreamError(err error) (*stanza.StreamError, bool) {
	var se *stanza.StreamError
	if errors.As(err, &se) {
		return se, true
	}
	var me stream.Error
	if errors.As(err, &me) {
		return &stanza.StreamError{Err: me}, true
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
				if err := w.Write([]byte(" ")); err != nil {
					return
				}
			}
			quiet := bc.sinceRead(now)
			switch {
			case quiet < c.opts.Keepalive:
				pinged = false
			case !pinged:
				pinged = true
				var b bytes.Buffer
				stanza.Ping(&b, c.domain, c.domain, c.eng.NewID())
				if err := w.Write(b.Bytes()); err != nil {
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := c.eng.GoOffline(ctx, w)
	if err != nil {
		c.log.Error("sending unavailable on shutdown", "err", err, "sent", n)
	} else {
		c.log.Info("sent unavailable to subscribers", "count", n)
	}
	c.eng.Close(ctx, w, []byte("</stream:stream>"))
}

// closeStream ends a stream the server ended or broke: our own
// </stream:stream> after the server's (RFC 6120 §4.4), or a
// not-well-formed stream error when the server sent bad XML (§4.9.3.13).
func (c *Component) closeStream(w *writer, err error) {
	var syn *xml.SyntaxError
	switch {
	case errors.Is(err, stanza.ErrStreamClosed):
		_ = w.Write([]byte("</stream:stream>"))
	case errors.Is(err, errTooLarge):
		_ = w.Write([]byte("<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>stanza too large</text></stream:error></stream:stream>"))
	case errors.As(err, &syn):
		_ = w.Write([]byte("<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"))
	}
}
