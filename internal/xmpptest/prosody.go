package xmpptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default values used by StartProsody for empty ProsodyConfig fields.
const (
	DefaultDomain          = "localhost"
	DefaultComponentDomain = "bots.localhost"
	DefaultComponentSecret = "s3cret"
)

const (
	// startTimeout bounds how long StartProsody and Restart wait for the
	// ports to accept connections (on top of the caller's context).
	startTimeout = 10 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

// ProsodyConfig configures StartProsody.
type ProsodyConfig struct {
	Domain          string // client domain; default "localhost"
	ComponentDomain string // XEP-0114 component domain; default "bots.localhost"
	ComponentSecret string // component shared secret; default "s3cret"
	Dir             string // directory for config, data, pid and log files (required)
}

// Server is a running (or stopped) Prosody process started by StartProsody.
type Server struct {
	Domain          string // client domain, e.g. "localhost"
	ComponentDomain string // component domain, e.g. "bots.localhost"
	ComponentSecret string // component shared secret

	C2SAddr       string // client-to-server address, "127.0.0.1:port"
	ComponentAddr string // XEP-0114 component address, "127.0.0.1:port"

	Dir        string // directory holding everything below
	ConfigPath string // generated prosody config
	LogPath    string // prosody log file (kept across restarts)
	OutPath    string // prosody stdout/stderr

	prosody    string // path of the prosody binary
	prosodyctl string // path of the prosodyctl binary

	mu   sync.Mutex
	proc *process // nil when stopped
}

// process is one run of the prosody binary.
type process struct {
	cmd     *exec.Cmd
	out     *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// fallbackDirs are searched for the prosody binaries when PATH does not
// have them (e.g. a minimal PATH in a test environment).
var fallbackDirs = []string{"/usr/bin", "/usr/sbin", "/usr/local/bin"}

// lookPath finds a prosody binary in PATH or in fallbackDirs.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range fallbackDirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %q not found in PATH", ErrNotInstalled, name)
}

// StartProsody writes a Prosody configuration into cfg.Dir, starts
// `prosody -F` with it and waits (bounded by ctx and by 10 seconds) until the
// client and component ports accept connections. ctx only bounds the start;
// the server runs until Stop. It returns an error wrapping ErrNotInstalled if
// Prosody is not installed.
func StartProsody(ctx context.Context, cfg ProsodyConfig) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("xmpptest: ProsodyConfig.Dir is required")
	}
	prosody, err := lookPath("prosody")
	if err != nil {
		return nil, err
	}
	prosodyctl, err := lookPath("prosodyctl")
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("xmpptest: resolve dir: %w", err)
	}
	s := &Server{
		Domain:          orDefault(cfg.Domain, DefaultDomain),
		ComponentDomain: orDefault(cfg.ComponentDomain, DefaultComponentDomain),
		ComponentSecret: orDefault(cfg.ComponentSecret, DefaultComponentSecret),
		Dir:             dir,
		ConfigPath:      filepath.Join(dir, "prosody.cfg.lua"),
		LogPath:         filepath.Join(dir, "prosody.log"),
		OutPath:         filepath.Join(dir, "prosody.out"),
		prosody:         prosody,
		prosodyctl:      prosodyctl,
	}
	for _, sub := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o750); err != nil {
			return nil, fmt.Errorf("xmpptest: create %s dir: %w", sub, err)
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s.C2SAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	s.ComponentAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	if err := os.WriteFile(s.ConfigPath, []byte(s.config(ports[0], ports[1])), 0o640); err != nil {
		return nil, fmt.Errorf("xmpptest: write prosody config: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 a
// moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("xmpptest: pick free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// luaQuote quotes s as a Lua string literal.
func luaQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// config renders the Prosody configuration.
func (s *Server) config(c2sPort, componentPort int) string {
	q := luaQuote
	p := func(name string) string { return q(filepath.Join(s.Dir, name)) }
	var b strings.Builder
	b.WriteString("-- Generated by rostergate/internal/xmpptest. Loopback only, for tests.\n")
	if os.Geteuid() == 0 {
		// Prosody refuses to start as root without this.
		b.WriteString("run_as_root = true\n")
	}
	fmt.Fprintf(&b, `pidfile = %s
data_path = %s
certificates = %s
log = { { levels = { min = "debug" }, to = "file", filename = %s } }

-- Listen on loopback only. s2s and http are disabled below; direct TLS
-- ports are explicitly empty.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %d }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
s2s_ports = {}
s2s_interfaces = { "127.0.0.1" }
s2s_direct_tls_ports = {}
component_ports = { %d }
component_interfaces = { "127.0.0.1" }

modules_enabled = { "roster", "saslauth", "disco", "ping" }
modules_disabled = { "s2s", "s2s_auth_certs", "http" }

-- Plaintext client logins (SASL PLAIN) for tests.
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"

-- Nagle would add ~40 ms to every round trip; shut down quickly.
network_settings = { nagle = false; shutdown_deadline = 1 }

VirtualHost %s

Component %s
	component_secret = %s
`, q(s.pidPath()), p("data"), p("certs"), q(s.LogPath),
		c2sPort, componentPort,
		q(s.Domain), q(s.ComponentDomain), q(s.ComponentSecret))
	return b.String()
}

// start launches prosody with the existing config and waits until ready.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("xmpptest: prosody is already running")
	}
	logOffset := fileSize(s.LogPath)
	out, err := os.OpenFile(s.OutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("xmpptest: open prosody output file: %w", err)
	}
	cmd := exec.Command(s.prosody, "--config", s.ConfigPath, "-F")
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("xmpptest: start prosody: %w", err)
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(ctx, p, logOffset); err != nil {
		_ = s.stopLocked()
		return fmt.Errorf("%w\n%s", err, s.diagnostics())
	}
	return nil
}

// waitReady polls (there is no event to wait on) until prosody answers an
// XMPP stream on the client port and the component port accepts
// connections, the process exits, or the deadline passes.
//
// A bare TCP connect is not enough: the kernel accepts connections as soon
// as prosody has called listen(), before its event loop runs (and before its
// SIGTERM handler is installed).
func (s *Server) waitReady(ctx context.Context, p *process, logOffset int64) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		if streamAnswers(ctx, s.C2SAddr, s.Domain) && canDial(ctx, s.ComponentAddr) {
			// Prosody logs, but survives, a failure to bind a port; make
			// sure the ports are really ours (a port could have been
			// taken between freePorts and now).
			if msg := logErrorSince(s.LogPath, logOffset, "Failed to open server port"); msg != "" {
				return fmt.Errorf("xmpptest: prosody could not listen: %s", msg)
			}
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("xmpptest: prosody exited during startup: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("xmpptest: prosody not accepting connections on %s and %s: %w",
				s.C2SAddr, s.ComponentAddr, ctx.Err())
		case <-ticker.C:
		}
	}
}

// streamAnswers opens a client stream to addr and reports whether the
// server answers with stream features.
func streamAnswers(ctx context.Context, addr, domain string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' "+
		"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", xmlEscape(domain)); err != nil {
		return false
	}
	var got []byte
	buf := make([]byte, 4096)
	for len(got) < 64<<10 {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if bytes.Contains(got, []byte("</stream:features>")) {
			_, _ = c.Write([]byte("</stream:stream>"))
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

func canDial(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logErrorSince returns the first log line after offset containing needle.
func logErrorSince(path string, offset int64, needle string) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return ""
	}
	for line := range strings.SplitSeq(string(data[offset:]), "\n") {
		if strings.Contains(line, needle) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// diagnostics returns the tail of the prosody output and log for errors.
func (s *Server) diagnostics() string {
	var b strings.Builder
	if out, err := os.ReadFile(s.OutPath); err == nil && len(bytes.TrimSpace(out)) > 0 {
		fmt.Fprintf(&b, "prosody output (%s):\n%s\n", s.OutPath, tail(string(out), 20))
	}
	fmt.Fprintf(&b, "prosody log tail (%s):\n%s", s.LogPath, s.LogTail(30))
	return b.String()
}

// Register creates (or updates the password of) user@Domain with
// prosodyctl. It works whether or not the server is running.
func (s *Server) Register(ctx context.Context, user, password string) error {
	cmd := exec.CommandContext(ctx, s.prosodyctl, "--config", s.ConfigPath, "register", user, s.Domain, password)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("xmpptest: prosodyctl register %s@%s: %w: %s", user, s.Domain, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// JID returns the bare JID user@Domain.
func (s *Server) JID(user string) string { return user + "@" + s.Domain }

// Running reports whether the prosody process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to prosody, waits (bounded) for it to exit and falls
// back to SIGKILL. Stopping a stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	select {
	case <-p.done:
		// Exited on its own (crash, or killed by someone else).
		if p.waitErr != nil {
			return fmt.Errorf("xmpptest: prosody had already exited: %w", p.waitErr)
		}
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		select {
		case <-p.done:
			return nil
		default:
		}
		return fmt.Errorf("xmpptest: signal prosody: %w", err)
	}
	// Prosody finishes its shutdown (sessions closed, data saved, pidfile
	// removed, "Shutdown complete" logged) quickly, but its event loop can
	// then idle for up to a second on a timer before the process exits.
	// Once the pidfile is gone there is nothing left to wait for.
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	var shutDownAt time.Time
	for {
		select {
		case <-p.done:
			if p.waitErr != nil && !killedBy(p.waitErr, syscall.SIGTERM) {
				return fmt.Errorf("xmpptest: prosody exit after SIGTERM: %w", p.waitErr)
			}
			return nil
		case <-deadline.C:
			_ = p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("xmpptest: prosody did not exit within %v of SIGTERM; killed", stopTimeout)
		case <-poll.C:
			if shutDownAt.IsZero() {
				if _, err := os.Stat(s.pidPath()); errors.Is(err, os.ErrNotExist) {
					shutDownAt = time.Now()
				}
			} else if time.Since(shutDownAt) > 100*time.Millisecond {
				_ = p.cmd.Process.Kill()
				<-p.done
				return nil
			}
		}
	}
}

// killedBy reports whether err is the exit of a process killed by sig.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

func (s *Server) pidPath() string { return filepath.Join(s.Dir, "prosody.pid") }

// Restart stops prosody and starts it again with the same configuration,
// ports and data directory, so registered users and rosters are kept.
// Connected clients are disconnected.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

// LogTail returns the last n lines of the prosody log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.LogPath, err)
	}
	return tail(string(data), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
