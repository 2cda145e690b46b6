package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rostergate/config"
	"rostergate/internal/xmpptest"
)

// The command line against a running rostergate (in this process) attached
// to a real server, Prosody and ejabberd in turn: what an admin types takes
// effect within a second.

// waitFor bounds every wait of these tests for the daemon.
const waitFor = 10 * time.Second

type daemon struct {
	cfg    string
	cancel context.CancelFunc
	done   chan error
	log    *logBuffer
	// hup is the daemon's reload signal: a reload sent on it reaches this
	// daemon only. nil for a daemon that catches SIGHUP itself.
	hup     chan os.Signal
	stopped bool
}

// logBuffer is a daemon's log. It keeps what is written and wakes those
// waiting for a text as soon as a write brings it.
type logBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	waiters []*logWaiter
}

// logWaiter waits for want in the log; found is closed when it is there.
type logWaiter struct {
	want  []byte
	from  int // want is not in the log before this offset
	found chan struct{}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if bytes.Contains(l.b.Bytes()[w.from:], w.want) {
			close(w.found)
		} else {
			kept = append(kept, w)
		}
	}
	clear(l.waiters[len(kept):])
	l.waiters = kept
	return n, err
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// await returns a channel closed once the log contains want: at once if it
// does already, else by the Write that brings it. cancel forgets the wait.
func (l *logBuffer) await(want string) (found <-chan struct{}, cancel func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := &logWaiter{want: []byte(want), found: make(chan struct{})}
	if bytes.Contains(l.b.Bytes(), w.want) {
		close(w.found)
		return w.found, func() {}
	}
	// A match that starts before here would have been found now.
	w.from = max(0, l.b.Len()-len(w.want)+1)
	l.waiters = append(l.waiters, w)
	return w.found, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, x := range l.waiters {
			if x == w {
				l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
				return
			}
		}
	}
}

// wait returns once the log contains want, or ctx's error if ctx is done
// first.
func (l *logBuffer) wait(ctx context.Context, want string) error {
	found, cancel := l.await(want)
	defer cancel()
	select {
	case <-found:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitLog waits, at most waitFor, until the daemon's log contains want.
func (d *daemon) waitLog(t *testing.T, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := d.log.wait(ctx, want); err != nil {
		t.Fatalf("log never said %q (%v):\n%s", want, err, d.log.String())
	}
}

// reload asks the daemon to reload its config, as SIGHUP does.
func (d *daemon) reload(t *testing.T) {
	t.Helper()
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case d.hup <- syscall.SIGHUP:
	case <-timer.C:
		t.Fatalf("the daemon did not take the reload signal within %s", waitFor)
	}
}

// testConfig is a daemon's config for srv; the [policy] table comes last,
// its body is added at the end.
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
`

// startDaemon starts rostergate run against srv with [policy] default =
// def, and returns once it is connected and serving.
func startDaemon(t *testing.T, srv *xmpptest.Server, def string) *daemon {
	t.Helper()
	return startDaemonPolicy(t, srv, fmt.Sprintf("default = %q\n", def))
}

// startDaemonPolicy is startDaemon with the body of the [policy] table.
func startDaemonPolicy(t *testing.T, srv *xmpptest.Server, policy string) *daemon {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + policy
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	return d
}

// startRun runs `rostergate run -config cfg` (and flags) in this process
// until the test ends, reloading on hup (nil: on SIGHUP, as main has it).
func startRun(t *testing.T, cfg string, hup chan os.Signal, flags ...string) *daemon {
	t.Helper()
	return startRunEnv(t, cfg, hup, noEnv, flags...)
}

// startRunEnv is startRun with an environment of its own.
func startRunEnv(t *testing.T, cfg string, hup chan os.Signal, getenv func(string) string, flags ...string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cfg: cfg, cancel: cancel, done: make(chan error, 1), log: &logBuffer{}, hup: hup}
	p := proc{stdout: &bytes.Buffer{}, stderr: d.log, getenv: getenv, hup: hup}
	args := append([]string{"run", "-config", cfg}, flags...)
	go func() { d.done <- run(ctx, args, p) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop ends the daemon (as SIGTERM does) and waits for it, at most
// waitFor; stopping it again does nothing.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	if d.stopped {
		return
	}
	d.stopped = true
	timer := time.NewTimer(waitFor)
	defer timer.Stop()
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-timer.C:
		t.Error("run did not stop")
	}
	if t.Failed() {
		t.Logf("rostergate log:\n%s", d.log.String())
	}
}

// waitHeld waits, at most waitFor, for the admin to be told that contact's
// request to entity is held, which happens once it is stored, and returns
// the request's id.
func waitHeld(t *testing.T, admin *xmpptest.Client, contact, entity string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	re := regexp.MustCompile(`^#(\d+) ` + regexp.QuoteMeta(contact) + ` asks to subscribe to ` + regexp.QuoteMeta(entity) + ` `)
	m, err := admin.WaitMessage(ctx, func(m xmpptest.Message) bool { return re.MatchString(m.Body) })
	if err != nil {
		t.Fatalf("the admin was not told of the held request: %v", err)
	}
	return re.FindStringSubmatch(m.Body)[1]
}

func TestIntegrationCLIApproveWhileRunning(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationCLIApproveWhileRunning)
}

func testIntegrationCLIApproveWhileRunning(t *testing.T, srv *xmpptest.Server) {
	d := startDaemon(t, srv, "review")
	admin := srv.NewUser(t, "admin")
	alice := srv.NewUser(t, "alice")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	// The log's decision line comes before the request is stored; the
	// admins' notice after.
	id := waitHeld(t, admin, "alice@localhost", helpdesk)
	// The requester hears that the request waits, once, even if she asks
	// again.
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), waitFor)
	defer wcancel()
	if m, err := alice.WaitMessage(wctx, func(m xmpptest.Message) bool { return m.From == helpdesk }); err != nil || m.Body != config.DefaultReviewMessage {
		t.Errorf("the requester was told %+v, %v; want %q", m, err, config.DefaultReviewMessage)
	}

	out, _, err := runCmd(t, "pending", "-config", d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(\d+)\s+alice@localhost\s+helpdesk@bots.localhost\s+default`).FindStringSubmatch(out)
	if m == nil || m[1] != id {
		t.Fatalf("pending list, want request #%s:\n%s", id, out)
	}
	start := time.Now()
	out, _, err = runCmd(t, "pending", "-config", d.cfg, "approve", m[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Approved #"+m[1]) {
		t.Errorf("approve printed:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatal(err)
	}
	t.Logf("pending approve → subscribed at the user: %s", time.Since(start).Round(time.Millisecond))
	var told int
	for _, s := range alice.Stanzas() {
		if strings.Contains(s, "<message") && strings.Contains(s, "administrator") {
			told++
		}
	}
	if told != 1 {
		t.Errorf("the requester was told %d times that the request waits, want once", told)
	}
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
	if err := bob.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "lists", "-config", d.cfg, "deny", "[bad"); err == nil {
		t.Error("a bad pattern was accepted")
	}
}

// A reload (SIGHUP in production) re-reads the config; a bad one is refused
// and the old kept. The reload signal goes to this test's daemon only.
func TestIntegrationReload(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationReload)
}

func testIntegrationReload(t *testing.T, srv *xmpptest.Server) {
	d := startDaemon(t, srv, "reject")
	alice := srv.NewUser(t, "alice")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}

	// A bad config: refused, the old one stays.
	good, err := os.ReadFile(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.cfg, append(bytes.Clone(good), "bogus = 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	d.reload(t)
	d.waitLog(t, "reload refused")
	if !strings.Contains(d.log.String(), `unknown key \"policy.bogus\"`) {
		t.Errorf("the refusal does not say why:\n%s", d.log.String())
	}
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" }); err != nil {
		t.Fatal(err)
	}

	// A good one: in force at once.
	accept := bytes.Replace(good, []byte(`default = "reject"`), []byte(`default = "accept"`), 1)
	if bytes.Equal(accept, good) {
		t.Fatalf("the config has no default = \"reject\" to change:\n%s", good)
	}
	if err := os.WriteFile(d.cfg, accept, 0o600); err != nil {
		t.Fatal(err)
	}
	d.reload(t)
	d.waitLog(t, "reload done")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatal(err)
	}
}

// The reload signal as main() has it: given no channel, run catches SIGHUP
// itself. This is the only test that sends a real SIGHUP, and it goes to
// the whole test process: every other daemon here reloads on a channel of
// its own, so this one is the only catcher (without a catcher SIGHUP would
// end the process). No server is needed: a reload does not wait for the
// stream.
//
// Each reload's outcome is in the metrics too (via="SIGHUP"), and a reload
// puts [http] metrics_allow in force.
func TestReloadOnRealSIGHUP(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "component.toml")
	const text = "[component]\ndomain = \"bots.localhost\"\nserver = \"127.0.0.1:1\"\nsecret = \"x\"\n" +
		"[storage]\npath = \"rg.db\"\n[[entity]]\nlocal = \"helpdesk\"\n[http]\nlisten = \"127.0.0.1:0\"\n%s[admin]\njids = [%s]\n"
	write := func(http, admins string) {
		t.Helper()
		if err := os.WriteFile(cfg, fmt.Appendf(nil, text, http, admins), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	write("", `"admin@localhost"`)
	d := startRun(t, cfg, nil)
	d.waitLog(t, "rostergate: starting: ") // logged once SIGHUP is caught
	d.waitLog(t, "HTTP API listening")
	m := apiURL.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no API address in the log:\n%s", d.log.String())
	}
	const ok, failed, last = `rostergate_config_reloads_total{result="success",via="SIGHUP"}`, `rostergate_config_reloads_total{result="failure",via="SIGHUP"}`,
		`rostergate_config_last_reload_successful`
	if _, s, _ := scrapeMetrics(t, m[1]); s[ok] != 0 || s[failed] != 0 || s[last] != 1 {
		t.Errorf("before any reload: %s %v, %s %v, %s %v", ok, s[ok], failed, s[failed], last, s[last])
	}
	write("", `"admin@localhost", "ops@localhost"`)
	hup()
	d.waitLog(t, "reload done")
	if !strings.Contains(d.log.String(), "rostergate.engine: settings reloaded: entities=1 rules=0 admins=2\n") {
		t.Errorf("the reload did not put the new config in force:\n%s", d.log.String())
	}
	if s := waitMetric(t, m[1], ok, 1); s[failed] != 0 || s[last] != 1 {
		t.Errorf("after a reload: %s %v, %s %v", failed, s[failed], last, s[last])
	}
	write("", `"not a JID@@"`)
	hup()
	d.waitLog(t, "reload refused")
	if s := waitMetric(t, m[1], failed, 1); s[ok] != 1 || s[last] != 0 {
		t.Errorf("after a refused reload: %s %v, %s %v", ok, s[ok], last, s[last])
	}
	// metrics_allow changed by a reload: 127.0.0.1 is no longer let in.
	write("metrics_allow = [\"10.0.0.0/8\"]\n", `"admin@localhost"`)
	hup()
	deadline := time.Now().Add(waitFor)
	for {
		status, _, _ := scrapeMetrics(t, m[1])
		if status == http.StatusForbidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics from 127.0.0.1 after metrics_allow = [\"10.0.0.0/8\"]: %d, want 403", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// review_ttl reaches the running instance: a request held for review
// longer is rejected by rostergate itself. Config validation sets no
// minimum on review_ttl, so 1s is allowed.
func TestIntegrationReviewTTL(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationReviewTTL)
}

func testIntegrationReviewTTL(t *testing.T, srv *xmpptest.Server) {
	const ttl = time.Second
	d := startDaemonPolicy(t, srv, fmt.Sprintf("default = \"review\"\nreview_ttl = %q\n", ttl))
	admin := srv.NewUser(t, "admin")
	alice := srv.NewUser(t, "alice")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sent := time.Now()
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	id := waitHeld(t, admin, "alice@localhost", helpdesk)

	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "unsubscribed" && p.From == helpdesk }); err != nil {
		t.Fatalf("the held request was not rejected after review_ttl: %v", err)
	}
	// The request's time is taken after it was sent, and stored to the
	// millisecond.
	if took := time.Since(sent); took < ttl-time.Millisecond {
		t.Errorf("rejected %s after the request, before review_ttl (%s)", took, ttl)
	}
	notice := "#" + id + " alice@localhost → " + helpdesk + ": rejected by rostergate (review_ttl)"
	if _, err := admin.WaitMessage(ctx, func(m xmpptest.Message) bool { return m.Body == notice }); err != nil {
		t.Errorf("the admin was not told %q: %v", notice, err)
	}
	d.waitLog(t, "rostergate.engine: held request expired: id="+id+" ")

	// The rejection is stored before it is sent: nothing is pending now.
	out, _, err := runCmd(t, "pending", "-config", d.cfg)
	if err != nil || strings.TrimSpace(out) != "No pending requests." {
		t.Errorf("pending after review_ttl: %v\n%s", err, out)
	}

	// The audit log: held for review, then rejected through review_ttl.
	out, _, err = runCmd(t, "audit", "-config", d.cfg, "-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var held, expired bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 0; sc.Scan() && n < 1000; n++ {
		var e map[string]string
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e["contact"] != "alice@localhost" || e["entity"] != helpdesk {
			continue
		}
		switch {
		case e["kind"] == "subscribe" && e["action"] == "review":
			held = true
		case held && e["kind"] == "reject" && e["action"] == "reject" && e["actor"] == "rostergate" &&
			e["interface"] == "review_ttl" && e["detail"] == "request #"+id:
			expired = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !held || !expired {
		t.Errorf("audit: held for review %v, rejected via review_ttl %v, want both:\n%s", held, expired, out)
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
	if err != nil || !strings.Contains(out, "drop") || !strings.Contains(out, "unknown_entity") {
		t.Errorf("explain unknown entity: %v\n%s", err, out)
	}
	if _, stderr, err := runCmd(t, "explain", "-config", "../../component.toml", "-from", "a@b"); err == nil || !strings.Contains(stderr, "-from and -to are required") {
		t.Errorf("explain without -to: %v %q", err, stderr)
	}
}

// POST /-/reload does what SIGHUP does, for an admin's token: the new
// policy is in force at once; a bad config is refused and the old kept.
func TestIntegrationReloadOverHTTP(t *testing.T) {
	srv := xmpptest.Prosody(t)
	cfg := filepath.Join(t.TempDir(), "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret)
	text = strings.Replace(text, "[policy]\n", "[http]\nlisten = \"127.0.0.1:0\"\n[policy]\n", 1)
	write := func(def string) {
		if err := os.WriteFile(cfg, []byte(text+fmt.Sprintf("default = %q\n", def)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("reject")
	out, _, err := runCmd(t, "token", "create", "-config", cfg, "-admin")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	m := apiURL.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no API address in the log:\n%s", d.log.String())
	}
	reload := func() (int, string) {
		req, _ := http.NewRequest("POST", m[1]+"/-/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	write("accept")
	if status, body := reload(); status != 200 {
		t.Fatalf("reload: %d %s", status, body)
	}
	d.waitLog(t, "via=http")
	alice := srv.NewUser(t, "alice")
	if err := alice.SendPresence("helpdesk@"+srv.ComponentDomain, "subscribe"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := alice.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
		t.Fatalf("after the reload to accept: %v", err)
	}
	write("maybe")
	if status, body := reload(); status != 422 || !strings.Contains(body, "config in force is kept") {
		t.Errorf("a bad config: %d %s", status, body)
	}

	// The metrics tell both reloads (via="http"), and what alice's request
	// did; no label holds a JID.
	status, s, values := scrapeMetrics(t, m[1])
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	for series, want := range map[string]float64{
		`rostergate_config_reloads_total{result="success",via="http"}`:   1,
		`rostergate_config_reloads_total{result="failure",via="http"}`:   1,
		`rostergate_config_reloads_total{result="success",via="SIGHUP"}`: 0,
		`rostergate_config_last_reload_successful`:                       0,
		`rostergate_decisions_total{action="accept",rule="default"}`:     1,
		`rostergate_decisions_total{action="reject",rule="default"}`:     0,
		`rostergate_stream_up`:     1,
		`rostergate_held_requests`: 0,
	} {
		if got, ok := s[series]; !ok || got != want {
			t.Errorf("%s = %v (present: %t), want %v", series, got, ok, want)
		}
	}
	for _, series := range []string{`rostergate_stanzas_total{direction="in",kind="presence"}`, `rostergate_stanzas_total{direction="out",kind="presence"}`,
		`rostergate_commit_duration_seconds_count`} {
		if s[series] < 1 {
			t.Errorf("%s = %v, want at least 1", series, s[series])
		}
	}
	for _, v := range values {
		if strings.Contains(v, "@") {
			t.Errorf("a label value holds a JID: %q", v)
		}
	}
}

// A reload to [log] level = "debug" reaches every part: the engine's debug
// lines (a subscription's change of state) appear after it, not before.
func TestIntegrationReloadLogLevel(t *testing.T) {
	srv := xmpptest.Prosody(t)
	cfg := filepath.Join(t.TempDir(), "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret)
	write := func(level string) {
		t.Helper()
		c := strings.Replace(text, "[policy]\n", fmt.Sprintf("[log]\nlevel = %q\n[policy]\n", level), 1) + "default = \"accept\"\n"
		if err := os.WriteFile(cfg, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info")
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	subscribe := func(u *xmpptest.Client) {
		t.Helper()
		if err := u.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		if _, err := u.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" }); err != nil {
			t.Fatal(err)
		}
	}
	subscribe(srv.NewUser(t, "alice"))
	d.waitLog(t, "rostergate.engine: decision: entity="+helpdesk+" contact=alice@localhost ")
	if out := d.log.String(); strings.Contains(out, "[DEBUG]") {
		t.Errorf("a debug line at level info:\n%s", out)
	}
	write("debug")
	d.reload(t)
	d.waitLog(t, "rostergate: log level changed: from=info to=debug via=SIGHUP\n")
	subscribe(srv.NewUser(t, "bob"))
	d.waitLog(t, "[DEBUG] rostergate.engine: state: entity="+helpdesk+" contact=bob@localhost ")
}
