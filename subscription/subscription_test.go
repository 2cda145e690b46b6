package subscription

import (
	"fmt"
	"slices"
	"testing"
)

// cell is one cell of the contact-side tables of RFC 6121 Appendix A (A.2 for
// inbound stanzas, A.3 for outbound ones): from a state, an
// event gives a state and a list of stanzas.
type cell struct {
	from     string
	approved bool
	to       string
	approve  bool // Approved after the event
	send     []Send
	decide   bool
	note     string
}

func st(t *testing.T, abbr string) State {
	t.Helper()
	for s := None; s <= Both; s++ {
		if s.Abbr() == abbr {
			return s
		}
	}
	t.Fatalf("no state %q", abbr)
	return None
}

func runCells(t *testing.T, name string, fn func(Item, Kind) Result, k Kind, cells []cell) {
	t.Helper()
	for _, c := range cells {
		t.Run(fmt.Sprintf("%s %s in %s approved=%t", name, k, c.from, c.approved), func(t *testing.T) {
			before := Item{State: st(t, c.from), Approved: c.approved}
			got := fn(before, k)
			want := Item{State: st(t, c.to), Approved: c.approve}
			if got.Item != want {
				t.Errorf("item = %s approved=%t, want %s approved=%t", got.Item.State.Abbr(), got.Item.Approved, want.State.Abbr(), want.Approved)
			}
			if !slices.Equal(got.Send, c.send) {
				t.Errorf("send = %v, want %v", got.Send, c.send)
			}
			if got.Decide != c.decide {
				t.Errorf("decide = %t, want %t", got.Decide, c.decide)
			}
			if got.Note != c.note {
				t.Errorf("note = %q, want %q", got.Note, c.note)
			}
		})
	}
}

var (
	sub   = []Send{SendSubscribed}
	unsub = []Send{SendUnsubscribed}
	pres  = []Send{SendPresence}
	unav  = []Send{SendUnavailable}
)

// The inbound table, every cell, plus the pre-approval variants.
func TestInbound(t *testing.T) {
	runCells(t, "inbound", Inbound, Subscribe, []cell{
		{from: "N", to: "N+I", decide: true},
		{from: "N", approved: true, to: "F", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved"},
		{from: "N+O", to: "N+OI", decide: true},
		{from: "N+O", approved: true, to: "F+O", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved"},
		{from: "N+I", to: "N+I", note: "duplicate"},
		{from: "N+OI", to: "N+OI", note: "duplicate"},
		{from: "T", to: "T+I", decide: true},
		{from: "T", approved: true, to: "B", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved"},
		{from: "T+I", to: "T+I", note: "duplicate"},
		{from: "F", to: "F", send: sub, note: "duplicate"},
		{from: "F+O", to: "F+O", send: sub, note: "duplicate"},
		{from: "B", to: "B", send: sub, note: "duplicate"},
	})
	runCells(t, "inbound", Inbound, Unsubscribe, []cell{
		{from: "N", to: "N"},
		{from: "N", approved: true, to: "N", approve: true},
		{from: "N+O", to: "N", note: "decline"},
		{from: "N+I", to: "N"},
		{from: "N+OI", to: "N+O"},
		{from: "T", to: "T"},
		{from: "T+I", to: "T"},
		{from: "F", to: "N", send: unav},
		{from: "F+O", to: "N+O", send: unav},
		{from: "B", to: "T", send: unav},
	})
	runCells(t, "inbound", Inbound, Subscribed, []cell{
		{from: "N", to: "N"},
		{from: "N+O", to: "T"},
		{from: "N+I", to: "N+I"},
		{from: "N+OI", to: "T+I"},
		{from: "T", to: "T"},
		{from: "T+I", to: "T+I"},
		{from: "F", to: "F"},
		{from: "F+O", to: "B"},
		{from: "B", to: "B"},
	})
	runCells(t, "inbound", Inbound, Unsubscribed, []cell{
		{from: "N", to: "N"},
		{from: "N+O", to: "N"},
		{from: "N+I", to: "N+I"},
		{from: "N+OI", to: "N+I"},
		{from: "T", to: "N"},
		{from: "T+I", to: "N+I"},
		{from: "F", to: "F"},
		{from: "F+O", to: "F"},
		{from: "B", to: "F"},
	})
	runCells(t, "inbound", Inbound, Probe, []cell{
		{from: "N", to: "N", send: unsub},
		{from: "N", approved: true, to: "N", approve: true, send: unsub}, // a probe never cancels a pre-approval
		{from: "N+O", to: "N+O", send: unsub},
		{from: "N+I", to: "N+I", send: unsub},
		{from: "N+OI", to: "N+OI", send: unsub},
		{from: "T", to: "T", send: unsub},
		{from: "T+I", to: "T+I", send: unsub},
		{from: "F", to: "F", send: pres},
		{from: "F+O", to: "F+O", send: pres},
		{from: "B", to: "B", send: pres},
	})
}

// The outbound table, every cell.
func TestOutbound(t *testing.T) {
	subscribe := []Send{SendSubscribe}
	runCells(t, "outbound", Outbound, Subscribe, []cell{
		{from: "N", to: "N+O", send: subscribe},
		{from: "N+O", to: "N+O", send: subscribe, note: "resend"},
		{from: "N+I", to: "N+OI", send: subscribe},
		{from: "N+OI", to: "N+OI", send: subscribe, note: "resend"},
		{from: "T", to: "T"},
		{from: "T+I", to: "T+I"},
		{from: "F", to: "F+O", send: subscribe},
		{from: "F+O", to: "F+O", send: subscribe, note: "resend"},
		{from: "B", to: "B"},
	})
	accept := []Send{SendSubscribed, SendPresence}
	runCells(t, "outbound", Outbound, Subscribed, []cell{
		{from: "N", to: "N", approve: true, note: "pre-approved"},
		{from: "N+O", to: "N+O", approve: true, note: "pre-approved"},
		{from: "N+I", to: "F", send: accept},
		{from: "N+OI", to: "F+O", send: accept},
		{from: "T", to: "T", approve: true, note: "pre-approved"},
		{from: "T+I", to: "B", send: accept},
		{from: "F", to: "F"},
		{from: "F+O", to: "F+O"},
		{from: "B", to: "B"},
	})
	unsubscribe := []Send{SendUnsubscribe}
	runCells(t, "outbound", Outbound, Unsubscribe, []cell{
		{from: "N", to: "N"},
		{from: "N+O", to: "N", send: unsubscribe},
		{from: "N+I", to: "N+I"},
		{from: "N+OI", to: "N+I", send: unsubscribe},
		{from: "T", to: "N", send: unsubscribe},
		{from: "T+I", to: "N+I", send: unsubscribe},
		{from: "F", to: "F"},
		{from: "F+O", to: "F", send: unsubscribe},
		{from: "B", to: "F", send: unsubscribe},
	})
	revoke := []Send{SendUnavailable, SendUnsubscribed}
	runCells(t, "outbound", Outbound, Unsubscribed, []cell{
		{from: "N", to: "N"},
		{from: "N", approved: true, to: "N"}, // cancels the pre-approval
		{from: "N+O", to: "N+O"},
		{from: "N+I", to: "N", send: unsub},
		{from: "N+OI", to: "N+O", send: unsub},
		{from: "T", to: "T"},
		{from: "T+I", to: "T", send: unsub},
		{from: "F", to: "N", send: revoke},
		{from: "F+O", to: "N+O", send: revoke},
		{from: "B", to: "T", send: revoke},
	})
}

// Every state survives the trip through the parts storage keeps.
func TestCompose(t *testing.T) {
	for s := None; s <= Both; s++ {
		got, err := Compose(s.Sub(), s.PendingOut(), s.PendingIn())
		if err != nil || got != s {
			t.Errorf("Compose(%s) = %s, %v", s, got, err)
		}
	}
	for _, bad := range []struct {
		sub     string
		out, in bool
	}{{"both", true, false}, {"from", false, true}, {"to", true, false}, {"bogus", false, false}} {
		if _, err := Compose(bad.sub, bad.out, bad.in); err == nil {
			t.Errorf("Compose(%q, %t, %t) = nil error", bad.sub, bad.out, bad.in)
		}
	}
}

// The three scenarios rostergate was first shown (a Spark user and an Openfire
// contact: rejected, accepted one way, accepted both ways), played through
// the machine from the entity's side.
func TestSeedScenarios(t *testing.T) {
	// 1: rejected.
	r := Inbound(Item{}, Subscribe)
	r = Reject(r.Item)
	if r.Item.State != None || !slices.Equal(r.Send, unsub) {
		t.Errorf("rejected: %s %v", r.Item.State, r.Send)
	}
	// 2: accepted one way.
	r = Inbound(Item{}, Subscribe)
	r = Accept(r.Item)
	if r.Item.State != From || !slices.Equal(r.Send, []Send{SendSubscribed, SendPresence}) {
		t.Errorf("accepted: %s %v", r.Item.State, r.Send)
	}
	// 3: both ways: the entity subscribes back, the contact accepts.
	back := Outbound(r.Item, Subscribe)
	if back.Item.State != FromOut {
		t.Errorf("subscribe back: %s", back.Item.State)
	}
	if got := Inbound(back.Item, Subscribed).Item.State; got != Both {
		t.Errorf("contact accepts: %s, want both", got)
	}
	if got := Inbound(back.Item, Unsubscribed).Item.State; got != From {
		t.Errorf("contact declines: %s, want from", got)
	}
}

func TestParseKind(t *testing.T) {
	for k := Subscribe; k <= Probe; k++ {
		if got, ok := ParseKind(k.String()); !ok || got != k {
			t.Errorf("ParseKind(%q) = %v, %t", k, got, ok)
		}
	}
	for _, typ := range []string{"", "available", "unavailable", "error", "SUBSCRIBE"} {
		if _, ok := ParseKind(typ); ok {
			t.Errorf("ParseKind(%q) ok", typ)
		}
	}
}
