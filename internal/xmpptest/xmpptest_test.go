package xmpptest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"reflect"
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

func TestSubscriptionFlow(t *testing.T) {
	s := Prosody(t)
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
	if sub.From != alice.Bare || sub.To != bob.Bare || sub.ID == "" {
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

func TestRestartKeepsUsersAndRosters(t *testing.T) {
	s := Prosody(t)
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

	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
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

func TestComponentNotConnectedBounces(t *testing.T) {
	s := Prosody(t)
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")
	to := "helpdesk@" + s.ComponentDomain

	if err := alice.SendPresence(to, "subscribe"); err != nil {
		t.Fatal(err)
	}
	p, err := alice.WaitPresence(ctx, isType(to, "error"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Error != "remote-server-timeout" || p.ErrorType != "wait" || p.ErrorText != "Component unavailable" {
		t.Errorf("bounce: %+v", p)
	}
	// Prosody keeps the outbound request pending in the roster anyway.
	if _, err := alice.WaitRosterItem(ctx, to, subscription("none", "subscribe")); err != nil {
		t.Fatal(err)
	}

	_, err = alice.IQ(ctx, "<iq type='get' to='"+s.ComponentDomain+"'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != "remote-server-timeout" {
		t.Errorf("disco#info to a disconnected component: %v", err)
	}
}

func TestIQ(t *testing.T) {
	s := Prosody(t)
	ctx := ctxFor(t)
	alice := s.NewUser(t, "alice")

	reply, err := alice.IQ(ctx, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reply, "type='result'") {
		t.Errorf("ping reply: %s", reply)
	}
	reply, err = alice.IQ(ctx, "<iq type='get' id='disco1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reply, "id='disco1'") || !strings.Contains(reply, "jabber:iq:roster") {
		t.Errorf("disco#info reply: %s", reply)
	}
	if _, err := alice.IQ(ctx, "<message/>"); err == nil {
		t.Error("IQ accepted a message")
	}
}

func TestWaitPresenceTimeoutListsReceived(t *testing.T) {
	s := Prosody(t)
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

func TestLoginWrongPassword(t *testing.T) {
	s := Prosody(t)
	ctx := ctxFor(t)
	if err := s.Register(ctx, "carol", "right"); err != nil {
		t.Fatal(err)
	}
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

func TestListensOnLoopbackOnly(t *testing.T) {
	s := Prosody(t)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss not installed")
	}
	s.mu.Lock()
	pid := s.proc.cmd.Process.Pid
	s.mu.Unlock()
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
	if len(mine) != 2 {
		t.Errorf("prosody listens on %d sockets, want 2:\n%s", len(mine), strings.Join(mine, "\n"))
	}
	for _, l := range mine {
		fields := strings.Fields(l)
		if len(fields) < 5 || !strings.HasPrefix(fields[4], "127.0.0.1:") {
			t.Errorf("not loopback: %s", l)
		}
	}
}

func TestStartProsodyRequiresDir(t *testing.T) {
	_, err := StartProsody(t.Context(), ProsodyConfig{})
	if err == nil || !strings.HasPrefix(err.Error(), "xmpptest: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestStartProsodyNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := fallbackDirs
	fallbackDirs = nil
	t.Cleanup(func() { fallbackDirs = saved })
	_, err := StartProsody(t.Context(), ProsodyConfig{Dir: t.TempDir()})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
}

func TestStopIsIdempotent(t *testing.T) {
	s := Prosody(t)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Error("running after Stop")
	}
	if tail := s.LogTail(20); !strings.Contains(tail, "Shutdown complete") {
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
