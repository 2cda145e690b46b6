package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rostergate/internal/xmpptest"
)

// The command line against a running rostergate (in this process) attached
// to a real server, Prosody and ejabberd in turn: what an admin types takes
// effect within a second.

type daemon struct {
	cfg    string
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the daemon's log contains want.
func (d *daemon) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, d.log.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a log: there is no event to wait on
	}
}

const testConfig = `[component]
domain = %q
server = %q
secret = %q
[storage]
path = "rg.db"
[[entity]]
local = "helpdesk"
[admin]
jids = ["admin@localhost"]
[policy]
default = %q
`

func startDaemon(t *testing.T, srv *xmpptest.Server, def string) *daemon {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "component.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret, def), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cfg: cfg, cancel: cancel, done: make(chan error, 1), log: &syncBuffer{}}
	go func() { d.done <- run(ctx, []string{"run", "-config", cfg}, &bytes.Buffer{}, d.log, noEnv) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not stop")
		}
		if t.Failed() {
			t.Logf("rostergate log:\n%s", d.log.String())
		}
	})
	d.waitLog(t, "presence resync sent")
	return d
}

func TestIntegrationCLIApproveWhileRunning(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationCLIApproveWhileRunning)
}

func testIntegrationCLIApproveWhileRunning(t *testing.T, srv *xmpptest.Server) {
	d := startDaemon(t, srv, "review")
	alice := srv.NewUser(t, "alice")
	if err := alice.SendPresence("helpdesk@"+srv.ComponentDomain, "subscribe"); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "action=review")

	out, _, err := runCmd(t, "pending", "-config", d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(\d+)\s+alice@localhost\s+helpdesk@bots.localhost\s+default`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pending list:\n%s", out)
	}
	start := time.Now()
	out, _, err = runCmd(t, "pending", "-config", d.cfg, "approve", m[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Approved #"+m[1]) {
		t.Errorf("approve printed:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatal(err)
	}
	t.Logf("pending approve → subscribed at the user: %s", time.Since(start).Round(time.Millisecond))
	if _, err := alice.WaitRosterItem(ctx, "helpdesk@bots.localhost", func(it xmpptest.RosterItem) bool { return it.Subscription == "to" }); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, "audit", "-config", d.cfg, "-format", "csv")
	if err != nil || !strings.Contains(out, ",approve,accept,default,") || !strings.Contains(out, ",cli") {
		t.Errorf("audit: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, "pending", "-config", d.cfg, "reject", m[1])
	if err != nil || !strings.Contains(out, "not pending") {
		t.Errorf("rejecting a decided request: %v\n%s", err, out)
	}

	// The deny list, edited from the command line, is in force at once.
	if _, _, err := runCmd(t, "lists", "-config", d.cfg, "deny", "*@localhost"); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, "lists", "-config", d.cfg)
	if err != nil || !strings.Contains(out, "deny:  *@localhost") {
		t.Errorf("lists: %v\n%s", err, out)
	}
	bob := srv.NewUser(t, "bob")
	bob.SendPresence("helpdesk@"+srv.ComponentDomain, "subscribe")
	if _, err := bob.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "lists", "-config", d.cfg, "deny", "[bad"); err == nil {
		t.Error("a bad pattern was accepted")
	}
}

// SIGHUP reloads the config; a bad one is refused and the old kept.
// The subtests must not run in parallel: SIGHUP goes to the whole process.
func TestIntegrationReloadOnSIGHUP(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationReloadOnSIGHUP)
}

func testIntegrationReloadOnSIGHUP(t *testing.T, srv *xmpptest.Server) {
	d := startDaemon(t, srv, "reject")
	alice := srv.NewUser(t, "alice")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice.SendPresence(helpdesk, "subscribe")
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}

	// A bad config: refused, the old one stays.
	good, _ := os.ReadFile(d.cfg)
	os.WriteFile(d.cfg, append(good, []byte("bogus = 1\n")...), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	d.waitLog(t, "reload refused")
	if !strings.Contains(d.log.String(), `unknown key \"policy.bogus\"`) {
		t.Errorf("the refusal does not say why:\n%s", d.log.String())
	}
	alice.SendPresence(helpdesk, "subscribe")
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}

	// A good one: in force at once.
	os.WriteFile(d.cfg, bytes.Replace(good, []byte(`default = "reject"`), []byte(`default = "accept"`), 1), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	d.waitLog(t, "reload done")
	alice.SendPresence(helpdesk, "subscribe")
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatal(err)
	}
}

func TestExplain(t *testing.T) {
	out, _, err := runCmd(t, "explain", "-config", "../../component.toml", "-from", "Alice@LocalHost/phone", "-to", "helpdesk")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@localhost → helpdesk@bots.localhost: accept", `rule 1: contact="*@localhost"`, "subscribe back: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, "explain", "-config", "../../component.toml", "-from", "eve@elsewhere.example", "-to", "nobody@bots.localhost")
	if err != nil || !strings.Contains(out, "reject") || !strings.Contains(out, "unknown_entity") {
		t.Errorf("explain unknown entity: %v\n%s", err, out)
	}
	if _, stderr, err := runCmd(t, "explain", "-config", "../../component.toml", "-from", "a@b"); err == nil || !strings.Contains(stderr, "-from and -to are required") {
		t.Errorf("explain without -to: %v %q", err, stderr)
	}
}
