package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rostergate/internal/pgtest"
	"rostergate/internal/xmpptest"
	"rostergate/store/postgres"
)

// postgresConfig writes a config for srv on the PostgreSQL database dsn
// (its DSN in a file), accepting every request but those rules (TOML
// [[policy.rule]] tables) decide otherwise, with tables (say [[entity]]
// tables besides helpdesk, or [http]), and returns its path.
func postgresConfig(t *testing.T, srv *xmpptest.Server, dsn, tables, rules string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + "default = \"accept\"\n" + rules
	text = strings.Replace(text, "[storage]\npath = \"rg.db\"\n", "[storage]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n", 1)
	text = strings.Replace(text, "[admin]\n", tables+"[admin]\n", 1)
	cfg := filepath.Join(dir, "component.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Two instances on one PostgreSQL store: the first leads and answers, the
// second stands by; SIGKILL of the first, and the second takes over, resyncs
// and answers; rostergate status names it. The time from the kill to the
// second instance's stream being up is logged.
func TestIntegrationTakeover(t *testing.T) { xmpptest.EachServer(t, testIntegrationTakeover) }

func testIntegrationTakeover(t *testing.T, srv *xmpptest.Server) {
	dsn := pgtest.Start(t).NewDatabase(t)
	cfg := postgresConfig(t, srv, dsn, "", "")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	a := startChildWaiting(t, cfg, "presence resync sent")
	b := startChildWaiting(t, cfg, "standby: waiting to lead")

	subscribed := func(user string) {
		t.Helper()
		c := srv.NewUser(t, user)
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" && strings.HasPrefix(p.From, helpdesk) }); err != nil {
			t.Fatalf("%s's request was not answered: %v", user, err)
		}
	}
	subscribed("alice")
	if strings.Contains(b.log.String(), "presence resync sent") {
		t.Fatalf("the standby connected while the first instance leads:\n%s", b.log.String())
	}
	out, _, err := runCmd(t, "status", "-config", cfg)
	if err != nil || strings.Count(out, "active ") != 1 || strings.Count(out, "standby ") != 1 {
		t.Errorf("status with one active and one standby: %v\n%s", err, out)
	}
	t.Logf("rostergate status:\n%s", out)

	killed := time.Now()
	a.kill(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.log.wait(ctx, "presence resync sent"); err != nil {
		t.Fatalf("the standby did not take over: %v\n%s", err, b.log.String())
	}
	t.Logf("takeover: the standby's stream was up %s after SIGKILL of the active (%s)", time.Since(killed).Round(time.Millisecond), srv.Kind)
	subscribed("bob")
	out, _, err = runCmd(t, "status", "-config", cfg)
	if err != nil || !strings.Contains(out, "active ") {
		t.Errorf("status after the takeover: %v\n%s", err, out)
	}
}

// Fencing: the active instance paused (SIGSTOP) past its lease; a standby
// takes over; the paused one, woken, writes nothing more (its store session
// is gone and its epoch old) and stops at once; the new active answers.
func TestIntegrationPausedActive(t *testing.T) { xmpptest.EachServer(t, testIntegrationPausedActive) }

func testIntegrationPausedActive(t *testing.T, srv *xmpptest.Server) {
	dsn := pgtest.Start(t).NewDatabase(t)
	cfg := postgresConfig(t, srv, dsn, "", "")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	a := startChildWaiting(t, cfg, "presence resync sent")
	b := startChildWaiting(t, cfg, "standby: waiting to lead")
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.log.wait(ctx, "active: this instance leads"); err != nil {
		_ = a.cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("the standby did not lead while the active one was paused: %v\n%s", err, b.log.String())
	}
	t.Logf("the standby led %s after the active one was paused (%s)", time.Since(paused).Round(time.Millisecond), srv.Kind)
	// A request while the old active instance sleeps: the server hands it
	// to the paused one (which, woken, may decide it but cannot store it)
	// or, where it spreads a domain over connections, to the new one.
	alice := srv.NewUser(t, "alice")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // in the paused instance's socket, or answered
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := a.log.wait(ctx, "lost the lead"); err != nil {
		t.Fatalf("the woken instance did not notice it lost the lead: %v\n%s", err, a.log.String())
	}
	if err := b.log.wait(ctx, "presence resync sent"); err != nil {
		t.Fatalf("the new active instance did not connect: %v\n%s", err, b.log.String())
	}
	// The new active one answers; the old one stood by again.
	bob := srv.NewUser(t, "bob")
	if err := bob.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" && strings.HasPrefix(p.From, helpdesk) }); err != nil {
		t.Fatalf("bob's request was not answered after the takeover: %v", err)
	}
	if err := a.log.wait(ctx, "standby: waiting to lead"); err != nil {
		t.Errorf("the old active instance did not stand by again: %v\n%s", err, a.log.String())
	}
	// Alice's request was stored at most once, and she never got two
	// answers that disagree.
	out, _, err := runCmd(t, "audit", "-config", cfg, "-since", "1h", "-format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "alice@"+srv.Domain+",subscribe"); n > 1 {
		t.Errorf("alice's request stored %d times:\n%s", n, out)
	}
	kinds := map[string]bool{}
	for _, p := range alice.Presences() {
		if strings.HasPrefix(p.From, helpdesk) && (p.Type == "subscribed" || p.Type == "unsubscribed") {
			kinds[p.Type] = true
		}
	}
	if len(kinds) > 1 {
		t.Errorf("alice was answered both ways: %v", kinds)
	}
	if strings.Contains(a.log.String(), "decision: entity="+helpdesk+" contact=alice@") && strings.Count(out, "alice@"+srv.Domain+",subscribe") == 1 &&
		!strings.Contains(b.log.String(), "contact=alice@") {
		t.Errorf("the paused instance's decision on alice was stored after it lost the lead:\n%s\n%s", a.log.String(), out)
	}
	if strings.Count(b.log.String(), "active: this instance leads") != 1 {
		t.Errorf("the new active instance led more than once:\n%s", b.log.String())
	}
}

// killsUnderLoad is how many times the active instance is killed.
const killsUnderLoad = 20

// SIGKILL of the active instance, 20 times in a row, under a steady stream
// of subscription requests, while admins decide the held ones through the
// command line, the admin API and chat commands: after it all, a request
// to an entity that accepts is stored (accepted) if and only if its
// requester got "subscribed" (the outbox replayed by the next active
// instance), and no one got two answers that disagree; a request to an
// entity that holds them is stored once, and is either still held and
// unanswered, or decided once, by the admin's act that asked for it, and
// answered as that act said; no act an interface reported done, and no act
// the command line queued, is lost.
func TestIntegrationKillsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the kills under load take a minute")
	}
	xmpptest.EachServer(t, testIntegrationKillsUnderLoad)
}

// loadRig is a PostgreSQL store, a config of 40 entities (every third
// holding requests for an admin's review, the others accepting everyone)
// and an HTTP listener, 8 users, and a steady load of subscription
// requests.
type loadRig struct {
	srv   *xmpptest.Server
	dsn   string
	cfg   string
	users []*xmpptest.Client

	mu       sync.Mutex
	sent     []loadReq
	stop     chan struct{}
	loadDone chan struct{}
}

type loadReq struct{ user, entity int }

const loadEntities = 40

// heldEntity reports whether entity e of the load holds requests for an
// admin's review (a rule for it says "review").
func heldEntity(e int) bool { return e%3 == 2 }

func newLoadRig(t *testing.T, srv *xmpptest.Server, dsn string) *loadRig {
	t.Helper()
	var ents, rules strings.Builder
	for i := range loadEntities {
		fmt.Fprintf(&ents, "[[entity]]\nlocal = \"e%d\"\n", i)
		if heldEntity(i) {
			fmt.Fprintf(&rules, "[[policy.rule]]\nentity = \"e%d\"\naction = \"review\"\n", i)
		}
	}
	ents.WriteString("[http]\nlisten = \"127.0.0.1:0\"\n")
	r := &loadRig{srv: srv, dsn: dsn, cfg: postgresConfig(t, srv, dsn, ents.String(), rules.String())}
	r.users = make([]*xmpptest.Client, 8)
	for i := range r.users {
		r.users[i] = srv.NewUser(t, fmt.Sprintf("u%d", i))
	}
	return r
}

// start sends each user's request to each entity once, one every 30 ms,
// round the users, until stopped.
func (r *loadRig) start() {
	r.stop, r.loadDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.loadDone)
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for e := 0; e < loadEntities; e++ {
			for u := range r.users {
				select {
				case <-r.stop:
					return
				case <-tick.C:
				}
				if r.users[u].SendPresence(fmt.Sprintf("e%d@%s", e, r.srv.ComponentDomain), "subscribe") == nil {
					r.mu.Lock()
					r.sent = append(r.sent, loadReq{u, e})
					r.mu.Unlock()
				}
			}
		}
	}()
}

// finish stops the load, lets the active instance settle, and checks that a
// request to an entity that accepts is stored (accepted) if and only if its
// requester got "subscribed", that no one got two answers that disagree,
// that the held requests are as checkHeld says with the acts of adm (nil:
// no admin acted), and that service goes on: two more requests are
// answered, after which the outbox holds no more than the newest write's
// rows.
func (r *loadRig) finish(t *testing.T, what string, adm *heldAdmin) {
	t.Helper()
	close(r.stop)
	<-r.loadDone
	time.Sleep(2 * time.Second)
	srv := r.srv
	last := srv.NewUser(t, "last")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, e := range []string{"e0", "e1"} {
		if err := last.SendPresence(e+"@"+srv.ComponentDomain, "subscribe"); err != nil {
			t.Fatal(err)
		}
		if _, err := last.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" && strings.HasPrefix(p.From, e+"@") }); err != nil {
			t.Fatalf("%s: a request after the load was not answered: %v", what, err)
		}
	}
	db, err := postgres.Open(context.Background(), r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if adm != nil {
		adm.waitCarriedOut(t, db)
	}
	stored, answered, bounced := 0, 0, 0
	var held []loadReq
	for _, q := range r.sent {
		if heldEntity(q.entity) {
			held = append(held, q)
			continue
		}
		jid := fmt.Sprintf("e%d@%s", q.entity, srv.ComponentDomain)
		kinds := map[string]bool{}
		for _, p := range r.users[q.user].Presences() {
			if strings.HasPrefix(p.From, jid) && (p.Type == "subscribed" || p.Type == "unsubscribed") {
				kinds[p.Type] = true
			}
			if p.From == jid && p.Type == "error" && !kinds["error"] {
				kinds["error"] = true
				bounced++
			}
		}
		delete(kinds, "error")
		if len(kinds) > 1 {
			t.Errorf("u%d → %s answered both ways", q.user, jid)
		}
		it, err := db.Get(context.Background(), fmt.Sprintf("e%d", q.entity), r.users[q.user].Bare)
		isStored := err == nil && (it.Sub == "from" || it.Sub == "both")
		if isStored {
			stored++
		}
		if kinds["subscribed"] {
			answered++
		}
		if isStored != kinds["subscribed"] {
			t.Errorf("u%d → %s: stored %v (%+v, %v), answered subscribed %v", q.user, jid, isStored, it, err, kinds["subscribed"])
		}
	}
	t.Logf("%s: %d requests to entities that accept: %d stored and answered; %d bounced by the server while no instance was connected; %d neither (in a stopped instance's unread input, or dropped by the server)",
		what, len(r.sent)-len(held), stored, bounced, len(r.sent)-len(held)-stored-bounced)
	if answered == 0 {
		t.Errorf("%s: no request was answered at all", what)
	}
	r.checkHeld(t, db, what, held, adm)
	out, err := db.Outbox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 2 {
		t.Errorf("%s: the outbox holds %d rows after the load: the echoes of the writes did not come back", what, len(out))
	}
	if err := db.Check(context.Background()); err != nil {
		t.Errorf("%s: the store is not consistent: %v", what, err)
	}
}

func testIntegrationKillsUnderLoad(t *testing.T, srv *xmpptest.Server) {
	r := newLoadRig(t, srv, pgtest.Start(t).NewDatabase(t))
	adm := newHeldAdmin(t, r)
	active := startChildWaiting(t, r.cfg, "presence resync sent")
	adm.setActive(active)
	standby := startChildWaiting(t, r.cfg, "standby: waiting to lead")
	r.start()
	adm.start()
	var takeovers []time.Duration
	for k := range killsUnderLoad {
		time.Sleep(time.Duration(50+k*7%60) * time.Millisecond)
		killed := time.Now()
		active.kill(t)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		err := standby.log.wait(ctx, "presence resync sent")
		cancel()
		if err != nil {
			close(r.stop)
			adm.halt()
			t.Fatalf("kill %d: the standby did not take over: %v\n%s", k+1, err, standby.log.String())
		}
		takeovers = append(takeovers, time.Since(killed))
		adm.setActive(standby)
		active, standby = standby, startChildWaiting(t, r.cfg, "standby: waiting to lead")
	}
	adm.settle()
	slices.Sort(takeovers)
	t.Logf("%d kills under load on %s: from SIGKILL to the next active's stream up, p50 %s, max %s",
		len(takeovers), srv.Kind, takeovers[len(takeovers)/2].Round(time.Millisecond), takeovers[len(takeovers)-1].Round(time.Millisecond))
	r.finish(t, "kills", adm)
}

// PostgreSQL restarted under load, then the active instance's connections
// cut (pg_terminate_backend), three times each: decisions pause, nothing is
// answered that was not stored, and the service resumes by itself.
func TestIntegrationPostgresFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the PostgreSQL faults take a minute")
	}
	xmpptest.EachServer(t, func(t *testing.T, srv *xmpptest.Server) {
		pg := pgtest.StartPrivate(t)
		r := newLoadRig(t, srv, pg.NewDatabase(t))
		a := startChildWaiting(t, r.cfg, "presence resync sent")
		b := startChildWaiting(t, r.cfg, "standby: waiting to lead")
		r.start()
		for range 3 {
			time.Sleep(300 * time.Millisecond)
			pg.Restart(t)
			time.Sleep(300 * time.Millisecond)
			if n := pg.CutConnections(t, r.dsn); n == 0 {
				t.Error("no connection to cut: the instances were not connected")
			}
		}
		// The service resumes by itself: finish's requests are answered.
		_, _ = a, b
		r.finish(t, "postgres faults on "+srv.Kind, nil)
	})
}
