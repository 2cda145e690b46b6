package component

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/limits"
	"rostergate/policy"
)

// A hostile or broken server: each misbehaviour ends in a clear error and a
// reconnect, never a crash or a wedge.

func TestOversizedStanza(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.MaxStanzaBytes = 1024 })
	c := h.first(t)
	c.send(t, "<presence from='a@b' to='helpdesk@bots.localhost' type='probe'><status>"+strings.Repeat("x", 2000)+"</status></presence>")
	c.expect(t, "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>stanza too large</text></stream:error></stream:stream>")
	c2 := h.srv.next(t)
	// A stanza under the limit is fine, and so is a long run of them.
	for range 50 {
		c2.send(t, "<presence from='a@b' to='helpdesk@bots.localhost'><status>"+strings.Repeat("y", 900)+"</status></presence>")
	}
	c2.send(t, ping)
	c2.expect(t, pong)
}

// An endless start tag is bounded too: the decoder would otherwise keep it
// all in memory.
func TestEndlessStartTag(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.MaxStanzaBytes = 4096 })
	c := h.first(t)
	c.send(t, "<presence from='"+strings.Repeat("a", 10000))
	c.expect(t, "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>stanza too large</text></stream:error></stream:stream>")
	h.srv.next(t) // it reconnected
}

// A server that stops mid-stanza and says nothing more is found stalled
// after twice the keepalive, and the component reconnects.
func TestStalledServer(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.Keepalive = 100 * time.Millisecond })
	c := h.first(t)
	c.send(t, "<presence from='a@b' to='helpdesk@bots.localhost' type='sub")
	began := time.Now()
	h.srv.next(t)
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("reconnected after %s, before the stall could be known", d)
	}
}

// A server that answers the keepalive ping (or sends anything) is alive:
// no reconnect.
func TestQuietServerAnsweringPings(t *testing.T) {
	h := start(t, "s3cret", func(o *testOpts) { o.Keepalive = 50 * time.Millisecond })
	c := h.first(t)
	deadline := time.Now().Add(600 * time.Millisecond)
	pings := 0
	for time.Now().Before(deadline) {
		_ = c.SetReadDeadline(deadline)
		got, err := readUntil(c.r, ">")
		if err != nil {
			break
		}
		if strings.Contains(got, "<iq type='get'") {
			// Route it back as a server would; the component answers it.
			pings++
			c.send(t, got+"<ping xmlns='urn:xmpp:ping'/></iq>")
		}
	}
	select {
	case nc := <-h.srv.conns:
		nc.Close()
		t.Fatal("reconnected although the server answered")
	default:
	}
	if pings == 0 {
		t.Error("no keepalive ping in 600 ms of silence")
	}
}

// A server that closes mid-stanza: reconnect, and the next stream works.
func TestCloseMidStanza(t *testing.T) {
	h := start(t, "s3cret", nil)
	c := h.first(t)
	c.send(t, "<presence from='alice@good.example' to='helpdesk@bots.localhost' ty")
	c.Close()
	c2 := h.srv.next(t)
	c2.send(t, ping)
	c2.expect(t, pong)
}

// A flood of stanzas: answered in order, memory stays bounded (the reader
// hands at most maxBatch parsed stanzas to the processor).
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood: skipped with -short")
	}
	h := start(t, "s3cret", nil)
	c := h.first(t)
	const n = 20000
	go func() {
		var b strings.Builder
		for i := range n {
			b.WriteString("<presence from='x")
			b.WriteString(strings.Repeat("y", i%7))
			b.WriteString("@flood.example' to='helpdesk@bots.localhost' type='probe'/>")
			if b.Len() > 32<<10 {
				c.Write([]byte(b.String()))
				b.Reset()
			}
		}
		b.WriteString(ping)
		c.Write([]byte(b.String()))
	}()
	// Every probe is answered with unsubscribed, then the ping.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	answers := 0
	for answers < n {
		s, err := readUntil(c.r, "/>")
		if err != nil {
			t.Fatalf("after %d answers: %v", answers, err)
		}
		if !strings.Contains(s, "type='unsubscribed'") {
			t.Fatalf("answer %d: %s", answers, s)
		}
		answers++
	}
	c.expect(t, pong)
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	if m.HeapInuse > 64<<20 {
		t.Errorf("heap in use %d MiB after the flood", m.HeapInuse>>20)
	}
}

// A subscribe flood from one domain: the limits hold and memory stays
// bounded.
func TestSubscribeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood: skipped with -short")
	}
	h := start(t, "s3cret", func(o *testOpts) {
		o.Settings.Limits = engine.Limits{DomainRate: limits.Rate{N: 100, Per: time.Hour}, MaxPending: 50, Action: policy.Drop}
	})
	c := h.first(t)
	const n = 10000
	go func() {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "<presence from='u%05d@flood.example' to='helpdesk@bots.localhost' type='subscribe'/>", i)
			if b.Len() > 32<<10 {
				c.Write([]byte(b.String()))
				b.Reset()
			}
		}
		b.WriteString(ping)
		c.Write([]byte(b.String()))
	}()
	c.expect(t, pong)
	reqs, err := h.db.Requests(context.Background())
	if err != nil || len(reqs) != 50 {
		t.Errorf("%d held (%v), want 50 (max_pending)", len(reqs), err)
	}
	hits := h.eng.LimitHits()
	if hits["domain_rate"] != n-100 || hits["max_pending"] != 50 {
		t.Errorf("limit hits %v, want domain_rate %d and max_pending 50", hits, n-100)
	}
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	if m.HeapInuse > 64<<20 {
		t.Errorf("heap in use %d MiB after the flood", m.HeapInuse>>20)
	}
	t.Logf("10,000 requests from one domain: %d held, hits %v, heap in use %d KiB", len(reqs), hits, m.HeapInuse>>10)
}
