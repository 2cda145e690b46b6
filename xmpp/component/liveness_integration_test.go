package component_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/internal/instance"
	"rostergate/internal/xmpptest"
	"rostergate/policy"
	"rostergate/store/sqlite"
)

// On an idle stream the keepalive pings the component's own domain through
// the server; a real server routes it back and answers, so an idle stream is
// never mistaken for a stalled one.
func TestIntegrationIdleIsNotStalled(t *testing.T) {
	xmpptest.EachServer(t, testIdleIsNotStalled)
}

func testIdleIsNotStalled(t *testing.T, srv *xmpptest.Server) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, _ := policy.Compile(policy.Config{})
	log := &syncLog{}
	inst, err := instance.New(context.Background(), instance.Config{
		Domain: srv.ComponentDomain, Server: srv.ComponentAddr, Secret: srv.ComponentSecret,
		Keepalive: 100 * time.Millisecond,
		Settings:  engine.Settings{Policy: p},
		Store:     db,
		Logger:    slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	comp := inst.Component
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up := comp.Connected()
	go func() { done <- comp.Run(ctx) }()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("rostergate stopped before connecting: %v", err)
	case <-time.After(wait):
		t.Fatal("rostergate did not connect within 10 s")
	}
	// Ten keepalive intervals of silence from both sides.
	time.Sleep(time.Second) // the idle period is what is under test
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := log.String()
	if strings.Contains(out, "stalled") || strings.Count(out, "msg=connected") != 1 {
		t.Errorf("an idle stream was taken for a stalled one:\n%s", out)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
