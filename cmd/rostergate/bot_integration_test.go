package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rostergate/internal/pgtest"
	"rostergate/internal/xmpptest"
	"rostergate/webhook"
)

// childArgs, in the environment, makes this test binary be `rostergate`
// with those arguments (space-separated): a daemon the test can SIGKILL.
const childArgs = "ROSTERGATE_TEST_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgs); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, strings.Fields(args), proc{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rostergate:", err)
			os.Exit(exitCode(err))
		}
		os.Exit(0)
	}
	pgtest.Main(m)
}

// child is `rostergate run` in a process of its own.
type child struct {
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
	api  string // the HTTP API's base URL
}

var apiURL = regexp.MustCompile(`rostergate\.http: HTTP API listening: url=(http://127\.0\.0\.1:[0-9]+)/api/v1/ `)

func startChild(t *testing.T, cfg string) *child {
	t.Helper()
	c := startChildWaiting(t, cfg, "presence resync sent")
	m := apiURL.FindStringSubmatch(c.log.String())
	if m == nil {
		t.Fatalf("no API address in the log:\n%s", c.log.String())
	}
	c.api = m[1]
	return c
}

// startChildWaiting starts `rostergate run -config cfg` in a process of its
// own, and returns once its log says want.
func startChildWaiting(t *testing.T, cfg, want string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{log: &logBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(exe, "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childArgs+"=run -config "+cfg)
	c.cmd.Stderr, c.cmd.Stdout = c.log, io.Discard
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.kill(t)
		if t.Failed() {
			t.Logf("rostergate log:\n%s", c.log.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.log.wait(ctx, want); err != nil {
		t.Fatalf("rostergate's log never said %q: %v\n%s", want, err, c.log.String())
	}
	return c
}

// kill ends the process with SIGKILL and waits for it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(waitFor):
		t.Error("rostergate did not die")
	}
}

// hookReceiver is the bot's webhook endpoint: it verifies each POST and
// answers message events with an echo in its reply, unless it is down.
type hookReceiver struct {
	t      *testing.T
	secret webhook.Secret
	mu     sync.Mutex
	down   bool
	failed int               // attempts refused while down
	taken  []string          // bodies of the message events taken, in order
	ids    map[string]string // webhook-id of each taken event → its body
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(400)
		return
	}
	if err := h.secret.Verify(r.Header, body, time.Now(), 0); err != nil {
		h.t.Errorf("webhook: %v", err)
		w.WriteHeader(401)
		return
	}
	var ev struct {
		Type    string `json:"type"`
		Message struct {
			Body string `json:"body"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		h.t.Errorf("webhook body %s: %v", body, err)
		w.WriteHeader(400)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		h.failed++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if ev.Type != "message" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	id := r.Header.Get(webhook.HeaderID)
	if prev, dup := h.ids[id]; dup {
		h.t.Errorf("event %s (%q) taken twice", id, prev)
	}
	h.ids[id] = ev.Message.Body
	h.taken = append(h.taken, ev.Message.Body)
	fmt.Fprintf(w, `{"reply":{"body":%q}}`, "echo: "+ev.Message.Body)
}

func (h *hookReceiver) state() (taken []string, failed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.taken), h.failed
}

// until polls cond every 50 ms for at most waitFor.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A bot on a real server, end to end: a user messages the entity, the
// webhook receiver verifies the signature and answers, the user gets the
// reply. Then the receiver goes down, the user sends three more, and
// rostergate is killed with SIGKILL meanwhile; once it is back and the
// receiver is up, each is delivered once, in order, and answered. The long
// poll resumes where it stopped; a revoked token is refused.
func TestIntegrationBot(t *testing.T) { xmpptest.EachServer(t, testIntegrationBot) }

func testIntegrationBot(t *testing.T, srv *xmpptest.Server) {
	dir := t.TempDir()
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	rcv := &hookReceiver{t: t, secret: sec, ids: map[string]string{}}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	if err := os.WriteFile(filepath.Join(dir, "echo.whsec"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(`[component]
domain = %q
server = %q
secret = %q
[storage]
path = "rg.db"
[[entity]]
local = "echo"
name = "Echo"
webhook = %q
webhook_secret_file = "echo.whsec"
[http]
listen = "127.0.0.1:0"
[policy]
default = "accept"
`, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret, hook.URL+"/hook")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"token", "create", "-config", cfg, "-entity", "echo"}, proc{stdout: &out, stderr: &errOut, getenv: noEnv}); err != nil {
		t.Fatalf("token create: %v\n%s", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	if !strings.HasPrefix(token, "rgt_") || strings.Contains(errOut.String(), token) {
		t.Fatalf("token create printed %q, and %q", out.String(), errOut.String())
	}

	rg := startChild(t, cfg)
	entity := "echo@" + srv.ComponentDomain
	alice := srv.NewUser(t, "alice")
	send(t, alice, entity, "subscribe")
	if _, err := alice.WaitPresence(ctxFor(t), func(p xmpptest.Presence) bool { return p.From == entity && p.Type == "subscribed" }); err != nil {
		t.Fatal(err)
	}
	replyFrom := entity + "/rostergate"
	wantReply := func(body string) {
		t.Helper()
		m, err := alice.WaitMessage(ctxFor(t), func(m xmpptest.Message) bool { return m.From == replyFrom && m.Type == "chat" })
		if err != nil || m.Body != "echo: "+body {
			t.Fatalf("reply to %q: %+v, %v", body, m, err)
		}
	}
	if err := alice.SendMessage(entity, "one"); err != nil {
		t.Fatal(err)
	}
	wantReply("one")

	// The receiver goes down; three messages wait in the log.
	rcv.mu.Lock()
	rcv.down = true
	rcv.mu.Unlock()
	for _, b := range []string{"two", "three", "four"} {
		if err := alice.SendMessage(entity, b); err != nil {
			t.Fatal(err)
		}
	}
	var lastBefore int64
	until(t, "the three messages in the event log", func() bool {
		evs := pollEvents(t, rg.api, token, "?after=0&limit=1000")
		n := 0
		for _, e := range evs {
			if e.Type == "message" {
				n++
			}
			lastBefore = e.ID
		}
		return n == 4
	})
	// The second attempt comes after the deliverer stored its cursor (past
	// "one") and slept: killed after the first, "one" could come again.
	until(t, "a delivery failed and retried", func() bool { _, f := rcv.state(); return f > 1 })
	rg.kill(t)

	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()
	rg = startChild(t, cfg)
	for _, b := range []string{"two", "three", "four"} {
		wantReply(b)
	}
	if taken, _ := rcv.state(); !slices.Equal(taken, []string{"one", "two", "three", "four"}) {
		t.Errorf("taken %q, want each once, in order", taken)
	}

	// The long poll resumes after the last id it saw, across the restart.
	done := make(chan []apiEvent, 1)
	go func() { done <- pollEvents(t, rg.api, token, fmt.Sprintf("?after=%d&wait=30s", lastBefore)) }()
	time.Sleep(200 * time.Millisecond)
	if err := alice.SendMessage(entity, "five"); err != nil {
		t.Fatal(err)
	}
	select {
	case evs := <-done:
		if len(evs) == 0 || evs[0].Type != "message" || evs[0].Message.Body != "five" {
			t.Errorf("long poll after the restart: %+v", evs)
		}
	case <-time.After(waitFor):
		t.Fatal("the long poll did not wake")
	}
	wantReply("five")

	// A revoked token is refused at once.
	if err := run(context.Background(), []string{"token", "revoke", "-config", cfg, "1"}, proc{stdout: io.Discard, stderr: io.Discard, getenv: noEnv}); err != nil {
		t.Fatal(err)
	}
	until(t, "the revoked token refused", func() bool {
		req, _ := http.NewRequest("GET", rg.api+"/api/v1/entities/echo/roster", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == 401
	})
}

type apiEvent struct {
	ID      int64  `json:"id"`
	Type    string `json:"type"`
	Message struct {
		Body string `json:"body"`
	} `json:"message"`
}

func pollEvents(t *testing.T, api, token, query string) []apiEvent {
	t.Helper()
	req, err := http.NewRequest("GET", api+"/api/v1/entities/echo/events"+query, nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var page struct {
		Events []apiEvent `json:"events"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&page) != nil {
		t.Errorf("events%s: %s", query, resp.Status)
	}
	return page.Events
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func send(t *testing.T, c *xmpptest.Client, to, typ string) {
	t.Helper()
	if err := c.SendPresence(to, typ); err != nil {
		t.Fatal(err)
	}
}
