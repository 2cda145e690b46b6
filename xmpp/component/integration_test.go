package component_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rostergate/engine"
	gatesvc "rostergate/gate"
	"rostergate/internal/instance"
	"rostergate/internal/xmpptest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store/sqlite"
	"rostergate/subscription"
	"rostergate/xmpp/component"
)

// The integration tests drive a real server on loopback with real client
// logins (xmppo/go-xmpp) and rostergate attached as its component. Each runs
// once on Prosody and once on ejabberd (xmpptest.EachServer), with a fresh
// server each time.

const (
	helpdesk = "helpdesk@bots.localhost"
	wait     = 10 * time.Second
)

// gate is a running rostergate attached to a server.
type gate struct {
	comp   *component.Component
	eng    *engine.Engine
	svc    *gatesvc.Service
	db     *sqlite.DB
	cancel context.CancelFunc
	done   chan error
	log    *syncLog // everything it logged
}

type setup struct {
	t      *testing.T
	srv    *xmpptest.Server
	dbPath string
	pol    policy.Config
	tweak  func(*engine.Settings) // admins, TTL, limits for a test
}

func newSetup(t *testing.T, srv *xmpptest.Server, pol policy.Config) *setup {
	return &setup{t: t, srv: srv, dbPath: filepath.Join(t.TempDir(), "rostergate.db"), pol: pol}
}

// start runs rostergate against the setup's server and waits until it is
// connected and has sent its presence resync.
func (s *setup) start() *gate {
	t := s.t
	t.Helper()
	db, err := sqlite.Open(context.Background(), s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(s.pol)
	if err != nil {
		t.Fatal(err)
	}
	settings := engine.Settings{
		Entities: []engine.Entity{{Local: "helpdesk", Name: "Help Desk", Status: "Ask me anything"}},
		Policy:   p,
	}
	if s.tweak != nil {
		s.tweak(&settings)
	}
	log := &syncLog{}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain:   s.srv.ComponentDomain,
		Server:   s.srv.ComponentAddr,
		Secret:   s.srv.ComponentSecret,
		Settings: settings,
		Store:    db,
		Logger:   slog.New(slog.NewTextHandler(io.MultiWriter(logWriter{t}, log), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:  "test",
		// The servers restart within a second or two; keep retries quick.
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	comp := inst.Component
	ctx, cancel := context.WithCancel(context.Background())
	g := &gate{comp: comp, eng: inst.Engine, svc: inst.Service, db: db, cancel: cancel, done: make(chan error, 1), log: log}
	up := comp.Connected()
	go func() { g.done <- comp.Run(ctx) }()
	select {
	case <-up:
	case err := <-g.done:
		t.Fatalf("rostergate stopped before connecting: %v", err)
	case <-time.After(wait):
		t.Fatal("rostergate did not connect within 10 s")
	}
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop shuts rostergate down cleanly; it may be called more than once.
func (g *gate) stop(t *testing.T) {
	t.Helper()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("Run returned %v after a clean shutdown", err)
		}
	case <-time.After(wait):
		t.Error("rostergate did not stop within 10 s")
	}
	g.db.Close()
}

// item returns the state rostergate stored for helpdesk's roster item of
// contact, as a machine state.
func (g *gate) item(t *testing.T, contact string) subscription.State {
	t.Helper()
	it, err := g.db.Get(context.Background(), "helpdesk", contact)
	if err != nil {
		return subscription.None
	}
	s, err := subscription.Compose(it.Sub, it.PendingOut, it.PendingIn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func presenceFrom(from, typ string) func(xmpptest.Presence) bool {
	return func(p xmpptest.Presence) bool { return p.From == from && p.Type == typ }
}

func rosterIs(sub, ask string) func(xmpptest.RosterItem) bool {
	return func(it xmpptest.RosterItem) bool { return it.Subscription == sub && it.Ask == ask }
}

func accept(back bool) policy.Config {
	return policy.Config{Default: policy.Reject, Rules: []policy.Rule{{Contact: "*@localhost", Action: policy.Accept, SubscribeBack: back}}}
}

func mustWaitPresence(t *testing.T, c *xmpptest.Client, match func(xmpptest.Presence) bool) xmpptest.Presence {
	t.Helper()
	p, err := c.WaitPresence(ctx(t), match)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRoster(t *testing.T, c *xmpptest.Client, jid string, match func(xmpptest.RosterItem) bool) {
	t.Helper()
	if _, err := c.WaitRosterItem(ctx(t), jid, match); err != nil {
		t.Fatal(err)
	}
}

func wantState(t *testing.T, g *gate, contact string, want subscription.State) {
	t.Helper()
	if got := g.item(t, contact); got != want {
		t.Errorf("rostergate holds %s for %s, want %s", got, contact, want)
	}
}

// Seed scenario 1: the request is rejected; the user gets unsubscribed and
// keeps an item of none.
func TestIntegrationRejected(t *testing.T) { xmpptest.EachServer(t, testIntegrationRejected) }

func testIntegrationRejected(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Accept, Rules: []policy.Rule{{Contact: "alice@localhost", Action: policy.Reject}}})
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	p := mustWaitPresence(t, alice, presenceFrom(helpdesk, "unsubscribed"))
	if strings.HasPrefix(p.ID, "rg-") == false || p.ID == "" {
		t.Errorf("reply id %q is not a fresh rostergate id", p.ID)
	}
	mustRoster(t, alice, helpdesk, rosterIs("none", ""))
	wantState(t, g, "alice@localhost", subscription.None)
}

// Seed scenario 2: accepted one way. The user gets subscribed, then the
// entity's presence; their item becomes to, the entity holds from.
func TestIntegrationAcceptedOneWay(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationAcceptedOneWay)
}

func testIntegrationAcceptedOneWay(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	p := mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", ""))
	if p.Status != "Ask me anything" {
		t.Errorf("presence status = %q", p.Status)
	}
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	wantState(t, g, "alice@localhost", subscription.From)

	// A duplicate subscribe changes nothing. (rostergate answers it with
	// subscribed, which Prosody does not deliver to a user who already has
	// "to": the fake-server tests check the answer.)
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.IQ(ctx(t), "<iq type='get' to='bots.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	wantState(t, g, "alice@localhost", subscription.From)

	// Unsubscribing: the entity sends unavailable and forgets the contact.
	if err := alice.SendPresence(helpdesk, "unsubscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", "unavailable"))
	mustRoster(t, alice, helpdesk, rosterIs("none", ""))
	wantState(t, g, "alice@localhost", subscription.None)
}

// Seed scenario 3: accepted both ways, and the two ways a user declines the
// entity's request in return.
func TestIntegrationBothWays(t *testing.T) {
	tests := []struct {
		name    string
		answer  string // the user's answer to the entity's subscribe
		roster  string // the user's item afterwards
		state   subscription.State
		present bool // whether the user still gets the entity's presence
		// ejabberd shows no item for a contact whose only bond is the
		// entity's pending request (subscription none, ask in), and pushes
		// no change: there the user's item disappears.
		goneOnEjabberd bool
	}{
		{name: "user accepts", answer: "subscribed", roster: "both", state: subscription.Both, present: true},
		{name: "user declines with unsubscribed", answer: "unsubscribed", roster: "to", state: subscription.From, present: true},
		// Spark declines with unsubscribe: the user's server applies it to the
		// user's own subscription too, so both sides drop From (see the table).
		{name: "user declines with unsubscribe (Spark)", answer: "unsubscribe", roster: "none", state: subscription.NoneOut, goneOnEjabberd: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			xmpptest.EachServer(t, func(t *testing.T, srv *xmpptest.Server) {
				s := newSetup(t, srv, accept(true))
				g := s.start()
				alice := s.srv.NewUser(t, "alice")
				if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
					t.Fatal(err)
				}
				mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
				mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribe"))
				wantState(t, g, "alice@localhost", subscription.FromOut)
				if err := alice.SendPresence(helpdesk, tc.answer); err != nil {
					t.Fatal(err)
				}
				gone := tc.goneOnEjabberd && srv.Kind == xmpptest.KindEjabberd
				if !gone {
					mustRoster(t, alice, helpdesk, rosterIs(tc.roster, ""))
				}
				// The ping's answer shows rostergate handled everything before it.
				if _, err := alice.IQ(ctx(t), "<iq type='get' to='bots.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
					t.Fatal(err)
				}
				if gone {
					r, err := alice.Roster(ctx(t))
					if err != nil {
						t.Fatal(err)
					}
					if it, ok := r[helpdesk]; ok {
						t.Errorf("ejabberd shows %+v", it)
					}
				}
				wantState(t, g, "alice@localhost", tc.state)
			})
		})
	}
}

// A user who is subscribed logs in: the server probes the entity, which
// answers with its presence.
func TestIntegrationProbeOnLogin(t *testing.T) { xmpptest.EachServer(t, testIntegrationProbeOnLogin) }

func testIntegrationProbeOnLogin(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	alice.Close()
	again := s.srv.Login(t, "alice")
	mustWaitPresence(t, again, presenceFrom(helpdesk+"/rostergate", ""))
}

// The entity pre-approves a contact (RFC 6121 §3.4): the contact's later
// request is accepted at once, whatever the policy says.
func TestIntegrationPreApproval(t *testing.T) { xmpptest.EachServer(t, testIntegrationPreApproval) }

func testIntegrationPreApproval(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Reject})
	g := s.start()
	if err := g.eng.Act(ctx(t), roster.Actor{JID: "test", Via: "test"}, "helpdesk", "alice@localhost", subscription.Subscribed); err != nil {
		t.Fatal(err)
	}
	it, err := g.db.Get(ctx(t), "helpdesk", "alice@localhost")
	if err != nil || !it.Approved {
		t.Fatalf("pre-approval not stored: %+v, %v", it, err)
	}
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	wantState(t, g, "alice@localhost", subscription.From)
}

// review holds the request for an admin: nothing is sent, the request is
// persisted, and the user keeps a pending item.
func TestIntegrationReview(t *testing.T) { xmpptest.EachServer(t, testIntegrationReview) }

func testIntegrationReview(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, policy.Config{Default: policy.Review})
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.IQ(ctx(t), "<iq type='get' to='bots.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
	wantState(t, g, "alice@localhost", subscription.NoneIn)
	reqs, err := g.db.Requests(ctx(t))
	if err != nil || len(reqs) != 1 || reqs[0].Contact != "alice@localhost" || reqs[0].Entity != "helpdesk" || reqs[0].Rule != "default" {
		t.Fatalf("requests = %+v, %v", reqs, err)
	}
	mustRoster(t, alice, helpdesk, rosterIs("none", "subscribe"))
	for _, p := range alice.Presences() {
		if strings.HasPrefix(p.From, helpdesk) {
			t.Errorf("got %s while the request awaits review", p)
		}
	}
	// A duplicate keeps the one queued request.
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.IQ(ctx(t), "<iq type='get' to='bots.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"); err != nil {
		t.Fatal(err)
	}
	if reqs2, _ := g.db.Requests(ctx(t)); len(reqs2) != 1 || reqs2[0].ID != reqs[0].ID {
		t.Errorf("after a duplicate: %+v, want the one request %d", reqs2, reqs[0].ID)
	}
	// The admin's approval goes through the same machine.
	if err := g.eng.Act(ctx(t), roster.Actor{JID: "admin@localhost", Via: "test"}, "helpdesk", "alice@localhost", subscription.Subscribed); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	if reqs3, _ := g.db.Requests(ctx(t)); len(reqs3) != 0 {
		t.Errorf("requests after approval: %+v", reqs3)
	}
}

// rostergate restarts: the state is kept, subscribers get unavailable on
// shutdown and presence again on reconnect.
func TestIntegrationRestartRostergate(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationRestartRostergate)
}

func testIntegrationRestartRostergate(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", ""))
	g.stop(t)
	mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", "unavailable"))
	g2 := s.start()
	mustWaitPresence(t, alice, presenceFrom(helpdesk+"/rostergate", ""))
	wantState(t, g2, "alice@localhost", subscription.From)
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
}

// The server restarts under rostergate: it reconnects by itself and resyncs.
func TestIntegrationServerRestart(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationServerRestart)
}

func testIntegrationServerRestart(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(true))
	g := s.start()
	alice := s.srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribe"))
	if err := alice.SendPresence(helpdesk, "subscribed"); err != nil {
		t.Fatal(err)
	}
	mustRoster(t, alice, helpdesk, rosterIs("both", ""))
	up := g.comp.Connected()
	if err := s.srv.Restart(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up:
	case <-time.After(wait):
		t.Fatal("rostergate did not reconnect within 10 s of the restart")
	}
	again := s.srv.Login(t, "alice")
	mustWaitPresence(t, again, presenceFrom(helpdesk+"/rostergate", ""))
	mustRoster(t, again, helpdesk, rosterIs("both", ""))
	wantState(t, g, "alice@localhost", subscription.Both)
	// The new stream works both ways: a fresh request is answered.
	bob := s.srv.NewUser(t, "bob")
	if err := bob.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, bob, presenceFrom(helpdesk, "subscribed"))
}

// A wrong secret or a domain the server does not know stops rostergate at
// once with the stream error by name. For a domain it does not know,
// Prosody says host-unknown when the stream opens; ejabberd takes the
// handshake and says not-authorized.
func TestIntegrationRefused(t *testing.T) { xmpptest.EachServer(t, testIntegrationRefused) }

func testIntegrationRefused(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	db, err := sqlite.Open(context.Background(), s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, _ := policy.Compile(s.pol)
	unknownDomain := map[string]string{xmpptest.KindProsody: "host-unknown", xmpptest.KindEjabberd: "not-authorized"}[srv.Kind]
	tests := []struct{ name, domain, secret, want string }{
		{"wrong secret", s.srv.ComponentDomain, "not-the-secret", "not-authorized"},
		{"unknown domain", "nope.localhost", s.srv.ComponentSecret, unknownDomain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := instance.New(ctx(t), instance.Config{Domain: tc.domain, Server: s.srv.ComponentAddr, Secret: tc.secret, Settings: engine.Settings{Policy: p}, Store: db})
			if err != nil {
				t.Fatal(err)
			}
			err = inst.Run(ctx(t))
			if !component.IsAuthError(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want %s", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q shows the secret", err)
			}
			t.Log(err)
		})
	}
}

// A second rostergate for the same domain, by mistake (the database lock
// only stops one on the same database): Prosody refuses its stream with
// conflict, and it keeps retrying (a conflict can be a dead stream Prosody
// has not noticed yet) until the first is gone; ejabberd accepts it at once
// and shares the domain's traffic between the two, so each database decides
// part of the requests. Run exactly one rostergate per domain.
func TestIntegrationSecondInstance(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationSecondInstance)
}

func testIntegrationSecondInstance(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	first := s.start()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "second.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, _ := policy.Compile(s.pol)
	refused := &notifyingLog{needle: "conflict", seen: make(chan struct{})}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain: srv.ComponentDomain, Server: srv.ComponentAddr, Secret: srv.ComponentSecret,
		Settings: engine.Settings{Policy: p}, Store: db,
		Logger:     slog.New(slog.NewTextHandler(refused, nil)),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	second := inst.Component
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := second.Connected()
	go func() { done <- second.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second Run: %v", err)
		}
	}()
	switch srv.Kind {
	case xmpptest.KindProsody:
		select {
		case <-refused.seen:
		case <-up:
			t.Fatal("Prosody accepted a second stream for the domain")
		case err := <-done:
			t.Fatalf("the second rostergate gave up: %v", err)
		case <-time.After(wait):
			t.Fatal("no conflict within 10 s")
		}
		// It connects once the first is gone.
		first.stop(t)
		select {
		case <-up:
		case <-time.After(wait):
			t.Fatal("the second rostergate did not take over within 10 s")
		}
	case xmpptest.KindEjabberd:
		select {
		case <-up:
		case err := <-done:
			t.Fatalf("ejabberd refused the second stream: %v", err)
		case <-time.After(wait):
			t.Fatal("the second rostergate did not connect within 10 s")
		}
	}
}

// notifyingLog closes seen the first time a write contains needle.
type notifyingLog struct {
	needle string
	seen   chan struct{}
	once   sync.Once
}

func (l *notifyingLog) Write(p []byte) (int, error) {
	if strings.Contains(string(p), l.needle) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(p), nil
}
