package component

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Helpers that let a test wait on the event it needs, with a deadline,
// instead of sleeping and hoping it happened.

// waitClosed waits for ch to be closed (or to deliver), failing the test
// after d.
func waitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("%s: not within %s", what, d)
	}
}

// logWatch is a log writer that passes every record to t.Log and closes a
// channel when a record containing a watched text appears: a test waits on
// what the component logs instead of sleeping.
type logWatch struct {
	t       *testing.T
	mu      sync.Mutex
	watches []*watched
}

type watched struct {
	text  string
	ch    chan struct{}
	fired bool
}

func newLogWatch(t *testing.T) *logWatch { return &logWatch{t: t} }

// on returns a channel closed when a record containing text is logged
// (from now on).
func (w *logWatch) on(text string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	x := &watched{text: text, ch: make(chan struct{})}
	w.watches = append(w.watches, x)
	return x.ch
}

func (w *logWatch) Write(p []byte) (int, error) {
	s := string(p)
	w.t.Log(strings.TrimRight(s, "\n"))
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.watches {
		if !x.fired && strings.Contains(s, x.text) {
			x.fired = true
			close(x.ch)
		}
	}
	return len(p), nil
}

// logger returns a debug-level logger writing to w.
func (w *logWatch) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: w, Level: hclog.Debug})
}

// gateReconnects lets the component's first dial through and holds every
// later one until the returned open is called (or Run is cancelled): a test
// checks what holds between streams without racing the reconnect.
func gateReconnects(o *testOpts) (open func()) {
	ch := make(chan struct{})
	var dials atomic.Int32
	o.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// waitParked waits until some goroutine is blocked on a mutex with fn (a
// function name as a stack trace shows it, such as
// "(*Component).runAdmin") on its stack. It is for the one state no event
// tells of: a goroutine that has reached a lock and waits there. The stacks
// are polled, a bounded number of times within d.
func waitParked(t *testing.T, fn string, d time.Duration) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	buf := make([]byte, 1<<20)
	for range 100_000 {
		n := runtime.Stack(buf, true)
		for len(buf) < 64<<20 && n == len(buf) {
			buf = make([]byte, 2*len(buf))
			n = runtime.Stack(buf, true)
		}
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn+"(") && (strings.Contains(header, "Mutex.Lock") || strings.Contains(header, "semacquire")) {
				return
			}
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("no goroutine blocked on a lock in %s within %s", fn, d)
		}
	}
	t.Fatalf("no goroutine blocked on a lock in %s", fn)
}
