package gate

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// InvitePrefix starts an invite's token.
const InvitePrefix = "rgi_"

// Bounds of an invite's options.
const (
	MaxInviteUses = 1_000_000
	MaxInviteTTL  = 366 * 24 * time.Hour
)

// Defaults of an invite's options where an interface leaves them out (the
// web page's form, the admin API), as the command line's.
const (
	DefaultInviteTTL  = 72 * time.Hour
	DefaultInviteUses = 1
)

// InviteOptions shape a new invite.
type InviteOptions struct {
	// TTL is how long the invite works; 0: until revoked or used up.
	TTL time.Duration
	// Uses is how many requests it accepts (at least 1).
	Uses int
	// SubscribeBack makes the entity subscribe to whoever uses it.
	SubscribeBack bool
}

// NewInvite is an invite just made: the only time its token is seen.
type NewInvite struct {
	store.Invite
	Token string
	// URI is the XEP-0379 link, xmpp:entity@domain?roster;preauth=TOKEN.
	URI string
	// Landing is the web page that shows the link, a QR code and client
	// hints; "" without the web page.
	Landing string
}

// ErrBadInvite is matched by the error of an invite asked with bad
// options.
var ErrBadInvite = errors.New("gate: bad invite")

// CheckInviteOptions returns an error naming what is wrong with o, nil if
// nothing is.
func CheckInviteOptions(o InviteOptions) error {
	switch {
	case o.Uses < 1 || o.Uses > MaxInviteUses:
		return fmt.Errorf("%w: uses %d: want 1 to %d", ErrBadInvite, o.Uses, MaxInviteUses)
	case o.TTL < 0:
		return fmt.Errorf("%w: ttl %s is negative (0: until revoked or used up)", ErrBadInvite, o.TTL)
	case o.TTL > MaxInviteTTL:
		return fmt.Errorf("%w: ttl %s is over a year", ErrBadInvite, o.TTL)
	}
	return nil
}

// CreateInvite makes an invite to entity (a localpart or its JID at the
// domain, an [[entity]]): a subscribe that carries its token is accepted
// whatever the policy says, the deny list excepted. It is stored (its
// token's hash) and audited as actor's act, and works at once in the
// running instance.
func (s *Service) CreateInvite(ctx context.Context, actor roster.Actor, entity string, o InviteOptions) (NewInvite, error) {
	if err := CheckInviteOptions(o); err != nil {
		return NewInvite{}, err
	}
	local, err := roster.ParseEntity(s.domain, entity)
	if err != nil {
		return NewInvite{}, err
	}
	if _, ok := slices.BinarySearch(s.Entities(), local); !ok || local == "" {
		return NewInvite{}, notEntityError{entity, s.domain}
	}
	tok, err := newSecret(InvitePrefix)
	if err != nil {
		return NewInvite{}, err
	}
	now := time.Now()
	inv := store.Invite{Hash: hashToken(tok), Entity: local, Creator: actor.JID, Created: now, MaxUses: o.Uses, SubscribeBack: o.SubscribeBack}
	if o.TTL > 0 {
		inv.Expires = now.Add(o.TTL)
	}
	ev := &roster.Event{At: now, Entity: local, Kind: "invite", Action: "create", Actor: actor.JID, Interface: actor.Via,
		Detail: InviteTerms(inv)}
	if inv, err = s.store.CreateInvite(ctx, inv, ev); err != nil {
		return NewInvite{}, fmt.Errorf("gate: %w", err)
	}
	s.log.Info("invite created", "invite", inv.ID, "entity", s.entityJID(local), "by", actor.String(), "terms", InviteTerms(inv))
	return NewInvite{Invite: inv, Token: tok, URI: s.InviteURI(local, tok), Landing: s.InviteLanding(tok)}, nil
}

// entityJID is the bare JID of entity (a localpart; "" is the domain).
func (s *Service) entityJID(local string) string {
	if local == "" {
		return s.domain
	}
	return local + "@" + s.domain
}

// InviteURI is the XEP-0379 link to entity (a localpart) with token.
func (s *Service) InviteURI(entity, token string) string {
	return "xmpp:" + s.entityJID(entity) + "?roster;preauth=" + url.QueryEscape(token)
}

// InviteLanding is the web page of an invite's token, "" without the web
// page.
func (s *Service) InviteLanding(token string) string {
	base := s.WebURL()
	if base == "" {
		return ""
	}
	return base + "invite/" + url.PathEscape(token)
}

// InviteTerms says in a few words what an invite allows, e.g. "1 use,
// until 2026-12-05 10:00 UTC, subscribes back".
func InviteTerms(inv store.Invite) string {
	var b strings.Builder
	if inv.MaxUses == 1 {
		b.WriteString("1 use")
	} else {
		b.WriteString(strconv.Itoa(inv.MaxUses) + " uses")
	}
	if inv.Uses > 0 {
		b.WriteString(" (" + strconv.Itoa(inv.Uses) + " used)")
	}
	if inv.Expires.IsZero() {
		b.WriteString(", no end")
	} else {
		b.WriteString(", until " + inv.Expires.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if inv.SubscribeBack {
		b.WriteString(", subscribes back")
	}
	return b.String()
}

// Invites returns every invite (never their token), oldest first.
func (s *Service) Invites(ctx context.Context) ([]store.Invite, error) {
	invs, err := s.store.Invites(ctx)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return invs, nil
}

// InviteByToken returns the invite whose token is tok, or an error
// matching store.ErrNotFound.
func (s *Service) InviteByToken(ctx context.Context, tok string) (store.Invite, error) {
	inv, err := s.store.InviteByHash(ctx, hashToken(tok))
	if err != nil {
		return inv, fmt.Errorf("gate: %w", err)
	}
	return inv, nil
}

// RevokeInvite revokes invite id, audited as actor's act; false if it was
// revoked already. An unknown id is an error matching store.ErrNotFound.
func (s *Service) RevokeInvite(ctx context.Context, actor roster.Actor, id int64) (bool, error) {
	inv, err := s.store.Invite(ctx, id)
	if err != nil {
		return false, fmt.Errorf("gate: invite %d: %w", id, err)
	}
	now := time.Now()
	ev := &roster.Event{At: now, Entity: inv.Entity, Kind: "invite", Action: "revoke", Rule: "invite " + strconv.FormatInt(id, 10),
		Actor: actor.JID, Interface: actor.Via}
	changed, err := s.store.RevokeInvite(ctx, id, now, ev)
	if err != nil {
		return false, fmt.Errorf("gate: %w", err)
	}
	if changed {
		s.log.Info("invite revoked", "invite", id, "entity", s.entityJID(inv.Entity), "by", actor.String())
	}
	return changed, nil
}

// InviteMessage makes an invite (see CreateInvite) and returns the
// message that gives it to an admin: its link, and its web page.
func (s *Service) InviteMessage(ctx context.Context, actor roster.Actor, entity string, ttl time.Duration, uses int, back bool) (string, error) {
	inv, err := s.CreateInvite(ctx, actor, entity, InviteOptions{TTL: ttl, Uses: uses, SubscribeBack: back})
	if err != nil {
		return "", err
	}
	return InviteText(s.entityJID(inv.Entity), inv), nil
}

// InviteText is the message that gives a new invite.
func InviteText(entityJID string, inv NewInvite) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Invite #%d to %s (%s). Whoever opens this link in their XMPP client is accepted:\n%s", inv.ID, entityJID, InviteTerms(inv.Invite), inv.URI)
	if inv.Landing != "" {
		fmt.Fprintf(&b, "\nA page with the link, a QR code and client hints: %s", inv.Landing)
	}
	b.WriteString("\nThe link is shown this once; \"uninvite " + strconv.FormatInt(inv.ID, 10) + "\" revokes it.")
	return b.String()
}
