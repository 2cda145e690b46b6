// Package roster holds rostergate's domain types: the roster items an entity
// keeps (RFC 6121 §2.1.2: subscription none, to, from or both, with the
// pending flags of §3), the subscription requests held for an admin, the
// audit events, and the actor behind every act.
//
// It imports nothing of rostergate's: every other package, the store
// backends, the decision engine and the interfaces, speaks in these types.
package roster

import (
	"fmt"
	"time"
)

// Subscription states an Item's Sub may hold (RFC 6121 §2.1.2.5).
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// Item is one roster item, seen from the entity's side.
type Item struct {
	Entity       string    // localpart of the entity ("" = the component domain itself)
	Contact      string    // normalised bare JID of the contact
	Sub          string    // SubNone, SubTo, SubFrom or SubBoth
	PendingOut   bool      // the entity asked for the contact's presence (ask=subscribe)
	PendingIn    bool      // the contact asked for the entity's presence, not yet decided
	Approved     bool      // pre-approval (RFC 6121 §3.4)
	PendingSince time.Time // when PendingIn was set; zero when not pending
	Updated      time.Time
}

// Empty reports whether the item carries no state worth keeping: a store
// deletes such an item rather than writing it.
func (it Item) Empty() bool {
	return it.Sub == SubNone && !it.PendingOut && !it.PendingIn && !it.Approved
}

// Key identifies a roster item.
type Key struct{ Entity, Contact string }

// Request is a subscription request held for an admin's decision.
type Request struct {
	ID            int64 // short id admins use; assigned when the request is stored
	Entity        string
	Contact       string
	Rule          string // the policy reason that sent it to review, e.g. "rule 2"
	SubscribeBack bool   // whether approving also asks for the contact's presence
	Created       time.Time
}

// Event is one row of the append-only audit log.
type Event struct {
	ID        int64
	At        time.Time
	Entity    string
	Contact   string
	Kind      string // what came in or was asked: "subscribe", "unsubscribe", "subscribed", "unsubscribed", "approve", ...
	Action    string // what was done: "accept", "reject", "review", "drop", "state", ...
	Rule      string // policy reason, "" if none
	From, To  string // subscription state before and after, e.g. "none+in", "from"
	Actor     string // who: the contact JID, "policy", an admin JID
	Interface string // "stream", "cli", "adhoc", "chat", ...
	Detail    string
}

// Interfaces an actor acts through, as the audit log records them.
const (
	ViaStream = "stream"     // a stanza from the server
	ViaChat   = "chat"       // an admin's chat command
	ViaAdhoc  = "adhoc"      // an admin's XEP-0050 ad-hoc command
	ViaCLI    = "cli"        // the command line
	ViaTTL    = "review_ttl" // rostergate itself, when a held request outlives review_ttl
	ViaAPI    = "api"        // a bot, through the HTTP API (the actor is "token:ID")
	ViaWeb    = "web"        // an admin, through the web page
)

// Actor is who acts, and through which interface: every act of an admin or
// a bot carries one, and the audit log keeps both.
type Actor struct {
	JID string // a bare JID, or a name such as "cli:root" or "rostergate"
	Via string // one of the Via constants
}

// String is "admin@example.com (chat)".
func (a Actor) String() string {
	if a.Via == "" {
		return a.JID
	}
	return a.JID + " (" + a.Via + ")"
}

// Outcome is what came of deciding one held request.
type Outcome struct {
	ID      int64
	Request Request // the request decided (zero if not found)
	Err     error   // nil on success; matches store.ErrNotFound when the id is not held (unknown, decided or withdrawn)
}

// Explanation is what the policy does with one request, and why.
type Explanation struct {
	Contact, Entity string // normalised bare JIDs
	Action          string // accept, reject, review, drop
	SubscribeBack   bool
	Rule            string // what decided, one line, e.g. `rule 2: contact="*@localhost" -> accept, subscribe_back`
	Message         string // message the requester would get, if any
	KnownEntity     bool   // whether Entity is an [[entity]]; if not, unknown_entity applied
	// Note says how the contact as written was read, when it was not a
	// JID as it stood (a name without a domain, completed with the local
	// domain).
	Note string
	// Groups are the group rules consulted, one line each, in rule order:
	// what the directory said and where it came from, e.g. `rule 2 group
	// staff: alice@example.com is a member (ldap, cached 12s ago)` or
	// `rule 2 group staff: directory unavailable: …; rule does not match`.
	Groups []string
}

// DecidedError says a held request is no longer pending because it was
// decided: by whom, through what, when. Stores and the engine wrap it with
// their not-found error.
type DecidedError struct {
	ID     int64     `json:"id"`
	Action string    `json:"action"` // accept or reject
	Actor  string    `json:"actor"`
	Via    string    `json:"via"`
	At     time.Time `json:"at"`
}

func (e *DecidedError) Error() string {
	verb := "rejected"
	if e.Action == "accept" {
		verb = "approved"
	}
	by := e.Actor
	if e.Via != "" {
		by += " (" + e.Via + ")"
	}
	return fmt.Sprintf("request #%d was already %s by %s at %s", e.ID, verb, by, e.At.UTC().Format("2006-01-02 15:04 UTC"))
}
