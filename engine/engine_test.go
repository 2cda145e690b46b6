package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"rostergate/engine/enginetest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

// testSource yields its stanzas, each at its offset, then (once gate, if
// any, is closed) ends the stream at end.
type testSource struct {
	els     []*stanza.Element
	offsets []int64
	gate    chan struct{}
	end     int64
	endErr  error // how the stream ends; default the server's </stream:stream>
	i       int
	cur     atomic.Int64
}

func (s *testSource) Next() (*stanza.Element, error) {
	if s.i < len(s.els) {
		el := s.els[s.i]
		s.cur.Store(s.offsets[s.i])
		s.i++
		return el, nil
	}
	if s.gate != nil {
		<-s.gate
	}
	s.cur.Store(s.end)
	if s.endErr != nil {
		return nil, s.endErr
	}
	return nil, stanza.ErrStreamClosed
}

func (s *testSource) Offset() int64 { return s.cur.Load() }

// noIQ is a Handler for tests that send no IQ or message.
type noIQ struct{ t *testing.T }

func (h noIQ) Stanza(_ *bytes.Buffer, el *stanza.Element) {
	h.t.Errorf("unexpected %s handed to the Handler", el.Name)
}

func reviewAll(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Reject,
		Rules: []policy.Rule{{Domain: "good.example", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestEngine returns an Engine over a fresh SQLite store, attached to a
// enginetest.Wire.
func newTestEngine(t *testing.T, s Settings) (*Engine, *sqlite.DB, *enginetest.Wire) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if s.Policy == nil {
		s.Policy = reviewAll(t)
	}
	if s.Entities == nil {
		s.Entities = []Entity{{Local: "helpdesk"}}
	}
	e, err := New(context.Background(), Options{Domain: "bots.localhost", Store: db, Settings: s, API: true})
	if err != nil {
		t.Fatal(err)
	}
	w := &enginetest.Wire{}
	if err := e.Attach(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	return e, db, w
}

func subscribe(from string) *stanza.Element {
	return &stanza.Element{Name: "presence", Type: "subscribe", From: from, To: "helpdesk@bots.localhost"}
}

func held(t *testing.T, db *sqlite.DB) []roster.Request {
	t.Helper()
	reqs, err := db.Requests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

// A held request lives until review_ttl has passed since it was held, not a
// moment less; then it is rejected, as rostergate through review_ttl.
func TestExpireHonoursTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Hour
	e, db, w := newTestEngine(t, Settings{ReviewTTL: ttl})
	if err := e.Handle(ctx, []*stanza.Element{subscribe("alice@other.example")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	reqs := held(t, db)
	if len(reqs) != 1 {
		t.Fatalf("held: %+v", reqs)
	}
	created := reqs[0].Created
	for _, at := range []time.Duration{0, time.Minute, ttl / 2, ttl - time.Millisecond} {
		e.Expire(ctx, created.Add(at))
		if got := held(t, db); len(got) != 1 {
			t.Fatalf("%s after it was held (review_ttl %s) the request is gone: %+v", at, ttl, got)
		}
	}
	if strings.Contains(w.String(), "unsubscribed") {
		t.Fatalf("rejected before its TTL: %s", w.String())
	}
	e.Expire(ctx, created.Add(ttl))
	if got := held(t, db); len(got) != 0 {
		t.Fatalf("still held at its TTL: %+v", got)
	}
	if !strings.Contains(w.String(), "to='alice@other.example' id='") || !strings.Contains(w.String(), "type='unsubscribed'") {
		t.Errorf("the requester was not told: %s", w.String())
	}
	var via []string
	if err := db.Events(ctx, time.Time{}, func(ev roster.Event) error {
		if ev.Kind == "reject" {
			via = append(via, ev.Actor+"/"+ev.Interface)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(via) != 1 || via[0] != "rostergate/"+roster.ViaTTL {
		t.Errorf("audit of the expiry: %q", via)
	}
}

// With no review_ttl nothing expires, however old.
func TestExpireWithoutTTL(t *testing.T) {
	ctx := context.Background()
	e, db, _ := newTestEngine(t, Settings{})
	if err := e.Handle(ctx, []*stanza.Element{subscribe("alice@other.example")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	e.Expire(ctx, time.Now().Add(365*24*time.Hour))
	if got := held(t, db); len(got) != 1 {
		t.Fatalf("expired without a review_ttl: %+v", got)
	}
}

// The caps on held requests: per contact domain and in all, each counted as
// a hit of its own limit; other domains are held until the total cap.
func TestPendingCaps(t *testing.T) {
	ctx := context.Background()
	e, db, w := newTestEngine(t, Settings{Limits: Limits{MaxPendingPerDomain: 2, MaxPending: 3, Action: policy.Reject}})
	els := []*stanza.Element{
		subscribe("a1@one.example"), subscribe("a2@one.example"), subscribe("a3@one.example"),
		subscribe("b1@two.example"), subscribe("b2@two.example"),
	}
	if err := e.Handle(ctx, els, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range held(t, db) {
		got = append(got, r.Contact)
	}
	if want := []string{"a1@one.example", "a2@one.example", "b1@two.example"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("held %q, want %q", got, want)
	}
	hits := e.LimitHits()
	if hits["max_pending_per_domain"] != 1 || hits["max_pending"] != 1 {
		t.Errorf("limit hits %v, want one of each cap", hits)
	}
	for _, c := range []string{"a3@one.example", "b2@two.example"} {
		if !strings.Contains(w.String(), "to='"+c+"' id='") {
			t.Errorf("%s, over a cap with action reject, got no answer: %s", c, w.String())
		}
	}
	if e.Held() != 3 {
		t.Errorf("Held() = %d, want 3", e.Held())
	}
}

// A reply counts as delivered only once its echo (a ping from the domain to
// itself, written after it) comes back from the server: however the stream
// ends before that — the server's close or stream error after the write, a
// broken or reset connection — the reply stays in the outbox and is
// replayed first on the next stream; once echoed, it is not.
func TestDeliveredOnlyWhenEchoed(t *testing.T) {
	tests := []struct {
		name   string
		echoed bool
		endErr error // how the stream ended, if not by </stream:stream>
		kept   bool
	}{
		{"closed by the server after the write", false, nil, true},
		{"stream error after the write", false, &stanza.StreamError{}, true},
		{"connection broke", false, io.ErrUnexpectedEOF, true},
		{"connection reset", false, syscall.ECONNRESET, true},
		{"echoed, then closed", true, nil, false},
		{"echoed, then reset", true, syscall.ECONNRESET, false},
	}
	echoID := regexp.MustCompile(`id='(rg-echo-\d+)'`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e, db, w := newTestEngine(t, Settings{})
			src := &testSource{els: []*stanza.Element{subscribe("alice@good.example")}, offsets: []int64{0}, gate: make(chan struct{}), end: 100, endErr: tc.endErr}
			done := make(chan error, 1)
			go func() { done <- e.Serve(ctx, src, noIQ{t}) }()
			waitWritten(t, w, "type='subscribed'")
			m := echoID.FindStringSubmatch(w.Raw())
			if m == nil {
				t.Fatalf("no echo written after the reply: %q", w.String())
			}
			if tc.echoed {
				if !e.Acked(&stanza.Element{Name: "iq", Type: "get", From: e.Domain(), To: e.Domain(), ID: m[1]}) {
					t.Fatalf("the echo %s was not taken", m[1])
				}
			}
			close(src.gate)
			if err := <-done; err == nil {
				t.Fatal("Serve ended without the stream's error")
			}
			w2 := &enginetest.Wire{}
			if err := e.Attach(ctx, w2); err != nil {
				t.Fatal(err)
			}
			replayed := strings.Contains(w2.String(), "type='subscribed'")
			if replayed != tc.kept {
				t.Errorf("replayed on the next stream: %t, want %t (%q)", replayed, tc.kept, w2.String())
			}
			// The replay is echoed too; once its echo is back, the next
			// commit empties the outbox but for its own row.
			if m := echoID.FindStringSubmatch(w2.Raw()); m != nil {
				e.Acked(&stanza.Element{Name: "iq", Type: "get", From: e.Domain(), To: e.Domain(), ID: m[1]})
			}
			if err := e.Handle(ctx, []*stanza.Element{subscribe("bob@good.example")}, noIQ{t}); err != nil {
				t.Fatal(err)
			}
			out, err := db.Outbox(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != 1 {
				t.Errorf("outbox after the echo: %d rows, want only the newest", len(out))
			}
			if got := e.Stats().OutboxDepth; got != len(out) {
				t.Errorf("Stats().OutboxDepth = %d, the outbox holds %d rows", got, len(out))
			}
			// Not an echo: another's ping, a result, a bad id.
			for _, el := range []*stanza.Element{
				{Name: "iq", Type: "get", From: "alice@good.example", ID: "rg-echo-1"},
				{Name: "iq", Type: "result", From: e.Domain(), ID: "rg-echo-1"},
				{Name: "iq", Type: "get", From: e.Domain(), ID: "rg-echo-x"},
			} {
				if e.Acked(el) {
					t.Errorf("%+v taken as an echo", el)
				}
			}
		})
	}
}

// The outbox row of a batch whose commit failed is not sent, and the
// stream is ended.
func TestFailedCommitSendsNothing(t *testing.T) {
	ctx := context.Background()
	e, db, w := newTestEngine(t, Settings{})
	e.store = failingStore{Store: db}
	err := e.Handle(ctx, []*stanza.Element{subscribe("alice@good.example")}, noIQ{t})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Handle = %v, want the commit's error", err)
	}
	if w.String() != "" {
		t.Errorf("sent after a failed commit: %s", w.String())
	}
	if w.Failed() == nil {
		t.Error("the stream was not ended")
	}
	if e.Sync() {
		t.Error("the stream is still taken as usable")
	}
}

type failingStore struct{ Store }

func (failingStore) Commit(context.Context, store.Batch) (int64, error) {
	return 0, errors.New("disk full")
}

// Our </stream:stream> answered by the server's: everything written before
// ours was read, and the outbox empties. A close of the server's own that
// crossed ours (it began before ours was written) proves nothing for the
// replies written after it had arrived.
func TestAcknowledgeOnlyAnAnswerToOurClose(t *testing.T) {
	tests := []struct {
		name    string
		closeAt int64 // where the server's </stream:stream> began
		kept    bool
	}{
		{"the server answered our close", 25, false},
		{"the server's close crossed ours", 15, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e, db, w := newTestEngine(t, Settings{})
			// The subscribe spans 0..10; bytes up to 20 have arrived by the
			// time the reply is written.
			w.SetReceived(20)
			src := &testSource{els: []*stanza.Element{subscribe("alice@good.example")}, offsets: []int64{0}, gate: make(chan struct{}), end: tc.closeAt}
			done := make(chan error, 1)
			go func() { done <- e.Serve(ctx, src, noIQ{t}) }()
			waitWritten(t, w, "type='subscribed'")
			e.Close(ctx, w, []byte("</stream:stream>"))
			close(src.gate)
			if err := <-done; !errors.Is(err, stanza.ErrStreamClosed) {
				t.Fatalf("Serve = %v", err)
			}
			e.Acknowledge(ctx)
			out, err := db.Outbox(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if kept := len(out) > 0; kept != tc.kept {
				t.Errorf("outbox kept the reply: %t, want %t", kept, tc.kept)
			}
			if got := e.Stats().OutboxDepth; got != len(out) {
				t.Errorf("Stats().OutboxDepth = %d, the outbox holds %d rows", got, len(out))
			}
		})
	}
}

// waitWritten waits until what w was written holds sub: the engine writes
// from the batch in flight, which gives no other sign. Bounded: 10 s.
func waitWritten(t *testing.T, w *enginetest.Wire, sub string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(w.String(), sub) {
		select {
		case <-deadline:
			t.Fatalf("%q not written within 10 s", sub)
		case <-time.After(time.Millisecond):
		}
	}
}

// Each item change says whether the item was read as absent (store.Change
// New): a first subscription from a contact does, a later one does not, and
// of two changes to one item within a batch, the second does not.
func TestChangesSayNew(t *testing.T) {
	ctx := context.Background()
	e, db, _ := newTestEngine(t, Settings{})
	rec := &recordingStore{Store: db}
	e.store = rec
	type change struct {
		contact string
		new     bool
	}
	for _, tc := range []struct {
		name string
		els  []*stanza.Element
		want []change
	}{
		{"first subscribe", []*stanza.Element{subscribe("alice@good.example")}, []change{{"alice@good.example", true}}},
		{"stored item", []*stanza.Element{presence("unsubscribe", "alice@good.example", "helpdesk@bots.localhost", "u1")}, []change{{"alice@good.example", false}}},
		{"twice in one batch", []*stanza.Element{subscribe("bob@good.example"), presence("unsubscribe", "bob@good.example", "helpdesk@bots.localhost", "u2")},
			[]change{{"bob@good.example", true}, {"bob@good.example", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.changes = nil
			if err := e.Handle(ctx, tc.els, noIQ{t}); err != nil {
				t.Fatal(err)
			}
			var got []change
			for _, c := range rec.changes {
				got = append(got, change{c.Item.Contact, c.New})
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("changes (contact, New) = %v, want %v", got, tc.want)
			}
		})
	}
}

// recordingStore keeps the changes of every commit.
type recordingStore struct {
	Store
	changes []store.Change
}

func (s *recordingStore) Commit(ctx context.Context, b store.Batch) (int64, error) {
	s.changes = append(s.changes, b.Changes...)
	return s.Store.Commit(ctx, b)
}
