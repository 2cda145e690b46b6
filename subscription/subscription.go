// Package subscription is the RFC 6121 presence subscription state machine
// (§3 and Appendix A) as rostergate plays it for each of its entities: the
// server's rules and the contact's decisions in one place.
//
// It is pure data and functions: a state and an event in, a new state and the
// stanzas to send out. It knows nothing of XML, storage or policy; the caller
// runs the policy when a Result asks for a decision, commits the new state,
// and only then sends the stanzas.
package subscription

import "fmt"

// State is the subscription state of one (entity, contact) pair, seen from
// the entity's side (RFC 6121 Appendix A.1).
type State uint8

// The nine states. "Out" is the entity's pending request for the contact's
// presence, "In" the contact's pending request for the entity's.
const (
	None      State = iota // N
	NoneOut                // N+O
	NoneIn                 // N+I
	NoneOutIn              // N+OI
	To                     // T
	ToIn                   // T+I
	From                   // F
	FromOut                // F+O
	Both                   // B
)

var stateNames = [...]string{"none", "none+out", "none+in", "none+out+in", "to", "to+in", "from", "from+out", "both"}
var stateAbbr = [...]string{"N", "N+O", "N+I", "N+OI", "T", "T+I", "F", "F+O", "B"}

// String returns the long form used in logs and the audit log, e.g. "none+in".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Abbr returns the abbreviation of RFC 6121 Appendix A, e.g. "N+I".
func (s State) Abbr() string {
	if int(s) < len(stateAbbr) {
		return stateAbbr[s]
	}
	return s.String()
}

// Sub returns the roster item's subscription attribute: none, to, from or both.
func (s State) Sub() string {
	switch s {
	case To, ToIn:
		return "to"
	case From, FromOut:
		return "from"
	case Both:
		return "both"
	default:
		return "none"
	}
}

// PendingOut reports whether the entity has asked for the contact's presence.
func (s State) PendingOut() bool { return s == NoneOut || s == NoneOutIn || s == FromOut }

// PendingIn reports whether the contact's request awaits the entity's decision.
func (s State) PendingIn() bool { return s == NoneIn || s == NoneOutIn || s == ToIn }

// HasFrom reports whether the contact receives the entity's presence.
func (s State) HasFrom() bool { return s == From || s == FromOut || s == Both }

// HasTo reports whether the entity receives the contact's presence.
func (s State) HasTo() bool { return s == To || s == ToIn || s == Both }

// Compose builds a State from the parts a roster item stores. Combinations
// that RFC 6121 does not allow (such as "both" with a pending request) are an
// error.
func Compose(sub string, pendingOut, pendingIn bool) (State, error) {
	var s State
	switch {
	case sub == "none" && !pendingOut && !pendingIn:
		s = None
	case sub == "none" && pendingOut && !pendingIn:
		s = NoneOut
	case sub == "none" && !pendingOut && pendingIn:
		s = NoneIn
	case sub == "none" && pendingOut && pendingIn:
		s = NoneOutIn
	case sub == "to" && !pendingOut && !pendingIn:
		s = To
	case sub == "to" && !pendingOut && pendingIn:
		s = ToIn
	case sub == "from" && !pendingOut && !pendingIn:
		s = From
	case sub == "from" && pendingOut && !pendingIn:
		s = FromOut
	case sub == "both" && !pendingOut && !pendingIn:
		s = Both
	default:
		return None, fmt.Errorf("subscription: invalid state: subscription %q, pending out %t, pending in %t", sub, pendingOut, pendingIn)
	}
	return s, nil
}

// Item is what the machine needs of a roster item: its state and whether the
// entity has pre-approved the contact (RFC 6121 §3.4).
type Item struct {
	State    State
	Approved bool
}

// Kind is a subscription-related presence type.
type Kind uint8

// The presence types that drive the machine.
const (
	Subscribe Kind = iota + 1
	Unsubscribe
	Subscribed
	Unsubscribed
	Probe
)

var kindNames = [...]string{"", "subscribe", "unsubscribe", "subscribed", "unsubscribed", "probe"}

// String returns the presence type as it appears in the type attribute.
func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// ParseKind maps a presence type attribute to a Kind. ok is false for the
// types that are not about subscriptions (available, unavailable, error) and
// for unknown ones.
func ParseKind(typ string) (k Kind, ok bool) {
	for i := 1; i < len(kindNames); i++ {
		if kindNames[i] == typ {
			return Kind(i), true
		}
	}
	return 0, false
}

// Send is a stanza the entity sends to the contact.
type Send uint8

// The stanzas the machine asks to send, each from the entity to the contact.
const (
	SendSubscribe    Send = iota + 1 // presence type="subscribe"
	SendSubscribed                   // presence type="subscribed"
	SendUnsubscribe                  // presence type="unsubscribe"
	SendUnsubscribed                 // presence type="unsubscribed"
	SendPresence                     // the entity's current presence
	SendUnavailable                  // presence type="unavailable"
)

var sendNames = [...]string{"", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "presence", "unavailable"}

func (s Send) String() string {
	if int(s) < len(sendNames) && s != 0 {
		return sendNames[s]
	}
	return fmt.Sprintf("Send(%d)", s)
}

// Result is the outcome of one event.
type Result struct {
	Item Item   // the item after the event
	Send []Send // stanzas to send, in order, after Item is committed
	// Decide is set when the contact's request must go to the policy: Item is
	// already the pending-in state to hold while it is decided or reviewed.
	// Apply the decision with Accept or Reject; a dropped request keeps the
	// item as it was before the event.
	Decide bool
	// Note names an event the RFC answers without a state change, or an
	// interop case, for the log: "duplicate", "decline", "pre-approved",
	// "resend" (an outbound request routed again with no state change).
	Note string
}

// Changed reports whether the event changed the item.
func (r Result) Changed(before Item) bool { return r.Item != before }

// Inbound applies a presence of type k that the contact sent to the entity
// (RFC 6121 Appendix A.3, Tables 6 to 9, and §4.3.2 for probes).
func Inbound(it Item, k Kind) Result {
	s := it.State
	r := Result{Item: it}
	set := func(n State) { r.Item.State = n }
	switch k {
	case Subscribe:
		switch s {
		case None, NoneOut, To:
			if it.Approved {
				// Pre-approved (§3.4): accept without asking anyone.
				r.Item = Item{State: accepted(pendIn(s))}
				r.Send = []Send{SendSubscribed, SendPresence}
				r.Note = "pre-approved"
				return r
			}
			set(pendIn(s))
			r.Decide = true
		case NoneIn, NoneOutIn, ToIn:
			r.Note = "duplicate"
		case From, FromOut, Both:
			// Already subscribed: the server answers on the entity's behalf (§3.1.3).
			r.Send = []Send{SendSubscribed}
			r.Note = "duplicate"
		}
	case Unsubscribe:
		// Table 7: where the state changes, "Server SHOULD auto-reply with
		// "unsubscribed"" (Openfire keeps its user's item at
		// ask="unsubscribe" until it comes); where it does not, nothing.
		switch s {
		case NoneOut:
			// No state change (Table 7). A Spark user declines the entity's
			// request with unsubscribe: that cancels the user's own
			// subscription, of which there is none, and leaves the
			// entity's request pending; a later subscribed completes it.
			r.Note = "decline"
		case NoneIn:
			set(None)
			r.Send = []Send{SendUnsubscribed}
		case NoneOutIn:
			set(NoneOut)
			r.Send = []Send{SendUnsubscribed}
		case ToIn:
			set(To)
			r.Send = []Send{SendUnsubscribed}
		case From:
			set(None)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		case FromOut:
			set(NoneOut)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		case Both:
			set(To)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		}
	case Subscribed:
		switch s {
		case NoneOut:
			set(To)
		case NoneOutIn:
			set(ToIn)
		case FromOut:
			set(Both)
		}
	case Unsubscribed:
		switch s {
		case NoneOut, To:
			set(None)
		case NoneOutIn, ToIn:
			set(NoneIn)
		case FromOut, Both:
			set(From)
		}
	case Probe:
		if s.HasFrom() {
			r.Send = []Send{SendPresence}
		} else {
			r.Send = []Send{SendUnsubscribed}
		}
	}
	if r.Item.State.HasFrom() {
		r.Item.Approved = false
	}
	return r
}

// Outbound applies a subscription presence of type k that the entity sends to
// the contact: the entity's own decisions, an admin's approval or rejection,
// or a policy's subscribe-back (RFC 6121 Appendix A.2, Tables 2 to 5).
// Outbound subscribe and unsubscribe are always sent (the tables' ROUTE is
// MUST in every row); subscribed and unsubscribed only where they change
// the state.
// Probe is not an outbound action and changes nothing.
func Outbound(it Item, k Kind) Result {
	s := it.State
	r := Result{Item: it}
	set := func(n State) { r.Item.State = n }
	switch k {
	case Subscribe:
		switch s {
		case None, NoneIn, From:
			set(pendOut(s))
			r.Send = []Send{SendSubscribe}
		case NoneOut, NoneOutIn, FromOut, To, ToIn, Both:
			// Table 2: routed (MUST) with no state change. The contact may
			// have missed the request, or lost its side of the
			// subscription; asking again lets it answer again.
			r.Send = []Send{SendSubscribe}
			r.Note = "resend"
		}
	case Subscribed:
		switch s {
		case NoneIn, NoneOutIn, ToIn:
			set(accepted(s))
			r.Send = []Send{SendSubscribed, SendPresence}
		case None, NoneOut, To:
			// Pre-approval (§3.4): nothing to send until the contact asks.
			r.Item.Approved = true
			r.Note = "pre-approved"
		}
	case Unsubscribe:
		switch s {
		case None, NoneIn, From:
			// Table 3: routed (MUST) with no state change, so that a
			// contact that still thinks it is subscribed hears otherwise.
			r.Send = []Send{SendUnsubscribe}
			r.Note = "resend"
		case NoneOut, To:
			set(None)
			r.Send = []Send{SendUnsubscribe}
		case NoneOutIn, ToIn:
			set(NoneIn)
			r.Send = []Send{SendUnsubscribe}
		case FromOut, Both:
			set(From)
			r.Send = []Send{SendUnsubscribe}
		}
	case Unsubscribed:
		switch s {
		case NoneIn:
			set(None)
			r.Send = []Send{SendUnsubscribed}
		case NoneOutIn:
			set(NoneOut)
			r.Send = []Send{SendUnsubscribed}
		case ToIn:
			set(To)
			r.Send = []Send{SendUnsubscribed}
		case From:
			set(None)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		case FromOut:
			set(NoneOut)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		case Both:
			set(To)
			r.Send = []Send{SendUnavailable, SendUnsubscribed}
		case None, NoneOut, To:
			// Cancels a pre-approval, if there was one (§3.4).
			r.Item.Approved = false
		}
	}
	if r.Item.State.HasFrom() {
		r.Item.Approved = false
	}
	return r
}

// Accept applies the entity's approval of the contact's pending request.
func Accept(it Item) Result { return Outbound(it, Subscribed) }

// Reject applies the entity's refusal of the contact's pending request.
func Reject(it Item) Result { return Outbound(it, Unsubscribed) }

// pendIn adds the contact's pending request to a state without one.
func pendIn(s State) State {
	switch s {
	case None:
		return NoneIn
	case NoneOut:
		return NoneOutIn
	case To:
		return ToIn
	}
	return s
}

// pendOut adds the entity's pending request to a state without one.
func pendOut(s State) State {
	switch s {
	case None:
		return NoneOut
	case NoneIn:
		return NoneOutIn
	case From:
		return FromOut
	}
	return s
}

// accepted grants the contact's pending request.
func accepted(s State) State {
	switch s {
	case NoneIn:
		return From
	case NoneOutIn:
		return FromOut
	case ToIn:
		return Both
	}
	return s
}
