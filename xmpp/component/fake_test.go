package component

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/gate"
	"rostergate/policy"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

// fakeServer is an in-process XEP-0114 server on loopback: it checks the
// handshake and hands each accepted stream to the test.
type fakeServer struct {
	ln     net.Listener
	secret string
	conns  chan *fakeConn
	// onOpen, if set, replaces the normal answer to the stream header: it
	// gets the raw conn right after the client's header was read.
	onOpen func(net.Conn)
}

type fakeConn struct {
	net.Conn
	r         *bufio.Reader
	header    string // the client's stream header, as sent
	handshake string // the client's handshake element, as sent
}

func newFakeServer(t *testing.T, secret string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, secret: secret, conns: make(chan *fakeConn, 16)}
	t.Cleanup(func() { ln.Close() })
	go s.accept()
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) accept() {
	for n := 0; n < 64; n++ {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.serve(c)
	}
}

// readUntil reads until the bytes read end with suffix (bounded size).
func readUntil(r *bufio.Reader, suffix string) (string, error) {
	var b strings.Builder
	for b.Len() < 4096 {
		c, err := r.ReadByte()
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(c)
		if strings.HasSuffix(b.String(), suffix) {
			return b.String(), nil
		}
	}
	return b.String(), errors.New("too long")
}

func (s *fakeServer) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	hdr, err := readUntil(r, ">")
	if err != nil {
		c.Close()
		return
	}
	if s.onOpen != nil {
		s.onOpen(c)
		c.Close()
		return
	}
	const id = "3f2a1b"
	fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='%s' from='bots.localhost'>", id)
	hs, err := readUntil(r, "</handshake>")
	if err != nil {
		c.Close()
		return
	}
	sum := sha1.Sum([]byte(id + s.secret))
	if hs != "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>" {
		io.WriteString(c, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Invalid handshake</text></stream:error></stream:stream>")
		c.Close()
		return
	}
	io.WriteString(c, "<handshake/>")
	_ = c.SetDeadline(time.Time{})
	// As a server does, route the engine's echoes of its outbox writes back
	// to it; the tests see the rest.
	s.conns <- &fakeConn{Conn: c, r: bufio.NewReader(&echoBack{r: r, w: c}), header: hdr, handshake: hs}
}

// echoStart begins the engine's echo of an outbox write: a ping from the
// component's domain to itself.
const echoStart = "<iq type='get' from='bots.localhost' to='bots.localhost' id='rg-echo-"

var echoRE = regexp.MustCompile(`<iq type='get' from='bots\.localhost' to='bots\.localhost' id='rg-echo-\d+'><ping xmlns='urn:xmpp:ping'/></iq>`)

// echoBack reads what the component writes, sends each echo back to it (as
// the server routes a stanza to its addressee) and passes on the rest.
type echoBack struct {
	r        io.Reader
	w        io.Writer
	buf, out []byte
}

func (e *echoBack) Read(p []byte) (int, error) {
	var tmp [4096]byte
	for len(e.out) == 0 {
		n, err := e.r.Read(tmp[:])
		e.buf = append(e.buf, tmp[:n]...)
		for {
			loc := echoRE.FindIndex(e.buf)
			if loc == nil {
				break
			}
			if _, werr := e.w.Write(append([]byte(nil), e.buf[loc[0]:loc[1]]...)); werr != nil {
				return 0, werr
			}
			e.buf = append(e.buf[:loc[0]], e.buf[loc[1]:]...)
		}
		// Hold back what may be the start of an echo still arriving.
		keep := len(e.buf)
		if k := bytes.LastIndexByte(e.buf, '<'); k >= 0 {
			tail := string(e.buf[k:])
			if strings.HasPrefix(echoStart, tail) || strings.HasPrefix(tail, echoStart) {
				keep = k
			}
		}
		e.out = append(e.out, e.buf[:keep]...)
		e.buf = append(e.buf[:0], e.buf[keep:]...)
		if err != nil {
			e.out = append(e.out, e.buf...)
			e.buf = nil
			if len(e.out) == 0 {
				return 0, err
			}
			break
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// next waits for the next accepted stream.
func (s *fakeServer) next(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection from the component within 10 s")
		return nil
	}
}

var idRE = regexp.MustCompile(`id='rg-[0-9a-f]+-[0-9a-z]+'`)

// helpdeskFace is what helpdesk's available presence carries after show
// and status (XEP-0153, XEP-0115), and helpdeskNick what its subscribe
// carries (XEP-0172), with the test settings below.
var (
	helpdeskVer  = stanza.CapsVer("client", "bot", "Help Desk", stanza.EntityFeatures())
	helpdeskFace = "<x xmlns='vcard-temp:x:update'><photo/></x><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='rostergate' ver='" +
		helpdeskVer + "'/>"
	helpdeskNick = "<nick xmlns='http://jabber.org/protocol/nick'>helpdesk &amp; co</nick>"
)

// partialIDRE is a fresh id still being read, at the end of what was read.
var partialIDRE = regexp.MustCompile(`id='(?:r|rg|rg-[0-9a-f-]*[0-9a-z]*)$`)

// expect reads exactly len(want) bytes (after replacing fresh ids with
// id='ID' in what was read) and compares them with want.
func (c *fakeConn) expect(t *testing.T, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var got strings.Builder
	for {
		norm := idRE.ReplaceAllString(got.String(), "id='ID'")
		norm = partialIDRE.ReplaceAllString(norm, "id='ID")
		norm = strings.TrimLeft(norm, " ") // keepalives
		if norm == want {
			return
		}
		if len(norm) >= len(want) && !strings.HasPrefix(want, norm) {
			t.Fatalf("stream:\n got %s\nwant %s", norm, want)
		}
		b, err := c.r.ReadByte()
		if err != nil {
			t.Fatalf("reading stream: %v\n got %s\nwant %s", err, norm, want)
		}
		got.WriteByte(b)
	}
}

func (c *fakeConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	up   <-chan struct{} // closed when the first stream is up and resynced
	srv  *fakeServer
	comp *Component
	eng  *engine.Engine
	svc  *gate.Service
	db   *sqlite.DB
	done chan error
	stop context.CancelFunc
}

// testOpts is what a test may set of the running stack: the transport's
// options and the engine's.
type testOpts struct {
	Options
	Domain   string
	Resource string
	Settings engine.Settings
	Store    store.Store
}

// newStack wires a Component as the command line does (see
// internal/instance, which this package's own tests cannot import).
func newStack(o testOpts) (*Component, *engine.Engine, *gate.Service, error) {
	root := o.Logger
	if root == nil {
		root = hclog.NewNullLogger()
	}
	o.Logger = root.Named("component")
	eng, err := engine.New(context.Background(), engine.Options{Domain: o.Domain, Resource: o.Resource, Store: o.Store, Settings: o.Settings, Logger: root.Named("engine")})
	if err != nil {
		return nil, nil, nil, err
	}
	svc, err := gate.New(gate.Options{Domain: o.Domain, Store: o.Store, Engine: eng, Settings: o.Settings, Logger: root.Named("gate")})
	if err != nil {
		return nil, nil, nil, err
	}
	o.Options.Engine, o.Options.Service = eng, svc
	comp, err := New(o.Options)
	if err != nil {
		return nil, nil, nil, err
	}
	return comp, eng, svc, nil
}

func testPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Reject,
		Rules: []policy.Rule{
			{Contact: "*@good.example", Action: policy.Accept},
			{Contact: "*@both.example", Action: policy.Accept, SubscribeBack: true},
			{Domain: "bad.example", Action: policy.Reject},
			{Domain: "spam.example", Action: policy.Drop},
			{Domain: "msg.example", Action: policy.Review, Message: "Your request awaits approval"},
			{Domain: "back.example", Action: policy.Review, SubscribeBack: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs a Component against a fake server with a real store.
func start(t *testing.T, secret string, tweak func(*testOpts)) *harness {
	t.Helper()
	srv := newFakeServer(t, "s3cret")
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	opts := testOpts{
		Options: Options{
			Server:     srv.addr(),
			Secret:     secret,
			Logger:     hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug}),
			Version:    "test",
			MinBackoff: 10 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond,
		},
		Domain: "bots.localhost",
		Settings: engine.Settings{
			Entities: []engine.Entity{{Local: "helpdesk", Name: "Help Desk", Nick: "helpdesk & co", Show: "away", Status: "Ask <me>"}},
			Policy:   testPolicy(t),
		},
		Store: db,
	}
	if tweak != nil {
		tweak(&opts)
	}
	comp, eng, svc, err := newStack(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{up: comp.Connected(), srv: srv, comp: comp, eng: eng, svc: svc, db: db, done: make(chan error, 1), stop: cancel}
	go func() { h.done <- comp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
		db.Close()
	})
	return h
}

// first returns the first stream, once the component has sent its resync
// on it, so that what the test sends next is not raced by the resync.
func (h *harness) first(t *testing.T) *fakeConn {
	t.Helper()
	c := h.srv.next(t)
	select {
	case <-h.up:
	case <-time.After(10 * time.Second):
		t.Fatal("component did not finish connecting within 10 s")
	}
	return c
}

// wait returns Run's result.
func (h *harness) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s")
		return nil
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
