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

// The kinds of server this package starts, as in Server.Kind.
const (
	KindProsody  = "prosody"
	KindEjabberd = "ejabberd"
)

// Default values used for empty Config fields.
const (
	DefaultDomain          = "localhost"
	DefaultComponentDomain = "bots.localhost"
	DefaultComponentSecret = "s3cret"
)

const (
	// startTimeout bounds how long a start or Restart waits for the ports
	// to accept connections (on top of the caller's context). ejabberd's
	// Erlang VM alone can take seconds to boot on a busy machine.
	startTimeout = 20 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
)

// Config configures a server started by Start, StartProsody or
// StartEjabberd.
type Config struct {
	Domain          string // client domain; default "localhost"
	ComponentDomain string // XEP-0114 component domain; default "bots.localhost"
	ComponentSecret string // component shared secret; default "s3cret"
	Dir             string // directory for config, data, pid and log files (required)
}

// ProsodyConfig is the name Config had when Prosody was the only server.
type ProsodyConfig = Config

// Server is a running (or stopped) XMPP server started by Start,
// StartProsody or StartEjabberd.
type Server struct {
	Kind string // KindProsody or KindEjabberd

	Domain          string // client domain, e.g. "localhost"
	ComponentDomain string // component domain, e.g. "bots.localhost"
	ComponentSecret string // component shared secret

	C2SAddr       string // client-to-server address, "127.0.0.1:port"
	ComponentAddr string // XEP-0114 component address, "127.0.0.1:port"

	Dir        string // directory holding everything below
	ConfigPath string // generated server config
	LogPath    string // server log file (kept across restarts)
	OutPath    string // server stdout/stderr

	impl backend

	mu   sync.Mutex
	proc *process // nil when stopped
}

// backend is what differs between the servers.
type backend interface {
	// command returns the server process, to run in the foreground.
	command() *exec.Cmd
	// register creates user@Domain with password, or sets the password of
	// an existing user.
	register(ctx context.Context, user, password string) error
	// listenError returns a line the server logged after offset saying it
	// could not listen on one of its ports, or "".
	listenError(offset int64) string
	// shutDown reports whether the server process pid has finished its
	// shutdown after SIGTERM, so that only the process exit is still
	// pending.
	shutDown(pid int) bool
}

// process is one run of the server.
type process struct {
	cmd     *exec.Cmd
	out     *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
}

// Start starts a server of the given kind (KindProsody or KindEjabberd);
// see StartProsody and StartEjabberd.
func Start(ctx context.Context, kind string, cfg Config) (*Server, error) {
	switch kind {
	case KindProsody:
		return StartProsody(ctx, cfg)
	case KindEjabberd:
		return StartEjabberd(ctx, cfg)
	default:
		return nil, fmt.Errorf("xmpptest: unknown server kind %q", kind)
	}
}

// newServer fills in the common fields and picks n free loopback ports: the
// client and component ports first.
func newServer(kind string, cfg Config, n int) (*Server, []int, error) {
	if cfg.Dir == "" {
		return nil, nil, errors.New("xmpptest: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("xmpptest: resolve dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("xmpptest: create dir: %w", err)
	}
	ports, err := freePorts(n)
	if err != nil {
		return nil, nil, err
	}
	return &Server{
		Kind:            kind,
		Domain:          orDefault(cfg.Domain, DefaultDomain),
		ComponentDomain: orDefault(cfg.ComponentDomain, DefaultComponentDomain),
		ComponentSecret: orDefault(cfg.ComponentSecret, DefaultComponentSecret),
		C2SAddr:         net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		ComponentAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		Dir:             dir,
	}, ports, nil
}

// fallbackDirs are searched for the server binaries when PATH does not
// have them (e.g. a minimal PATH in a test environment).
var fallbackDirs = []string{"/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}

// lookPath finds a server binary in PATH or in fallbackDirs.
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

// start launches the server with the existing config and waits until ready.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("xmpptest: %s is already running", s.Kind)
	}
	logOffset := fileSize(s.LogPath)
	out, err := os.OpenFile(s.OutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("xmpptest: open %s output file: %w", s.Kind, err)
	}
	cmd := s.impl.command()
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("xmpptest: start %s: %w", s.Kind, err)
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

// waitReady polls (there is no event to wait on) until the server answers
// an XMPP stream on the client port and the component port accepts
// connections, the process exits, or the deadline passes.
//
// A bare TCP connect is not enough: the kernel accepts connections as soon
// as the server has called listen(), before its event loop runs (and, for
// Prosody, before its SIGTERM handler is installed).
func (s *Server) waitReady(ctx context.Context, p *process, logOffset int64) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	ticker := time.NewTicker(20 * time.Millisecond)
	defer ticker.Stop()
	for {
		if streamAnswers(ctx, s.C2SAddr, s.Domain) && canDial(ctx, s.ComponentAddr) {
			// A server can log, and survive, a failure to bind a port;
			// make sure the ports are really ours (a port could have been
			// taken between freePorts and now).
			if msg := s.impl.listenError(logOffset); msg != "" {
				return fmt.Errorf("xmpptest: %s could not listen: %s", s.Kind, msg)
			}
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("xmpptest: %s exited during startup: %v", s.Kind, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("xmpptest: %s not accepting connections on %s and %s: %w",
				s.Kind, s.C2SAddr, s.ComponentAddr, ctx.Err())
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

// logLineSince returns the first line of the file at path after offset
// that contains needle.
func logLineSince(path string, offset int64, needle string) string {
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

// diagnostics returns the tail of the server's output and log for errors.
func (s *Server) diagnostics() string {
	var b strings.Builder
	if out, err := os.ReadFile(s.OutPath); err == nil && len(bytes.TrimSpace(out)) > 0 {
		fmt.Fprintf(&b, "%s output (%s):\n%s\n", s.Kind, s.OutPath, tail(string(out), 20))
	}
	fmt.Fprintf(&b, "%s log tail (%s):\n%s", s.Kind, s.LogPath, s.LogTail(30))
	return b.String()
}

// Register creates user@Domain with password, or sets the password of an
// existing user. Prosody's users can be registered whether or not the
// server is running; ejabberd's only while it runs.
func (s *Server) Register(ctx context.Context, user, password string) error {
	return s.impl.register(ctx, user, password)
}

// JID returns the bare JID user@Domain.
func (s *Server) JID(user string) string { return user + "@" + s.Domain }

// Running reports whether the server process is running.
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

// Stop sends SIGTERM to the server, waits (bounded) for it to exit and
// falls back to SIGKILL. A server that has finished its shutdown but idles
// before exiting (Prosody's pidfile is gone; ejabberd has closed its
// database and log files) is killed rather than waited for. Stopping a
// stopped server is a no-op.
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
			return fmt.Errorf("xmpptest: %s had already exited: %w", s.Kind, p.waitErr)
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
		return fmt.Errorf("xmpptest: signal %s: %w", s.Kind, err)
	}
	deadline := time.NewTimer(stopTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	var shutDownAt time.Time
	for {
		select {
		case <-p.done:
			if p.waitErr != nil && !killedBy(p.waitErr, syscall.SIGTERM) {
				return fmt.Errorf("xmpptest: %s exit after SIGTERM: %w", s.Kind, p.waitErr)
			}
			return nil
		case <-deadline.C:
			killGroup(p.cmd.Process)
			<-p.done
			return fmt.Errorf("xmpptest: %s did not exit within %v of SIGTERM; killed", s.Kind, stopTimeout)
		case <-poll.C:
			if shutDownAt.IsZero() {
				if s.impl.shutDown(p.cmd.Process.Pid) {
					shutDownAt = time.Now()
				}
			} else if time.Since(shutDownAt) > 100*time.Millisecond {
				killGroup(p.cmd.Process)
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

// Restart stops the server and starts it again with the same
// configuration, ports and data, so registered users and rosters are kept.
// Connected clients and components are disconnected.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

// LogTail returns the last n lines of the server log. ejabberd writes its
// log in batches: while it runs, the last second or two may be missing.
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
