package component

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/store/sqlite"
)

// virtualTime is a clock that moves only when told, and records the waits
// between reconnects instead of waiting.
type virtualTime struct {
	base   time.Time
	offset atomic.Int64
	mu     sync.Mutex
	waits  []time.Duration
	waited chan struct{}
}

func (v *virtualTime) now() time.Time { return v.base.Add(time.Duration(v.offset.Load())) }

func (v *virtualTime) advance(d time.Duration) { v.offset.Add(int64(d)) }

func (v *virtualTime) sleep(ctx context.Context, d time.Duration) bool {
	v.mu.Lock()
	v.waits = append(v.waits, d)
	v.mu.Unlock()
	v.advance(d)
	select {
	case v.waited <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	return ctx.Err() == nil
}

func (v *virtualTime) recorded() []time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]time.Duration(nil), v.waits...)
}

// startVirtual runs a Component against a fresh fake server with the
// clock and the reconnect waits of vt.
func startVirtual(t *testing.T, vt *virtualTime, minB, maxB time.Duration) *fakeServer {
	t.Helper()
	srv := newFakeServer(t, "s3cret")
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	comp, _, _, err := newStack(testOpts{
		Options: Options{Server: srv.addr(), Secret: "s3cret", MinBackoff: minB, MaxBackoff: maxB,
			Logger: hclog.New(&hclog.LoggerOptions{Output: testWriter{t}})},
		Domain: "bots.localhost", Settings: engine.Settings{Policy: testPolicy(t)}, Store: db,
	})
	if err != nil {
		t.Fatal(err)
	}
	comp.now, comp.sleep = vt.now, vt.sleep
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- comp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of cancel")
		}
		db.Close()
	})
	return srv
}

// nextWait waits for the component's next reconnect wait.
func (v *virtualTime) nextWait(t *testing.T) {
	t.Helper()
	select {
	case <-v.waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the component did not wait to reconnect within 10 s")
	}
}

// A server that accepts the stream and drops it again at once does not
// reset the backoff: each wait is about twice the one before, up to the
// maximum (the delay is half fixed, half random: in [backoff/2, backoff]).
func TestBackoffGrowsAcrossAcceptedStreams(t *testing.T) {
	const minB, maxB = 10 * time.Millisecond, 10 * time.Second
	vt := &virtualTime{base: time.Unix(1_700_000_000, 0), waited: make(chan struct{})}
	srv := startVirtual(t, vt, minB, maxB)
	const drops = 6
	for range drops {
		srv.next(t).Close()
		vt.nextWait(t)
	}
	waits := vt.recorded()
	backoff := minB
	for i, d := range waits[:drops] {
		if d < backoff/2 || d > backoff {
			t.Errorf("wait %d after an accepted and dropped stream: %s, want within [%s, %s] (all: %v)", i+1, d, backoff/2, backoff, waits)
		}
		backoff = min(backoff*2, maxB)
	}
}

// A stream that stayed up at least the maximum backoff resets it: the
// server was healthy, and a new failure starts from the minimum again.
func TestBackoffResetsAfterAStreamThatStayedUp(t *testing.T) {
	const minB, maxB = 10 * time.Millisecond, 10 * time.Second
	vt := &virtualTime{base: time.Unix(1_700_000_000, 0), waited: make(chan struct{})}
	srv := startVirtual(t, vt, minB, maxB)
	for range 4 {
		srv.next(t).Close()
		vt.nextWait(t)
	}
	c := srv.next(t)
	vt.advance(maxB) // the stream stays up that long
	c.Close()
	vt.nextWait(t)
	waits := vt.recorded()
	if last := waits[len(waits)-1]; last > minB {
		t.Errorf("wait after a stream that stayed up %s: %s, want at most %s (all: %v)", maxB, last, minB, waits)
	}
	if prev := waits[len(waits)-2]; prev < 40*time.Millisecond {
		t.Errorf("the waits before did not grow: %v", waits)
	}
}
