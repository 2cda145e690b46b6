package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xmppo/go-xmpp"

	"rostergate/engine"
	"rostergate/internal/xmpptest"
	"rostergate/policy"
	"rostergate/store/sqlite"
)

// ProsodyConfig sizes the run through a real Prosody.
type ProsodyConfig struct {
	Clients int           // M requesting client connections (default 8)
	Rounds  int           // round trips per client per flow (default 200)
	Dir     string        // scratch directory (required); Prosody's config/data and rostergate's DB go below it
	Timeout time.Duration // bound for the whole run (default 2m)
	// LogLevel is the minimum level Prosody logs at (default "info").
	// xmpptest configures "debug", which writes several lines per stanza,
	// as no production Prosody does; for any other level the run restarts
	// Prosody with it.
	LogLevel string
}

// ProsodyResult is what RunProsody measured.
type ProsodyResult struct {
	Clients          int     `json:"clients"`
	RoundTrips       int     `json:"round_trips_per_flow"`
	RostergatePerSec float64 `json:"rostergate_round_trips_per_s"`
	NativePerSec     float64 `json:"native_round_trips_per_s"`
	Ratio            float64 `json:"ratio"` // rostergate / native
	// Latency of one round trip (subscribe sent to subscribed received), ms.
	RostergateP50Ms float64 `json:"rostergate_p50_ms"`
	RostergateP99Ms float64 `json:"rostergate_p99_ms"`
	NativeP50Ms     float64 `json:"native_p50_ms"`
	NativeP99Ms     float64 `json:"native_p99_ms"`
	ProsodyVersion  string  `json:"prosody_version,omitempty"`
}

const (
	// prosodyWarmup is the number of round trips per client, not counted,
	// run before each measured flow.
	prosodyWarmup = 5
	// prosodyCloseLimit bounds each step of closing a client or stopping
	// rostergate.
	prosodyCloseLimit = 5 * time.Second
	// prosodyParallel bounds the registrations (each one a prosodyctl
	// process) and logins run at once.
	prosodyParallel = 8
)

// RunProsody measures subscription round trips through a real Prosody on
// loopback: cfg.Clients clients subscribing to rostergate entities (rostergate
// running in-process, with the durable store, accepting every request), then
// the same clients subscribing to as many other local users whose clients
// answer subscribed (Prosody handling the flow natively). One round trip is
// a subscribe and the subscribed that answers it, followed by the removal of
// the roster item (which unsubscribes) so that the next round starts from
// scratch (on the rostergate side, each round asks an entity of its own: see
// RunProsody's targets). Each flow is preceded by a
// short warm-up that is not counted.
//
// It returns an error wrapping xmpptest.ErrNotInstalled if Prosody is not
// installed.
func RunProsody(ctx context.Context, cfg ProsodyConfig) (res ProsodyResult, err error) {
	if cfg.Dir == "" {
		return res, errors.New("bench: prosody: Dir is required")
	}
	if cfg.Clients < 0 || cfg.Rounds < 0 || cfg.Timeout < 0 {
		return res, fmt.Errorf("bench: prosody: negative size in %+v", cfg)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 8
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 200
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	switch cfg.LogLevel {
	case "":
		cfg.LogLevel = "info"
	case "debug", "info", "warn", "error":
	default:
		return res, fmt.Errorf("bench: prosody: log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res.Clients = cfg.Clients
	res.RoundTrips = cfg.Clients * cfg.Rounds
	res.ProsodyVersion = prosodyVersion(ctx)

	srv, err := xmpptest.StartProsody(ctx, xmpptest.Config{Dir: filepath.Join(cfg.Dir, "prosody")})
	if err != nil {
		return res, fmt.Errorf("bench: start prosody: %w", err)
	}
	defer func() {
		if serr := srv.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("bench: stop prosody: %w", serr)
		}
	}()
	if err := prosodySetLogLevel(ctx, srv, cfg.LogLevel); err != nil {
		return res, err
	}

	stopRG, err := prosodyStartRostergate(ctx, srv, filepath.Join(cfg.Dir, "rostergate.db"))
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := stopRG(); serr != nil && err == nil {
			err = serr
		}
	}()

	m := cfg.Clients
	reqNames := make([]string, m)
	ansNames := make([]string, m)
	for i := range m {
		reqNames[i] = fmt.Sprintf("req%d", i)
		ansNames[i] = fmt.Sprintf("ans%d", i)
	}
	users := append(slices.Clone(reqNames), ansNames...)
	if err := prosodyRegister(ctx, srv, users); err != nil {
		return res, err
	}
	clients, err := prosodyLoginAll(ctx, srv, users, m)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				wg.Go(c.close)
			}
		}
		wg.Wait()
	}()
	if err != nil {
		return res, err
	}
	reqs := clients[:m]

	// rostergate answers an unsubscribe with unsubscribed (RFC 6121 Table
	// 7). Were the next round's subscribe to the same entity sent before
	// that answer reached the requester's server, the answer would cancel
	// it there (Table 9: "None + Pending Out" → "None"): each round asks an
	// entity of its own. Prosody's users do not answer so. (roundTrip
	// removes the item at the end of each round, so the requesters'
	// rosters stay small: Prosody rewrites a whole roster at each change.)
	rgTargets := func(i, round int) string {
		return strings.ToLower(fmt.Sprintf("e%d.r%d@%s", i, round, srv.ComponentDomain))
	}
	nativeTargets := func(i, _ int) string { return clients[m+i].bare }

	rg, err := prosodyMeasure(ctx, srv, "rostergate", reqs, rgTargets, cfg.Rounds)
	if err != nil {
		return res, err
	}
	native, err := prosodyMeasure(ctx, srv, "native", reqs, nativeTargets, cfg.Rounds)
	if err != nil {
		return res, err
	}
	res.RostergatePerSec = math.Round(rg.perSec*10) / 10
	res.NativePerSec = math.Round(native.perSec*10) / 10
	if native.perSec > 0 {
		res.Ratio = math.Round(rg.perSec/native.perSec*1000) / 1000
	}
	res.RostergateP50Ms, res.RostergateP99Ms = ms(rg.p50), ms(rg.p99)
	res.NativeP50Ms, res.NativeP99Ms = ms(native.p50), ms(native.p99)
	return res, nil
}

// prosodyVersion returns the installed Prosody package's version, or "".
func prosodyVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "prosody").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// prosodySetLogLevel rewrites the log level of the configuration xmpptest
// wrote and restarts Prosody with it. If the configuration does not have
// the expected form, that is an error; "debug", xmpptest's own, is left alone.
func prosodySetLogLevel(ctx context.Context, srv *xmpptest.Server, level string) error {
	if level == "debug" {
		return nil
	}
	data, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		return fmt.Errorf("bench: read prosody config: %w", err)
	}
	const from = `levels = { min = "debug" }`
	if !strings.Contains(string(data), from) {
		return fmt.Errorf("bench: prosody config %s has no %s to change to %q: the run would log at another level than it says", srv.ConfigPath, from, level)
	}
	data = []byte(strings.Replace(string(data), from, `levels = { min = "`+level+`" }`, 1))
	if err := os.WriteFile(srv.ConfigPath, data, 0o640); err != nil {
		return fmt.Errorf("bench: write prosody config: %w", err)
	}
	if err := srv.Restart(ctx); err != nil {
		return fmt.Errorf("bench: restart prosody with log level %s: %w", level, err)
	}
	return nil
}

// prosodyStartRostergate runs rostergate in-process against srv's component
// port, with the durable store at dbPath and a policy that accepts every
// request (no rate limit: the zero Limits are unlimited). It returns once
// the component stream is up; stop ends it and closes the store.
func prosodyStartRostergate(ctx context.Context, srv *xmpptest.Server, dbPath string) (stop func() error, err error) {
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return nil, fmt.Errorf("bench: open rostergate store: %w", err)
	}
	p, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Accept})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bench: rostergate policy: %w", err)
	}
	comp, err := newComponent(ctx, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret, db, engine.Settings{Policy: p, UnknownOnline: true})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	cctx, ccancel := context.WithCancel(ctx)
	connected := comp.Connected() // before Run, so that the signal cannot be missed
	runErr := make(chan error, 1)
	go func() { runErr <- comp.Run(cctx) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			ccancel()
			timer := time.NewTimer(2 * prosodyCloseLimit)
			defer timer.Stop()
			select {
			case err := <-runErr:
				if err != nil {
					stopErr = fmt.Errorf("bench: rostergate: %w", err)
				}
			case <-timer.C:
				// Closing the store under a running component would be
				// worse than leaving it open.
				stopErr = fmt.Errorf("bench: rostergate did not stop within %v", 2*prosodyCloseLimit)
				return
			}
			if err := db.Close(); err != nil && stopErr == nil {
				stopErr = fmt.Errorf("bench: close rostergate store: %w", err)
			}
		})
		return stopErr
	}
	select {
	case <-connected:
		return stop, nil
	case err := <-runErr:
		runErr <- err // for stop
		_ = stop()
		return nil, fmt.Errorf("bench: rostergate stopped before connecting to %s: %v", srv.ComponentAddr, err)
	case <-ctx.Done():
		_ = stop()
		return nil, fmt.Errorf("bench: rostergate not connected to %s: %w", srv.ComponentAddr, ctx.Err())
	}
}

// prosodyRegister registers every user, with password prosodyPassword(user).
// The first is registered alone (Prosody creates its data directories then),
// the rest a few at a time.
func prosodyRegister(ctx context.Context, srv *xmpptest.Server, users []string) error {
	if len(users) == 0 {
		return nil
	}
	if err := srv.Register(ctx, users[0], prosodyPassword(users[0])); err != nil {
		return fmt.Errorf("bench: register %s: %w", users[0], err)
	}
	return prosodyEach(ctx, users[1:], func(ctx context.Context, i int, u string) error {
		if err := srv.Register(ctx, u, prosodyPassword(u)); err != nil {
			return fmt.Errorf("bench: register %s: %w", u, err)
		}
		return nil
	})
}

func prosodyPassword(user string) string { return "pw-" + user }

// prosodyLoginAll logs every user in; the first nReq are requesters, the
// others answerers. The slice returned has one entry per user (nil for the
// ones that failed), also on error, so that the caller can close them.
func prosodyLoginAll(ctx context.Context, srv *xmpptest.Server, users []string, nReq int) ([]*prosodyClient, error) {
	clients := make([]*prosodyClient, len(users))
	err := prosodyEach(ctx, users, func(ctx context.Context, i int, u string) error {
		c, err := prosodyLogin(ctx, srv.C2SAddr, srv.JID(u), prosodyPassword(u), i >= nReq)
		clients[i] = c
		return err
	})
	return clients, err
}

// prosodyEach runs f for every item, prosodyParallel at a time, and returns
// the first error; after one, the items not yet started are skipped.
func prosodyEach(ctx context.Context, items []string, f func(ctx context.Context, i int, item string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, prosodyParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i, it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// Cancelled from outside: our own cancel only follows an error.
		first = fmt.Errorf("bench: %w", ctx.Err())
	}
	return first
}

// prosodyClient is a lean client session on go-xmpp: unlike
// xmpptest.Client, it records nothing. A goroutine drives go-xmpp's Recv;
// it acknowledges roster pushes and, for an answerer, answers every
// subscribe with subscribed. A requester's subscription answers are passed
// on through events.
type prosodyClient struct {
	bare   string // lower-cased bare JID
	answer bool   // an answerer
	xc     *xmpp.Client

	wmu     sync.Mutex // serialises writes
	closing bool       // </stream:stream> written: nothing more may be; guarded by wmu

	events   chan prosodyEvent // requesters: subscribed, unsubscribed and error presences
	rosterOK chan struct{}     // closed when the initial roster arrives
	quit     chan struct{}     // closed by close: the Recv loop stops passing events on
	recvDone chan struct{}     // closed when the Recv loop has ended
	recvErr  error             // why; valid once recvDone is closed

	closeOnce sync.Once
}

// prosodyEvent is a presence a requester received.
type prosodyEvent struct {
	from string    // lower-cased bare JID
	typ  string    // "subscribed", "unsubscribed" or "error"
	cond string    // error condition
	at   time.Time // when it was read
}

// prosodyRosterID is the id of the initial roster request.
const prosodyRosterID = "r1"

// prosodyLogin logs jid in at addr (SASL PLAIN, no TLS; go-xmpp sends
// initial presence) and requests the roster, so that the session is
// interested (RFC 6121 §1.4) and, the server handling a session's stanzas
// in order, initial presence has been processed when it returns.
func prosodyLogin(ctx context.Context, addr, jid, password string, answer bool) (*prosodyClient, error) {
	xc, err := xmpptest.NewClient(ctx, xmpp.Options{Host: addr, User: jid, Password: password, Resource: "bench"}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: login %s: %w", jid, err)
	}
	c := &prosodyClient{
		bare:     strings.ToLower(jid),
		answer:   answer,
		xc:       xc,
		events:   make(chan prosodyEvent, 16),
		rosterOK: make(chan struct{}),
		quit:     make(chan struct{}),
		recvDone: make(chan struct{}),
	}
	go c.recvLoop()
	if err := c.send("<iq type='get' id='" + prosodyRosterID + "'><query xmlns='jabber:iq:roster'/></iq>"); err != nil {
		return c, err
	}
	select {
	case <-c.rosterOK:
		return c, nil
	case <-c.recvDone:
		return c, fmt.Errorf("bench: %s: stream ended before the roster arrived: %w", c.bare, c.recvErr)
	case <-ctx.Done():
		return c, fmt.Errorf("bench: %s: no roster: %w", c.bare, ctx.Err())
	}
}

// send writes one raw stanza.
func (c *prosodyClient) send(raw string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing {
		return fmt.Errorf("bench: %s: send: stream closed", c.bare)
	}
	if _, err := c.xc.SendOrg(raw); err != nil {
		return fmt.Errorf("bench: %s: send: %w", c.bare, err)
	}
	return nil
}

func (c *prosodyClient) recvLoop() {
	defer close(c.recvDone)
	for {
		st, err := c.xc.Recv()
		if err != nil {
			c.recvErr = err
			return
		}
		switch v := st.(type) {
		case xmpp.Presence:
			c.onPresence(v)
		case xmpp.IQ:
			c.onIQ(v)
		}
	}
}

func (c *prosodyClient) onPresence(p xmpp.Presence) {
	from := prosodyBare(p.From)
	switch {
	case c.answer && p.Type == "subscribe":
		// Best effort: a broken stream shows up in recvLoop.
		_ = c.send("<presence to='" + prosodyEscape(from) + "' type='subscribed'/>")
	case !c.answer && (p.Type == "subscribed" || p.Type == "unsubscribed" || p.Type == "error"):
		ev := prosodyEvent{from: from, typ: p.Type, cond: p.Error, at: time.Now()}
		select {
		case c.events <- ev:
		case <-c.quit:
		}
	}
}

func (c *prosodyClient) onIQ(iq xmpp.IQ) {
	switch iq.Type {
	case "result":
		if iq.ID == prosodyRosterID {
			select {
			case <-c.rosterOK:
			default:
				close(c.rosterOK)
			}
		}
	case "get", "set":
		// go-xmpp answers pings and version requests itself; these are
		// the others.
		to := ""
		if iq.From != "" {
			to = " to='" + prosodyEscape(iq.From) + "'"
		}
		reply := "<iq type='result' id='" + prosodyEscape(iq.ID) + "'" + to + "/>"
		push := iq.Type == "set" && strings.Contains(string(iq.Query), "jabber:iq:roster") &&
			(iq.From == "" || prosodyBare(iq.From) == c.bare)
		if !push {
			reply = "<iq type='error' id='" + prosodyEscape(iq.ID) + "'" + to +
				"><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
		}
		// RFC 6121 §2.1.6: a roster push is acknowledged.
		_ = c.send(reply)
	}
}

// close ends the stream and waits, bounded, for the server to close it.
func (c *prosodyClient) close() {
	c.closeOnce.Do(func() {
		close(c.quit)
		select {
		case <-c.recvDone:
		default:
			_ = c.send("</stream:stream>")
		}
		c.wmu.Lock()
		c.closing = true // go-xmpp's Close, below, writes on its own
		c.wmu.Unlock()
		timer := time.NewTimer(prosodyCloseLimit)
		defer timer.Stop()
		select {
		case <-c.recvDone:
		case <-timer.C:
			// Recv still runs: go-xmpp's Close may not be called
			// alongside it. Stopping Prosody ends it.
			return
		}
		// Only now may go-xmpp's Close run: it reads the stream itself. It
		// closes the socket; it can block on go-xmpp's lock after a
		// decoding error, hence the bound.
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = c.xc.Close()
		}()
		select {
		case <-done:
		case <-timer.C:
		}
	})
}

// prosodyBare returns the lower-cased bare form of jid.
func prosodyBare(jid string) string {
	bare, _, _ := strings.Cut(jid, "/")
	return strings.ToLower(bare)
}

func prosodyEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// prosodyFlow is one measured flow.
type prosodyFlow struct {
	perSec   float64
	p50, p99 time.Duration
}

// prosodyMeasure runs a warm-up and then the measured rounds of one flow:
// requester i subscribes to targets[i], rounds times.
func prosodyMeasure(ctx context.Context, srv *xmpptest.Server, name string, reqs []*prosodyClient, targets func(i, round int) string, rounds int) (prosodyFlow, error) {
	warm := func(i, round int) string { return targets(i, rounds+round) }
	if _, _, err := prosodyRun(ctx, srv, name+" warm-up", reqs, warm, prosodyWarmup); err != nil {
		return prosodyFlow{}, err
	}
	wall, lat, err := prosodyRun(ctx, srv, name, reqs, targets, rounds)
	if err != nil {
		return prosodyFlow{}, err
	}
	slices.Sort(lat)
	f := prosodyFlow{p50: percentile(lat, 50), p99: percentile(lat, 99)}
	if wall > 0 {
		f.perSec = float64(len(lat)) / wall.Seconds()
	}
	return f, nil
}

// prosodyRun has every requester run rounds round trips to its target, all
// at once. It returns the wall time from the first subscribe sent to the
// last subscribed received, and every round trip's latency. targets(i,
// round) is whom requester i asks in a round.
func prosodyRun(ctx context.Context, srv *xmpptest.Server, name string, reqs []*prosodyClient, targets func(i, round int) string, rounds int) (time.Duration, []time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lats := make([][]time.Duration, len(reqs))
	ends := make([]time.Time, len(reqs))
	errs := make([]error, len(reqs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range reqs {
		wg.Go(func() {
			<-start
			lats[i] = make([]time.Duration, 0, rounds)
			for round := range rounds {
				lat, end, err := c.roundTrip(ctx, targets(i, round))
				if err != nil {
					errs[i] = err
					cancel()
					return
				}
				lats[i] = append(lats[i], lat)
				ends[i] = end
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	var all []time.Duration
	var last time.Time
	for i := range reqs {
		all = append(all, lats[i]...)
		if ends[i].After(last) {
			last = ends[i]
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The first error is the cause; the others are mostly the
		// cancellation it caused.
		for _, e := range errs {
			if e != nil && !errors.Is(e, context.Canceled) {
				err = e
				break
			}
		}
		return 0, nil, fmt.Errorf("bench: %s flow: %d of %d round trips completed: %w\nprosody log tail:\n%s",
			name, len(all), len(reqs)*rounds, err, srv.LogTail(20))
	}
	return last.Sub(t0), all, nil
}

// roundTrip subscribes to target, waits for its subscribed and then removes
// it from the roster, so that the next round starts from no subscription. It
// returns the time from subscribe sent to subscribed received, and when it
// was received.
func (c *prosodyClient) roundTrip(ctx context.Context, target string) (time.Duration, time.Time, error) {
	t0 := time.Now()
	if err := c.send("<presence to='" + prosodyEscape(target) + "' type='subscribe'/>"); err != nil {
		return 0, time.Time{}, err
	}
	for {
		select {
		case ev := <-c.events:
			if ev.from != target {
				continue // a late answer from elsewhere; none is expected
			}
			if ev.typ != "subscribed" {
				return 0, time.Time{}, fmt.Errorf("%s: %s answered %s %s", c.bare, target, ev.typ, ev.cond)
			}
			// Removing the item (RFC 6121 §2.5.2) unsubscribes and keeps
			// the roster small. Prosody handles a session's stanzas in
			// order: the next subscribe comes after it.
			if err := c.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='" + prosodyEscape(target) + "' subscription='remove'/></query></iq>"); err != nil {
				return 0, time.Time{}, err
			}
			return ev.at.Sub(t0), ev.at, nil
		case <-c.recvDone:
			return 0, time.Time{}, fmt.Errorf("%s: stream ended waiting for subscribed from %s: %v", c.bare, target, c.recvErr)
		case <-ctx.Done():
			return 0, time.Time{}, fmt.Errorf("%s: no subscribed from %s: %w", c.bare, target, ctx.Err())
		}
	}
}
