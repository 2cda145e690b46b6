package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"rostergate/engine"
	"rostergate/gate"
	"rostergate/roster"
	"rostergate/store"
)

// badRequest is a request the bot must change: its status and why.
type badRequest struct {
	status int
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

func unprocessable(format string, args ...any) error {
	return &badRequest{http.StatusUnprocessableEntity, fmt.Sprintf(format, args...)}
}

// decode reads the body into v: JSON, one object, no unknown fields, at
// most max bytes.
func decode(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &badRequest{http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", max)}
	}
	if err != nil {
		return &badRequest{http.StatusBadRequest, "reading the body: " + err.Error()}
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes one JSON object into v, refusing unknown fields and
// anything after the object.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if errors.Is(err, io.EOF) {
			msg = "empty body"
		}
		return &badRequest{http.StatusBadRequest, "the body is not the JSON object asked for: " + msg}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &badRequest{http.StatusBadRequest, "the body holds more than one JSON value"}
	}
	return nil
}

// failWith answers err: a badRequest as it says, the engine's and the
// store's refusals by kind, anything else as an internal error (logged).
func (s *Server) failWith(w http.ResponseWriter, err error) {
	var br *badRequest
	var in *roster.InputError
	switch {
	case errors.As(err, &br):
		fail(w, br.status, "%s", br.msg)
	case errors.As(err, &in):
		fail(w, http.StatusUnprocessableEntity, "%s", in.Error())
	case errors.Is(err, engine.ErrNotConnected):
		w.Header().Set("Retry-After", "5")
		fail(w, http.StatusServiceUnavailable, "rostergate is not connected to its server: nothing was sent; try again")
	case errors.Is(err, engine.ErrNotSubscriber):
		fail(w, http.StatusForbidden, "%s (set send_to = \"anyone\" on the [[entity]] to lift this)", trimPkg(err))
	case errors.Is(err, store.ErrNotFound):
		fail(w, http.StatusNotFound, "%s", trimPkg(err))
	case errors.Is(err, gate.ErrNotEntity):
		fail(w, http.StatusNotFound, "%s", trimPkg(err))
	default:
		s.log.Error("HTTP API request failed", "err", err)
		fail(w, http.StatusInternalServerError, "internal error; see rostergate's log")
	}
}

// trimPkg returns err's text without the package prefixes that wrapping
// adds ("engine: ", "store: "): the bot reads what is wrong, not where.
func trimPkg(err error) string {
	msg := err.Error()
	for _, p := range []string{"engine: ", "gate: ", "sqlite: ", "store: ", "roster: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// parseJID parses a contact's JID from a request.
func parseJID(field, s string, bare bool) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, unprocessable("%s: required", field)
	}
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, unprocessable("%s: %q is not a JID: %v", field, s, err)
	}
	if bare && j.Resourcepart() != "" {
		return jid.JID{}, unprocessable("%s: %q is not a bare JID", field, s)
	}
	return j, nil
}

// maxText bounds a body, a status, a thread or an id in characters of
// XML; checkText refuses what no stanza can carry.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return unprocessable("%s: %d bytes, more than %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return unprocessable("%s: not UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return unprocessable("%s: holds the character %U, which XML does not allow", field, r)
		}
	}
	return nil
}

// rosterItem is an item of GET roster.
type rosterItem struct {
	JID          string                   `json:"jid"`
	Subscription string                   `json:"subscription"`
	PendingIn    bool                     `json:"pending_in"`
	PendingOut   bool                     `json:"pending_out"`
	Presence     []engine.ContactPresence `json:"presence"`
}

func (s *Server) getRoster(w http.ResponseWriter, r *http.Request, q request) {
	items, err := s.svc.BotRoster(r.Context(), q.entity)
	if err != nil {
		s.failWith(w, err)
		return
	}
	out := struct {
		Items []rosterItem `json:"items"`
	}{Items: make([]rosterItem, 0, len(items))}
	for _, it := range items {
		p := it.Presence
		if p == nil {
			p = []engine.ContactPresence{}
		}
		out.Items = append(out.Items, rosterItem{JID: it.Contact, Subscription: it.Sub, PendingIn: it.PendingIn, PendingOut: it.PendingOut, Presence: p})
	}
	reply(w, http.StatusOK, out)
}

// MessageRequest is the body of POST messages.
type MessageRequest struct {
	To     string `json:"to"`
	Body   string `json:"body"`
	Type   string `json:"type"`
	Thread string `json:"thread"`
	ID     string `json:"id"`
}

// check validates m and returns the message to send.
func (m MessageRequest) check() (engine.OutMessage, error) {
	to, err := parseJID("to", m.To, false)
	if err != nil {
		return engine.OutMessage{}, err
	}
	switch m.Type {
	case "":
		m.Type = "chat"
	case "chat", "normal", "headline":
	default:
		return engine.OutMessage{}, unprocessable("type: %q is not chat, normal or headline", m.Type)
	}
	if m.Body == "" {
		return engine.OutMessage{}, unprocessable("body: required")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"body", m.Body, 32 << 10}, {"thread", m.Thread, 256}, {"id", m.ID, 256}} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return engine.OutMessage{}, err
		}
	}
	return engine.OutMessage{To: to.String(), Type: m.Type, Body: m.Body, Thread: m.Thread, ID: m.ID}, nil
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request, q request) {
	var m MessageRequest
	if err := decode(w, r, s.opts.MaxBody, &m); err != nil {
		s.failWith(w, err)
		return
	}
	out, err := m.check()
	if err != nil {
		s.failWith(w, err)
		return
	}
	id, err := s.svc.SendMessage(r.Context(), q.actor, q.entity, out)
	if err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusAccepted, struct {
		ID string `json:"id"`
	}{id})
}

// PresenceRequest is the body of PUT presence.
type PresenceRequest struct {
	Show   string `json:"show"`
	Status string `json:"status"`
}

func (p PresenceRequest) check() error {
	switch p.Show {
	case "", "away", "chat", "dnd", "xa":
	default:
		return unprocessable("show: %q is not \"\", away, chat, dnd or xa", p.Show)
	}
	return checkText("status", p.Status, 1024)
}

func (s *Server) putPresence(w http.ResponseWriter, r *http.Request, q request) {
	var p PresenceRequest
	if err := decode(w, r, s.opts.MaxBody, &p); err != nil {
		s.failWith(w, err)
		return
	}
	if err := p.check(); err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.svc.SetPresence(r.Context(), q.actor, q.entity, &store.Presence{Show: p.Show, Status: p.Status}); err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusOK, p)
}

// deletePresence puts the entity's configured presence back.
func (s *Server) deletePresence(w http.ResponseWriter, r *http.Request, q request) {
	if err := s.svc.SetPresence(r.Context(), q.actor, q.entity, nil); err != nil {
		s.failWith(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// SubscriptionRequest is the body of POST subscriptions.
type SubscriptionRequest struct {
	JID string `json:"jid"`
}

func (s *Server) postSubscription(w http.ResponseWriter, r *http.Request, q request) {
	var sr SubscriptionRequest
	if err := decode(w, r, s.opts.MaxBody, &sr); err != nil {
		s.failWith(w, err)
		return
	}
	j, err := parseJID("jid", sr.JID, true)
	if err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.svc.Subscribe(r.Context(), q.actor, s.svc.EntityJID(q.entity), j.String()); err != nil {
		s.failWith(w, err)
		return
	}
	reply(w, http.StatusAccepted, struct {
		JID string `json:"jid"`
	}{j.String()})
}

func (s *Server) deleteContact(w http.ResponseWriter, r *http.Request, q request) {
	j, err := parseJID("jid", r.PathValue("jid"), true)
	if err != nil {
		s.failWith(w, err)
		return
	}
	if err := s.svc.Remove(r.Context(), q.actor, s.svc.EntityJID(q.entity), j.String()); err != nil {
		s.failWith(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Long polls wait at most maxWait; a page holds at most maxPage events.
const (
	maxWait = 120 * time.Second
	maxPage = 1000
)

func (s *Server) getEvents(w http.ResponseWriter, r *http.Request, q request) {
	qs := r.URL.Query()
	var after int64
	if v := qs.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			fail(w, http.StatusBadRequest, "after: %q is not an event id (a number, 0 or more)", v)
			return
		}
		after = n
	}
	var wait time.Duration
	if v := qs.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxWait {
			fail(w, http.StatusBadRequest, "wait: %q is not a duration from 0s to %s", v, maxWait)
			return
		}
		wait = d
	}
	limit := 100
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			fail(w, http.StatusBadRequest, "limit: %q is not a number from 1 to %d", v, maxPage)
			return
		}
		limit = n
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		// Take the signal before reading: an event committed in between
		// closes it.
		sig := s.svc.EventsSignal()
		evs, trimmed, err := s.svc.BotEvents(r.Context(), q.entity, after, limit)
		if err != nil {
			s.failWith(w, err)
			return
		}
		if len(evs) > 0 || wait == 0 || trimmed > after {
			// next_after: what to pass as after next time; past what
			// retention deleted, so that a trim is reported once.
			page := eventPage{Events: make([]json.RawMessage, 0, len(evs)), Trimmed: trimmed > after, NextAfter: max(after, trimmed)}
			for _, ev := range evs {
				page.Events = append(page.Events, s.eventJSON(ev))
				page.NextAfter = ev.ID
			}
			reply(w, http.StatusOK, page)
			return
		}
		select {
		case <-sig:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

// eventPage is the answer of GET events.
type eventPage struct {
	Events    []json.RawMessage `json:"events"`
	Trimmed   bool              `json:"trimmed"`    // events after "after" were deleted by retention before being read
	NextAfter int64             `json:"next_after"` // the after of the next call
}

// eventJSON is an event as the long poll and the webhook give it:
// {"id","type","at","entity", <type>: {…}}.
func (s *Server) eventJSON(ev store.BotEvent) json.RawMessage {
	var b bytes.Buffer
	str := func(v string) {
		p, _ := json.Marshal(v)
		b.Write(p)
	}
	b.WriteString(`{"id":`)
	b.WriteString(strconv.FormatInt(ev.ID, 10))
	b.WriteString(`,"type":`)
	str(ev.Type)
	b.WriteString(`,"at":`)
	str(ev.At.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString(`,"entity":`)
	str(s.svc.EntityJID(ev.Entity))
	b.WriteString(`,`)
	str(ev.Type)
	b.WriteString(`:`)
	b.WriteString(ev.Data)
	b.WriteString(`}`)
	return b.Bytes()
}
