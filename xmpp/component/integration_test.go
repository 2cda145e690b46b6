package component_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	gatesvc "rostergate/gate"
	"rostergate/internal/instance"
	"rostergate/internal/xmpptest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
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
	settings := s.settings()
	db, err := sqlite.Open(context.Background(), s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	log := &syncLog{}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain:   s.srv.ComponentDomain,
		Server:   s.srv.ComponentAddr,
		Secret:   s.srv.ComponentSecret,
		Settings: settings,
		Store:    db,
		Logger:   hclog.New(&hclog.LoggerOptions{Output: io.MultiWriter(logWriter{t}, log), Level: hclog.Debug}),
		Version:  "test",
		// The servers restart within a second or two; keep retries quick.
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
	})
	if err != nil {
		if cerr := db.Close(); cerr != nil {
			t.Errorf("closing %s: %v", s.dbPath, cerr)
		}
		t.Fatal(err)
	}
	comp := inst.Component
	ctx, cancel := context.WithCancel(context.Background())
	g := &gate{comp: comp, eng: inst.Engine, svc: inst.Service, db: db, cancel: cancel, done: make(chan error, 1), log: log}
	up := comp.Connected()
	go func() { g.done <- comp.Run(ctx) }()
	// Stopped when the test ends, even if it fails before rostergate is up.
	t.Cleanup(func() { g.stop(t) })
	select {
	case <-up:
	case err := <-g.done:
		g.done <- nil // Run has returned: nothing more for stop to report
		t.Fatalf("rostergate stopped before connecting: %v", err)
	case <-time.After(wait):
		t.Fatal("rostergate did not connect within 10 s")
	}
	return g
}

// settings are the settings start runs rostergate with: the entity
// helpdesk and the setup's policy, then its tweak.
func (s *setup) settings() engine.Settings {
	st := engine.Settings{
		Entities: []engine.Entity{{Local: "helpdesk", Name: "Help Desk", Status: "Ask me anything"}},
		Policy:   mustCompile(s.t, s.pol),
	}
	if s.tweak != nil {
		s.tweak(&st)
	}
	return st
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
	if err := g.db.Close(); err != nil {
		t.Errorf("closing rostergate's database: %v", err)
	}
}

// item returns the state rostergate stored for helpdesk's roster item of
// contact, as a machine state. No item is None: the store deletes an item
// that holds nothing (roster.Item.Empty). Any other error reading it, or an
// item that is no machine state, fails the test: it is never read as None.
func (g *gate) item(t *testing.T, contact string) subscription.State {
	t.Helper()
	s, _ := storedState(t, g.db, "helpdesk", contact)
	return s
}

// storedState returns the state db holds for entity's roster item of
// contact, and whether there is an item at all (None when there is not).
// An error reading it, or an item that is no machine state, fails the test.
func storedState(t *testing.T, db *sqlite.DB, entity, contact string) (subscription.State, bool) {
	t.Helper()
	it, err := db.Get(context.Background(), entity, contact)
	if errors.Is(err, store.ErrNotFound) {
		return subscription.None, false
	}
	if err != nil {
		t.Fatalf("reading %s's item for %s: %v", entity, contact, err)
	}
	s, err := subscription.Compose(it.Sub, it.PendingOut, it.PendingIn)
	if err != nil {
		t.Fatalf("%s's item for %s is corrupt (%+v): %v", entity, contact, it, err)
	}
	return s, true
}

// mustCompile compiles a policy for a test.
func mustCompile(t *testing.T, c policy.Config) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mustOpen opens a database for a test and closes it when the test ends,
// failing the test if closing fails.
func mustOpen(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing %s: %v", path, err)
		}
	})
	return db
}

// mustRequests returns the requests held in db.
func mustRequests(t *testing.T, db *sqlite.DB) []roster.Request {
	t.Helper()
	reqs, err := db.Requests(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

// mustEvents returns the audit log of db.
func mustEvents(t *testing.T, db *sqlite.DB) []roster.Event {
	t.Helper()
	var evs []roster.Event
	if err := db.Events(ctx(t), time.Time{}, func(e roster.Event) error {
		evs = append(evs, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return evs
}

// runDone waits, bounded, for a Run started by a test to return after its
// context was cancelled, and fails the test if it returned an error.
func runDone(t *testing.T, done <-chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: Run returned %v after a clean shutdown", what, err)
		}
	case <-time.After(wait):
		t.Errorf("%s did not stop within 10 s", what)
	}
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

// hidesPendingIn reports whether srv leaves out of a user's roster an item
// whose only content is the contact's pending request (None + Pending In):
// ejabberd and Openfire do, Prosody shows it.
func hidesPendingIn(srv *xmpptest.Server) bool {
	return srv.Kind == xmpptest.KindEjabberd || srv.Kind == xmpptest.KindOpenfire
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
		// ejabberd and Openfire show no item for a contact whose only
		// bond is the entity's pending request (subscription none, ask
		// in), and push no change: there the user's item disappears
		// (hidesPendingIn).
		hidden bool
	}{
		{name: "user accepts", answer: "subscribed", roster: "both", state: subscription.Both, present: true},
		{name: "user declines with unsubscribed", answer: "unsubscribed", roster: "to", state: subscription.From, present: true},
		// Spark declines with unsubscribe: the user's server applies it to the
		// user's own subscription too, so both sides drop From (see the table).
		{name: "user declines with unsubscribe (Spark)", answer: "unsubscribe", roster: "none", state: subscription.NoneOut, hidden: true},
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
				gone := tc.hidden && hidesPendingIn(srv)
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
						t.Errorf("%s shows %+v", srv.Kind, it)
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
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
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
	if reqs2 := mustRequests(t, g.db); len(reqs2) != 1 || reqs2[0].ID != reqs[0].ID {
		t.Errorf("after a duplicate: %+v, want the one request %d", reqs2, reqs[0].ID)
	}
	// The admin's approval goes through the same machine.
	if err := g.eng.Act(ctx(t), roster.Actor{JID: "admin@localhost", Via: "test"}, "helpdesk", "alice@localhost", subscription.Subscribed); err != nil {
		t.Fatal(err)
	}
	mustWaitPresence(t, alice, presenceFrom(helpdesk, "subscribed"))
	mustRoster(t, alice, helpdesk, rosterIs("to", ""))
	if reqs3 := mustRequests(t, g.db); len(reqs3) != 0 {
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
// handshake and says not-authorized; Openfire (whitelist) sends a header
// without an id and closes the connection.
func TestIntegrationRefused(t *testing.T) { xmpptest.EachServer(t, testIntegrationRefused) }

func testIntegrationRefused(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	db := mustOpen(t, s.dbPath)
	p := mustCompile(t, s.pol)
	unknownDomain := map[string]string{xmpptest.KindProsody: "host-unknown", xmpptest.KindEjabberd: "not-authorized",
		xmpptest.KindOpenfire: "without an id"}[srv.Kind]
	if unknownDomain == "" {
		t.Fatalf("how %s refuses an unknown domain is not known yet", srv.Kind)
	}
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
// part of the requests; Openfire refuses it (a header without an id) and it
// stops. Run exactly one rostergate per domain.
func TestIntegrationSecondInstance(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationSecondInstance)
}

// splitRequests is how many requests the ejabberd case sends, one to each
// of as many entities, to see them shared. ejabberd routes each stanza for
// a domain that several components serve to one of them at random (with no
// domain_balancing configured, ejabberd_router:balancing_route picks by
// erlang:phash2(erlang:system_time(), 2)), so the chance that all 40 go to
// the same one of the two, and the test fails although the traffic is
// shared, is 2 × 2^-40 = 2^-39 ≈ 1.8e-12 per run.
const splitRequests = 40

func testIntegrationSecondInstance(t *testing.T, srv *xmpptest.Server) {
	split := make([]string, splitRequests)
	for i := range split {
		split[i] = fmt.Sprintf("split%02d", i)
	}
	s := newSetup(t, srv, accept(false))
	s.tweak = func(st *engine.Settings) {
		for _, local := range split {
			st.Entities = append(st.Entities, engine.Entity{Local: local})
		}
	}
	first := s.start()
	// The mistaken copy: the same configuration, another database.
	db := mustOpen(t, filepath.Join(t.TempDir(), "second.db"))
	refused := &notifyingLog{needle: "conflict", seen: make(chan struct{})}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain: srv.ComponentDomain, Server: srv.ComponentAddr, Secret: srv.ComponentSecret,
		Settings: s.settings(), Store: db,
		Logger:     hclog.New(&hclog.LoggerOptions{Output: refused}),
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
		runDone(t, done, "the second rostergate")
	}()
	switch srv.Kind {
	case xmpptest.KindProsody:
		select {
		case <-refused.seen:
		case <-up:
			t.Fatal("Prosody accepted a second stream for the domain")
		case err := <-done:
			done <- nil // Run has returned: nothing more to report
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
			done <- nil // Run has returned: nothing more to report
			t.Fatalf("ejabberd refused the second stream: %v", err)
		case <-time.After(wait):
			t.Fatal("the second rostergate did not connect within 10 s")
		}
		checkShared(t, srv, split, first.db, db)
	case xmpptest.KindOpenfire:
		// Openfire refuses the second stream: a header without an id, then
		// the end of the connection. On a first connection that stops it.
		select {
		case err := <-done:
			done <- nil // Run has returned: nothing more to report
			if !errors.Is(err, component.ErrRefusedWithoutID) {
				t.Fatalf("the second rostergate stopped with %v, want ErrRefusedWithoutID", err)
			}
			t.Log(err)
		case <-up:
			t.Fatal("Openfire accepted a second stream for the domain")
		case <-time.After(wait):
			t.Fatal("the second rostergate still runs after 10 s")
		}
	default:
		t.Fatalf("what %s does with a second connection is not known yet", srv.Kind)
	}
}

// checkShared has alice ask each entity in split for its presence, then
// checks that both databases decided some of the requests, and that
// together they decided each exactly once.
func checkShared(t *testing.T, srv *xmpptest.Server, split []string, first, second *sqlite.DB) {
	const contact = "alice@localhost"
	alice := srv.NewUser(t, "alice")
	for _, local := range split {
		if err := alice.SendPresence(local+"@"+srv.ComponentDomain, "subscribe"); err != nil {
			t.Fatal(err)
		}
	}
	// Every request is answered (one deadline for all): whichever
	// rostergate decided it has committed its decision by then.
	replies := ctx(t)
	for _, local := range split {
		if _, err := alice.WaitPresence(replies, presenceFrom(local+"@"+srv.ComponentDomain, "subscribed")); err != nil {
			t.Fatal(err)
		}
	}
	byFirst, bySecond := decisions(t, first, contact), decisions(t, second, contact)
	for _, local := range split {
		a, b := byFirst[local], bySecond[local]
		if a+b != 1 {
			t.Errorf("the request for %s was decided %d times by the first rostergate and %d by the second, want once in all", local, a, b)
		}
		// The one that decided holds the subscription; the other knows nothing of it.
		for _, x := range []struct {
			name    string
			db      *sqlite.DB
			decided bool
		}{{"first", first, a > 0}, {"second", second, b > 0}} {
			st, found := storedState(t, x.db, local, contact)
			switch {
			case x.decided && st != subscription.From:
				t.Errorf("the %s rostergate decided the request for %s but holds %s, want %s", x.name, local, st, subscription.From)
			case !x.decided && found:
				t.Errorf("the %s rostergate did not decide the request for %s but holds %s", x.name, local, st)
			}
		}
	}
	for _, d := range []struct {
		name string
		m    map[string]int
	}{{"first", byFirst}, {"second", bySecond}} {
		for local := range d.m {
			if !slices.Contains(split, local) {
				t.Errorf("the %s rostergate decided a request for %q, which alice did not send", d.name, local)
			}
		}
	}
	if len(byFirst) == 0 || len(bySecond) == 0 {
		t.Errorf("of %d requests the first rostergate decided %d and the second %d: ejabberd did not share the domain's traffic", len(split), len(byFirst), len(bySecond))
	}
	t.Logf("ejabberd routed %d requests: %d decided by the first rostergate, %d by the second", len(split), len(byFirst), len(bySecond))
}

// decisions counts, by entity, the subscription requests from contact that
// db records as decided (accepted, as the policy says).
func decisions(t *testing.T, db *sqlite.DB, contact string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, e := range mustEvents(t, db) {
		if e.Kind != "subscribe" || e.Contact != contact {
			continue
		}
		if e.Action != string(policy.Accept) {
			t.Errorf("the request for %s was decided %q, want %q: %+v", e.Entity, e.Action, policy.Accept, e)
		}
		n[e.Entity]++
	}
	return n
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
