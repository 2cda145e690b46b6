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

// Two instances on one PostgreSQL store: the first leads and answers, the
// second stands by; SIGKILL of the first, and the second takes over, resyncs
// and answers; rostergate status names it. The time from the kill to the
// second instance's stream being up is logged.
func TestIntegrationTakeover(t *testing.T) { xmpptest.EachServer(t, testIntegrationTakeover) }

func testIntegrationTakeover(t *testing.T, srv *xmpptest.Server) {
	dsn := pgtest.Start(t).NewDatabase(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + "default = \"accept\"\n"
	text = strings.Replace(text, "[storage]\npath = \"rg.db\"\n", "[storage]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
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
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + "default = \"accept\"\n"
	text = strings.Replace(text, "[storage]\npath = \"rg.db\"\n", "[storage]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
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
// of subscription requests: after it all, a request is stored (accepted) if
// and only if its requester got "subscribed" (the outbox replayed by the
// next active instance), and no one got two answers that disagree.
func TestIntegrationKillsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the kills under load take a minute")
	}
	xmpptest.EachServer(t, testIntegrationKillsUnderLoad)
}

func testIntegrationKillsUnderLoad(t *testing.T, srv *xmpptest.Server) {
	dsn := pgtest.Start(t).NewDatabase(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsn"), []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const entities = 40
	var ents strings.Builder
	for i := range entities {
		fmt.Fprintf(&ents, "[[entity]]\nlocal = \"e%d\"\n", i)
	}
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + "default = \"accept\"\n"
	text = strings.Replace(text, "[storage]\npath = \"rg.db\"\n", "[storage]\ndriver = \"postgres\"\ndsn_file = \"dsn\"\n", 1)
	text = strings.Replace(text, "[admin]\n", ents.String()+"[admin]\n", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	users := make([]*xmpptest.Client, 8)
	for i := range users {
		users[i] = srv.NewUser(t, fmt.Sprintf("u%d", i))
	}
	active := startChildWaiting(t, cfg, "presence resync sent")
	standby := startChildWaiting(t, cfg, "standby: waiting to lead")

	// The load: each user asks each entity once, a request every 30 ms,
	// round the users (about as long as the kills take).
	type req struct{ user, entity int }
	var sent []req
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	var mu sync.Mutex
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(30 * time.Millisecond)
		defer tick.Stop()
		for e := 0; e < entities; e++ {
			for u := range users {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if users[u].SendPresence(fmt.Sprintf("e%d@%s", e, srv.ComponentDomain), "subscribe") == nil {
					mu.Lock()
					sent = append(sent, req{u, e})
					mu.Unlock()
				}
			}
		}
	}()
	var takeovers []time.Duration
	for k := range killsUnderLoad {
		time.Sleep(time.Duration(50+k*7%60) * time.Millisecond)
		killed := time.Now()
		active.kill(t)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		err := standby.log.wait(ctx, "presence resync sent")
		cancel()
		if err != nil {
			close(stop)
			t.Fatalf("kill %d: the standby did not take over: %v\n%s", k+1, err, standby.log.String())
		}
		takeovers = append(takeovers, time.Since(killed))
		active, standby = standby, startChildWaiting(t, cfg, "standby: waiting to lead")
	}
	close(stop)
	<-loadDone
	slices.Sort(takeovers)
	t.Logf("%d kills under load on %s: from SIGKILL to the next active's stream up, p50 %s, max %s; %d requests sent",
		len(takeovers), srv.Kind, takeovers[len(takeovers)/2].Round(time.Millisecond), takeovers[len(takeovers)-1].Round(time.Millisecond), len(sent))

	// Settle: the last active instance answers what is pending, and its
	// outbox is replayed; then compare the answers with the store.
	time.Sleep(2 * time.Second)
	db, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored, answered, bounced := 0, 0, 0
	for _, r := range sent {
		jid := fmt.Sprintf("e%d@%s", r.entity, srv.ComponentDomain)
		kinds := map[string]bool{}
		for _, p := range users[r.user].Presences() {
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
			t.Errorf("u%d → %s answered both ways", r.user, jid)
		}
		it, err := db.Get(context.Background(), fmt.Sprintf("e%d", r.entity), users[r.user].Bare)
		isStored := err == nil && (it.Sub == "from" || it.Sub == "both")
		if isStored {
			stored++
		}
		if kinds["subscribed"] {
			answered++
		}
		if isStored != kinds["subscribed"] {
			t.Errorf("u%d → %s: stored %v (%+v, %v), answered subscribed %v", r.user, jid, isStored, it, err, kinds["subscribed"])
		}
	}
	t.Logf("%d requests: %d stored and answered; %d bounced by the server while no instance was connected; %d neither (in a killed instance's unread input, or dropped by the server)",
		len(sent), stored, bounced, len(sent)-stored-bounced)
	if answered == 0 {
		t.Error("no request was answered at all")
	}
	// The server routes the echoes back: once one more request is answered
	// (its commit deletes the rows echoed before it), the outbox holds at
	// most the newest writes' rows, not every write since the kills.
	last := srv.NewUser(t, "last")
	if err := last.SendPresence("e0@"+srv.ComponentDomain, "subscribe"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := last.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatalf("a request after the load: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := last.SendPresence("e1@"+srv.ComponentDomain, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := last.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" && strings.HasPrefix(p.From, "e1@") }); err != nil {
		t.Fatalf("a second request after the load: %v", err)
	}
	out, err := db.Outbox(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("outbox after the load: %d rows", len(out))
	if len(out) > 2 {
		t.Errorf("the outbox holds %d rows after the load: the echoes of the writes did not come back", len(out))
	}
}
