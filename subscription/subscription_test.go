package subscription

import (
	"fmt"
	"slices"
	"testing"
)

// cell is one cell of the contact-side tables of RFC 6121 Appendix A (A.3
// for inbound stanzas, A.2 for outbound ones): from a state, an event gives
// a state and a list of stanzas. rfc quotes the text that settles the cell.
type cell struct {
	from     string
	approved bool
	to       string
	approve  bool // Approved after the event
	send     []Send
	decide   bool
	note     string
	rfc      string
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
			if c.rfc == "" {
				t.Fatal("cell without the RFC text that settles it")
			}
			before := Item{State: st(t, c.from), Approved: c.approved}
			got := fn(before, k)
			want := Item{State: st(t, c.to), Approved: c.approve}
			if got.Item != want {
				t.Errorf("item = %s approved=%t, want %s approved=%t\nRFC 6121: %s", got.Item.State.Abbr(), got.Item.Approved, want.State.Abbr(), want.Approved, c.rfc)
			}
			if !slices.Equal(got.Send, c.send) {
				t.Errorf("send = %v, want %v\nRFC 6121: %s", got.Send, c.send, c.rfc)
			}
			if got.Decide != c.decide {
				t.Errorf("decide = %t, want %t\nRFC 6121: %s", got.Decide, c.decide, c.rfc)
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
	// revoke is the contact's subscription to the entity ending: the
	// entity's resource goes unavailable for it, then unsubscribed.
	revoke = []Send{SendUnavailable, SendUnsubscribed}
)

// Quotes of RFC 6121, shared by several cells.
const (
	t6       = `Table 6 (inbound "subscribe")`
	t6note1  = `Table 6 [1]: "If the user previously sent presence of type "subscribed" [...] then the server MAY auto-reply with "subscribed" and change the state to "From" rather than "None + Pending In"."`
	t6note2  = `Table 6 [2]: "Server SHOULD auto-reply with "subscribed"."`
	t7       = `A.3.2, Table 7 (inbound "unsubscribe"): "if the stanza results in a subscription state change from the user's perspective then the user's server MUST change the state, [...] and SHOULD auto-reply by sending a presence stanza of type "unsubscribed" to the contact on behalf of the user."`
	t7none   = `Table 7: "Otherwise the user's server MUST NOT change the state and (because there is no state change) SHOULD NOT deliver the stanza."`
	t7from   = t7 + ` §3.3.3: "Generate an outbound presence stanza of type "unavailable" from each of the contact's available resources to the user."`
	t8       = `Table 8 (inbound "subscribed"): "if there is no pending outbound request [...] then it MUST NOT change the subscription state"`
	t8change = `Table 8: "If there is a pending outbound request [...] and the inbound presence stanza of type "subscribed" results in a subscription state change, then the user's server MUST change the subscription state"`
	t9       = `Table 9 (inbound "unsubscribed"): "if there is a pending outbound request for access to the contact's presence information or if the user currently is subscribed to the contact's presence information, then the user's server MUST change the subscription state"`
	t9none   = `Table 9: "Otherwise, the user's server MUST NOT change the subscription state"`
	probeNo  = `§4.3.2 rule 1: "If the contact account does not exist or the user's bare JID is in the contact's roster with a subscription state other than "From", "From + Pending Out", or "Both" [...] then the contact's server SHOULD return a presence stanza of type "unsubscribed" in response to the presence probe"`
	probeYes = `§4.3.2 rules 3 and 4: "if the contact has no available resources, then the server SHOULD reply to the presence probe by sending to the user a presence stanza of type "unavailable"" / "if the contact has at least one available resource, then the server MUST reply [...] the full XML of the last presence stanza"`
	t2       = `Table 2 (outbound "subscribe"): ROUTE? MUST in every row; "A state change to "pending out" includes setting the 'ask' flag"`
	t3       = `Table 3 (outbound "unsubscribe"): ROUTE? MUST in every row`
	t4       = `Table 4 (outbound "subscribed")`
	t4pre    = `Table 4: ROUTE? M.N., NEW STATE "pre-approval"; §3.4.2: "the user's server MUST note the subscription pre-approval by setting the 'approved' flag to a value of "true" [...] However, the user's server MUST NOT route the presence stanza of type "subscribed" to the contact."`
	t5       = `Table 5 (outbound "unsubscribed")`
	t5from   = t5 + ` §3.2.2: "While the user is still subscribed to the contact's presence (i.e., before the contact's server routes or delivers the presence stanza of type "unsubscribed" to the user), the contact's server MUST send a presence stanza of type "unavailable" from all of the contact's online resources to the user."`
)

// The inbound tables (A.3), every cell, plus the pre-approval variants.
func TestInbound(t *testing.T) {
	runCells(t, "inbound", Inbound, Subscribe, []cell{
		{from: "N", to: "N+I", decide: true, rfc: t6 + `: "None" | MUST [1] | "None + Pending In"`},
		{from: "N", approved: true, to: "F", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved", rfc: t6note1},
		{from: "N+O", to: "N+OI", decide: true, rfc: t6 + `: "None + Pending Out" | MUST | "None + Pending Out+In"`},
		{from: "N+O", approved: true, to: "F+O", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved", rfc: t6note1 + ` (§3.4.2: "If the contact is in the user's roster with a state of "To", "None", or "None + Pending Out", the user's server MUST note the subscription pre-approval")`},
		{from: "N+I", to: "N+I", note: "duplicate", rfc: t6 + `: "None + Pending In" | S.N. | no state change`},
		{from: "N+OI", to: "N+OI", note: "duplicate", rfc: t6 + `: "None + Pending Out+In" | S.N. | no state change`},
		{from: "T", to: "T+I", decide: true, rfc: t6 + `: "To" | MUST | "To + Pending In"`},
		{from: "T", approved: true, to: "B", send: []Send{SendSubscribed, SendPresence}, note: "pre-approved", rfc: t6note1 + ` (§3.4.2: "If the contact is in the user's roster with a state of "To", "None", or "None + Pending Out", the user's server MUST note the subscription pre-approval")`},
		{from: "T+I", to: "T+I", note: "duplicate", rfc: t6 + `: "To + Pending In" | S.N. | no state change`},
		{from: "F", to: "F", send: sub, note: "duplicate", rfc: t6note2},
		{from: "F+O", to: "F+O", send: sub, note: "duplicate", rfc: t6note2},
		{from: "B", to: "B", send: sub, note: "duplicate", rfc: t6note2},
	})
	runCells(t, "inbound", Inbound, Unsubscribe, []cell{
		{from: "N", to: "N", rfc: t7none},
		{from: "N", approved: true, to: "N", approve: true, rfc: t7none},
		{from: "N+O", to: "N+O", note: "decline", rfc: `Table 7: "None + Pending Out" | S.N. | no state change`},
		{from: "N+I", to: "N", send: unsub, rfc: t7},
		{from: "N+OI", to: "N+O", send: unsub, rfc: t7},
		{from: "T", to: "T", rfc: t7none},
		{from: "T+I", to: "T", send: unsub, rfc: t7},
		{from: "F", to: "N", send: revoke, rfc: t7from},
		{from: "F+O", to: "N+O", send: revoke, rfc: t7from},
		{from: "B", to: "T", send: revoke, rfc: t7from},
	})
	runCells(t, "inbound", Inbound, Subscribed, []cell{
		{from: "N", to: "N", rfc: t8},
		{from: "N+O", to: "T", rfc: t8change},
		{from: "N+I", to: "N+I", rfc: t8},
		{from: "N+OI", to: "T+I", rfc: t8change},
		{from: "T", to: "T", rfc: `Table 8: "If the user already is subscribed to the contact's presence information, [...] the user's server MUST NOT change the subscription state"`},
		{from: "T+I", to: "T+I", rfc: t8},
		{from: "F", to: "F", rfc: t8},
		{from: "F+O", to: "B", rfc: t8change},
		{from: "B", to: "B", rfc: t8},
	})
	runCells(t, "inbound", Inbound, Unsubscribed, []cell{
		{from: "N", to: "N", rfc: t9none},
		{from: "N+O", to: "N", rfc: t9},
		{from: "N+I", to: "N+I", rfc: t9none},
		{from: "N+OI", to: "N+I", rfc: t9},
		{from: "T", to: "N", rfc: t9},
		{from: "T+I", to: "N+I", rfc: t9},
		{from: "F", to: "F", rfc: t9none},
		{from: "F+O", to: "F", rfc: t9},
		{from: "B", to: "F", rfc: t9},
	})
	runCells(t, "inbound", Inbound, Probe, []cell{
		{from: "N", to: "N", send: unsub, rfc: probeNo},
		{from: "N", approved: true, to: "N", approve: true, send: unsub, rfc: probeNo + `; "however, this MUST NOT result in cancellation of a subscription pre-approval"`},
		{from: "N+O", to: "N+O", send: unsub, rfc: probeNo},
		{from: "N+I", to: "N+I", send: unsub, rfc: probeNo},
		{from: "N+OI", to: "N+OI", send: unsub, rfc: probeNo},
		{from: "T", to: "T", send: unsub, rfc: probeNo},
		{from: "T+I", to: "T+I", send: unsub, rfc: probeNo},
		{from: "F", to: "F", send: pres, rfc: probeYes},
		{from: "F+O", to: "F+O", send: pres, rfc: probeYes},
		{from: "B", to: "B", send: pres, rfc: probeYes},
	})
}

// The outbound tables (A.2), every cell.
func TestOutbound(t *testing.T) {
	subscribe := []Send{SendSubscribe}
	runCells(t, "outbound", Outbound, Subscribe, []cell{
		{from: "N", to: "N+O", send: subscribe, rfc: t2 + `: "None" | MUST [1] | "None + Pending Out"`},
		{from: "N+O", to: "N+O", send: subscribe, note: "resend", rfc: t2 + `: "None + Pending Out" | MUST | no state change`},
		{from: "N+I", to: "N+OI", send: subscribe, rfc: t2 + `: "None + Pending In" | MUST [1] | "None + Pending Out+In"`},
		{from: "N+OI", to: "N+OI", send: subscribe, note: "resend", rfc: t2 + `: "None + Pending Out+In" | MUST | no state change`},
		{from: "T", to: "T", send: subscribe, note: "resend", rfc: t2 + `: "To" | MUST | no state change`},
		{from: "T+I", to: "T+I", send: subscribe, note: "resend", rfc: t2 + `: "To + Pending In" | MUST | no state change`},
		{from: "F", to: "F+O", send: subscribe, rfc: t2 + `: "From" | MUST [1] | "From + Pending Out"`},
		{from: "F+O", to: "F+O", send: subscribe, note: "resend", rfc: t2 + `: "From + Pending Out" | MUST | no state change`},
		{from: "B", to: "B", send: subscribe, note: "resend", rfc: t2 + `: "Both" | MUST | no state change`},
	})
	accept := []Send{SendSubscribed, SendPresence}
	runCells(t, "outbound", Outbound, Subscribed, []cell{
		{from: "N", to: "N", approve: true, note: "pre-approved", rfc: t4pre},
		{from: "N+O", to: "N+O", approve: true, note: "pre-approved", rfc: t4pre},
		{from: "N+I", to: "F", send: accept, rfc: t4 + `: "None + Pending In" | MUST | "From"; §3.1.5: "The contact's server MUST then also send current presence to the user from each of the contact's available resources."`},
		{from: "N+OI", to: "F+O", send: accept, rfc: t4 + `: "None + Pending Out+In" | MUST | "From + Pending Out"`},
		{from: "T", to: "T", approve: true, note: "pre-approved", rfc: t4pre},
		{from: "T+I", to: "B", send: accept, rfc: t4 + `: "To + Pending In" | MUST | "Both"`},
		{from: "F", to: "F", rfc: t4 + `: "From" | M.N. | no state change`},
		{from: "F+O", to: "F+O", rfc: t4 + `: "From + Pending Out" | M.N. | no state change`},
		{from: "B", to: "B", rfc: t4 + `: "Both" | M.N. | no state change`},
	})
	unsubscribe := []Send{SendUnsubscribe}
	runCells(t, "outbound", Outbound, Unsubscribe, []cell{
		{from: "N", to: "N", send: unsubscribe, note: "resend", rfc: t3 + `: "None" | MUST | no state change`},
		{from: "N+O", to: "N", send: unsubscribe, rfc: t3 + `: "None + Pending Out" | MUST | "None"`},
		{from: "N+I", to: "N+I", send: unsubscribe, note: "resend", rfc: t3 + `: "None + Pending In" | MUST | no state change`},
		{from: "N+OI", to: "N+I", send: unsubscribe, rfc: t3 + `: "None + Pending Out+In" | MUST | "None + Pending In"`},
		{from: "T", to: "N", send: unsubscribe, rfc: t3 + `: "To" | MUST | "None"`},
		{from: "T+I", to: "N+I", send: unsubscribe, rfc: t3 + `: "To + Pending In" | MUST | "None + Pending In"`},
		{from: "F", to: "F", send: unsubscribe, note: "resend", rfc: t3 + `: "From" | MUST | no state change`},
		{from: "F+O", to: "F", send: unsubscribe, rfc: t3 + `: "From + Pending Out" | MUST | "From"`},
		{from: "B", to: "F", send: unsubscribe, rfc: t3 + `: "Both" | MUST | "From"`},
	})
	runCells(t, "outbound", Outbound, Unsubscribed, []cell{
		{from: "N", to: "N", rfc: t5 + `: "None" | S.N. | no state change`},
		{from: "N", approved: true, to: "N", rfc: t5 + ` [1]: "This event can result in cancellation of a subscription pre-approval"`},
		{from: "N+O", to: "N+O", rfc: t5 + `: "None + Pending Out" | S.N. | no state change`},
		{from: "N+O", approved: true, to: "N+O", rfc: t5 + ` [1]: "This event can result in cancellation of a subscription pre-approval"`},
		{from: "N+I", to: "N", send: unsub, rfc: t5 + `: "None + Pending In" | MUST | "None"`},
		{from: "N+OI", to: "N+O", send: unsub, rfc: t5 + `: "None + Pending Out+In" | MUST | "None + Pending Out"`},
		{from: "T", to: "T", rfc: t5 + `: "To" | S.N. | no state change`},
		{from: "T", approved: true, to: "T", rfc: t5 + ` [1]: "This event can result in cancellation of a subscription pre-approval"`},
		{from: "T+I", to: "T", send: unsub, rfc: t5 + `: "To + Pending In" | MUST | "To"`},
		{from: "F", to: "N", send: revoke, rfc: t5from},
		{from: "F+O", to: "N+O", send: revoke, rfc: t5from},
		{from: "B", to: "T", send: revoke, rfc: t5from},
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
	// A Spark user declines the entity's request with unsubscribe (seed,
	// scenario 1): Table 7 leaves None + Pending Out as it is, and a later
	// subscribed still completes the request (Table 8: "None + Pending
	// Out" | MUST | "To").
	asked := Outbound(Item{}, Subscribe).Item
	declined := Inbound(asked, Unsubscribe)
	if declined.Item.State != NoneOut || len(declined.Send) != 0 {
		t.Errorf("Spark's decline: %s %v, want N+O and nothing sent", declined.Item.State.Abbr(), declined.Send)
	}
	if got := Inbound(declined.Item, Subscribed).Item.State; got != To {
		t.Errorf("subscribed after the decline: %s, want to", got)
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
