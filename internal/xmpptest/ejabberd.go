package xmpptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// StartEjabberd writes an ejabberd configuration into cfg.Dir, starts
// `ejabberdctl foreground` with it and waits (bounded by ctx and by
// StartTimeout) until ejabberd listens on its ports on 127.0.0.1 and
// answers on the client and component ports. If a port turns out to be
// taken by another process, it starts ejabberd again on fresh ports, a
// bounded number of times. ctx only bounds the start; the server runs until
// Stop. It returns an error wrapping ErrNotInstalled if ejabberd is not
// installed.
//
// Debian's ejabberdctl switches to the user ejabberd when run as root; the
// server runs from a copy of it that runs as the caller instead. The Erlang
// node has a name of its own (so servers can run side by side), a random
// cookie, and listens for distribution (which ejabberdctl needs to talk to
// it) on a fixed port on 127.0.0.1; epmd is not used.
func StartEjabberd(ctx context.Context, cfg Config) (*Server, error) {
	orig, err := lookPath("ejabberdctl")
	if err != nil {
		return nil, err
	}
	if _, err := lookPath("erl"); err != nil {
		return nil, err
	}
	s, err := newServer(KindEjabberd, cfg)
	if err != nil {
		return nil, err
	}
	// ejabberdctl splits its settings on blanks and passes the spool
	// directory to Erlang inside double quotes.
	if strings.ContainsAny(s.Dir, " \t\n\"'\\$`") {
		return nil, fmt.Errorf("xmpptest: ejabberd cannot run in %q: blanks, quotes or shell characters in the path", s.Dir)
	}
	node, err := randomHex(5)
	if err != nil {
		return nil, err
	}
	e := &ejabberd{
		s:         s,
		ctl:       filepath.Join(s.Dir, "ejabberdctl"),
		ctlConfig: filepath.Join(s.Dir, "ejabberdctl.cfg"),
		spool:     filepath.Join(s.Dir, "spool"),
		logs:      filepath.Join(s.Dir, "logs"),
		node:      "rg" + node + "@localhost",
	}
	s.impl = e
	s.ConfigPath = filepath.Join(s.Dir, "ejabberd.yml")
	s.LogPath = filepath.Join(e.logs, "ejabberd.log")
	s.OutPath = filepath.Join(s.Dir, "ejabberd.out")
	if err := e.writeFiles(orig); err != nil {
		return nil, err
	}
	if err := s.startNew(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ejabberd is the ejabberd backend of a Server.
type ejabberd struct {
	s         *Server
	ctl       string // our copy of ejabberdctl
	ctlConfig string // its settings (node name, distribution port)
	spool     string // Mnesia database
	logs      string
	node      string // Erlang node name; Mnesia needs it to stay the same across restarts
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("xmpptest: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

var (
	installUserLine = regexp.MustCompile(`(?m)^INSTALLUSER=.*$`)
	// ejabberdctl runs erl as its child; exec makes the server process the
	// one this package started, so SIGTERM reaches it.
	runAsCaller = `as_current_user) "$@" ;;`
)

// writeFiles writes the ejabberdctl copy, the Erlang cookie and the
// resolver config; configure writes the rest.
func (e *ejabberd) writeFiles(origCtl string) error {
	for _, d := range []string{e.spool, e.logs} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("xmpptest: create %s: %w", d, err)
		}
	}
	script, err := os.ReadFile(origCtl)
	if err != nil {
		return fmt.Errorf("xmpptest: read ejabberdctl: %w", err)
	}
	if !installUserLine.Match(script) || !bytes.Contains(script, []byte(runAsCaller)) {
		return fmt.Errorf("xmpptest: %s is not the ejabberdctl this package knows (no INSTALLUSER= line or %q)", origCtl, runAsCaller)
	}
	script = installUserLine.ReplaceAll(script, []byte("INSTALLUSER="))
	script = bytes.Replace(script, []byte(runAsCaller), []byte(`as_current_user) exec "$@" ;;`), 1)

	cookie, err := randomHex(16)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data string
		mode os.FileMode
	}{
		{e.ctl, string(script), 0o700},
		// HOME is the server directory: erl reads the cookie from there.
		{filepath.Join(e.s.Dir, ".erlang.cookie"), cookie, 0o400},
		// ERL_INETRC is $CONFIG_DIR/inetrc. Names resolve from this file
		// only: localhost, for distribution; any other domain fails at
		// once, without DNS traffic (see config).
		{filepath.Join(e.s.Dir, "inetrc"), "{lookup,[file]}.\n{host,{127,0,0,1},[\"localhost\"]}.\n", 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.name, []byte(f.data), f.mode); err != nil {
			return fmt.Errorf("xmpptest: write %s: %w", f.name, err)
		}
	}
	return nil
}

// numPorts: client, component and Erlang distribution.
func (*ejabberd) numPorts() int { return 3 }

// configure writes what depends on the ports: ejabberdctl's settings (the
// distribution port) and ejabberd.yml.
//
// ERL_OPTIONS applies to the server's Erlang VM and to ejabberdctl's. By
// default the VM's schedulers spin for a while before they sleep; on a
// busy machine that spinning takes CPU time from the threads with work to
// do. Measured on 2 cores with 2 other busy processes: ejabberd started in
// 14-29 s and `ejabberdctl register` took 3-15 s with spinning, 4-6 s and
// 1.5-3 s without (+sbwt none and the same for the dirty schedulers).
func (e *ejabberd) configure() error {
	ports := e.s.ports
	ctlConfig := fmt.Sprintf(`# Generated by rostergate/internal/xmpptest. Loopback only, for tests.
ERLANG_NODE=%s
ERL_DIST_PORT=%d
ERL_OPTIONS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
EJABBERD_BYPASS_WARNINGS=true
`, e.node, ports[2])
	for _, f := range []struct{ name, data string }{
		{e.ctlConfig, ctlConfig},
		{e.s.ConfigPath, e.config(ports[0], ports[1])},
	} {
		if err := os.WriteFile(f.name, []byte(f.data), 0o600); err != nil {
			return fmt.Errorf("xmpptest: write %s: %w", f.name, err)
		}
	}
	return nil
}

// yamlQuote quotes s as a YAML double-quoted scalar (JSON strings are
// valid ones).
func yamlQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// config renders ejabberd.yml, with only the modules the tests need.
// Server-to-server is allowed, as in a default ejabberd, but there is no
// s2s listener, and a remote domain never resolves (see inetrc): a stanza
// to one bounces with remote-server-not-found, as it does on a real
// server for a domain without DNS records.
func (e *ejabberd) config(c2sPort, componentPort int) string {
	q := yamlQuote
	s := e.s
	return fmt.Sprintf(`# Generated by rostergate/internal/xmpptest. Loopback only, for tests.
hosts:
  - %s
loglevel: debug
hide_sensitive_log_data: false
log_rotate_count: 0
certfiles: []
auth_method: internal

listen:
  -
    port: %d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    # Plaintext client logins (SASL PLAIN) for tests.
    starttls: false
    # The default backlog is 5: a burst of logins would wait for SYN retries.
    backlog: 128
  -
    port: %d
    ip: "127.0.0.1"
    module: ejabberd_service
    backlog: 128
    hosts:
      %s:
        password: %s

acl:
  local:
    user_regexp: ""
  component:
    server: %s
access_rules:
  # mod_privilege's permissions name access rules (an ACL's name there
  # grants nothing on ejabberd 23.01).
  component_privilege:
    allow: component
  c2s:
    allow: all
  local:
    allow: local
api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  # change_password, for Register on an existing user.
  mod_admin_extra: {}
%s`, q(s.Domain), c2sPort, componentPort, q(s.ComponentDomain), q(s.ComponentSecret), q(s.ComponentDomain),
		e.privilege())
}

// privilege is mod_privilege's part of the modules, granting the component
// the XEP-0356 roster permission asked for ("none": the module, granting
// nothing).
func (e *ejabberd) privilege() string {
	switch p := e.s.rosterPrivilege; p {
	case "":
		return ""
	case "none":
		return "  mod_privilege: {}\n"
	default:
		return fmt.Sprintf("  mod_privilege:\n    roster:\n      %s: component_privilege\n", p)
	}
}

// env is the environment of ejabberdctl: the caller's, without anything
// ejabberdctl or erl would take settings from, with HOME in the server
// directory (for the cookie).
func (e *ejabberd) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "ERL"), strings.HasPrefix(name, "EJABBERD"),
			strings.HasPrefix(name, "MNESIA"), strings.HasPrefix(name, "CONTRIB_MODULES"),
			name == "HOME", name == "VMARGS", name == "SPOOL_DIR", name == "LOGS_DIR",
			name == "CONFIG_DIR", name == "NO_TIMEOUT", name == "SCRIPT":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+e.s.Dir)
}

// ctlArgs returns ejabberdctl's options for this server, then args.
func (e *ejabberd) ctlArgs(args ...string) []string {
	return append([]string{
		"--config-dir", e.s.Dir, "--config", e.s.ConfigPath, "--ctl-config", e.ctlConfig,
		"--logs", e.logs, "--spool", e.spool,
	}, args...)
}

func (e *ejabberd) command() *exec.Cmd {
	cmd := exec.Command(e.ctl, e.ctlArgs("foreground")...)
	cmd.Env = e.env()
	return cmd
}

// portInUse: ejabberd exits when it cannot open a listener (its output
// and log say "failed_to_start_child,{5222,{127,0,0,1},tcp},eaddrinuse"),
// and the Erlang VM when it cannot listen for distribution ("Protocol
// 'inet_tcp': register/listen error: eaddrinuse").
func (*ejabberd) portInUse(line string) bool {
	return strings.Contains(line, "eaddrinuse")
}

// shutDown: ejabberd (Mnesia, then the logger) closes its files within
// milliseconds of SIGTERM, but the Erlang VM then idles for a second before
// it exits. Once no file in the spool or log directory is open, the data is
// with the kernel and nothing is left to wait for.
func (e *ejabberd) shutDown(pid int) bool {
	open, err := hasOpenFilesUnder(pid, e.spool, e.logs)
	return err == nil && !open
}

// register runs `ejabberdctl register`, which needs the running node, and
// `change_password` if the user exists.
func (e *ejabberd) register(ctx context.Context, user, password string) error {
	s := e.s
	out, err := e.ctl1(ctx, "register", user, s.Domain, password)
	if err != nil && strings.Contains(out, "conflict") {
		out, err = e.ctl1(ctx, "change_password", user, s.Domain, password)
	}
	if err != nil {
		return fmt.Errorf("xmpptest: ejabberdctl register %s@%s: %w: %s", user, s.Domain, err, out)
	}
	return nil
}

// ctl1 runs one ejabberdctl command and returns its output, without the
// warning ejabberdctl prints when run as root.
func (e *ejabberd) ctl1(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.ctl, e.ctlArgs(args...)...)
	cmd.Dir = e.s.Dir
	cmd.Env = e.env()
	boundCommand(cmd)
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(strings.ReplaceAll(string(out), "WARNING: It is not recommended to run ejabberd as root", ""))
	if err != nil && ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return text, err
}
