package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/subscription"
)

// flakyStore fails or slows Commit on demand, and tells when a Commit
// starts.
type flakyStore struct {
	*sqlite.DB
	fail    atomic.Bool
	delay   atomic.Int64  // nanoseconds
	entered chan struct{} // a Commit has started (signalled without blocking)
}

func (s *flakyStore) Commit(ctx context.Context, b store.Batch) (int64, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	if d := s.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	if s.fail.Load() {
		return 0, errors.New("disk I/O error (injected)")
	}
	return s.DB.Commit(ctx, b)
}

// commitStarted waits for a Commit to start after the last call.
func (s *flakyStore) commitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no commit started within 5 s")
	}
}

func flaky(fs **flakyStore) func(*testOpts) {
	return func(o *testOpts) {
		*fs = &flakyStore{DB: o.Store.(*sqlite.DB), entered: make(chan struct{}, 1)}
		o.Store = *fs
	}
}

// A batch whose commit fails ends the stream at once, even when no stanza
// follows it, and nothing is committed or sent on that stream after it.
func TestFailedBatchCommitEndsStream(t *testing.T) {
	var fs *flakyStore
	h := start(t, "s3cret", func(o *testOpts) {
		flaky(&fs)(o)
		// The reconnect waits long enough for the checks between.
		o.MinBackoff, o.MaxBackoff = time.Second, 2*time.Second
	})
	c := h.first(t)
	fs.fail.Store(true)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>")
	// The stream is closed by rostergate: reading it ends, with nothing
	// written for the failed batch.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatalf("the stream is still up 5 s after a failed commit; read %q", got.String())
			}
			break
		}
	}
	if s := strings.TrimLeft(got.String(), " "); strings.Contains(s, "<presence") {
		t.Fatalf("a presence was written after the failed commit: %q", s)
	}
	// Until a new stream is up, outbound actions are refused, not sent.
	err := h.eng.Act(context.Background(), roster.Actor{JID: "admin@good.example", Via: "cli"}, "helpdesk", "bob@good.example", subscription.Subscribe)
	if !errors.Is(err, engine.ErrNotConnected) {
		t.Fatalf("Act after a failed commit = %v, want engine.ErrNotConnected", err)
	}
	fs.fail.Store(false)
	h.srv.next(t) // the session reconnects
	it, gerr := h.db.Get(context.Background(), "helpdesk", "alice@good.example")
	if !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("alice's item after the failed commit: %+v, %v", it, gerr)
	}
}

// An admin's command decided in the batch after a held request sees that
// request, and its answer follows the batch's own stanzas.
func TestAdminCommandSeesBatchBefore(t *testing.T) {
	var fs *flakyStore
	h := start(t, "s3cret", func(o *testOpts) {
		o.Settings.Admins = []string{"admin@good.example"}
		flaky(&fs)(o)
	})
	c := h.first(t)
	fs.delay.Store(int64(300 * time.Millisecond))
	drain(fs.entered) // the resync's commits, if any
	c.send(t, "<presence from='carol@other.example' to='helpdesk@bots.localhost' type='subscribe' id='h1'/>")
	fs.commitStarted(t) // its batch is committing now
	c.send(t, "<message from='admin@good.example/r' to='bots.localhost' type='chat' id='m1'><body>pending</body></message>")
	// Two messages to the admin: the notice of the held request, then the
	// answer to pending.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 4096)
	for strings.Count(got.String(), "</message>") < 2 {
		n, err := c.r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading: %v; got %q", err, got.String())
		}
	}
	s := got.String()
	notice := strings.Index(s, "carol@other.example")
	answer := strings.LastIndex(s, "<message")
	if strings.Contains(s, "No pending requests") || notice < 0 || notice > answer || !strings.Contains(s[answer:], "carol@other.example") {
		t.Fatalf("pending, asked after carol's request was held, answered without it or before it:\n%s", s)
	}
}

// A flood of large stanzas while a commit is slow is held back by the
// parser, not buffered: the heap stays a few MiB above where it started.
func TestBigStanzaFloodBounded(t *testing.T) {
	var fs *flakyStore
	h := start(t, "s3cret", func(o *testOpts) {
		flaky(&fs)(o)
		o.Logger = slog.New(slog.DiscardHandler) // a line per stanza would be most of the heap
	})
	c := h.first(t)
	fs.delay.Store(int64(2 * time.Second))
	drain(fs.entered)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>")
	fs.commitStarted(t)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	const n, size = 600, 60 << 10 // 36 MB in all, each under the 64 KiB stanza limit
	payload := strings.Repeat("x", size)
	writeErr := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < n && err == nil; i++ {
			_, err = io.WriteString(c, "<iq from='a@good.example/r' to='helpdesk@bots.localhost' type='get' id='b"+
				strconv.Itoa(i)+"'><q xmlns='urn:example:big'>"+payload+"</q></iq>")
		}
		writeErr <- err
	}()
	var peak uint64
	for range 30 { // while the commit stalls the pipeline: 1.5 s
		time.Sleep(50 * time.Millisecond)
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	fs.delay.Store(0)
	// Every IQ is answered once the commit has landed.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got strings.Builder
	buf := make([]byte, 64<<10)
	for strings.Count(got.String(), "service-unavailable") < n {
		k, err := c.r.Read(buf)
		got.Write(buf[:k])
		if err != nil {
			t.Fatalf("after %d answers: %v", strings.Count(got.String(), "service-unavailable"), err)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap in use grew by %d KiB at most while %d stanzas of %d KiB waited", grew>>10, n, size>>10)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB while the flood waited: parsed stanzas are buffered, not held back", grew>>20)
	}
}

// drain empties a signal channel.
func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
