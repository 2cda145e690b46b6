package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled is returned (wrapped) when no PostgreSQL server binaries
// are found, or, as root, no "postgres" system user to run them as.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL is not installed")

// ErrPortInUse is returned (wrapped) when the server could not listen on
// its port because another process holds it, after the bounded retries.
var ErrPortInUse = errors.New("pgtest: port in use")

// Superuser is the database superuser the servers are made with; the DSNs
// connect as it.
const Superuser = "postgres"

const (
	// StartTimeout bounds one attempt to start a server (initdb apart),
	// and initdb.
	StartTimeout = 60 * time.Second
	// stopTimeout bounds a fast shutdown (SIGINT) before SIGKILL.
	stopTimeout = 30 * time.Second
	// killTimeout bounds the wait for the exit after SIGKILL.
	killTimeout = 10 * time.Second
	// startAttempts bounds how many fresh ports a new server tries.
	startAttempts = 4
	// restartAttempts bounds how many times Restart tries the same port.
	restartAttempts = 3
	// adminTimeout bounds each administrative step (create or drop a
	// database, terminate connections).
	adminTimeout = 30 * time.Second
	// probeTimeout bounds one readiness probe.
	probeTimeout = 2 * time.Second
)

// Server is a PostgreSQL started by Start or StartPrivate.
type Server struct {
	Addr    string // 127.0.0.1:port
	Port    int
	Dir     string // the temporary directory holding everything below
	DataDir string
	LogPath string // the server's output (kept across restarts)

	bin     string              // the directory of initdb and postgres
	sockDir string              // unix_socket_directories
	cred    *syscall.Credential // whom to run as; nil: ourselves

	mu   sync.Mutex
	proc *process // nil while stopped

	dbs atomic.Int64 // databases made by NewDatabase
}

type process struct {
	cmd     *exec.Cmd
	out     *os.File
	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done is closed
}

// shared is the test binary's shared server (Start), its error if it
// could not start, and whether a start was tried.
var shared struct {
	mu    sync.Mutex
	tried bool
	s     *Server
	err   error
}

// Start returns the test binary's shared PostgreSQL, starting it on first
// use (see the package comment). It fails t if the server cannot start,
// and skips t if PostgreSQL is not installed (fails it when CI=true).
func Start(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.tried {
		shared.tried = true
		shared.s, shared.err = startServer(context.Background())
	}
	orSkip(t, shared.err)
	return shared.s
}

// StartPrivate starts a PostgreSQL for t alone: stopped, and its directory
// removed, when t ends. It skips or fails t as Start does.
func StartPrivate(t testing.TB) *Server {
	t.Helper()
	s, err := startServer(t.Context())
	orSkip(t, err)
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
		if t.Failed() {
			t.Logf("pgtest: log tail (%s):\n%s", s.LogPath, s.LogTail(40))
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// StartServer starts a PostgreSQL outside a test (the benchmarks): the
// caller stops it (Stop) and removes its directory (Dir).
func StartServer(ctx context.Context) (*Server, error) { return startServer(ctx) }

// CreateDatabase creates an empty database name on s and returns its DSN;
// DropDatabase drops it (its connections closed by force).
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	if err := s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.DSN(name), nil
}

// DropDatabase drops a database made with CreateDatabase.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

func orSkip(t testing.TB, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true, so this is an error; `make deps` installs it)", err)
	case errors.Is(err, ErrNotInstalled):
		t.Skipf("skipping: %v", err)
	default:
		t.Fatal(err)
	}
}

// Main runs the tests of m, then stops the shared server (if one was
// started) and removes its directory, and exits: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	shared.mu.Lock()
	if s := shared.s; s != nil {
		if err := s.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = max(code, 1)
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// DSN returns the URL that connects to database db as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", Superuser, s.Addr, db)
}

// NewDatabase creates a fresh, empty database on s and returns its DSN. The
// database is dropped (its connections closed by force) when t ends.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := dbName(s.dbs.Add(1), t.Name())
	ctx, cancel := context.WithTimeout(t.Context(), adminTimeout)
	defer cancel()
	if err := s.admin(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		// A test that left the server down leaves the database to the
		// server's removal.
		if err := s.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

var notWord = regexp.MustCompile(`[^a-z0-9]+`)

// dbName makes a database name of at most 63 bytes (PostgreSQL's limit)
// from a counter and a test's name.
func dbName(n int64, test string) string {
	name := fmt.Sprintf("t%d_%s", n, strings.Trim(notWord.ReplaceAllString(strings.ToLower(test), "_"), "_"))
	return strings.TrimRight(name[:min(len(name), 63)], "_")
}

// admin runs one statement on the server's "postgres" database.
func (s *Server) admin(ctx context.Context, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, sql, args...)
	return err
}

// TerminateConnections ends every connection to the database of dsn (but
// the one it uses itself, which is to the "postgres" database), and waits,
// bounded, until they are gone.
func (s *Server) TerminateConnections(t testing.TB, dsn string) {
	t.Helper()
	s.terminate(t, dsn, true)
}

// CutConnections ends, once, every connection to dsn's database there is
// now (as a network cut would, server-side), and returns how many: clients
// that connect again at once are left alone.
func (s *Server) CutConnections(t testing.TB, dsn string) int {
	t.Helper()
	return s.terminate(t, dsn, false)
}

func (s *Server) terminate(t testing.TB, dsn string, untilNone bool) int {
	t.Helper()
	cut := 0
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("pgtest: terminate connections: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), adminTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: terminate connections to %s: %v", cfg.Database, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	// The pids first, then each terminated: in one query the planner
	// could call pg_terminate_backend before the filter.
	for try := 0; ; try++ {
		rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, cfg.Database)
		if err != nil {
			t.Fatalf("pgtest: terminate connections to %s: %v", cfg.Database, err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			t.Fatalf("pgtest: terminate connections to %s: %v", cfg.Database, err)
		}
		if len(pids) == 0 || (!untilNone && try > 0) {
			return cut
		}
		if try == 20 {
			t.Fatalf("pgtest: %d connections to %s still there after 20 rounds", len(pids), cfg.Database)
		}
		for _, pid := range pids {
			// With a timeout, it waits for the backend to exit.
			if _, err := c.Exec(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid); err != nil {
				t.Fatalf("pgtest: terminate connection %d to %s: %v", pid, cfg.Database, err)
			}
			cut++
		}
	}
}

// Restart stops the server (a fast shutdown) and starts it again on the
// same port and data. On the shared server it breaks every other test's
// connections: restart a private one (StartPrivate).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), restartAttempts*StartTimeout)
	defer cancel()
	var err error
	for attempt := 1; attempt <= restartAttempts; attempt++ {
		if err = s.start(ctx); err == nil || !errors.Is(err, ErrPortInUse) {
			break
		}
		waitPortFree(s.Port, 5*time.Second)
	}
	if err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
}

// Kill kills the server and its backends at once (SIGKILL to its process
// group), as a crash or a power cut would, and waits for them to exit;
// Restart then starts it again, through crash recovery.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proc; p != nil {
		s.proc = nil
		if err := kill(p); err != nil {
			t.Fatal(err)
		}
	}
}

// Stop stops the server, if it runs, with a fast shutdown (SIGINT: the
// backends are ended, a checkpoint written), bounded by 30 s, then SIGKILL.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	select {
	case <-p.done:
		return fmt.Errorf("pgtest: postgres had exited already: %v\n%s", p.waitErr, s.LogTail(20))
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return kill(p)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		if err := kill(p); err != nil {
			return err
		}
		return fmt.Errorf("pgtest: postgres did not stop within %v of SIGINT; killed\n%s", stopTimeout, s.LogTail(20))
	}
}

// kill kills postgres and its children, which are process group leaders
// of their own (so a signal to the postmaster's group misses them), and
// waits, bounded, for all of them to exit: until they have, the shared
// memory they hold keeps a new postmaster from starting.
func kill(p *process) error {
	children := childrenOf(p.cmd.Process.Pid)
	killGroup(p.cmd.Process)
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.After(killTimeout)
	select {
	case <-p.done:
	case <-deadline:
		return fmt.Errorf("pgtest: postgres (pid %d) did not exit within %v of SIGKILL", p.cmd.Process.Pid, killTimeout)
	}
	for _, pid := range children {
		for alive(pid) {
			select {
			case <-deadline:
				return fmt.Errorf("pgtest: postgres backend (pid %d) did not exit within %v of SIGKILL", pid, killTimeout)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startServer makes a new server: a directory, initdb, and a start on a
// free port (a few fresh ports if one turns out to be taken).
func startServer(ctx context.Context) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("%w: running as root, and no system user postgres to run it as: %v", ErrNotInstalled, err)
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("pgtest: user postgres: uid %q, gid %q", u.Uid, u.Gid)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	sweep()

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	s := &Server{
		Dir:     dir,
		DataDir: filepath.Join(dir, "data"),
		LogPath: filepath.Join(dir, "postgres.log"),
		bin:     bin,
		sockDir: filepath.Join(dir, "sock"),
		cred:    cred,
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	// The server's user reaches its directories through dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	for _, d := range []string{s.DataDir, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}
	if cred != nil {
		if err := traversable(dir); err != nil {
			return nil, err
		}
	}

	ictx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	initdb := exec.CommandContext(ictx, filepath.Join(bin, "initdb"), "-D", s.DataDir, "-U", Superuser,
		"--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions")
	s.prepare(initdb)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	var errs []error
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.start(ctx)
		if err == nil {
			break
		}
		errs = append(errs, err)
		if !errors.Is(err, ErrPortInUse) || attempt == startAttempts || ctx.Err() != nil {
			return nil, errors.Join(errs...)
		}
	}
	ok = true
	return s, nil
}

// prepare sets up a command of the server's: whom it runs as, its
// environment, and its end with the test binary.
func (s *Server) prepare(cmd *exec.Cmd) {
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC", "HOME=" + s.Dir}
	cmd.SysProcAttr = sysProcAttr(s.cred)
}

// start starts postgres on s.Port and waits until it takes connections.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("pgtest: already running")
	}
	out, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	from := fileSize(s.LogPath)
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.DataDir, "-p", strconv.Itoa(s.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.sockDir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "full_page_writes=on",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=200",
		"-c", "logging_collector=off",
		"-c", "log_line_prefix=%m [%p] ",
	)
	s.prepare(cmd)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(ctx, p, from); err != nil {
		s.proc = nil
		_ = kill(p)
		return fmt.Errorf("%w\npostgres log tail (%s):\n%s", err, s.LogPath, s.LogTail(20))
	}
	return nil
}

// waitReady polls, bounded by StartTimeout, until a connection succeeds.
func (s *Server) waitReady(ctx context.Context, p *process, from int64) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	dsn := s.DSN("postgres") + "&connect_timeout=2"
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-p.done:
			if portTaken(s.LogPath, from) {
				return fmt.Errorf("%w: 127.0.0.1:%d", ErrPortInUse, s.Port)
			}
			return fmt.Errorf("pgtest: postgres exited while starting: %v", p.waitErr)
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
		c, err := pgx.Connect(pctx, dsn)
		if err == nil {
			err = c.Ping(pctx)
			_ = c.Close(pctx)
		}
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: postgres not ready within %v: %v (%w)", StartTimeout, err, ctx.Err())
		case <-p.done:
		case <-time.After(wait):
		}
	}
}

// portTaken reports whether the log, from offset on, says the port was
// taken.
func portTaken(path string, from int64) bool {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < from {
		return false
	}
	return strings.Contains(string(data[from:]), "Address already in use")
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// findBin returns the directory of the newest PostgreSQL's initdb and
// postgres.
func findBin() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch va, vb := version(a), version(b); {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("%w: no initdb and postgres in /usr/lib/postgresql/*/bin, `pg_config --bindir` or PATH", ErrNotInstalled)
}

// traversable checks that every directory above dir lets others through:
// the server's user must reach its data directory.
func traversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgtest: %s (mode %v) does not let the postgres user through to %s: set TMPDIR elsewhere", d, st.Mode().Perm(), dir)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// ownerFile, in a server's directory, holds the pid of the test binary
// that made it.
const ownerFile = "owner"

// sweep removes the directories of earlier servers whose test binary has
// gone and whose postgres has stopped: those of binaries that did not call
// Main, or died.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			// Being made right now, or not ours: leave it unless old.
			if st, err := os.Stat(d); err != nil || time.Since(st.ModTime()) < time.Hour {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err != nil || alive(pid) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(pm), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err != nil || alive(pid) {
				continue
			}
		}
		_ = os.RemoveAll(d)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago,
// picked at random outside the kernel's ephemeral range when it leaves
// room (ports in it are handed to other processes' outgoing connections),
// else by the kernel.
func freePort() (int, error) {
	lo, hi, ranged := pickRange()
	for try := 0; ranged && try < 100; try++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo+1))))
		if err == nil {
			port := l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pickRange returns a range of at least 2000 ports from 20000 on, below or
// above the kernel's ephemeral range.
func pickRange() (lo, hi int, ok bool) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, 0, false
	}
	elo, err1 := strconv.Atoi(f[0])
	ehi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || elo > ehi {
		return 0, 0, false
	}
	const first, last, minSize = 20000, 65535, 2000
	switch above := max(ehi+1, first); {
	case elo-first >= minSize:
		return first, elo - 1, true
	case last-above+1 >= minSize:
		return above, last, true
	}
	return 0, 0, false
}

// waitPortFree waits, at most d, until port can be listened on.
func waitPortFree(port int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			_ = l.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
