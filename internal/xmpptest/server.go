package xmpptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	KindOpenfire = "openfire"
)

// Kinds are the kinds of server this package starts, in the order
// EachServer runs them.
var Kinds = []string{KindProsody, KindEjabberd, KindOpenfire}

// Default values used for empty Config fields.
const (
	DefaultDomain          = "localhost"
	DefaultComponentDomain = "bots.localhost"
	DefaultComponentSecret = "s3cret"
)

// StartTimeoutEnv names the environment variable that sets how long one
// attempt to start a server (Start, StartProsody, StartEjabberd, Restart)
// may take to accept connections, as a Go duration such as "90s" or "3m".
// Empty means DefaultStartTimeout. See StartTimeout.
const StartTimeoutEnv = "ROSTERGATE_TEST_SERVER_START"

// DefaultStartTimeout is the start timeout when
// $ROSTERGATE_TEST_SERVER_START is empty. ejabberd starts in a few seconds
// on an idle machine, but was seen to take 54 seconds on a busy one.
const DefaultStartTimeout = 120 * time.Second

// ErrPortInUse is returned (wrapped) by Start, StartProsody, StartEjabberd
// and Restart when the server could not listen on one of its ports because
// another process holds it, after the bounded retries.
var ErrPortInUse = errors.New("xmpptest: port in use")

const (
	// startAttempts bounds how many times a new server is started, each
	// time on fresh ports, when a port turns out to be taken.
	startAttempts = 4
	// restartAttempts bounds how many times Restart starts the server again
	// on the same ports when one is taken (possibly only for a moment, by
	// another process probing for a free port).
	restartAttempts = 3
	// portFreeWait bounds how long Restart waits, between attempts, for its
	// ports to be free again.
	portFreeWait = 5 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// killTimeout bounds how long Stop waits for the exit after SIGKILL.
	killTimeout = 10 * time.Second
	// probeTimeout bounds one readiness probe of a port.
	probeTimeout = 5 * time.Second
)

// StartTimeout returns how long one attempt to start a server may take:
// $ROSTERGATE_TEST_SERVER_START (StartTimeoutEnv) parsed as a Go duration,
// or DefaultStartTimeout when it is empty. A value that does not parse or is
// not positive is an error. The caller's context bounds a start too.
func StartTimeout() (time.Duration, error) {
	v := strings.TrimSpace(os.Getenv(StartTimeoutEnv))
	if v == "" {
		return DefaultStartTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("xmpptest: $%s=%q: want a positive Go duration such as 90s or 3m", StartTimeoutEnv, v)
	}
	return d, nil
}

// Config configures a server started by Start, StartProsody or
// StartEjabberd.
type Config struct {
	Domain          string // client domain; default "localhost"
	ComponentDomain string // XEP-0114 component domain; default "bots.localhost"
	ComponentSecret string // component shared secret; default "s3cret"
	Dir             string // directory for config, data, pid and log files (required)

	// RosterPrivilege, if set, grants the component the XEP-0356 roster
	// permission of this type ("both", "get" or "set"; Prosody through
	// prosody-modules' mod_privilege, ejabberd through its mod_privilege):
	// the server advertises it to the component on connect. "none" loads
	// the module but grants nothing. Empty: no module.
	RosterPrivilege string

	// OpenfirePlugins are plugin jars Openfire loads (Openfire only).
	OpenfirePlugins []string
	// OpenfireProperties are system properties Openfire's first start
	// sets, by name (Openfire only): e.g. "plugin.subscription.type".
	OpenfireProperties map[string]string
}

// ProsodyConfig is the name Config had when Prosody was the only server.
type ProsodyConfig = Config

// Server is a running (or stopped) XMPP server started by Start,
// StartProsody or StartEjabberd.
type Server struct {
	Kind string // KindProsody, KindEjabberd or KindOpenfire

	Domain          string // client domain, e.g. "localhost"
	ComponentDomain string // component domain, e.g. "bots.localhost"
	ComponentSecret string // component shared secret

	C2SAddr       string // client-to-server address, "127.0.0.1:port"
	ComponentAddr string // XEP-0114 component address, "127.0.0.1:port"

	Dir        string // directory holding everything below
	ConfigPath string // generated server config
	LogPath    string // server log file (kept across restarts)
	OutPath    string // server stdout/stderr

	rosterPrivilege string // Config.RosterPrivilege

	impl  backend
	ports []int // C2S, component, then any other port the server listens on

	mu   sync.Mutex
	proc *process // nil when stopped
}

// backend is what differs between the servers.
type backend interface {
	// numPorts is how many loopback ports the server listens on: the
	// client and component ports first.
	numPorts() int
	// configure writes the configuration for the ports in Server.ports.
	configure() error
	// command returns the server process, to run in the foreground.
	command() *exec.Cmd
	// register creates user@Domain with password, or sets the password of
	// an existing user.
	register(ctx context.Context, user, password string) error
	// portInUse reports whether line, from the server's output or log,
	// says that it could not listen on one of its ports because the port
	// is taken.
	portInUse(line string) bool
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

// Start starts a server of the given kind (KindProsody, KindEjabberd or
// KindOpenfire); see StartProsody, StartEjabberd and StartOpenfire.
func Start(ctx context.Context, kind string, cfg Config) (*Server, error) {
	switch kind {
	case KindProsody:
		return StartProsody(ctx, cfg)
	case KindEjabberd:
		return StartEjabberd(ctx, cfg)
	case KindOpenfire:
		return StartOpenfire(ctx, cfg)
	default:
		return nil, fmt.Errorf("xmpptest: unknown server kind %q", kind)
	}
}

// newServer fills in the common fields; ports are picked by startNew.
func newServer(kind string, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("xmpptest: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("xmpptest: resolve dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("xmpptest: create dir: %w", err)
	}
	return &Server{
		Kind:            kind,
		Domain:          orDefault(cfg.Domain, DefaultDomain),
		ComponentDomain: orDefault(cfg.ComponentDomain, DefaultComponentDomain),
		ComponentSecret: orDefault(cfg.ComponentSecret, DefaultComponentSecret),
		Dir:             dir,
		rosterPrivilege: cfg.RosterPrivilege,
	}, nil
}

// portsPicked, if set, is called by startNew with the ports of each attempt
// before the server starts, so tests can take one of them.
var portsPicked func(attempt int, ports []int)

// startNew starts a new server: it picks free ports, writes the
// configuration and starts the server, again on fresh ports (at most
// startAttempts times in all) while a port turns out to be taken.
func (s *Server) startNew(ctx context.Context) error {
	timeout, err := StartTimeout()
	if err != nil {
		return err
	}
	var errs []error
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(s.impl.numPorts())
		if err != nil {
			return err
		}
		if portsPicked != nil {
			portsPicked(attempt, ports)
		}
		s.ports = ports
		s.C2SAddr = loopback(ports[0])
		s.ComponentAddr = loopback(ports[1])
		if err := s.impl.configure(); err != nil {
			return err
		}
		err = s.start(ctx, timeout)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrPortInUse) || ctx.Err() != nil || attempt == startAttempts {
			return errors.Join(append(errs, err)...)
		}
		// The diagnostics of the last attempt are enough.
		errs = append(errs, fmt.Errorf("attempt %d of %d, on ports %v: %s", attempt, startAttempts, ports, firstLine(err)))
	}
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

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
// moment ago. They are picked at random outside the kernel's ephemeral port
// range when it leaves room for that (see pickRange): ports in that range
// are also handed out to other processes' outgoing connections and port-0
// listeners, which could take a server's port in the moment between this
// check and the server's bind, or while Restart has the server stopped.
// Otherwise the kernel picks them (port 0). Whoever takes a port anyway
// makes the start fail with ErrPortInUse, and startNew tries again on fresh
// ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	lo, hi, ranged := pickRange()
	tries := 0
	for len(ls) < n {
		addr := "127.0.0.1:0"
		if ranged && tries < 100*n {
			tries++
			addr = loopback(lo + rand.IntN(hi-lo+1))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken, possibly by one picked here
			}
			return nil, fmt.Errorf("xmpptest: pick free port: %w", err)
		}
		ls = append(ls, l)
	}
	ports := make([]int, n)
	for i, l := range ls {
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// ephemeralRangeFile holds the kernel's range of ports for outgoing
// connections and port-0 listeners (Linux).
const ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// pickRange returns a range of ports outside the kernel's ephemeral port
// range (see outsideRange), if the kernel says what that is.
func pickRange() (lo, hi int, ok bool) {
	data, err := os.ReadFile(ephemeralRangeFile)
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, 0, false
	}
	elo, err1 := strconv.Atoi(f[0])
	ehi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return outsideRange(elo, ehi)
}

// outsideRange returns a range of at least 2000 ports, from 20000 on, below
// or else above the ephemeral range elo-ehi.
func outsideRange(elo, ehi int) (lo, hi int, ok bool) {
	const first, last, minSize = 20000, 65535, 2000
	if elo > ehi {
		return 0, 0, false
	}
	switch above := max(ehi+1, first); {
	case elo-first >= minSize:
		return first, elo - 1, true
	case last-above+1 >= minSize:
		return above, last, true
	}
	return 0, 0, false
}

// start launches the server with the existing config and waits (bounded by
// ctx and timeout) until it is ready.
func (s *Server) start(ctx context.Context, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("xmpptest: %s is already running", s.Kind)
	}
	out, err := os.OpenFile(s.OutPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("xmpptest: open %s output file: %w", s.Kind, err)
	}
	// What the server writes from now on is this run's.
	watch := []*lineWatcher{
		{path: s.OutPath, offset: fileSize(s.OutPath)},
		{path: s.LogPath, offset: fileSize(s.LogPath)},
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
	if err := s.waitReady(ctx, p, watch, timeout); err != nil {
		_ = s.stopLocked()
		return fmt.Errorf("%w\n%s", err, s.diagnostics())
	}
	return nil
}

// waitReady waits until the server process listens on each of its ports
// on 127.0.0.1 and answers an XMPP stream on the client port, and its
// component port accepts connections. It fails with ErrPortInUse as soon as
// the server says (in watch, its output and log) that a port is taken.
//
// The server gives no event to wait on but its exit, so this polls, with
// a growing interval, until ctx is done or timeout has passed.
//
// Checking that the server process itself listens matters: another
// process (say, another test's server) could have taken a port between
// freePorts and now, and would answer in its place. Where the listeners'
// owner cannot be seen (not Linux), Prosody's log and ejabberd's exit
// still tell. A bare TCP connect is not enough either: the kernel accepts
// connections as soon as the server has called listen(), before its event
// loop runs (and, for Prosody, before its SIGTERM handler is installed).
func (s *Server) waitReady(ctx context.Context, p *process, watch []*lineWatcher, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inUse := func() error {
		for _, w := range watch {
			if line := w.find(s.impl.portInUse); line != "" {
				return fmt.Errorf("%w: %s could not listen: %s", ErrPortInUse, s.Kind, line)
			}
		}
		return nil
	}
	pid := p.cmd.Process.Pid
	const minPoll, maxPoll = 10 * time.Millisecond, 250 * time.Millisecond
	poll := time.NewTimer(minPoll)
	defer poll.Stop()
	for interval := minPoll; ; interval = min(2*interval, maxPoll) {
		if err := inUse(); err != nil {
			return err
		}
		owned, err := listensOn(pid, s.ports)
		if (owned || err != nil) && streamAnswers(ctx, s.C2SAddr, s.Domain) && canDial(ctx, s.ComponentAddr) {
			// Prosody logs, and survives, a failure to bind a port:
			// where listensOn cannot tell, that is how to know that
			// another process answered in its place.
			return inUse()
		}
		poll.Reset(interval)
		select {
		case <-p.done:
			if err := inUse(); err != nil {
				return err
			}
			return fmt.Errorf("xmpptest: %s exited during startup: %v", s.Kind, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("xmpptest: %s not ready on %s and %s within %v (%s): %w",
				s.Kind, s.C2SAddr, s.ComponentAddr, timeout, s.portReport(pid), context.Cause(ctx))
		case <-poll.C:
		}
	}
}

// portReport says, for the error of a start that timed out, who listens on
// each of the server's ports.
func (s *Server) portReport(pid int) string {
	parts := make([]string, len(s.ports))
	for i, port := range s.ports {
		parts[i] = strconv.Itoa(port) + ": " + listenerOwner(pid, port)
	}
	return "listeners: " + strings.Join(parts, ", ")
}

// streamAnswers opens a client stream to addr and reports whether the
// server answers with stream features.
func streamAnswers(ctx context.Context, addr, domain string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
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
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
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

// lineWatcher reads the lines appended to a file from offset on, a bit
// more at each call of find.
type lineWatcher struct {
	path    string
	offset  int64  // of the first byte not read yet
	partial []byte // last line read so far, without its newline yet
}

// find reads what was appended since the last call and returns the first
// complete new line that match accepts, or "". A missing file counts as
// empty.
func (w *lineWatcher) find(match func(line string) bool) string {
	f, err := os.Open(w.path)
	if err != nil {
		return ""
	}
	defer f.Close()
	// Bounded: what the server logs while it starts is not much more.
	data, err := io.ReadAll(io.NewSectionReader(f, w.offset, 64<<20))
	if err != nil {
		return ""
	}
	w.offset += int64(len(data))
	data = append(w.partial, data...)
	last := bytes.LastIndexByte(data, '\n')
	w.partial = bytes.Clone(data[last+1:])
	for line := range strings.SplitSeq(string(data[:last+1]), "\n") {
		if line = strings.TrimSpace(line); line != "" && match(line) {
			return line
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

// commandWaitDelay bounds how long a helper command (prosodyctl,
// ejabberdctl) is waited for once its context is done and it was killed,
// for instance for a child that keeps its output pipe open.
const commandWaitDelay = 5 * time.Second

// boundCommand makes cmd, made by exec.CommandContext, run in a process
// group of its own that is killed as a whole when the context is done, and
// bounds the wait for it after that.
func boundCommand(cmd *exec.Cmd) {
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		killGroup(cmd.Process)
		return nil
	}
	cmd.WaitDelay = commandWaitDelay
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
			if err := s.kill(p); err != nil {
				return err
			}
			return fmt.Errorf("xmpptest: %s did not exit within %v of SIGTERM; killed", s.Kind, stopTimeout)
		case <-poll.C:
			if shutDownAt.IsZero() {
				if s.impl.shutDown(p.cmd.Process.Pid) {
					shutDownAt = time.Now()
				}
			} else if time.Since(shutDownAt) > 100*time.Millisecond {
				return s.kill(p)
			}
		}
	}
}

// kill sends SIGKILL to the server's process group and waits (bounded) for
// the server to exit.
func (s *Server) kill(p *process) error {
	killGroup(p.cmd.Process)
	timer := time.NewTimer(killTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("xmpptest: %s (pid %d) did not exit within %v of SIGKILL", s.Kind, p.cmd.Process.Pid, killTimeout)
	}
}

// killedBy reports whether err is the exit of a process killed by sig, or
// that exited with status 128+sig after handling it, as the JVM does.
func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && (ws.Signaled() && ws.Signal() == sig || ws.Exited() && ws.ExitStatus() == 128+int(sig))
}

// Restart stops the server and starts it again with the same
// configuration, ports and data, so registered users and rosters are kept.
// Connected clients and components are disconnected. Each attempt to start
// is bounded by StartTimeout (and ctx). If another process has taken one of
// the ports meanwhile, Restart waits (bounded) for the port to be free and
// tries again, a bounded number of times, then fails with ErrPortInUse.
func (s *Server) Restart(ctx context.Context) error {
	timeout, err := StartTimeout()
	if err != nil {
		return err
	}
	if err := s.Stop(); err != nil {
		return err
	}
	var errs []error
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if err := waitPortsFree(ctx, s.ports, portFreeWait); err != nil {
				return errors.Join(append(errs, err)...)
			}
		}
		err := s.start(ctx, timeout)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrPortInUse) || ctx.Err() != nil || attempt == restartAttempts {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, fmt.Errorf("attempt %d of %d: %s", attempt, restartAttempts, firstLine(err)))
	}
}

// waitPortsFree waits until each of ports can be listened on at 127.0.0.1,
// bounded by ctx and limit. Nothing signals that a port was released: this
// polls.
func waitPortsFree(ctx context.Context, ports []int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for {
		busy := -1
		for _, port := range ports {
			l, err := net.Listen("tcp", loopback(port))
			if err != nil {
				busy = port
				break
			}
			_ = l.Close()
		}
		if busy < 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: 127.0.0.1:%d still taken by another process: %w", ErrPortInUse, busy, context.Cause(ctx))
		case <-poll.C:
		}
	}
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
