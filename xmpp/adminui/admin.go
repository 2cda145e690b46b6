// Package adminui implements rostergate's admin interfaces over XMPP: XEP-0050
// ad-hoc commands with XEP-0004 data forms, and chat commands.
//
// The transport (package xmpp/component) checks that the sender is an
// admin, routes the stanzas to a [Handler] and writes what it returns into
// the stream; the Handler acts through the one service (package gate),
// with the admin as the actor. Nothing here touches the network, the store
// or the stream directly.
package adminui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"rostergate/roster"
	"rostergate/store"
	"strings"
	"sync"
	"time"
)

// NSCommands is the XEP-0050 ad-hoc commands namespace.
const NSCommands = "http://jabber.org/protocol/commands"

// Service is what the admin interfaces act on: *gate.Service, declared
// here as the methods this package calls.
type Service interface {
	// Domain is the component domain, e.g. "bots.localhost".
	Domain() string
	// Entities are the configured entity localparts, sorted ("" = the domain itself).
	Entities() []string
	// Pending returns the held requests, oldest first.
	Pending(ctx context.Context) ([]roster.Request, error)
	// Decide approves or rejects the held requests ids and returns one
	// Outcome per id, in order.
	Decide(ctx context.Context, actor roster.Actor, ids []int64, approve bool) ([]roster.Outcome, error)
	// Explain tells what the policy does with a request from contact (a
	// JID) to entity (a localpart or a JID at the domain).
	Explain(ctx context.Context, contact, entity string) (roster.Explanation, error)
	// Roster returns up to limit roster items of an entity (a localpart or
	// a JID at the domain).
	Roster(ctx context.Context, entity string, limit int) ([]roster.Item, error)
	// Lists returns the allow and deny lists.
	Lists(ctx context.Context) (allow, deny []string, err error)
	// EditList adds pattern to, or removes it from, list "allow" or
	// "deny". Its errors are user-facing (e.g. a bad pattern).
	EditList(ctx context.Context, actor roster.Actor, list string, add bool, pattern string) (bool, error)
	// LoginMessage makes a one-time login link to the web page for admin
	// and returns the message that gives it. Its errors are user-facing
	// (e.g. there is no web page).
	LoginMessage(ctx context.Context, admin string) (string, error)
	// InviteMessage makes an invite to entity (XEP-0379) and returns the
	// message that gives its link. Its errors are user-facing.
	InviteMessage(ctx context.Context, actor roster.Actor, entity string, ttl time.Duration, uses int, back bool) (string, error)
	// Invites returns every invite, oldest first.
	Invites(ctx context.Context) ([]store.Invite, error)
	// RevokeInvite revokes invite id; false if it was revoked already.
	// An unknown id is an error matching store.ErrNotFound.
	RevokeInvite(ctx context.Context, actor roster.Actor, id int64) (bool, error)
}

// maxRosterLines bounds what an admin interface lists of one roster.
const maxRosterLines = 1000

// Command is one ad-hoc command: its node and its human-readable name.
type Command struct{ Node, Name string }

// Ad-hoc command nodes.
const (
	nodePending = "pending"
	nodeApprove = "approve"
	nodeReject  = "reject"
	nodeExplain = "explain"
	nodeRoster  = "roster"
	nodeLists   = "lists"
)

var commands = []Command{
	{nodePending, "Pending requests"},
	{nodeApprove, "Approve requests"},
	{nodeReject, "Reject requests"},
	{nodeExplain, "Explain a decision"},
	{nodeRoster, "Roster of an entity"},
	{nodeLists, "Allow and deny lists"},
}

// commandName returns the name of the command at node, ok=false if there is none.
func commandName(node string) (string, bool) {
	for _, c := range commands {
		if c.Node == node {
			return c.Name, true
		}
	}
	return "", false
}

// Session limits.
const (
	// SessionTTL is how long an ad-hoc session lives after it is started.
	SessionTTL = 10 * time.Minute
	// MaxSessions is how many ad-hoc sessions are kept at once; starting
	// another evicts the oldest.
	MaxSessions = 1000
)

// session is one ad-hoc command execution waiting for its form.
type session struct {
	id, node, actor string
	created         time.Time
	allow, deny     []string // the lists shown in the form (node lists)
}

// Handler serves the admin interfaces. It is safe for concurrent use.
type Handler struct {
	ops Service
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]*session
}

// New returns a Handler acting on ops; now is the clock (nil = time.Now).
func New(ops Service, now func() time.Time) *Handler {
	if now == nil {
		now = time.Now
	}
	return &Handler{ops: ops, now: now, sessions: make(map[string]*session)}
}

// Commands returns the ad-hoc commands: node and name, in a stable order.
func (h *Handler) Commands() []Command {
	return append([]Command(nil), commands...)
}

// newSession stores a fresh session for actor at node and returns it. Expired
// sessions are dropped, and the oldest is evicted when MaxSessions are held.
func (h *Handler) newSession(actor, node string) *session {
	now := h.now()
	s := &session{id: newSessionID(), node: node, actor: actor, created: now}
	h.mu.Lock()
	defer h.mu.Unlock()
	var oldest *session
	for id, o := range h.sessions {
		if h.expired(o, now) {
			delete(h.sessions, id)
			continue
		}
		if oldest == nil || o.created.Before(oldest.created) {
			oldest = o
		}
	}
	if len(h.sessions) >= MaxSessions && oldest != nil {
		delete(h.sessions, oldest.id)
	}
	h.sessions[s.id] = s
	return s
}

// expired reports whether s has outlived SessionTTL at now.
func (h *Handler) expired(s *session, now time.Time) bool {
	return !now.Before(s.created.Add(SessionTTL))
}

// session returns the live session id, or nil. An expired one is dropped.
func (h *Handler) session(id string) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[id]
	if !ok {
		return nil
	}
	if h.expired(s, h.now()) {
		delete(h.sessions, id)
		return nil
	}
	return s
}

// claim drops session s and reports whether it was still held: of two
// submissions racing for one session, only one claims it.
func (h *Handler) claim(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sessions[s.id] != s {
		return false
	}
	delete(h.sessions, s.id)
	return true
}

// sessionCount returns how many sessions are held (tests).
func (h *Handler) sessionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// entityShort returns how an entity is named where the domain is implied:
// its localpart, or the domain for the domain itself.
func entityShort(domain, local string) string {
	if local == "" {
		return domain
	}
	return local
}

// age formats how long ago t was, as of now: "just now", "5m ago", "3h ago", "2d ago".
func age(now, t time.Time) string {
	if t.IsZero() {
		return "unknown age"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

// requestDetail is "(rule 2, 3h ago)".
func requestDetail(now time.Time, r roster.Request) string {
	if r.Rule == "" {
		return "(" + age(now, r.Created) + ")"
	}
	return "(" + r.Rule + ", " + age(now, r.Created) + ")"
}

// decideLines calls Decide for ids and returns one line per id and how many
// succeeded.
func (h *Handler) decideLines(ctx context.Context, ids []int64, approve bool, actor roster.Actor) (lines []string, ok int) {
	if len(ids) == 0 {
		return nil, 0
	}
	outs, err := h.ops.Decide(ctx, actor, ids, approve)
	if err != nil {
		return []string{err.Error()}, 0
	}
	return OutcomeLines(h.ops.Domain(), approve, ids, outs)
}

// OutcomeLines says what came of deciding ids, a line per id ("Approved #12
// (alice@localhost → helpdesk@bots.localhost)", "#13: not pending"), and
// how many succeeded: the words every admin interface answers with.
func OutcomeLines(domain string, approve bool, ids []int64, outs []roster.Outcome) (lines []string, ok int) {
	verb := "Rejected"
	if approve {
		verb = "Approved"
	}
	for i, id := range ids {
		if i >= len(outs) {
			lines = append(lines, fmt.Sprintf("#%d: no outcome", id))
			continue
		}
		o := outs[i]
		switch {
		case o.Err == nil:
			ok++
			if o.Request.Contact != "" {
				lines = append(lines, fmt.Sprintf("%s #%d (%s → %s)", verb, id, o.Request.Contact, roster.EntityJID(domain, o.Request.Entity)))
			} else {
				lines = append(lines, fmt.Sprintf("%s #%d", verb, id))
			}
		case errors.As(o.Err, new(*roster.DecidedError)):
			var de *roster.DecidedError
			errors.As(o.Err, &de)
			lines = append(lines, fmt.Sprintf("#%d: not pending: %s", id, strings.TrimPrefix(de.Error(), fmt.Sprintf("request #%d ", id))))
		case errors.Is(o.Err, store.ErrNotFound):
			lines = append(lines, fmt.Sprintf("#%d: not pending", id))
		default:
			lines = append(lines, fmt.Sprintf("#%d: %v", id, o.Err))
		}
	}
	return lines, ok
}

// rosterLine is one roster item as an admin reads it:
// "alice@localhost: both, pending-in, pre-approved".
func rosterLine(it roster.Item) string {
	sub := it.Sub
	if sub == "" {
		sub = roster.SubNone
	}
	parts := []string{it.Contact + ": " + sub}
	if it.PendingOut {
		parts = append(parts, "pending-out")
	}
	if it.PendingIn {
		parts = append(parts, "pending-in")
	}
	if it.Approved {
		parts = append(parts, "pre-approved")
	}
	return strings.Join(parts, ", ")
}

// listChanges computes the edits turning old into new (both as lines):
// removes and adds, each in order, duplicates and blank lines ignored.
func listChanges(old, new []string) (removes, adds []string) {
	oldSet := make(map[string]bool)
	for _, p := range old {
		if p = strings.TrimSpace(p); p != "" {
			oldSet[p] = true
		}
	}
	newSet := make(map[string]bool)
	for _, p := range new {
		if p = strings.TrimSpace(p); p != "" && !newSet[p] {
			newSet[p] = true
			if !oldSet[p] {
				adds = append(adds, p)
			}
		}
	}
	seen := make(map[string]bool)
	for _, p := range old {
		if p = strings.TrimSpace(p); p != "" && !newSet[p] && !seen[p] {
			seen[p] = true
			removes = append(removes, p)
		}
	}
	return removes, adds
}

// splitLines splits the values of a text-multi field into trimmed, non-empty
// lines (a client may put several lines in one value).
func splitLines(values []string) []string {
	var out []string
	for _, v := range values {
		for _, l := range strings.Split(strings.ReplaceAll(v, "\r", "\n"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}
