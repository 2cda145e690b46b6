package component_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"rostergate/internal/xmpptest"
	"rostergate/subscription"
)

// The XMPP server is stopped and started five times under rostergate: it
// reconnects each time (with backoff, logged), resyncs presence, and no
// decision is lost.
func TestIntegrationServerRestartedFiveTimes(t *testing.T) {
	xmpptest.EachServer(t, testServerRestartedFiveTimes)
}

// couldNotConnect is what rostergate logs when an attempt to reconnect fails.
const couldNotConnect = "could not connect, retrying"

func testServerRestartedFiveTimes(t *testing.T, srv *xmpptest.Server) {
	s := newSetup(t, srv, accept(false))
	g := s.start()
	log := g.log
	var users []string
	for round := range 5 {
		u := fmt.Sprintf("user%d", round)
		users = append(users, u)
		c := s.srv.NewUser(t, u)
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		mustWaitPresence(t, c, presenceFrom(helpdesk, "subscribed"))
		mustRoster(t, c, helpdesk, rosterIs("to", ""))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}

		up := g.comp.Connected()
		// Down until rostergate has tried again and failed: it retries,
		// with backoff, while the server is away.
		retried := log.next(couldNotConnect)
		if err := s.srv.Stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-retried:
		case <-time.After(wait):
			t.Fatalf("round %d: rostergate did not try to reconnect within 10 s of the server stopping", round)
		}
		if err := s.srv.Restart(ctx(t)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-up:
		case <-time.After(wait):
			t.Fatalf("round %d: rostergate did not reconnect within 10 s", round)
		}
	}
	if n := strings.Count(log.String(), "reconnecting"); n < 5 {
		t.Errorf("%d reconnects logged, want at least 5", n)
	}
	if !strings.Contains(log.String(), "backoff=") {
		t.Error("the backoff is not logged")
	}
	// Every decision is kept, and every subscriber gets presence again on login.
	for _, u := range users {
		wantState(t, g, u+"@localhost", subscription.From)
		c := s.srv.Login(t, u)
		mustWaitPresence(t, c, presenceFrom(helpdesk+"/rostergate", ""))
	}
}
