package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
	"strconv"
	"sync"
)

// reasonInvite starts the reason of a request accepted with an invite:
// "invite 3 by root@example.com".
const reasonInvite = "invite "

// invites counts the uses of invites decided but not yet committed, so
// that an invite of one use accepts one request even while the batch that
// used it is being committed (see useInvite and commitInvites).
type invites struct {
	// mu serialises reading an invite with committing a batch that uses
	// invites: a reader sees a use either in the store or in pending,
	// never in both or neither.
	mu      sync.Mutex
	pending map[int64]int // mu: uses decided, not yet committed (or failed)
}

// useInvite decides a subscribe that carries an XEP-0379 token: accepted
// (with the invite's subscribe-back) when token is an invite for the
// entity that is neither revoked, expired nor used up, and the contact is
// not on the deny list; otherwise ok is false, why it is not used is
// logged, and the request goes through the policy as any other. e.mu is
// held.
func (e *Engine) useInvite(ctx context.Context, b *batch, l *live, a stanza.Address, token string) (d policy.Decision, ok bool) {
	not := func(why string, args ...any) (policy.Decision, bool) {
		e.log.Info("invite not used; the policy decides", append([]any{"entity", e.entityJID(a.Entity), "contact", a.Contact, "why", why}, args...)...)
		return policy.Decision{}, false
	}
	if token == stanza.BadPreauth {
		return not("malformed preauth element (XEP-0379: one, with a token)")
	}
	if _, denied := l.policy.Denied(a.Contact); denied {
		return not("the contact is on the deny list")
	}
	h := sha256.Sum256([]byte(token))
	e.inv.mu.Lock()
	defer e.inv.mu.Unlock()
	inv, err := e.store.InviteByHash(ctx, h[:])
	if errors.Is(err, store.ErrNotFound) {
		return not("the token is no invite's")
	}
	if err != nil {
		e.log.Warn("reading an invite failed; the policy decides", "entity", e.entityJID(a.Entity), "contact", a.Contact, "err", err)
		return policy.Decision{}, false
	}
	if inv.Entity != a.Entity {
		return not("the invite is for another entity", "invite", inv.ID, "for", e.entityJID(inv.Entity))
	}
	if why := inv.Unusable(b.now, e.inv.pending[inv.ID]); why != "" {
		return not("the invite is "+why, "invite", inv.ID)
	}
	e.inv.pending[inv.ID]++
	b.inviteUses = append(b.inviteUses, inv.ID)
	return policy.Decision{Action: policy.Accept, SubscribeBack: inv.SubscribeBack,
		Reason: reasonInvite + strconv.FormatInt(inv.ID, 10) + " by " + inv.Creator}, true
}

// commitInvites runs commit, which stores b; when b used invites, it runs
// under the invites' lock, and their pending uses are forgotten after it
// (stored now, or never).
func (e *Engine) commitInvites(b *batch, commit func() error) error {
	if len(b.inviteUses) == 0 {
		return commit()
	}
	e.inv.mu.Lock()
	defer e.inv.mu.Unlock()
	err := commit()
	e.releaseInvitesLocked(b)
	return err
}

// dropInvites forgets the pending uses of a batch that is done with,
// whatever became of it: committed, failed, or never launched because the
// batch before it failed. Calling it again does nothing.
func (e *Engine) dropInvites(b *batch) {
	if len(b.inviteUses) == 0 {
		return
	}
	e.inv.mu.Lock()
	defer e.inv.mu.Unlock()
	e.releaseInvitesLocked(b)
}

// releaseInvitesLocked forgets b's pending uses; e.inv.mu is held.
func (e *Engine) releaseInvitesLocked(b *batch) {
	for _, id := range b.inviteUses {
		if e.inv.pending[id]--; e.inv.pending[id] <= 0 {
			delete(e.inv.pending, id)
		}
	}
	b.inviteUses = b.inviteUses[:0]
}

// inviteHeld approves a held request whose contact asks again, now with an
// invite's token (XEP-0379: a valid token authorises the subscription),
// and reports whether it did; otherwise the repeated request changes
// nothing, as any repeated request. e.mu is held.
func (e *Engine) inviteHeld(ctx context.Context, b *batch, a stanza.Address, before roster.Item, cur subscription.Item, token string) bool {
	l := e.live.Load()
	if _, known := l.entities[a.Entity]; !known {
		return false
	}
	d, ok := e.useInvite(ctx, b, l, a, token)
	if !ok {
		return false
	}
	e.countDecision(policy.Accept, d.Reason)
	e.log.Info("decision", "entity", e.entityJID(a.Entity), "contact", a.Contact,
		"action", string(d.Action), "rule", d.Reason, "subscribe_back", d.SubscribeBack, "held", "approved by the invite")
	r := accept(cur, d.SubscribeBack)
	ev := &roster.Event{Kind: subscription.Subscribe.String(), Action: string(policy.Accept), Rule: d.Reason, Actor: a.Contact,
		Interface: roster.ViaStream, Detail: "held request approved by the invite"}
	e.record(b, before, r.Item, r.Send, ev, nil, nil)
	e.tellAdmins(b, fmt.Sprintf("%s's held request to %s was approved by %s (the contact asked again with it).",
		a.Contact, e.entityJID(a.Entity), d.Reason), "")
	return true
}
