package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rostergate/gate"
	"rostergate/roster"
	"rostergate/store"
)

// The admin API's invites (XEP-0379 pre-authenticated subscription
// links): list them (never their tokens, which are not kept), make one (its
// token, link and web page are in the answer, the only time they are
// seen), revoke one.

// Invite is an invite in the admin API.
type Invite struct {
	ID            int64      `json:"id"`
	Entity        string     `json:"entity"`  // its JID
	Creator       string     `json:"creator"` // as the audit log names actors
	Created       time.Time  `json:"created"`
	Expires       *time.Time `json:"expires"` // null: until revoked or used up
	MaxUses       int        `json:"max_uses"`
	Uses          int        `json:"uses"`
	SubscribeBack bool       `json:"subscribe_back"`
	Revoked       *time.Time `json:"revoked,omitempty"`
	State         string     `json:"state"` // usable, revoked, expired or used up
}

func (s *Server) invite(inv store.Invite, now time.Time) Invite {
	out := Invite{ID: inv.ID, Entity: s.svc.EntityJID(inv.Entity), Creator: inv.Creator, Created: inv.Created.UTC(),
		MaxUses: inv.MaxUses, Uses: inv.Uses, SubscribeBack: inv.SubscribeBack, State: inv.Unusable(now, 0)}
	if out.State == "" {
		out.State = "usable"
	}
	if !inv.Expires.IsZero() {
		e := inv.Expires.UTC()
		out.Expires = &e
	}
	if !inv.Revoked.IsZero() {
		r := inv.Revoked.UTC()
		out.Revoked = &r
	}
	return out
}

func (s *Server) adminInvites(w http.ResponseWriter, r *http.Request, _ store.Token) {
	invs, err := s.svc.Invites(r.Context())
	if err != nil {
		s.failWith(w, err)
		return
	}
	now := time.Now()
	out := make([]Invite, 0, len(invs))
	for _, inv := range invs {
		out = append(out, s.invite(inv, now))
	}
	reply(w, http.StatusOK, struct {
		Invites []Invite `json:"invites"`
	}{out})
}

// InviteRequest is the body of POST /api/v1/admin/invites. TTL and Uses
// left out are 72h and 1; a TTL of "0" works until revoked or used up.
type InviteRequest struct {
	Entity        string  `json:"entity"` // a localpart or the entity's JID
	TTL           *string `json:"ttl"`    // a Go duration: "72h", "30m"
	Uses          *int    `json:"uses"`
	SubscribeBack bool    `json:"subscribe_back"`
}

// NewInvite is the answer to POST /api/v1/admin/invites: the invite, its
// token, its xmpp: link and its web page ("" without the web page).
type NewInvite struct {
	Invite
	Token   string `json:"token"`
	URI     string `json:"uri"`
	Landing string `json:"landing"`
}

func (s *Server) adminCreateInvite(w http.ResponseWriter, r *http.Request, t store.Token) {
	var q InviteRequest
	if err := decode(w, r, s.opts.MaxBody, &q); err != nil {
		s.failWith(w, err)
		return
	}
	o := gate.InviteOptions{TTL: gate.DefaultInviteTTL, Uses: gate.DefaultInviteUses, SubscribeBack: q.SubscribeBack}
	entity := strings.TrimSpace(q.Entity)
	if entity == "" {
		fail(w, http.StatusUnprocessableEntity, "entity: required (the entity the invite is for, e.g. \"helpdesk\")")
		return
	}
	local, err := roster.ParseEntity(s.svc.Domain(), entity)
	if err != nil {
		fail(w, http.StatusUnprocessableEntity, "entity: %s", roster.UserText(err))
		return
	}
	if local == "" || !s.svc.IsEntity(local) {
		fail(w, http.StatusUnprocessableEntity, "entity: %q is no [[entity]] of %s", entity, s.svc.Domain())
		return
	}
	if q.TTL != nil {
		if o.TTL, err = time.ParseDuration(strings.TrimSpace(*q.TTL)); err != nil {
			fail(w, http.StatusUnprocessableEntity, "ttl: %q is not a duration such as \"72h\" or \"30m\" (\"0\": until revoked or used up)", *q.TTL)
			return
		}
	}
	if q.Uses != nil {
		o.Uses = *q.Uses
	}
	if err := gate.CheckInviteOptions(o); err != nil {
		fail(w, http.StatusUnprocessableEntity, "%s", strings.TrimPrefix(err.Error(), gate.ErrBadInvite.Error()+": "))
		return
	}
	inv, err := s.svc.CreateInvite(r.Context(), tokenActor(t), local, o)
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusCreated, NewInvite{Invite: s.invite(inv.Invite, time.Now()), Token: inv.Token, URI: inv.URI, Landing: inv.Landing})
}

func (s *Server) adminRevokeInvite(w http.ResponseWriter, r *http.Request, t store.Token) {
	v := r.PathValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		fail(w, http.StatusNotFound, "no invite %q: an invite's id is a number (GET /api/v1/admin/invites lists them)", v)
		return
	}
	changed, err := s.svc.RevokeInvite(r.Context(), tokenActor(t), id)
	if errors.Is(err, store.ErrNotFound) {
		fail(w, http.StatusNotFound, "no invite %d", id)
		return
	}
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusOK, struct {
		Revoked bool `json:"revoked"` // false: it was revoked already
	}{changed})
}
