package component_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/internal/instance"
	"rostergate/internal/xmpptest"
	"rostergate/policy"
)

// On an idle stream the keepalive pings the component's own domain through
// the server; a real server routes it back and answers, so an idle stream is
// never mistaken for a stalled one.
func TestIntegrationIdleIsNotStalled(t *testing.T) {
	xmpptest.EachServer(t, testIdleIsNotStalled)
}

func testIdleIsNotStalled(t *testing.T, srv *xmpptest.Server) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "rg.db"))
	p := mustCompile(t, policy.Config{})
	log := &syncLog{}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain: srv.ComponentDomain, Server: srv.ComponentAddr, Secret: srv.ComponentSecret,
		// A reply to the ping may take a while on a loaded machine: the
		// stall is declared after two intervals of silence (500 ms).
		Keepalive: 250 * time.Millisecond,
		Settings:  engine.Settings{Policy: p},
		Store:     db,
		Logger:    hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Debug}),
	})
	if err != nil {
		t.Fatal(err)
	}
	comp := inst.Component
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := comp.Connected()
	go func() { done <- comp.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		runDone(t, done, "rostergate")
	}
	t.Cleanup(stop) // before the database is closed
	select {
	case <-up:
	case err := <-done:
		done <- nil // Run has returned: nothing more for stop to report
		t.Fatalf("rostergate stopped before connecting: %v", err)
	case <-time.After(wait):
		t.Fatal("rostergate did not connect within 10 s")
	}
	time.Sleep(2 * time.Second) // eight keepalive intervals of idleness: what is under test
	stop()
	out := log.String()
	if strings.Contains(out, "stalled") || strings.Count(out, "component: connected: ") != 1 {
		t.Errorf("an idle stream was taken for a stalled one:\n%s", out)
	}
}

// syncLog keeps what is logged to it; a test can wait for a text to be
// logged (next) instead of sleeping.
type syncLog struct {
	mu      sync.Mutex
	b       strings.Builder
	watches []logWatch
}

type logWatch struct {
	needle string
	n      int
	ch     chan struct{}
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.b.Write(p)
	kept := l.watches[:0]
	for _, w := range l.watches {
		if strings.Count(l.b.String(), w.needle) >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	l.watches = kept
	return n, err
}

// next returns a channel that is closed once needle is logged again: when
// the log holds it once more than it does now.
func (l *syncLog) next(needle string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := logWatch{needle: needle, n: strings.Count(l.b.String(), needle) + 1, ch: make(chan struct{})}
	l.watches = append(l.watches, w)
	return w.ch
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
