package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"mellium.im/xmpp/jid"

	"rostergate/engine"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

// Fuzz targets of the component: the bytes the server sends after the
// handshake, through the real decoder and handler, and the addressing of a
// stanza. Seeds are in testdata/fuzz/<FuzzName>/; plain `go test` replays them.

const fuzzDomain = "bots.localhost"

// fuzzStanzaMax is the stanza size limit under fuzzing: small, so that the
// limit is reached by inputs of a size the fuzzer makes.
const fuzzStanzaMax = 8 << 10

// fuzzConn is the server's side of the stream: Read yields the fuzzed bytes,
// Write keeps what the component sends.
type fuzzConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return fuzzAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fuzzAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "fuzz" }
func (fuzzAddr) String() string  { return "fuzz" }

// fuzzEnv is what one fuzz worker shares between inputs: the database (left
// empty after each input) and the settings.
type fuzzEnv struct {
	db       *sqlite.DB
	settings engine.Settings
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	f.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	yes := true
	p, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Reject,
		LocalDomains:  []string{"localhost"},
		Rules: []policy.Rule{
			{Contact: "*@good.example", Action: policy.Accept, Message: "Welcome <&> 'aboard' \"\u00e9\u2192\""},
			{Contact: "*@both.example", Action: policy.Accept, SubscribeBack: true},
			{Domain: "bad.example", Action: policy.Reject, Message: "No\r\n\tthanks ]]>"},
			{Domain: "spam.example", Action: policy.Drop},
			{Domain: "msg.example", Action: policy.Review, Message: "Your request awaits approval"},
			{Domain: "back.example", Action: policy.Review, SubscribeBack: true},
			{Regex: `^[a-z]+@localhost$`, LocalContact: &yes, Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true},
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	rate, err := limits.ParseRate("4/1m")
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzEnv{db: db, settings: engine.Settings{
		Entities: []engine.Entity{
			{Local: "helpdesk", Name: "Help <Desk> & 'co'", Show: "away", Status: "Ask <me> \"anything\""},
			{Local: "alerts", Name: "Alerts", Show: "dnd"},
			{Local: "", Name: "The service"},
		},
		Policy:    p,
		Admins:    []string{"admin@localhost", "Boss@Example.COM"},
		ReviewTTL: time.Hour,
		Limits:    engine.Limits{ContactRate: rate, MaxPendingPerDomain: 3, MaxPending: 6, Action: policy.Reject},
	}}
}

// reset empties the database: the roster (and with it the held requests),
// the lists and the outbox. The audit log only grows, and nothing reads it
// while handling stanzas.
func (e *fuzzEnv) reset(t *testing.T) {
	ctx := context.Background()
	var changes []store.Change
	err := e.db.Items(ctx, store.Filter{AllEntities: true}, func(it roster.Item) error {
		changes = append(changes, store.Change{Item: roster.Item{Entity: it.Entity, Contact: it.Contact}, Delete: true, Dequeue: true})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) > 0 {
		if err := e.db.Apply(ctx, changes); err != nil {
			t.Fatal(err)
		}
	}
	allow, deny, err := e.db.Lists(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for list, pats := range map[string][]string{"allow": allow, "deny": deny} {
		for _, p := range pats {
			if _, err := e.db.EditList(ctx, list, p, false, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := e.db.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 0 {
		if err := e.db.Delivered(ctx, out[len(out)-1].ID); err != nil {
			t.Fatal(err)
		}
	}
}

var fuzzSessionRE = regexp.MustCompile(`sessionid='([^'<>&]*)'`)

// FuzzStanza feeds the bytes the server sends after the handshake through
// the decoder (nextLimited behind the prefixReader with the stream header,
// as a session reads them) and Component.handle in batches committed to a
// real database, then carries out the admins' commands the batches queued
// (as the admin worker does). It checks that nothing panics, that the
// commits succeed, that every stanza written is well-formed XML and is a
// presence, message or iq from the component domain, and that no stanza
// of type error is answered.
//
// So that an input can act on what it created, in an admin's chat command
// or ad-hoc command "{id}" stands for the newest held request's id and
// "{sid}" for the last ad-hoc session id the component sent.
func FuzzStanza(f *testing.F) {
	env := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		defer env.reset(t)
		out := runStanzas(t, env, data)
		checkOutput(t, out)
	})
}

// runStanzas handles data as a stream and returns what was written.
func runStanzas(t *testing.T, env *fuzzEnv, data []byte) []byte {
	ctx := context.Background()
	c, eng, _, err := newStack(testOpts{
		Options: Options{
			Logger:         hclog.NewNullLogger(),
			Version:        "fuzz <1.0> & 'more'",
			MaxStanzaBytes: fuzzStanzaMax,
		},
		Domain:   fuzzDomain,
		Store:    env.db,
		Settings: env.settings,
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := &fuzzConn{in: bytes.NewReader(data)}
	c.mu.Lock()
	c.adminQ = make(chan *stanza.Element, adminQueue)
	c.mu.Unlock()
	if err := eng.Attach(ctx, newWriter(conn, time.Minute)); err != nil {
		t.Fatal(err)
	}

	pr := &prefixReader{prefix: []byte(stanza.StreamHeader), r: newBufConn(conn), max: c.opts.MaxStanzaBytes}
	d := xml.NewDecoder(pr)
	var els []*stanza.Element
	for {
		el, err := stanza.Next(d, pr.budget)
		if err != nil {
			break
		}
		els = append(els, el)
	}

	sid := ""
	for len(els) > 0 {
		// A batch of up to maxBatch stanzas; a stanza of type error is a
		// batch of its own, so that what it was answered with can be seen.
		n := 1
		if els[0].Type != "error" {
			for n < len(els) && n < fuzzMaxBatch && els[n].Type != "error" {
				n++
			}
		}
		start := conn.out.Len()
		if err := eng.Handle(ctx, els[:n], router{c}); err != nil {
			t.Fatalf("handling a batch: %v", err)
		}
		if els[0].Type == "error" && conn.out.Len() > start {
			t.Fatalf("a stanza of type error was answered: %s", conn.out.String()[start:])
		}
		els = els[n:]
		// The admin worker's turn: the commands this batch queued.
	queued:
		for {
			select {
			case el := <-c.adminQ:
				if el.Type == "error" {
					t.Fatalf("a stanza of type error went to the admin worker: %+v", el)
				}
				id := "0"
				if reqs, err := env.db.Requests(ctx); err == nil && len(reqs) > 0 {
					id = strconv.FormatInt(reqs[len(reqs)-1].ID, 10)
				}
				el.Body = strings.ReplaceAll(strings.ReplaceAll(el.Body, "{id}", id), "{sid}", sid)
				el.Raw = bytes.ReplaceAll(bytes.ReplaceAll(el.Raw, []byte("{id}"), []byte(id)), []byte("{sid}"), []byte(sid))
				start := conn.out.Len()
				c.runAdmin(ctx, el)
				if m := fuzzSessionRE.FindAllSubmatch(conn.out.Bytes()[start:], -1); len(m) > 0 {
					sid = string(m[len(m)-1][1])
				}
			default:
				break queued
			}
		}
	}
	return conn.out.Bytes()
}

// fuzzMaxBatch is the engine's largest batch.
const fuzzMaxBatch = 2048

// checkOutput checks the stanzas the component wrote.
func checkOutput(t *testing.T, out []byte) {
	t.Helper()
	d := xml.NewDecoder(io.MultiReader(strings.NewReader("<out>"), bytes.NewReader(out), strings.NewReader("</out>")))
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("output is not well-formed: %v\n%s", err, out)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 2 {
				continue
			}
			switch tok.Name.Local {
			case "presence", "message", "iq":
			default:
				t.Fatalf("wrote a <%s> element, not a stanza:\n%s", tok.Name.Local, out)
			}
			if tok.Name.Space != "" {
				t.Fatalf("stanza in namespace %q:\n%s", tok.Name.Space, out)
			}
			from := ""
			for _, a := range tok.Attr {
				if a.Name.Space == "" && a.Name.Local == "from" {
					from = a.Value
				}
			}
			j, err := jid.Parse(from)
			if err != nil || j.Domainpart() != fuzzDomain {
				t.Fatalf("stanza from %q, not from %s (%v):\n%s", from, fuzzDomain, err, out)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 1 && len(bytes.TrimSpace(tok)) > 0 {
				t.Fatalf("text %q between stanzas:\n%s", tok, out)
			}
		}
	}
}
