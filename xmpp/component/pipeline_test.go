package component

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
)

// flakyStore fails or holds Commit on demand, and tells when a Commit
// starts.
type flakyStore struct {
	store.Store
	fail    atomic.Bool
	gate    atomic.Pointer[chan struct{}] // while set, a Commit waits until it is closed
	entered chan struct{}                 // a Commit has started (signalled without blocking)
}

func (s *flakyStore) Commit(ctx context.Context, b store.Batch) (int64, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	if g := s.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if s.fail.Load() {
		return 0, errors.New("disk I/O error (injected)")
	}
	return s.Store.Commit(ctx, b)
}

// hold makes every Commit from now on wait until release is called. The
// release is also a cleanup of t, so that a test that fails while holding
// does not leave the engine wedged.
func (s *flakyStore) hold(t *testing.T) (release func()) {
	g := make(chan struct{})
	s.gate.Store(&g)
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.gate.CompareAndSwap(&g, nil)
			close(g)
		})
	}
	t.Cleanup(release)
	return release
}

// commitStarted waits for a Commit to start after the last call.
func (s *flakyStore) commitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no commit started within 10 s")
	}
}

func flaky(fs **flakyStore) func(*testOpts) {
	return func(o *testOpts) {
		*fs = &flakyStore{Store: o.Store, entered: make(chan struct{}, 1)}
		o.Store = *fs
	}
}

// readUntilCount reads c until what was read holds want occurrences of
// sub, and returns it. The read deadline is d from the last progress: a
// slow machine gets as long as it keeps answering.
func readUntilCount(t *testing.T, c *fakeConn, sub string, want int, d time.Duration) string {
	t.Helper()
	defer c.SetReadDeadline(time.Time{})
	var got strings.Builder
	buf := make([]byte, 64<<10)
	for i := 0; strings.Count(got.String(), sub) < want; i++ {
		if i >= 1_000_000 {
			t.Fatalf("%d reads and %d of %d %q", i, strings.Count(got.String(), sub), want, sub)
		}
		_ = c.SetReadDeadline(time.Now().Add(d))
		n, err := c.r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("reading after %d of %d %q: %v; the last bytes read: %q", strings.Count(got.String(), sub), want, sub, err, tail(got.String(), 300))
		}
	}
	return got.String()
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// A batch whose commit fails ends the stream at once, even when no stanza
// follows it, and nothing is committed or sent on that stream after it.
func TestFailedBatchCommitEndsStream(t *testing.T) {
	var fs *flakyStore
	var reconnect func()
	h := start(t, "s3cret", func(o *testOpts) {
		flaky(&fs)(o)
		// The next stream waits until the checks between streams are done.
		reconnect = gateReconnects(o)
	})
	c := h.first(t)
	fs.fail.Store(true)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>")
	// The stream is closed by rostergate: reading it ends, with nothing
	// written for the failed batch. The deadline is reset on every read
	// that brings something (a keepalive, say).
	var got strings.Builder
	buf := make([]byte, 4096)
	for i := 0; ; i++ {
		if i >= 10_000 {
			t.Fatalf("the stream is still up after %d reads; read %q", i, got.String())
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatalf("the stream is still up 10 s after a failed commit; read %q", got.String())
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
	reconnect()
	c2 := h.srv.next(t) // the session reconnects
	c2.send(t, ping)
	c2.expect(t, pong)
	it, gerr := h.db.Get(context.Background(), "helpdesk", "alice@good.example")
	if !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("alice's item after the failed commit: %+v, %v", it, gerr)
	}
	if it, gerr := h.db.Get(context.Background(), "helpdesk", "bob@good.example"); !errors.Is(gerr, store.ErrNotFound) {
		t.Fatalf("bob's item after the refused act: %+v, %v", it, gerr)
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
	drain(fs.entered) // the resync's commits, if any
	release := fs.hold(t)
	c.send(t, "<presence from='carol@other.example' to='helpdesk@bots.localhost' type='subscribe' id='h1'/>")
	fs.commitStarted(t) // its batch is committing now, and stays so
	c.send(t, "<message from='admin@good.example/r' to='bots.localhost' type='chat' id='m1'><body>pending</body></message>")
	// The command is decided in the next batch, while carol's is held, and
	// handed to the admin worker, which must wait for carol's batch to land
	// before it reads the queue. Only once the worker is parked (there, or,
	// were it not to wait, on the lock it needs to send an answer already
	// made) is the commit let through.
	waitParked(t, "(*Component).runAdmin", 10*time.Second)
	release()
	// Two messages to the admin: the notice of the held request, then the
	// answer to pending.
	s := readUntilCount(t, c, "</message>", 2, 10*time.Second)
	notice := strings.Index(s, "carol@other.example")
	answer := strings.LastIndex(s, "<message")
	if strings.Contains(s, "No pending requests") || notice < 0 || notice > answer || !strings.Contains(s[answer:], "carol@other.example") {
		t.Fatalf("pending, asked after carol's request was held, answered without it or before it:\n%s", s)
	}
}

// A flood of large stanzas while a commit is held is held back by the
// parser, not buffered: the heap stays a few MiB above where it started.
func TestBigStanzaFloodBounded(t *testing.T) {
	var fs *flakyStore
	h := start(t, "s3cret", func(o *testOpts) {
		flaky(&fs)(o)
		o.Logger = hclog.NewNullLogger() // a line per stanza would be most of the heap
		// Small socket buffers, so that the flood backs up to the writer
		// soon after the component stops reading it, whatever the
		// system's TCP autotuning would allow.
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				err = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
			}
			return conn, err
		}
	})
	c := h.first(t)
	if err := c.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	drain(fs.entered)
	release := fs.hold(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' type='subscribe' id='c1'/>")
	fs.commitStarted(t)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	const n, size = 600, 60 << 10 // 36 MB in all, each under the 64 KiB stanza limit
	// The flood has gone as far as it can while the commit is held when a
	// write makes no progress for stallAfter: the component has stopped
	// reading, its parser waiting for room. (While the parser works, even
	// slowly, the writes move on every few milliseconds.)
	const stallAfter = 2 * time.Second
	payload := strings.Repeat("x", size)
	stalled := make(chan struct{})
	writeErr := make(chan error, 1)
	written := atomic.Int64{}
	go func() {
		var err error
		blocked := false
		for i := 0; i < n && err == nil; i++ {
			s := "<iq from='a@good.example/r' to='helpdesk@bots.localhost' type='get' id='b" +
				strconv.Itoa(i) + "'><q xmlns='urn:example:big'>" + payload + "</q></iq>"
			for len(s) > 0 && err == nil {
				if blocked {
					_ = c.SetWriteDeadline(time.Time{}) // the test's cleanup closes c
				} else {
					_ = c.SetWriteDeadline(time.Now().Add(stallAfter))
				}
				k, werr := io.WriteString(c, s)
				s = s[k:]
				written.Add(int64(k))
				if ne, ok := werr.(net.Error); ok && ne.Timeout() && !blocked {
					blocked = true
					close(stalled)
					continue
				}
				err = werr
			}
		}
		writeErr <- err
	}()
	var peak uint64
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// Only a backstop: the writes end or stall, and a stall is measured
	// from the last progress.
	deadline := time.NewTimer(5 * time.Minute)
	defer deadline.Stop()
	var werr error
	wrote := false
sampling:
	for i := 0; ; i++ {
		if i >= 100_000 {
			t.Fatalf("the flood neither stalled nor got through; %d bytes written", written.Load())
		}
		select {
		case <-tick.C:
			sample()
		case <-stalled:
			sample()
			break sampling
		case werr = <-writeErr:
			// All of it was taken in while the commit was held: the heap
			// shows whether it was buffered.
			wrote = true
			sample()
			break sampling
		case <-deadline.C:
			t.Fatalf("the flood neither stalled nor got through within 5 min; %d bytes written", written.Load())
		}
	}
	t.Logf("while the commit was held: %d bytes of the flood written, all of it: %v", written.Load(), wrote)
	release()
	// Every IQ is answered once the commit has landed.
	readUntilCount(t, c, "service-unavailable", n, 10*time.Second)
	if !wrote {
		select {
		case werr = <-writeErr:
		case <-time.After(10 * time.Second):
			t.Fatal("the flood was answered but not all written within 10 s")
		}
	}
	if werr != nil {
		t.Fatal(werr)
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
