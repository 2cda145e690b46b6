package engine

import (
	"slices"
	"strings"
	"sync/atomic"

	"rostergate/directory"
	"rostergate/policy"
	"rostergate/roster"
)

// What the engine counts for monitoring (Stats): atomics, or maps behind a
// lock of their own (statsMu), so that counting costs an increment and
// allocates nothing, and reading never waits for the engine's mu (held
// across commits); the outbox depth and the held count are mirrored in
// atomics.

// The rule kinds a decision is counted by: what decided it, without the
// rule's number or the list's pattern (a pattern may be a JID).
const (
	KindRule          = "rule"           // a [[policy.rule]]
	KindDefault       = "default"        // [policy] default
	KindUnknownEntity = "unknown_entity" // [policy] unknown_entity
	KindDenyList      = "deny_list"      // the deny list
	KindAllowList     = "allow_list"     // the allow list
	KindLimit         = "limit"          // [limits]: over a rate or a cap
	KindAdmin         = "admin"          // an admin subscribing to the component domain
	KindPreApproved   = "pre_approved"   // the entity had pre-approved the contact (RFC 6121 §3.4)
	KindInvite        = "invite"         // the request carried an invite's token (XEP-0379)
)

// decisionKinds are the kinds, in the order of the counters.
var decisionKinds = [...]string{KindRule, KindDefault, KindUnknownEntity, KindDenyList, KindAllowList, KindLimit, KindAdmin, KindPreApproved, KindInvite}

// decisionActions are the actions, in the order of the counters.
var decisionActions = [...]policy.Action{policy.Accept, policy.Reject, policy.Review, policy.Drop}

// decisionCounts counts decisions by action and kind.
type decisionCounts [len(decisionActions)][len(decisionKinds)]atomic.Uint64

// reasonKind returns the kind of what made a decision, from its reason
// (policy.Decision.Reason, or the engine's own).
func reasonKind(reason string) string {
	switch {
	case strings.HasPrefix(reason, "rule "), strings.HasPrefix(reason, policy.ReasonUnsure):
		return KindRule
	case reason == "default":
		return KindDefault
	case reason == "unknown_entity":
		return KindUnknownEntity
	case strings.HasPrefix(reason, "deny list"):
		return KindDenyList
	case strings.HasPrefix(reason, "allow list"):
		return KindAllowList
	case strings.HasPrefix(reason, "limit "):
		return KindLimit
	case reason == "pre-approved":
		return KindPreApproved
	case reason == reasonAdmin:
		return KindAdmin
	case strings.HasPrefix(reason, reasonInvite):
		return KindInvite
	}
	return ""
}

// countDecision counts a decision on a request; e.mu is held.
func (e *Engine) countDecision(a policy.Action, reason string) {
	i := slices.Index(decisionActions[:], a)
	j := slices.Index(decisionKinds[:], reasonKind(reason))
	if i >= 0 && j >= 0 {
		e.decisions[i][j].Add(1)
	}
}

// possible reports whether kind k can decide action a: the series worth
// reporting at zero.
func possible(a policy.Action, k string) bool {
	switch k {
	case KindRule, KindDefault, KindUnknownEntity:
		return true
	case KindLimit:
		return a == policy.Reject || a == policy.Drop
	case KindDenyList:
		return a == policy.Reject
	}
	return a == policy.Accept
}

// heldKey counts admins' decisions on held requests.
type heldKey struct {
	approve bool
	via     string
}

// Limit names, as counted in Stats.LimitHits.
var limitNames = []string{"contact_rate", "domain_rate", "max_pending", "max_pending_per_domain"}

// Decisions is one count of Stats.Decisions.
type Decisions struct {
	Action policy.Action // accept, reject, review or drop
	Kind   string        // what decided: one of the Kind constants
	N      uint64
}

// HeldDecisions is one count of Stats.HeldDecisions.
type HeldDecisions struct {
	Approve bool
	Via     string // the interface (roster.Via...)
	N       uint64
}

// Stats are what the engine has counted since it started, and what it
// holds now; read them with Stats. No count is kept by entity or contact.
type Stats struct {
	// Decisions counts the decisions on contacts' subscription requests,
	// by action and by what decided (every combination that can happen,
	// zeros included).
	Decisions []Decisions
	// HeldDecisions counts held requests approved or rejected, by the
	// interface the decision came through (review_ttl: expired).
	HeldDecisions []HeldDecisions
	// Held is how many requests are held now.
	Held int
	// LimitHits counts the requests over each limit (every limit named,
	// zeros included).
	LimitHits map[string]int
	// MessagesDropped counts messages from non-contacts dropped.
	MessagesDropped int
	// OutboxDepth is how many committed batches of replies are not yet
	// known to have reached the server (the outbox's rows).
	OutboxDepth int
	// Directory is what the directory of group rules has counted (its
	// Source is "" when there is none).
	Directory directory.Stats
}

// Stats returns what the engine has counted. It never waits for a batch
// or a commit (the counts are atomics, or behind a lock of their own): a
// scrape answers while the store or the stream is stuck.
func (e *Engine) Stats() Stats {
	e.statsMu.Lock()
	defer e.statsMu.Unlock()
	s := Stats{Held: int(e.heldNow.Load()), MessagesDropped: int(e.messagesDropped.Load()), LimitHits: map[string]int{}, OutboxDepth: int(e.outboxDepth.Load()),
		Directory: e.dir.Stats()}
	for i, a := range decisionActions {
		for j, k := range decisionKinds {
			if n := e.decisions[i][j].Load(); n > 0 || possible(a, k) {
				s.Decisions = append(s.Decisions, Decisions{Action: a, Kind: k, N: n})
			}
		}
	}
	for _, approve := range []bool{true, false} {
		for _, via := range []string{roster.ViaChat, roster.ViaAdhoc, roster.ViaCLI, roster.ViaWeb, roster.ViaAPI, roster.ViaTTL} {
			if via == roster.ViaTTL && approve {
				continue
			}
			s.HeldDecisions = append(s.HeldDecisions, HeldDecisions{Approve: approve, Via: via, N: e.heldDecided[heldKey{approve, via}]})
		}
	}
	for k, n := range e.heldDecided {
		if !slices.ContainsFunc(s.HeldDecisions, func(h HeldDecisions) bool { return h.Approve == k.approve && h.Via == k.via }) {
			s.HeldDecisions = append(s.HeldDecisions, HeldDecisions{Approve: k.approve, Via: k.via, N: n})
		}
	}
	for _, l := range limitNames {
		s.LimitHits[l] = e.limitHits[l]
	}
	for l, n := range e.limitHits {
		s.LimitHits[l] = n
	}
	return s
}

// outboxAdd notes an outbox row committed; called by the batch in flight,
// or under lock().
func (e *Engine) outboxAdd(id int64) {
	if id <= 0 {
		return
	}
	e.outbox = append(e.outbox, id)
	e.outboxDepth.Store(int64(len(e.outbox)))
}

// outboxDeleted notes the outbox rows up to id deleted; called by the batch
// in flight, or under lock().
func (e *Engine) outboxDeleted(id int64) {
	if id <= 0 {
		return
	}
	i := 0
	for i < len(e.outbox) && e.outbox[i] <= id {
		i++
	}
	if i == len(e.outbox) {
		e.outbox = e.outbox[:0]
	} else if i > 0 {
		e.outbox = append(e.outbox[:0], e.outbox[i:]...)
	}
	e.outboxDepth.Store(int64(len(e.outbox)))
}
