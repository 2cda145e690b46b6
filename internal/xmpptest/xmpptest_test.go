package xmpptest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// timeout bounds every wait in these tests.
const timeout = 10 * time.Second

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// registerCtx bounds Server.Register, which for ejabberd boots an Erlang VM
// (ejabberdctl): that takes seconds on a busy machine, so it has the bound
// NewUser uses.
func registerCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), registerTimeout(t))
	t.Cleanup(cancel)
	return ctx
}

func isType(from, typ string) func(Presence) bool {
	return func(p Presence) bool { return p.Type == typ && bareJID(p.From) == from }
}

func bareJID(jid string) string {
	bare, _, _ := strings.Cut(jid, "/")
	return bare
}

func subscription(sub, ask string) func(RosterItem) bool {
	return func(it RosterItem) bool { return it.Subscription == sub && it.Ask == ask }
}

func TestSubscriptionFlow(t *testing.T) { EachServer(t, testSubscriptionFlow) }

func testSubscriptionFlow(t *testing.T, s *Server) {
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")

	if alice.Bare != "alice@localhost" || !strings.HasPrefix(alice.JID, "alice@localhost/") {
		t.Fatalf("alice JIDs: bare %q full %q", alice.Bare, alice.JID)
	}

	if err := alice.SendPresence(bob.Bare, "subscribe"); err != nil {
		t.Fatal(err)
	}
	sub, err := bob.WaitPresence(ctx, isType(alice.Bare, "subscribe"))
	if err != nil {
		t.Fatal(err)
	}
	// Prosody addresses it to bob's bare JID, ejabberd to each of his
	// available resources (both allowed by RFC 6121 3.1.3).
	if sub.From != alice.Bare || bareJID(sub.To) != bob.Bare || sub.ID == "" {
		t.Errorf("subscribe as received by bob: %+v", sub)
	}
	// While the request is pending, alice's item has ask="subscribe".
	if _, err := alice.WaitRosterItem(ctx, bob.Bare, subscription("none", "subscribe")); err != nil {
		t.Fatal(err)
	}

	if err := bob.SendPresence(alice.Bare, "subscribed"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitPresence(ctx, isType(bob.Bare, "subscribed")); err != nil {
		t.Fatal(err)
	}
	it, err := alice.WaitRosterItem(ctx, bob.Bare, subscription("to", ""))
	if err != nil {
		t.Fatal(err)
	}
	if it.JID != bob.Bare {
		t.Errorf("alice's item JID = %q", it.JID)
	}
	if _, err := bob.WaitRosterItem(ctx, alice.Bare, subscription("from", "")); err != nil {
		t.Fatal(err)
	}
	// Now that alice is subscribed, she gets bob's available presence.
	if _, err := alice.WaitPresence(ctx, func(p Presence) bool {
		return p.Type == "" && bareJID(p.From) == bob.Bare
	}); err != nil {
		t.Fatal(err)
	}

	// The full rosters hold exactly these items.
	ra, err := alice.Roster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 1 || ra[bob.Bare].Subscription != "to" {
		t.Errorf("alice's roster: %+v", ra)
	}
	rb, err := bob.Roster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rb) != 1 || rb[alice.Bare].Subscription != "from" {
		t.Errorf("bob's roster: %+v", rb)
	}
}

func TestRestartKeepsUsersAndRosters(t *testing.T) { EachServer(t, testRestartKeepsUsersAndRosters) }

func testRestartKeepsUsersAndRosters(t *testing.T, s *Server) {
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")
	bob := s.NewUser(t, "bob")
	c2s, comp := s.C2SAddr, s.ComponentAddr

	if err := alice.SendPresence(bob.Bare, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitPresence(ctx, isType(alice.Bare, "subscribe")); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendPresence(alice.Bare, "subscribed"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitRosterItem(ctx, bob.Bare, subscription("to", "")); err != nil {
		t.Fatal(err)
	}

	// Restart bounds itself (StartTimeout): a busy machine may need more
	// than timeout. What follows gets a timeout of its own.
	if err := s.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx = ctxFor(t)
	if s.C2SAddr != c2s || s.ComponentAddr != comp {
		t.Errorf("addresses changed across restart: %s %s -> %s %s", c2s, comp, s.C2SAddr, s.ComponentAddr)
	}
	if !s.Running() {
		t.Fatal("not running after Restart")
	}

	// The old session is gone: waiting on it fails promptly, not at the
	// deadline.
	start := time.Now()
	if _, err := alice.WaitPresence(ctx, isType("nobody@localhost", "subscribe")); err == nil ||
		!strings.Contains(err.Error(), "connection closed") {
		t.Errorf("WaitPresence on a dead session: %v", err)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("WaitPresence on a dead session took %v", d)
	}
	if _, err := alice.Roster(ctx); err == nil {
		t.Error("Roster on a dead session succeeded")
	}
	if err := alice.Close(); err != nil {
		t.Errorf("Close after restart: %v", err)
	}

	alice2 := s.Login(t, "alice")
	it, err := alice2.WaitRosterItem(ctx, bob.Bare, nil)
	if err != nil {
		t.Fatal(err)
	}
	if it.Subscription != "to" || it.Ask != "" {
		t.Errorf("alice's item for bob after restart: %+v", it)
	}
	bob2 := s.Login(t, "bob")
	if _, err := bob2.WaitRosterItem(ctx, alice.Bare, subscription("from", "")); err != nil {
		t.Fatal(err)
	}
}

// While no component is connected, both servers bounce stanzas to its
// domain at once, each with its own condition: ejabberd takes the domain for
// a remote one and fails to resolve it (its text says why, e.g. "DNS lookup
// failed: enoname"; it depends on the resolver, so it is not checked).
func TestComponentNotConnectedBounces(t *testing.T) { EachServer(t, testComponentNotConnectedBounces) }

// Openfire sends the subscribe nowhere and says nothing (its bounce, to
// the user's bare JID, fails in its own router: "Cannot route packet of
// type IQ or Presence to bare JID"); an IQ bounces with
// service-unavailable.
func testComponentNotConnectedBounces(t *testing.T, s *Server) {
	ctx := ctxFor(t)
	type bounce struct{ cond, typ, text string }
	want, known := map[string]struct{ presence, iq bounce }{
		KindProsody:  {bounce{"remote-server-timeout", "wait", "Component unavailable"}, bounce{"remote-server-timeout", "wait", ""}},
		KindEjabberd: {bounce{"remote-server-not-found", "cancel", ""}, bounce{"remote-server-not-found", "cancel", ""}},
		KindOpenfire: {bounce{}, bounce{"service-unavailable", "cancel", ""}},
	}[s.Kind]
	if !known {
		t.Fatalf("how %s bounces is not known", s.Kind)
	}
	alice := s.NewUser(t, "alice")
	to := "helpdesk@" + s.ComponentDomain

	if err := alice.SendPresence(to, "subscribe"); err != nil {
		t.Fatal(err)
	}
	if want.presence.cond != "" {
		p, err := alice.WaitPresence(ctx, isType(to, "error"))
		if err != nil {
			t.Fatal(err)
		}
		if p.Error != want.presence.cond || p.ErrorType != want.presence.typ || (want.presence.text != "" && p.ErrorText != want.presence.text) {
			t.Errorf("bounce: %+v, want %+v", p, want.presence)
		}
	}
	// The server keeps the outbound request pending in the roster anyway.
	if _, err := alice.WaitRosterItem(ctx, to, subscription("none", "subscribe")); err != nil {
		t.Fatal(err)
	}

	_, err := alice.IQ(ctx, "<iq type='get' to='"+s.ComponentDomain+"'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != want.iq.cond || se.Type != want.iq.typ {
		t.Errorf("disco#info to a disconnected component: %v", err)
	}
	if want.presence.cond == "" {
		// The IQ's answer came after anything the subscribe brought.
		for _, p := range alice.Presences() {
			if p.From == to {
				t.Errorf("the subscribe was answered: %s", p)
			}
		}
	}
	// Nothing was kept for the component: once it connects, the first
	// stanza it gets (past Openfire's own queries) is one sent after.
	comp, got := dialComponent(t, s, s.ComponentDomain, s.ComponentSecret)
	if got != "<handshake/>" && got != "<handshake></handshake>" {
		t.Fatalf("handshake answered %s", got)
	}
	if err := alice.SendRaw("<message to='" + to + "' id='after' type='chat'><body>hi</body></message>"); err != nil {
		t.Fatal(err)
	}
	if first := strings.ReplaceAll(comp.nextStanza(t, s), `"`, "'"); !strings.Contains(first, "id='after'") {
		t.Errorf("the component's first stanza: %s, want the message sent after it connected", first)
	}
}

func TestIQ(t *testing.T) { EachServer(t, testIQ) }

func testIQ(t *testing.T, s *Server) {
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")

	// Openfire quotes attributes with ".
	quotes := strings.NewReplacer(`"`, "'")
	reply, err := alice.IQ(ctx, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	if reply = quotes.Replace(reply); !strings.Contains(reply, "type='result'") {
		t.Errorf("ping reply: %s", reply)
	}
	reply, err = alice.IQ(ctx, "<iq type='get' id='disco1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	reply = quotes.Replace(reply)
	// Prosody lists jabber:iq:roster among the server's features, ejabberd
	// does not.
	if !strings.Contains(reply, "id='disco1'") || !strings.Contains(reply, "urn:xmpp:ping") {
		t.Errorf("disco#info reply: %s", reply)
	}
	if _, err := alice.IQ(ctx, "<message/>"); err == nil {
		t.Error("IQ accepted a message")
	}
}

func TestWaitPresenceTimeoutListsReceived(t *testing.T) {
	EachServer(t, testWaitPresenceTimeoutListsReceived)
}

func testWaitPresenceTimeoutListsReceived(t *testing.T, s *Server) {
	alice := s.NewUser(t, "alice")

	// The self-presence echo arrived during login; a nil matcher takes it.
	self, err := alice.WaitPresence(ctxFor(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if self.From != alice.JID {
		t.Errorf("first presence: %+v", self)
	}
	// Nothing else will come: this wait is expected to hit its deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = alice.WaitPresence(ctx, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if !strings.HasPrefix(err.Error(), "xmpptest: ") || !strings.Contains(err.Error(), "already returned") ||
		!strings.Contains(err.Error(), alice.JID) {
		t.Errorf("error does not describe received presences: %v", err)
	}
	if got := len(alice.Presences()); got != 1 {
		t.Errorf("Presences() has %d entries", got)
	}
}

func TestLoginWrongPassword(t *testing.T) { EachServer(t, testLoginWrongPassword) }

func testLoginWrongPassword(t *testing.T, s *Server) {
	if err := s.Register(registerCtx(t), "carol", "right"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	_, err := Dial(ctx, s.C2SAddr, s.JID("carol"), "wrong")
	if err == nil || !strings.HasPrefix(err.Error(), "xmpptest: ") {
		t.Fatalf("Dial with wrong password: %v", err)
	}
	c, err := Dial(ctx, s.C2SAddr, s.JID("carol")+"/desk", "right")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.JID != "carol@localhost/desk" {
		t.Errorf("JID = %q", c.JID)
	}
}

func TestListensOnLoopbackOnly(t *testing.T) { EachServer(t, testListensOnLoopbackOnly) }

// testListensOnLoopbackOnly: Prosody listens for clients and components;
// ejabberd also for Erlang distribution (ejabberdctl), and nothing else.
func testListensOnLoopbackOnly(t *testing.T, s *Server) {
	want := map[string]int{KindProsody: 2, KindEjabberd: 3, KindOpenfire: 2}[s.Kind]
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
	// What waitReady checks.
	if owned, err := listensOn(pid, s.ports); err != nil && !errors.Is(err, errors.ErrUnsupported) || err == nil && !owned {
		t.Errorf("listensOn(%d, %v) = %v, %v", pid, s.ports, owned, err)
	}
	if owned, err := listensOn(os.Getpid(), s.ports[:1]); owned || err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("listensOn(self, %v) = %v, %v", s.ports[:1], owned, err)
	}
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss not installed")
	}
	out, err := exec.Command("ss", "-Hltnup").Output()
	if err != nil {
		t.Skipf("ss: %v", err)
	}
	var mine []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.Contains(line, "pid="+strconv.Itoa(pid)+",") {
			mine = append(mine, line)
		}
	}
	if len(mine) != want {
		t.Errorf("%s listens on %d sockets, want %d:\n%s", s.Kind, len(mine), want, strings.Join(mine, "\n"))
	}
	for _, l := range mine {
		fields := strings.Fields(l)
		if len(fields) < 5 || !strings.HasPrefix(fields[4], "127.0.0.1:") {
			t.Errorf("not loopback: %s", l)
		}
	}
}

func TestStartRequiresDir(t *testing.T) {
	for _, kind := range append(Kinds, "nope") {
		_, err := Start(t.Context(), kind, ProsodyConfig{})
		if err == nil || !strings.HasPrefix(err.Error(), "xmpptest: ") {
			t.Errorf("%s: err = %v", kind, err)
		}
	}
}

func TestStartNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := fallbackDirs
	fallbackDirs = nil
	t.Cleanup(func() { fallbackDirs = saved })
	for _, kind := range []string{KindProsody, KindEjabberd} {
		_, err := Start(t.Context(), kind, Config{Dir: t.TempDir()})
		if !errors.Is(err, ErrNotInstalled) {
			t.Errorf("%s: err = %v, want ErrNotInstalled", kind, err)
		}
	}
}

// Without $OPENFIRE_HOME, Openfire cannot be started, and a test on it is
// skipped with the reason, even in CI: no registry ships Openfire.
func TestOpenfireWithoutHome(t *testing.T) {
	t.Setenv(OpenfireHomeEnv, "")
	t.Setenv("CI", "true")
	_, err := Start(t.Context(), KindOpenfire, Config{Dir: t.TempDir()})
	if !errors.Is(err, ErrNoOpenfire) || !strings.Contains(err.Error(), "OPENFIRE_HOME") {
		t.Fatalf("err = %v, want ErrNoOpenfire naming $OPENFIRE_HOME", err)
	}
	ran := false
	t.Run("openfire", func(t *testing.T) {
		ServerWith(t, KindOpenfire, Config{})
		ran = true
	})
	if ran {
		t.Error("a test on Openfire went on without $OPENFIRE_HOME")
	}
	t.Setenv(OpenfireHomeEnv, t.TempDir())
	if _, err := Start(t.Context(), KindOpenfire, Config{Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "is not an Openfire installation") {
		t.Errorf("an empty $OPENFIRE_HOME: %v", err)
	}
}

func TestOpenfirePropertiesXML(t *testing.T) {
	got := propertiesXML(map[string]string{"plugin.subscription.type": "accept", "plugin.subscription.level": "all", "a": "<&>"})
	want := "  <a>&lt;&amp;&gt;</a>\n  <plugin>\n    <subscription>\n      <level>all</level>\n      <type>accept</type>\n    </subscription>\n  </plugin>\n"
	if got != want {
		t.Errorf("propertiesXML:\n%s\nwant:\n%s", got, want)
	}
	t.Setenv(OpenfireHomeEnv, "/nonexistent")
	if _, err := StartOpenfire(t.Context(), Config{Dir: t.TempDir(), OpenfireProperties: map[string]string{"bad name": "x"}}); err == nil || !strings.Contains(err.Error(), `property "bad name"`) {
		t.Errorf("a property name with a blank: %v", err)
	}
}

func TestStopIsIdempotent(t *testing.T) { EachServer(t, testStopIsIdempotent) }

func testStopIsIdempotent(t *testing.T, s *Server) {
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Error("running after Stop")
	}
	// Openfire's log may lose its last lines as the JVM exits; what it
	// prints to its output does not.
	said := map[string]string{KindProsody: "Shutdown complete", KindEjabberd: "is stopped in the node", KindOpenfire: "Server halted"}[s.Kind]
	if said == "" {
		t.Fatalf("what %s logs when it stops is not known", s.Kind)
	}
	tail := s.LogTail(20)
	if s.Kind == KindOpenfire {
		out, _ := os.ReadFile(s.OutPath)
		tail = string(out)
	}
	if !strings.Contains(tail, said) {
		t.Errorf("log tail after stop:\n%s", tail)
	}
}

func TestLuaQuote(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:      `"plain"`,
		`a"b\c`:      `"a\"b\\c"`,
		"new\nline":  `"new\010line"`,
		"/tmp/x y/ä": `"/tmp/x y/ä"`,
	} {
		if got := luaQuote(in); got != want {
			t.Errorf("luaQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSplitStanzas(t *testing.T) {
	stream := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>` +
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>` +
		`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>` +
		`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>` +
		` <presence from='a@b/c'><show/><status>x &amp; y</status></presence>` + "\n" +
		`<iq type='result' id='1'/></stream:stream>`
	var got []string
	if err := splitStanzas(strings.NewReader(stream), func(raw []byte) { got = append(got, string(raw)) }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>`,
		`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`,
		`<presence from='a@b/c'><show/><status>x &amp; y</status></presence>`,
		`<iq type='result' id='1'/>`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestRawFeedStripsDebugFraming(t *testing.T) {
	f := newRawFeed()
	for _, rec := range []string{"RECV <presence\n", "\n", "SEND <auth>secret</auth>\n", "RECV  type='x'/>\n"} {
		if n, err := f.Write([]byte(rec)); err != nil || n != len(rec) {
			t.Fatalf("Write(%q) = %d, %v", rec, n, err)
		}
	}
	f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "<presence type='x'/>"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Register creates a user or, if it exists, sets its password.
func TestRegisterTwice(t *testing.T) { EachServer(t, testRegisterTwice) }

func testRegisterTwice(t *testing.T, s *Server) {
	for _, pw := range []string{"first", "second"} {
		if err := s.Register(registerCtx(t), "dave", pw); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxFor(t)
	if _, err := Dial(ctx, s.C2SAddr, s.JID("dave"), "first"); err == nil {
		t.Error("the old password still works")
	}
	c, err := Dial(ctx, s.C2SAddr, s.JID("dave"), "second")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// Two ejabberd servers run side by side: each has its own Erlang node, and
// ejabberdctl reaches the right one.
func TestEjabberdSideBySide(t *testing.T) {
	a, b := Ejabberd(t), Ejabberd(t)
	if a.impl.(*ejabberd).node == b.impl.(*ejabberd).node {
		t.Fatalf("both nodes are named %s", a.impl.(*ejabberd).node)
	}
	if err := a.Register(registerCtx(t), "erin", "on-a"); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(registerCtx(t), "erin", "on-b"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	for _, tc := range []struct {
		srv     *Server
		pw      string
		succeed bool
	}{{a, "on-a", true}, {a, "on-b", false}, {b, "on-b", true}, {b, "on-a", false}} {
		c, err := Dial(ctx, tc.srv.C2SAddr, tc.srv.JID("erin"), tc.pw)
		if (err == nil) != tc.succeed {
			t.Errorf("login at %s with %s: %v", tc.srv.C2SAddr, tc.pw, err)
		}
		if c != nil {
			c.Close()
		}
	}
}

func TestYAMLQuote(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:     `"plain"`,
		`a"b\c`:     `"a\"b\\c"`,
		"new\nline": `"new\nline"`,
		"ä: #x":     `"ä: #x"`,
	} {
		if got := yamlQuote(in); got != want {
			t.Errorf("yamlQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// rawComponent is a bare XEP-0114 connection, to see what each server does
// with a component (rostergate's own stream layer is tested elsewhere).
type rawComponent struct {
	conn     net.Conn
	streamID string
	elems    chan string // top-level elements received, closed at the end of the stream
}

var (
	streamHeader = regexp.MustCompile(`<stream:stream[^>]*>`)
	streamIDAttr = regexp.MustCompile(`\sid=['"]([^'"]*)['"]`)
)

// dialComponent opens a component stream for domain and completes the
// handshake with secret. It returns the server's first answer to the
// handshake (<handshake/> or a stream error) as raw XML; or, when the
// server's header has no stream id (Openfire's refusal), "no id:" and what
// follows the header ("" for the end of the stream).
func dialComponent(t *testing.T, s *Server, domain, secret string) (*rawComponent, string) {
	t.Helper()
	return dialComponentWith(t, s, domain, secret, "")
}

// dialComponentWith is dialComponent with attrs added to the stream header.
func dialComponentWith(t *testing.T, s *Server, domain, secret, attrs string) (*rawComponent, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.ComponentAddr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='%s'%s>", domain, attrs); err != nil {
		t.Fatal(err)
	}
	// The header, up to its closing '>'.
	var head []byte
	one := make([]byte, 1)
	for !streamHeader.Match(head) {
		if _, err := conn.Read(one); err != nil {
			t.Fatalf("reading the stream header: %v (got %q)", err, head)
		}
		head = append(head, one[0])
	}
	c := &rawComponent{conn: conn, elems: make(chan string, 100)}
	if m := streamIDAttr.FindSubmatch(head); m != nil {
		c.streamID = string(m[1])
	}
	go func() {
		defer close(c.elems)
		_ = splitStanzas(io.MultiReader(strings.NewReader("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"), conn),
			func(raw []byte) { c.elems <- string(raw) })
	}()
	if c.streamID == "" {
		return c, "no id:" + c.next(t)
	}
	sum := sha1.Sum([]byte(c.streamID + secret))
	if _, err := fmt.Fprintf(conn, "<handshake>%s</handshake>", hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	return c, c.next(t)
}

// nextStanza is next, past the IQs Openfire sends a component that has
// just connected (disco#info and software version, from its
// "component." service).
func (c *rawComponent) nextStanza(t *testing.T, s *Server) string {
	t.Helper()
	for i := 0; i < 10; i++ {
		el := c.next(t)
		if !strings.HasPrefix(el, "<iq") || !strings.Contains(el, "component."+s.Domain) {
			return el
		}
	}
	t.Fatal("only IQs from the server's component service")
	return ""
}

// next returns the next element the server sent, or "" at the end of the
// stream.
func (c *rawComponent) next(t *testing.T) string {
	t.Helper()
	select {
	case el := <-c.elems:
		return el
	case <-time.After(timeout):
		t.Fatal("the server sent nothing")
		return ""
	}
}

// What each server does with a component stream. The facts docs/servers.md
// relies on.
func TestComponentStreams(t *testing.T) { EachServer(t, testComponentStreams) }

func testComponentStreams(t *testing.T, s *Server) {
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")

	if _, got := dialComponent(t, s, s.ComponentDomain, "wrong"); !strings.Contains(got, "<not-authorized") {
		t.Errorf("wrong secret: %s", got)
	}
	// Openfire sends a header without a stream id, then closes the
	// connection: no stream error.
	_, got := dialComponent(t, s, "nope."+s.Domain, s.ComponentSecret)
	if want := map[string]string{KindProsody: "<host-unknown", KindEjabberd: "<not-authorized", KindOpenfire: "no id:"}[s.Kind]; got != want && (want == "no id:" || !strings.Contains(got, want)) {
		t.Errorf("unknown domain: %s, want %s", got, want)
	}

	comp, got := dialComponent(t, s, s.ComponentDomain, s.ComponentSecret)
	if want := map[string]string{KindOpenfire: "<handshake></handshake>"}[s.Kind]; got != "<handshake/>" && got != want {
		t.Fatalf("handshake answered %s", got)
	}
	t.Logf("%s stream id %q", s.Kind, comp.streamID)

	// A second connection for the same domain: Prosody refuses it,
	// ejabberd takes it (and shares the domain's traffic between both).
	second, got := dialComponent(t, s, s.ComponentDomain, s.ComponentSecret)
	switch s.Kind {
	case KindProsody:
		if !strings.Contains(got, "<conflict") {
			t.Errorf("second connection: %s, want conflict", got)
		}
	case KindOpenfire:
		if got != "no id:" {
			t.Errorf("second connection: %s, want a header without an id, then the end", got)
		}
	case KindEjabberd:
		if got != "<handshake/>" {
			t.Errorf("second connection: %s, want accepted", got)
		}
		// Until ejabberd has unregistered the second stream it routes each
		// stanza for the domain to either one at random: close it as a
		// component would, and read it to its end, before going on.
		if _, err := io.WriteString(second.conn, "</stream:stream>"); err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			if i == 100 {
				t.Fatal("the second stream did not end after 100 elements")
			}
			if second.next(t) == "" {
				break
			}
		}
		second.conn.Close()
	}

	// The user's subscribe as the component gets it: from the bare JID,
	// with the client's id and xml:lang.
	if err := alice.SendRaw("<presence to='helpdesk@" + s.ComponentDomain + "' type='subscribe' id='sub1' xml:lang='de'/>"); err != nil {
		t.Fatal(err)
	}
	// Openfire quotes attributes with ".
	got = strings.ReplaceAll(comp.nextStanza(t, s), `"`, "'")
	for _, want := range []string{"from='" + alice.Bare + "'", "id='sub1'", "xml:lang='de'", "type='subscribe'"} {
		if !strings.Contains(got, want) {
			t.Errorf("subscribe as the component got it lacks %s: %s", want, got)
		}
	}

	// A stanza without from: Prosody stamps the component's domain on it;
	// ejabberd ends the stream with improper-addressing.
	if _, err := fmt.Fprintf(comp.conn, "<message to='%s' id='m1' type='chat'><body>no from</body></message>", alice.Bare); err != nil {
		t.Fatal(err)
	}
	switch s.Kind {
	case KindProsody:
		m, err := alice.WaitMessage(ctx, func(m Message) bool { return m.ID == "m1" })
		if err != nil {
			t.Fatal(err)
		}
		if m.From != s.ComponentDomain {
			t.Errorf("message without from arrived from %q", m.From)
		}
	case KindEjabberd:
		if got := comp.next(t); !strings.Contains(got, "<improper-addressing") {
			t.Errorf("message without from: %s, want improper-addressing", got)
		}
	case KindOpenfire:
		// The connection ends, with no stream error.
		if got := comp.next(t); got != "" {
			t.Errorf("message without from: %s, want the end of the stream", got)
		}
	}
}

// Openfire takes several connections for one component domain when each
// stream header carries its allowMultiple attribute, and hands them the
// domain's stanzas in turn (InternalComponentManager rotates them).
func TestOpenfireAllowMultiple(t *testing.T) {
	EachServer(t, func(t *testing.T, s *Server) {
		if s.Kind != KindOpenfire {
			t.Skip("allowMultiple is Openfire's")
		}
		alice := s.NewUser(t, "alice")
		var comps []*rawComponent
		for i := range 2 {
			c, got := dialComponentWith(t, s, s.ComponentDomain, s.ComponentSecret, " allowMultiple='true'")
			if got != "<handshake></handshake>" {
				t.Fatalf("connection %d with allowMultiple: %s", i+1, got)
			}
			comps = append(comps, c)
		}
		const n = 6
		for i := range n {
			if err := alice.SendPresence(fmt.Sprintf("e%d@%s", i, s.ComponentDomain), "subscribe"); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]int, len(comps))
		deadline := time.After(timeout)
		// Each round takes an element (every one is bounded: the IQs
		// Openfire sends each connection, then n presences).
		for total, rounds := 0, 0; total < n; rounds++ {
			if rounds > 10*n {
				t.Fatalf("no %d presences among %d elements: %v", n, rounds, got)
			}
			select {
			case el, ok := <-comps[0].elems:
				if !ok {
					t.Fatal("connection 1 ended")
				}
				if strings.HasPrefix(el, "<presence") {
					got[0]++
					total++
				}
			case el, ok := <-comps[1].elems:
				if !ok {
					t.Fatal("connection 2 ended")
				}
				if strings.HasPrefix(el, "<presence") {
					got[1]++
					total++
				}
			case <-deadline:
				t.Fatalf("%d of %d presences within %v: %v", total, n, timeout, got)
			}
		}
		if got[0] != n/2 || got[1] != n/2 {
			t.Errorf("subscribes per connection: %v, want %d each (in turn)", got, n/2)
		}
	})
}

func TestStartTimeout(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want time.Duration
		ok   bool
	}{
		{"", DefaultStartTimeout, true},
		{"90s", 90 * time.Second, true},
		{" 3m ", 3 * time.Minute, true},
		{"90", 0, false},
		{"0s", 0, false},
		{"-5s", 0, false},
		{"soon", 0, false},
	} {
		t.Setenv(StartTimeoutEnv, tc.env)
		got, err := StartTimeout()
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("%s=%q: StartTimeout() = %v, %v", StartTimeoutEnv, tc.env, got, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "xmpptest: ") {
			t.Errorf("error without prefix: %v", err)
		}
	}
	// A bad value fails the start before anything runs.
	t.Setenv(StartTimeoutEnv, "soon")
	for _, kind := range []string{KindProsody, KindEjabberd} {
		s, err := Start(t.Context(), kind, Config{Dir: t.TempDir()})
		switch {
		case err == nil:
			_ = s.Stop()
			t.Errorf("%s started with %s=soon", kind, StartTimeoutEnv)
		case errors.Is(err, ErrNotInstalled):
		case !strings.Contains(err.Error(), StartTimeoutEnv):
			t.Errorf("%s: err = %v", kind, err)
		}
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	if ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Errorf("ports not distinct: %v", ports)
	}
	lo, hi, ok := pickRange()
	t.Logf("ports %v, range %d-%d (%v)", ports, lo, hi, ok)
	for _, p := range ports {
		if ok && (p < lo || p > hi) {
			t.Errorf("port %d outside %d-%d", p, lo, hi)
		}
	}
}

func TestOutsideRange(t *testing.T) {
	for _, tc := range []struct{ elo, ehi, lo, hi int }{
		{32768, 60999, 20000, 32767}, // Linux default
		{49152, 65535, 20000, 49151}, // IANA
		{1024, 65535, 0, 0},
		{10000, 40000, 40001, 65535},
		{21000, 64000, 0, 0},
		{60000, 50000, 0, 0},
	} {
		lo, hi, ok := outsideRange(tc.elo, tc.ehi)
		if lo != tc.lo || hi != tc.hi || ok != (tc.lo != 0) {
			t.Errorf("outsideRange(%d, %d) = %d, %d, %v; want %d, %d", tc.elo, tc.ehi, lo, hi, ok, tc.lo, tc.hi)
		}
	}
}

// takePorts makes Start find ports taken: at attempt i (from 1) it listens
// on port index i-1 of the ones picked for that attempt, for as many
// attempts as indexes, as another process would after freePorts. It returns
// the ports it took.
func takePorts(t *testing.T, indexes int) *[]int {
	t.Helper()
	var taken []int
	saved := portsPicked
	portsPicked = func(attempt int, ports []int) {
		if attempt > indexes {
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[attempt-1]))
		if err != nil {
			t.Errorf("take port: %v", err)
			return
		}
		t.Cleanup(func() { l.Close() })
		taken = append(taken, ports[attempt-1])
	}
	t.Cleanup(func() { portsPicked = saved })
	return &taken
}

// A server whose port was taken between freePorts and its start is started
// again on fresh ports, whichever of its ports it was: each attempt but the
// last finds another one taken.
func TestStartRetriesOnTakenPort(t *testing.T) {
	for _, kind := range []string{KindProsody, KindEjabberd} {
		t.Run(kind, func(t *testing.T) {
			if only := os.Getenv(ServersEnv); only != "" && !slices.Contains(strings.Split(only, ","), kind) {
				t.Skipf("skipping: %s=%s", ServersEnv, only)
			}
			n := map[string]int{KindProsody: 2, KindEjabberd: 3}[kind]
			taken := takePorts(t, n)
			s := ServerWith(t, kind, Config{})
			if len(*taken) != n {
				t.Fatalf("took ports %v, want %d", *taken, n)
			}
			for _, p := range *taken {
				if slices.Contains(s.ports, p) {
					t.Errorf("server on %v, which includes taken port %d", s.ports, p)
				}
			}
			said := map[string]string{KindProsody: "Failed to open server port", KindEjabberd: "eaddrinuse"}[kind]
			data, _ := os.ReadFile(map[string]string{KindProsody: s.LogPath, KindEjabberd: s.OutPath}[kind])
			if got := strings.Count(string(data), said); got < n {
				t.Errorf("%q said %d times, want %d:\n%s", said, got, n, s.diagnostics())
			}
			c := s.NewUser(t, "alice")
			if _, err := c.Roster(ctxFor(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A port taken while the server is stopped makes Restart fail with
// ErrPortInUse, after a bounded wait for it to be free; once free, Restart
// brings the server back on the same ports.
func TestRestartPortTaken(t *testing.T) {
	if os.Getenv(ServersEnv) != "" && !slices.Contains(strings.Split(os.Getenv(ServersEnv), ","), KindProsody) {
		t.Skipf("skipping: %s=%s", ServersEnv, os.Getenv(ServersEnv))
	}
	s := Prosody(t)
	c2s := s.C2SAddr
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", s.ComponentAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	err = s.Restart(t.Context())
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), s.ComponentAddr+" still taken") {
		t.Fatalf("Restart with the component port taken: %v", err)
	}
	t.Logf("Restart with the component port taken: %.600s", err)
	if d := time.Since(start); d > portFreeWait+timeout {
		t.Errorf("Restart took %v", d)
	}
	if s.Running() {
		t.Fatal("running after a failed Restart")
	}
	l.Close()
	if err := s.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.C2SAddr != c2s {
		t.Errorf("C2SAddr changed: %s -> %s", c2s, s.C2SAddr)
	}
	s.NewUser(t, "alice")
}

// TestRosterPrivilege: with Config.RosterPrivilege, Prosody
// (prosody-modules' mod_privilege) and ejabberd (its mod_privilege)
// advertise the roster permission to the component right after the
// handshake (XEP-0356), each in its namespace.
func TestRosterPrivilege(t *testing.T) {
	for _, tc := range []struct {
		kind, privilege, ns string
	}{
		{KindProsody, "both", "urn:xmpp:privilege:2"},
		{KindProsody, "get", "urn:xmpp:privilege:2"},
		{KindEjabberd, "both", "urn:xmpp:privilege:1"},
	} {
		t.Run(tc.kind+"-"+tc.privilege, func(t *testing.T) {
			if only := os.Getenv(ServersEnv); only != "" && !slices.Contains(strings.Split(only, ","), tc.kind) {
				t.Skipf("skipping: %s=%s", ServersEnv, only)
			}
			s := ServerWith(t, tc.kind, Config{RosterPrivilege: tc.privilege})
			comp, got := dialComponent(t, s, s.ComponentDomain, s.ComponentSecret)
			if got != "<handshake/>" {
				t.Fatalf("handshake answered %s", got)
			}
			adv := comp.next(t)
			// Attributes come in any order (Prosody's vary).
			perm := regexp.MustCompile(`<perm (access='roster' type='` + tc.privilege + `'|type='` + tc.privilege + `' access='roster')/>`)
			if !strings.HasPrefix(adv, "<message") || !strings.Contains(adv, "<privilege xmlns='"+tc.ns+"'>") || !perm.MatchString(adv) {
				t.Errorf("advertisement %s, want roster=%s in %s", adv, tc.privilege, tc.ns)
			}
		})
	}
}
