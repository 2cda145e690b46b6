package ldaptest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ErrNotInstalled is returned (wrapped) when slapd, its schemas or its mdb
// backend are not found.
var ErrNotInstalled = errors.New("ldaptest: slapd is not installed")

// The tree's names and the accounts' credentials.
const (
	Base          = "dc=example,dc=com"
	People        = "ou=people," + Base
	Groups        = "ou=groups," + Base
	AdminDN       = "cn=admin," + Base
	AdminPassword = "admin-secret"
	BindDN        = "cn=rostergate,ou=services," + Base
	BindPassword  = "rostergate-secret"
)

const (
	// StartTimeout bounds one start of slapd, until it answers.
	StartTimeout = 30 * time.Second
	// stopTimeout bounds a clean stop (SIGTERM) before SIGKILL.
	stopTimeout = 10 * time.Second
	// killTimeout bounds the wait for the exit after SIGKILL.
	killTimeout = 10 * time.Second
	// opTimeout bounds each change to the tree.
	opTimeout = 10 * time.Second
	// startAttempts bounds how many fresh ports a new server tries.
	startAttempts = 4
)

// Server is a slapd started by Start.
type Server struct {
	URL     string // ldap://127.0.0.1:port
	Addr    string // 127.0.0.1:port
	Port    int
	Dir     string // the temporary directory holding everything below
	LogPath string // slapd's output (kept across restarts)

	bin, conf string

	mu     sync.Mutex
	proc   *process // nil while stopped
	paused bool
}

type process struct {
	cmd     *exec.Cmd
	out     *os.File
	done    chan struct{} // closed once slapd has exited
	waitErr error         // valid after done is closed
}

// Start starts a slapd for t, with the tree loaded: stopped, and its
// directory removed, when t ends. It skips t if slapd is not installed
// (fails it when CI=true), and fails it if slapd does not start.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := start()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true, so this is an error; `make deps` installs it)", err)
	case errors.Is(err, ErrNotInstalled):
		t.Skipf("skipping: %v", err)
	default:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Resume(t)
		if err := s.stop(); err != nil {
			t.Errorf("ldaptest: %v", err)
		}
		if t.Failed() {
			t.Logf("ldaptest: log tail (%s):\n%s", s.LogPath, s.LogTail(30))
		}
		if err := os.RemoveAll(s.Dir); err != nil {
			t.Errorf("ldaptest: %v", err)
		}
	})
	if err := s.load(); err != nil {
		t.Fatal(err)
	}
	return s
}

// find returns slapd's path and the directories of its schemas and
// modules.
func find() (bin, schema, modules string, err error) {
	bin = "/usr/sbin/slapd"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("slapd"); err != nil {
			return "", "", "", fmt.Errorf("%w: no /usr/sbin/slapd and no slapd on PATH (Debian: apt-get install slapd)", ErrNotInstalled)
		}
	}
	schema, modules = "/etc/ldap/schema", "/usr/lib/ldap"
	for _, p := range []string{filepath.Join(schema, "inetorgperson.schema"), filepath.Join(modules, "back_mdb.so"), filepath.Join(modules, "memberof.so")} {
		if _, err := os.Stat(p); err != nil {
			return "", "", "", fmt.Errorf("%w: %s is missing", ErrNotInstalled, p)
		}
	}
	return bin, schema, modules, nil
}

// conf is slapd.conf: the schemas, the mdb database under Base, the admin,
// and who may read what.
const conf = `include %[1]s/core.schema
include %[1]s/cosine.schema
include %[1]s/inetorgperson.schema
include %[1]s/nis.schema
pidfile %[3]s/slapd.pid
argsfile %[3]s/slapd.args
modulepath %[2]s
moduleload back_mdb
moduleload memberof
database mdb
maxsize 67108864
suffix "%[4]s"
rootdn "%[5]s"
rootpw %[6]s
directory %[3]s/data
overlay memberof
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
`

func start() (*Server, error) {
	bin, schema, modules, err := find()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ldaptest-")
	if err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	s := &Server{Dir: dir, LogPath: filepath.Join(dir, "slapd.log"), bin: bin, conf: filepath.Join(dir, "slapd.conf")}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	if err := os.WriteFile(s.conf, fmt.Appendf(nil, conf, schema, modules, dir, Base, AdminDN, AdminPassword), 0o600); err != nil {
		return nil, fmt.Errorf("ldaptest: %w", err)
	}
	var errs []error
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "ldap://" + s.Addr
		err = s.startProc()
		if err == nil {
			break
		}
		errs = append(errs, err)
		if attempt == startAttempts {
			return nil, errors.Join(errs...)
		}
	}
	ok = true
	return s, nil
}

// startProc starts slapd on s.Port and waits until it answers.
func (s *Server) startProc() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("ldaptest: already running")
	}
	out, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ldaptest: %w", err)
	}
	// -d 0: in the foreground, logging nothing but errors, to our file.
	cmd := exec.Command(s.bin, "-d", "0", "-h", "ldap://"+s.Addr+"/", "-f", s.conf)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "TZ=UTC", "HOME=" + s.Dir}
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return fmt.Errorf("ldaptest: start slapd: %w", err)
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(p); err != nil {
		s.proc = nil
		_ = kill(p)
		return fmt.Errorf("%w\nslapd log tail (%s):\n%s", err, s.LogPath, s.LogTail(20))
	}
	return nil
}

// waitReady polls, bounded by StartTimeout, until the admin can bind.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(StartTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-p.done:
			return fmt.Errorf("ldaptest: slapd exited while starting: %v", p.waitErr)
		default:
		}
		c, err := s.dial()
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ldaptest: slapd not ready within %v: %w", StartTimeout, err)
		}
		select {
		case <-p.done:
		case <-time.After(wait):
		}
	}
}

// dial connects and binds as the admin.
func (s *Server) dial() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(opTimeout)
	if err := c.Bind(AdminDN, AdminPassword); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// Admin returns a connection bound as the admin, closed when t ends.
func (s *Server) Admin(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// load adds the tree's skeleton: the base, the three branches and the
// service account.
func (s *Server) load() error {
	c, err := s.dial()
	if err != nil {
		return fmt.Errorf("ldaptest: %w", err)
	}
	defer c.Close()
	adds := []*ldap.AddRequest{
		addReq(Base, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"example"}, "o": {"Example"}}),
		addReq(People, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"people"}}),
		addReq(Groups, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"groups"}}),
		addReq("ou=services,"+Base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {"services"}}),
		addReq(BindDN, map[string][]string{"objectClass": {"organizationalRole", "simpleSecurityObject"}, "cn": {"rostergate"},
			"userPassword": {BindPassword}}),
	}
	for _, a := range adds {
		if err := c.Add(a); err != nil {
			return fmt.Errorf("ldaptest: add %s: %w", a.DN, err)
		}
	}
	return nil
}

func addReq(dn string, attrs map[string][]string) *ldap.AddRequest {
	a := ldap.NewAddRequest(dn, nil)
	for k, v := range attrs {
		a.Attribute(k, v)
	}
	return a
}

// UserDN is the DN of the user uid.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + "," + People }

// GroupDN is the DN of the group cn.
func GroupDN(cn string) string { return "cn=" + ldap.EscapeDN(cn) + "," + Groups }

// AddUser adds the user uid with the mail mail (an inetOrgPerson), and
// returns its DN.
func (s *Server) AddUser(t testing.TB, uid, mail string) string {
	t.Helper()
	dn := UserDN(uid)
	s.change(t, func(c *ldap.Conn) error {
		return c.Add(addReq(dn, map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {mail}}))
	})
	return dn
}

// AddGroup adds the group cn (a groupOfNames) with the members given by
// DN; a groupOfNames needs one at least.
func (s *Server) AddGroup(t testing.TB, cn string, members ...string) string {
	t.Helper()
	dn := GroupDN(cn)
	s.change(t, func(c *ldap.Conn) error {
		return c.Add(addReq(dn, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {cn}, "member": members}))
	})
	return dn
}

// AddMember adds the entry member (a DN) to the group cn.
func (s *Server) AddMember(t testing.TB, cn, member string) {
	t.Helper()
	s.change(t, func(c *ldap.Conn) error {
		m := ldap.NewModifyRequest(GroupDN(cn), nil)
		m.Add("member", []string{member})
		return c.Modify(m)
	})
}

// RemoveMember removes the entry member (a DN) from the group cn.
func (s *Server) RemoveMember(t testing.TB, cn, member string) {
	t.Helper()
	s.change(t, func(c *ldap.Conn) error {
		m := ldap.NewModifyRequest(GroupDN(cn), nil)
		m.Delete("member", []string{member})
		return c.Modify(m)
	})
}

func (s *Server) change(t testing.TB, fn func(*ldap.Conn) error) {
	t.Helper()
	c, err := s.dial()
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
}

// Stop stops slapd cleanly (SIGTERM), as an admin would: clients'
// connections are closed, and new ones refused, until Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
}

// Start starts slapd again, on the same port and with the same data, after
// Stop or Kill.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = s.startProc(); err == nil {
			return
		}
		waitPortFree(s.Port, 5*time.Second)
	}
	t.Fatalf("ldaptest: start again: %v", err)
}

// Kill kills slapd at once (SIGKILL), as a crash would, and waits for it
// to exit.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proc; p != nil {
		s.proc, s.paused = nil, false
		if err := kill(p); err != nil {
			t.Fatalf("ldaptest: %v", err)
		}
	}
}

// Pause stops slapd (SIGSTOP) without closing anything: connections stay
// open and unanswered, new ones are accepted by the kernel and wait, as a
// hung directory's would. Resume lets it go on.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP, true)
}

// Resume lets a paused slapd go on (SIGCONT); it does nothing otherwise.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT, false)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal, pause bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.paused == pause {
		return
	}
	if err := s.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("ldaptest: %v: %v", sig, err)
	}
	s.paused = pause
	if pause {
		// The signal is delivered in a while: wait until every thread of
		// slapd's has stopped, so that nothing is answered after Pause.
		if err := waitStopped(s.proc.cmd.Process.Pid, stopTimeout); err != nil {
			t.Fatalf("ldaptest: %v", err)
		}
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if s.paused {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
	select {
	case <-p.done:
		return fmt.Errorf("slapd had exited already: %v\n%s", p.waitErr, s.LogTail(20))
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return kill(p)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		if err := kill(p); err != nil {
			return err
		}
		return fmt.Errorf("slapd did not stop within %v of SIGTERM; killed\n%s", stopTimeout, s.LogTail(20))
	}
}

// kill kills slapd's process group and waits, bounded, for it to exit.
func kill(p *process) error {
	killGroup(p.cmd.Process)
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("slapd (pid %d) did not exit within %v of SIGKILL", p.cmd.Process.Pid, killTimeout)
	}
}

// LogTail returns the last n lines of slapd's log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.LogPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago,
// picked at random from 20000 up to the kernel's ephemeral range when it
// leaves room (ports in it are handed to outgoing connections), else by
// the kernel.
func freePort() (int, error) {
	lo, hi := 20000, 0
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			hi, _ = strconv.Atoi(f[0])
			hi--
		}
	}
	for try := 0; hi-lo >= 1000 && try < 100; try++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo+1))))
		if err == nil {
			port := l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("ldaptest: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
