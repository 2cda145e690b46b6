// Command rostergate-demo shows rostergate working end to end: it starts a
// throwaway Prosody on loopback (or, with -server, ejabberd or Openfire),
// runs `rostergate run` against it with a demo policy, logs demo users in
// with a real XMPP client, and prints the subscription flows each user sees
// and the rosters both sides end with.
//
// Run it with `make demo`.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"rostergate/internal/xmpptest"
	"rostergate/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin := flag.String("rostergate", "./rostergate", "the rostergate `binary` to run")
	echoBin := flag.String("echo-bot", "./echo-bot", "the example bot's `binary` (examples/echo-bot)")
	keep := flag.Bool("keep", false, "keep the temporary directory (configs, logs, database)")
	server := flag.String("server", xmpptest.KindProsody, "the `server` to attach to: prosody, ejabberd, or openfire (needs $OPENFIRE_HOME)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "rostergate-demo: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	if !slices.Contains(xmpptest.Kinds, *server) {
		fmt.Fprintf(os.Stderr, "rostergate-demo: -server %q: want one of %s\n", *server, strings.Join(xmpptest.Kinds, ", "))
		os.Exit(2)
	}
	if err := run(ctx, *bin, *echoBin, *server, *keep, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rostergate-demo:", err)
		os.Exit(1)
	}
}

const demoConfig = `[component]
domain = %q
server = %q
secret = %q

[storage]
path = "rostergate.db"

[[entity]]
local = "helpdesk"
name = "Help Desk"
status = "Ask me anything"

[[entity]]
local = "alerts"
name = "Alerts"
show = "dnd"
status = "Automated alerts"

[[entity]]
local = "echo"
name = "Echo bot"
status = "I repeat what you say"
webhook = "http://%s/"          # examples/echo-bot
webhook_secret_file = "echo.whsec"

[http]
listen = %q

[admin]
jids = ["admin@localhost"]

[policy]
default = "review"
unknown_entity = "drop"   # JIDs that are no entity do not exist: requests ignored

[[policy.rule]]
contact = "mallory@localhost"
action = "reject"

[[policy.rule]]
contact = "*@localhost"
entity = "helpdesk"
action = "accept"
subscribe_back = true

[[policy.rule]]
contact = "bob@localhost"
entity = "alerts"
action = "accept"

[[policy.rule]]
contact = "*@localhost"
entity = "echo"
action = "accept"
`

var serverName = map[string]string{xmpptest.KindProsody: "Prosody", xmpptest.KindEjabberd: "ejabberd", xmpptest.KindOpenfire: "Openfire"}

type demo struct {
	out    io.Writer
	srv    *xmpptest.Server
	failed int    // expectations that did not hold
	lastID string // the request id in the last notice an admin got
}

func run(ctx context.Context, bin, echoBin, server string, keep bool, out io.Writer) error {
	for _, b := range []*string{&bin, &echoBin} {
		if _, err := os.Stat(*b); err != nil {
			return fmt.Errorf("%w (build it first: make build)", err)
		}
		*b, _ = filepath.Abs(*b)
	}
	dir, err := os.MkdirTemp("", "rostergate-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// Bounded by the test harness's start timeout, as the tests are.
	srv, err := xmpptest.Start(ctx, server, xmpptest.Config{Dir: filepath.Join(dir, server)})
	if errors.Is(err, xmpptest.ErrNotInstalled) {
		return fmt.Errorf("%w: install it with `make deps` (Debian package %s)", err, server)
	}
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Fprintf(out, "%s is up: clients on %s, components on %s (domain %s)\n", serverName[server], srv.C2SAddr, srv.ComponentAddr, srv.Domain)

	ports, err := loopbackPorts(2)
	if err != nil {
		return err
	}
	apiAddr, hookAddr := ports[0], ports[1]
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "echo.whsec"), []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "component.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, demoConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret, hookAddr, apiAddr), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ rostergate check -config component.toml\n")
	check := exec.CommandContext(ctx, bin, "check", "-config", cfg)
	check.Stdout, check.Stderr = indent(out), indent(out)
	if err := check.Run(); err != nil {
		return fmt.Errorf("rostergate check: %w", err)
	}

	fmt.Fprintf(out, "\n$ rostergate run -config component.toml\n")
	logPath := filepath.Join(dir, "rostergate.log")
	rg := exec.Command(bin, "run", "-config", cfg)
	stderr, err := rg.StderrPipe()
	if err != nil {
		return err
	}
	if err := rg.Start(); err != nil {
		return err
	}
	defer rg.Process.Kill()
	up := make(chan struct{})
	logDone := make(chan struct{})
	var logLines []string
	go func() {
		defer close(logDone)
		f, _ := os.Create(logPath)
		defer f.Close()
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(f, line)
			logLines = append(logLines, line)
			if !once && strings.Contains(line, "presence resync sent") {
				once = true
				close(up)
			}
		}
	}()
	select {
	case <-up:
	case <-logDone:
		return fmt.Errorf("rostergate exited: %s", strings.Join(logLines, "\n"))
	case <-time.After(10 * time.Second):
		return errors.New("rostergate did not connect within 10 s")
	}
	fmt.Fprintln(out, "  rostergate is connected as bots.localhost")

	// The example bot behind echo: a token for its API calls, then the bot.
	fmt.Fprintf(out, "\n$ rostergate token create -config component.toml -entity echo > echo.token\n")
	tokenFile := filepath.Join(dir, "echo.token")
	mk := exec.CommandContext(ctx, bin, "token", "create", "-config", cfg, "-entity", "echo")
	mk.Stderr = indent(out)
	tok, err := mk.Output()
	if err != nil {
		return fmt.Errorf("rostergate token create: %w", err)
	}
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ echo-bot -listen %s -api http://%s -token-file echo.token -secret-file echo.whsec\n", hookAddr, apiAddr)
	bot := exec.Command(echoBin, "-listen", hookAddr, "-api", "http://"+apiAddr, "-token-file", tokenFile,
		"-secret-file", filepath.Join(dir, "echo.whsec"), "-entity", "echo")
	botLog, err := os.Create(filepath.Join(dir, "echo-bot.log"))
	if err != nil {
		return err
	}
	defer botLog.Close()
	bot.Stdout, bot.Stderr = botLog, botLog
	if err := bot.Start(); err != nil {
		return err
	}
	defer func() {
		_ = bot.Process.Kill()
		_ = bot.Wait()
	}()

	d := &demo{out: out, srv: srv}
	helpdesk, alerts := "helpdesk@"+srv.ComponentDomain, "alerts@"+srv.ComponentDomain

	d.title("Scenario 1 — rejected: mallory adds helpdesk, the policy rejects her")
	mallory, err := d.login(ctx, "mallory")
	if err != nil {
		return err
	}
	d.send(mallory, helpdesk, "subscribe")
	d.expect(ctx, mallory, helpdesk, "unsubscribed")
	d.roster(ctx, mallory, helpdesk, "none", "")

	d.title("Scenario 2 — accepted one way: bob adds alerts")
	bob, err := d.login(ctx, "bob")
	if err != nil {
		return err
	}
	d.send(bob, alerts, "subscribe")
	d.expect(ctx, bob, alerts, "subscribed")
	d.expect(ctx, bob, alerts+"/rostergate", "")
	d.roster(ctx, bob, alerts, "to", "")

	d.title("Scenario 3 — accepted both ways: alice adds helpdesk, helpdesk asks back, alice accepts")
	alice, err := d.login(ctx, "alice")
	if err != nil {
		return err
	}
	d.send(alice, helpdesk, "subscribe")
	d.expect(ctx, alice, helpdesk, "subscribed")
	d.expect(ctx, alice, helpdesk+"/rostergate", "")
	d.expect(ctx, alice, helpdesk, "subscribe")
	d.send(alice, helpdesk, "subscribed")
	d.roster(ctx, alice, helpdesk, "both", "")

	d.title("Held for review: erin adds alerts; no rule matches, the default is review; the admin is told")
	adm, err := d.login(ctx, "admin")
	if err != nil {
		return err
	}
	erin, err := d.login(ctx, "erin")
	if err != nil {
		return err
	}
	d.send(erin, alerts, "subscribe")
	d.roster(ctx, erin, alerts, "none", "subscribe")
	d.message(ctx, adm, srv.ComponentDomain, "asks to subscribe")

	d.title("Approval by chat command (any client, Spark included)")
	d.chat(ctx, adm, srv.ComponentDomain, "pending")
	d.chat(ctx, adm, srv.ComponentDomain, "approve "+d.lastID)
	d.expect(ctx, erin, alerts, "subscribed")
	d.roster(ctx, erin, alerts, "to", "")

	d.title("Approval from the command line, while rostergate runs")
	frank, err := d.login(ctx, "frank")
	if err != nil {
		return err
	}
	d.send(frank, alerts, "subscribe")
	d.message(ctx, adm, srv.ComponentDomain, "asks to subscribe")
	d.cli(ctx, bin, "pending", "-config", cfg)
	d.cli(ctx, bin, "pending", "-config", cfg, "approve", d.lastID)
	d.expect(ctx, frank, alerts, "subscribed")

	d.title("Rejection with the XEP-0050 ad-hoc command, as Gajim, Psi or Conversations send it")
	gina, err := d.login(ctx, "gina")
	if err != nil {
		return err
	}
	d.send(gina, alerts, "subscribe")
	d.message(ctx, adm, srv.ComponentDomain, "asks to subscribe")
	d.adhocReject(ctx, adm, srv.ComponentDomain, d.lastID)
	d.expect(ctx, gina, alerts, "unsubscribed")
	d.roster(ctx, gina, alerts, "none", "")

	d.title("The web page: the admin sends login and gets a one-time link (README \"The web page\")")
	d.chat(ctx, adm, srv.ComponentDomain, "login")
	d.message(ctx, adm, srv.ComponentDomain, "/login/rgl_")

	d.title("A bot: alice adds echo and says hi; examples/echo-bot gets the webhook and answers through the API")
	echo := "echo@" + srv.ComponentDomain
	d.send(alice, echo, "subscribe")
	d.expect(ctx, alice, echo, "subscribed")
	d.talk(ctx, alice, echo, "hi", echo+"/rostergate")
	d.api(ctx, "GET", "http://"+apiAddr+"/api/v1/entities/echo/roster", strings.TrimSpace(string(tok)))

	d.title("Metrics: what an operator's Prometheus scrapes (docs/metrics.md)")
	d.metrics(ctx, "http://"+apiAddr+"/metrics")

	d.cli(ctx, bin, "explain", "-config", cfg, "-from", "mallory@localhost", "-to", "helpdesk")
	d.cli(ctx, bin, "audit", "-config", cfg, "-since", "1h")

	fmt.Fprintf(out, "\n$ rostergate roster -config component.toml\n")
	roster := exec.CommandContext(ctx, bin, "roster", "-config", cfg)
	roster.Stdout, roster.Stderr = indent(out), indent(out)
	if err := roster.Run(); err != nil {
		return fmt.Errorf("rostergate roster: %w", err)
	}

	d.title("Shutdown: SIGTERM to rostergate; its subscribers see it go offline")
	if err := rg.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	d.expect(ctx, alice, helpdesk+"/rostergate", "unavailable")
	d.expect(ctx, bob, alerts+"/rostergate", "unavailable")
	if err := rg.Wait(); err != nil {
		return fmt.Errorf("rostergate exit: %w", err)
	}
	<-logDone
	fmt.Fprintf(out, "\nrostergate's log:\n")
	for _, l := range logLines {
		fmt.Fprintf(out, "  %s\n", l)
	}
	if d.failed > 0 {
		return fmt.Errorf("%d expected flows did not happen (marked !! above)", d.failed)
	}
	fmt.Fprintf(out, "\nDemo complete.\n")
	return nil
}

func (d *demo) title(s string) { fmt.Fprintf(d.out, "\n== %s ==\n", s) }

func (d *demo) login(ctx context.Context, user string) (*xmpptest.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.srv.Register(ctx, user, "pw-"+user); err != nil {
		return nil, err
	}
	return xmpptest.Dial(ctx, d.srv.C2SAddr, d.srv.JID(user), "pw-"+user)
}

func (d *demo) send(c *xmpptest.Client, to, typ string) {
	fmt.Fprintf(d.out, "  %-20s → %-28s presence type=%s\n", c.Bare, to, typ)
	if err := c.SendPresence(to, typ); err != nil {
		fmt.Fprintf(d.out, "  !! send failed: %v\n", err)
		d.failed++
	}
}

func (d *demo) expect(ctx context.Context, c *xmpptest.Client, from, typ string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.From == from && p.Type == typ })
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	t := p.Type
	if t == "" {
		t = "available"
		if p.Show != "" {
			t += " show=" + p.Show
		}
		if p.Status != "" {
			t += fmt.Sprintf(" status=%q", p.Status)
		}
	} else {
		t = "type=" + t
	}
	fmt.Fprintf(d.out, "  %-20s ← %-28s presence %s\n", c.Bare, p.From, t)
}

func (d *demo) roster(ctx context.Context, c *xmpptest.Client, jid, sub, ask string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	it, err := c.WaitRosterItem(ctx, jid, func(it xmpptest.RosterItem) bool { return it.Subscription == sub && it.Ask == ask })
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	extra := ""
	if it.Ask != "" {
		extra = " ask=" + it.Ask
	}
	fmt.Fprintf(d.out, "  %s's roster on the server: %s subscription=%s%s\n", strings.Split(c.Bare, "@")[0], it.JID, it.Subscription, extra)
}

// message waits for a chat message from from that contains contains,
// prints it and remembers the request id it names.
func (d *demo) message(ctx context.Context, c *xmpptest.Client, from, contains string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := c.WaitMessage(ctx, func(m xmpptest.Message) bool { return m.From == from && strings.Contains(m.Body, contains) })
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	fmt.Fprintf(d.out, "  %-20s ← %s: message\n", c.Bare, m.From)
	for _, l := range strings.Split(m.Body, "\n") {
		fmt.Fprintf(d.out, "      | %s\n", l)
	}
	if i := strings.Index(m.Body, "#"); i >= 0 {
		id := strings.FieldsFunc(m.Body[i+1:], func(r rune) bool { return r < '0' || r > '9' })
		if len(id) > 0 {
			d.lastID = id[0]
		}
	}
}

// chat sends a chat command and prints the answer.
func (d *demo) chat(ctx context.Context, c *xmpptest.Client, to, body string) {
	d.talk(ctx, c, to, body, to)
}

// talk sends a chat message and prints the answer, which comes from from.
func (d *demo) talk(ctx context.Context, c *xmpptest.Client, to, body, from string) {
	fmt.Fprintf(d.out, "  %-20s → %s: %q\n", c.Bare, to, body)
	if err := c.SendMessage(to, body); err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	d.message(ctx, c, from, "")
}

// api calls rostergate's HTTP API as curl would, and prints the call and
// the answer.
func (d *demo) api(ctx context.Context, method, url, token string) {
	fmt.Fprintf(d.out, "\n$ curl -s -H 'Authorization: Bearer rgt_…' %s\n", url)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(d.out, "  %s", body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(d.out, "  !! %s\n", resp.Status)
		d.failed++
	}
}

// metrics fetches /metrics as curl would and prints rostergate's own
// series that are not zero (the Go and process ones, and the zeros, are
// left out to keep it short).
func (d *demo) metrics(ctx context.Context, url string) {
	fmt.Fprintf(d.out, "\n$ curl -s %s | grep '^rostergate_' | grep -v ' 0$'   # histograms: _count only\n", url)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(d.out, "  !! %s\n", resp.Status)
		d.failed++
		return
	}
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "rostergate_") || strings.HasSuffix(l, " 0") || strings.Contains(l, "_bucket{") || strings.Contains(l, "_sum ") {
			continue
		}
		fmt.Fprintf(d.out, "  %s\n", l)
	}
}

// loopbackPorts returns n free loopback addresses (the ports were free a
// moment ago).
func loopbackPorts(n int) ([]string, error) {
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		out = append(out, ln.Addr().String())
		defer ln.Close()
	}
	return out, nil
}

// cli runs rostergate with args and prints the command and its output.
func (d *demo) cli(ctx context.Context, bin string, args ...string) {
	shown := strings.Join(args, " ")
	if i := strings.Index(shown, "-config "); i >= 0 {
		rest := strings.SplitN(shown[i+len("-config "):], " ", 2)
		shown = shown[:i] + "-config component.toml"
		if len(rest) == 2 {
			shown += " " + rest[1]
		}
	}
	fmt.Fprintf(d.out, "\n$ rostergate %s\n", shown)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = indent(d.out), indent(d.out)
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
	}
}

// adhocReject runs the "pending" ad-hoc command and rejects request id in
// its form.
func (d *demo) adhocReject(ctx context.Context, c *xmpptest.Client, domain, id string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	exec := "<iq type='set' to='" + domain + "'><command xmlns='http://jabber.org/protocol/commands' node='pending' action='execute'/></iq>"
	fmt.Fprintf(d.out, "  %-20s → %s: %s\n", c.Bare, domain, exec)
	form, err := c.IQ(ctx, exec)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	fmt.Fprintf(d.out, "  %-20s ← %s: %s\n", c.Bare, domain, form)
	sid := ""
	if i := strings.Index(form, "sessionid="); i >= 0 {
		q := form[i+len("sessionid=")]
		rest := form[i+len("sessionid=")+1:]
		sid = rest[:strings.IndexByte(rest, q)]
	}
	submit := "<iq type='set' to='" + domain + "'><command xmlns='http://jabber.org/protocol/commands' node='pending' sessionid='" + sid +
		"' action='complete'><x xmlns='jabber:x:data' type='submit'><field var='reject'><value>" + id + "</value></field></x></command></iq>"
	fmt.Fprintf(d.out, "  %-20s → %s: %s\n", c.Bare, domain, submit)
	done, err := c.IQ(ctx, submit)
	if err != nil {
		fmt.Fprintf(d.out, "  !! %v\n", err)
		d.failed++
		return
	}
	fmt.Fprintf(d.out, "  %-20s ← %s: %s\n", c.Bare, domain, done)
}

// indent prefixes every line written through it with two spaces.
func indent(w io.Writer) io.Writer { return &indenter{w: w, bol: true} }

type indenter struct {
	w   io.Writer
	bol bool
}

func (in *indenter) Write(p []byte) (int, error) {
	for _, b := range p {
		if in.bol {
			if _, err := in.w.Write([]byte("  ")); err != nil {
				return 0, err
			}
		}
		if _, err := in.w.Write([]byte{b}); err != nil {
			return 0, err
		}
		in.bol = b == '\n'
	}
	return len(p), nil
}
