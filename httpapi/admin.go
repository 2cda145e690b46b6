package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// The admin API (/api/v1/admin/), for admin tokens (rostergate token create
// -admin): what the web page and the chat commands do, as JSON. Acts are
// audited as "token:ID" through "api".

func (s *Server) adminRoutes(mux *http.ServeMux) {
	const a = "/api/v1/admin/"
	mux.HandleFunc("GET "+a+"requests", s.adminOnly(s.adminRequests))
	mux.HandleFunc("POST "+a+"requests/decide", s.adminOnly(s.adminDecide))
	mux.HandleFunc("GET "+a+"lists", s.adminOnly(s.adminLists))
	mux.HandleFunc("POST "+a+"lists/{list}", s.adminOnly(s.adminEditList(true)))
	mux.HandleFunc("DELETE "+a+"lists/{list}", s.adminOnly(s.adminEditList(false)))
	mux.HandleFunc("GET "+a+"explain", s.adminOnly(s.adminExplain))
	mux.HandleFunc("GET "+a+"audit", s.adminOnly(s.adminAudit))
	mux.HandleFunc("GET "+a+"entities/{entity}/roster", s.adminOnly(s.adminRoster))
	mux.HandleFunc("GET "+a+"invites", s.adminOnly(s.adminInvites))
	mux.HandleFunc("POST "+a+"invites", s.adminOnly(s.adminCreateInvite))
	mux.HandleFunc("DELETE "+a+"invites/{id}", s.adminOnly(s.adminRevokeInvite))
}

func tokenActor(t store.Token) roster.Actor {
	return roster.Actor{JID: "token:" + strconv.FormatInt(t.ID, 10), Via: roster.ViaAPI}
}

// HeldRequest is a held request in the admin API.
type HeldRequest struct {
	ID            int64     `json:"id"`
	Entity        string    `json:"entity"` // its JID
	Contact       string    `json:"contact"`
	Rule          string    `json:"rule"`
	Why           string    `json:"why"`
	SubscribeBack bool      `json:"subscribe_back"`
	Created       time.Time `json:"created"`
}

func (s *Server) heldRequest(r roster.Request) HeldRequest {
	return HeldRequest{ID: r.ID, Entity: s.svc.EntityJID(r.Entity), Contact: r.Contact, Rule: r.Rule,
		Why: s.svc.HeldReason(r.Rule), SubscribeBack: r.SubscribeBack, Created: r.Created.UTC()}
}

func (s *Server) adminRequests(w http.ResponseWriter, r *http.Request, _ store.Token) {
	reqs, err := s.svc.Pending(r.Context())
	if err != nil {
		s.failWith(w, err)
		return
	}
	out := make([]HeldRequest, 0, len(reqs))
	for _, q := range reqs {
		out = append(out, s.heldRequest(q))
	}
	reply(w, http.StatusOK, struct {
		Requests []HeldRequest `json:"requests"`
	}{out})
}

// DecideRequest is the body of POST /api/v1/admin/requests/decide.
type DecideRequest struct {
	IDs    []int64 `json:"ids"`
	Action string  `json:"action"` // approve or reject
}

// Decision is what came of deciding one request: OK, or Error saying why
// not (e.g. who decided it already).
type Decision struct {
	ID      int64        `json:"id"`
	OK      bool         `json:"ok"`
	Request *HeldRequest `json:"request,omitempty"`
	Error   string       `json:"error,omitempty"`
}

func (s *Server) adminDecide(w http.ResponseWriter, r *http.Request, t store.Token) {
	var q DecideRequest
	if err := decode(w, r, s.opts.MaxBody, &q); err != nil {
		s.failWith(w, err)
		return
	}
	switch {
	case q.Action != "approve" && q.Action != "reject":
		fail(w, http.StatusUnprocessableEntity, "action: %q is neither approve nor reject", q.Action)
		return
	case len(q.IDs) == 0:
		fail(w, http.StatusUnprocessableEntity, "ids: no request id given")
		return
	case len(q.IDs) > 1000:
		fail(w, http.StatusUnprocessableEntity, "ids: %d at once; at most 1000", len(q.IDs))
		return
	}
	for _, id := range q.IDs {
		if id <= 0 {
			fail(w, http.StatusUnprocessableEntity, "ids: %d is not a request id", id)
			return
		}
	}
	outs, err := s.svc.Decide(r.Context(), tokenActor(t), q.IDs, q.Action == "approve")
	if err != nil {
		s.failWith(w, err)
		return
	}
	res := make([]Decision, len(q.IDs))
	for i, id := range q.IDs {
		res[i] = Decision{ID: id}
		if i >= len(outs) {
			res[i].Error = "no outcome"
			continue
		}
		o := outs[i]
		var de *roster.DecidedError
		switch {
		case o.Err == nil:
			hr := s.heldRequest(o.Request)
			res[i].OK, res[i].Request = true, &hr
		case errors.As(o.Err, &de):
			res[i].Error = "not pending: " + strings.TrimPrefix(de.Error(), fmt.Sprintf("request #%d ", id))
		case errors.Is(o.Err, store.ErrNotFound):
			res[i].Error = "not pending (unknown, or withdrawn by its requester)"
		default:
			res[i].Error = trimPkg(o.Err)
		}
	}
	reply(w, http.StatusOK, struct {
		Results []Decision `json:"results"`
	}{res})
}

type listsBody struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

// lists reads the lists, empty ones as [] rather than null.
func (s *Server) lists(ctx context.Context) (listsBody, error) {
	allow, deny, err := s.svc.Lists(ctx)
	if allow == nil {
		allow = []string{}
	}
	if deny == nil {
		deny = []string{}
	}
	return listsBody{allow, deny}, err
}

func (s *Server) adminLists(w http.ResponseWriter, r *http.Request, _ store.Token) {
	l, err := s.lists(r.Context())
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusOK, l)
}

// PatternRequest is the body that adds a pattern to a list, or removes it.
type PatternRequest struct {
	Pattern string `json:"pattern"`
}

func (s *Server) adminEditList(add bool) func(http.ResponseWriter, *http.Request, store.Token) {
	return func(w http.ResponseWriter, r *http.Request, t store.Token) {
		list := r.PathValue("list")
		if list != "allow" && list != "deny" {
			fail(w, http.StatusNotFound, "no list %q: the lists are allow and deny", list)
			return
		}
		var q PatternRequest
		if p := r.URL.Query().Get("pattern"); p != "" && !add {
			q.Pattern = p // DELETE …/lists/deny?pattern=… (a DELETE's body is often dropped)
		} else if err := decode(w, r, s.opts.MaxBody, &q); err != nil {
			s.failWith(w, err)
			return
		}
		if strings.TrimSpace(q.Pattern) == "" {
			fail(w, http.StatusUnprocessableEntity, "pattern: empty")
			return
		}
		changed, err := s.svc.EditList(r.Context(), tokenActor(t), list, add, q.Pattern)
		if err != nil {
			fail(w, http.StatusUnprocessableEntity, "%s", trimPkg(err))
			return
		}
		l, err := s.lists(r.Context())
		if err != nil {
			s.failWith(w, err)
			return
		}
		reply(w, http.StatusOK, struct {
			Changed bool `json:"changed"`
			listsBody
		}{changed, l})
	}
}

func (s *Server) adminExplain(w http.ResponseWriter, r *http.Request, _ store.Token) {
	q := r.URL.Query()
	contact, entity := q.Get("contact"), q.Get("entity")
	if contact == "" || entity == "" {
		fail(w, http.StatusUnprocessableEntity, "give contact and entity: ?contact=alice@example.com&entity=helpdesk")
		return
	}
	ex, err := s.svc.Explain(r.Context(), contact, entity)
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusOK, struct {
		Contact       string   `json:"contact"`
		Entity        string   `json:"entity"`
		Action        string   `json:"action"`
		SubscribeBack bool     `json:"subscribe_back"`
		Rule          string   `json:"rule"`
		Message       string   `json:"message,omitempty"`
		KnownEntity   bool     `json:"known_entity"`
		Note          string   `json:"note,omitempty"`
		Groups        []string `json:"groups,omitempty"`
	}{ex.Contact, ex.Entity, ex.Action, ex.SubscribeBack, ex.Rule, ex.Message, ex.KnownEntity, ex.Note, ex.Groups})
}

// AuditEvent is an event of the audit log in the admin API.
type AuditEvent struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Entity  string    `json:"entity"`
	Contact string    `json:"contact"`
	Kind    string    `json:"kind"`
	Action  string    `json:"action"`
	Rule    string    `json:"rule,omitempty"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to,omitempty"`
	Actor   string    `json:"actor"`
	Via     string    `json:"via"`
	Detail  string    `json:"detail,omitempty"`
}

// adminAudit pages through the audit log, oldest first: ?after=ID (the
// last id of the previous page), ?since=RFC 3339 time, ?limit (default
// 100, at most 1000).
func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request, _ store.Token) {
	q := r.URL.Query()
	var after int64
	var since time.Time
	limit := 100
	var err error
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			fail(w, http.StatusUnprocessableEntity, "after: %q is not an event id", v)
			return
		}
	}
	if v := q.Get("since"); v != "" {
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			fail(w, http.StatusUnprocessableEntity, "since: %q is not an RFC 3339 time (as 2026-12-01T00:00:00Z)", v)
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			fail(w, http.StatusUnprocessableEntity, "limit: %q is not a number from 1 to 1000", v)
			return
		}
	}
	evs, err := s.svc.AuditPage(r.Context(), store.AuditQuery{After: after, Since: since, Limit: limit + 1})
	if err != nil {
		s.failWith(w, err)
		return
	}
	more := len(evs) > limit
	if more {
		evs = evs[:limit]
	}
	out := make([]AuditEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, AuditEvent{e.ID, e.At.UTC(), s.svc.EntityJID(e.Entity), e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail})
	}
	next := after
	if len(out) > 0 {
		next = out[len(out)-1].ID
	}
	reply(w, http.StatusOK, struct {
		Events    []AuditEvent `json:"events"`
		More      bool         `json:"more"`
		NextAfter int64        `json:"next_after"`
	}{out, more, next})
}

func (s *Server) adminRoster(w http.ResponseWriter, r *http.Request, _ store.Token) {
	local, err := roster.ParseEntity(s.svc.Domain(), r.PathValue("entity"))
	if err != nil {
		s.failWith(w, err)
		return
	}
	if !s.svc.IsEntity(local) {
		fail(w, http.StatusNotFound, "%s is not an entity", s.svc.EntityJID(local))
		return
	}
	type item struct {
		Contact      string     `json:"contact"`
		Subscription string     `json:"subscription"`
		PendingOut   bool       `json:"pending_out"`
		PendingIn    bool       `json:"pending_in"`
		Approved     bool       `json:"approved"`
		PendingSince *time.Time `json:"pending_since,omitempty"`
		Updated      time.Time  `json:"updated"`
	}
	items := []item{}
	err = s.svc.EntityItems(r.Context(), s.svc.EntityJID(local), func(it roster.Item) error {
		sub := it.Sub
		if sub == "" {
			sub = roster.SubNone
		}
		x := item{Contact: it.Contact, Subscription: sub, PendingOut: it.PendingOut, PendingIn: it.PendingIn, Approved: it.Approved, Updated: it.Updated.UTC()}
		if !it.PendingSince.IsZero() {
			ps := it.PendingSince.UTC()
			x.PendingSince = &ps
		}
		items = append(items, x)
		return nil
	})
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusOK, struct {
		Entity string `json:"entity"`
		Items  []item `json:"items"`
	}{s.svc.EntityJID(local), items})
}
