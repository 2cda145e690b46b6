package webui

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rostergate/gate"
	"rostergate/roster"
	"rostergate/store"

	"mellium.im/xmpp/jid"
)

// --- login ---

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(h.cookie); err == nil {
		if _, err := h.svc.Session(r.Context(), c.Value, false); err == nil {
			http.Redirect(w, r, "/inbox", http.StatusSeeOther)
			return
		}
	}
	h.render(w, http.StatusOK, "login", page{Title: "Log in", Domain: h.svc.Domain()})
}

// loginSend sends a login link to the JID given, if it is an admin's; the
// answer is the same either way, so that the page tells no one who the
// admins are.
func (h *Handler) loginSend(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Log in", Domain: h.svc.Domain()}
	j := strings.TrimSpace(r.PostFormValue("jid"))
	if j == "" {
		p.Errors = []string{"Give the JID of your admin account, e.g. admin@example.com."}
		h.render(w, http.StatusUnprocessableEntity, "login", p)
		return
	}
	pj, err := jid.Parse(j)
	if err != nil || pj.Localpart() == "" {
		p.Errors = []string{fmt.Sprintf("%q is not the JID of an account (as admin@example.com)", j)}
		h.render(w, http.StatusUnprocessableEntity, "login", p)
		return
	}
	j = pj.Bare().String()
	now := h.now()
	if !h.sends.Allow(clientIP(r), now) || !h.sendsAll.Allow("", now) {
		w.Header().Set("Retry-After", "60")
		p.Errors = []string{"Too many login links asked for; wait a minute. Or send \"login\" to " + h.svc.Domain() + " over XMPP."}
		h.render(w, http.StatusTooManyRequests, "login", p)
		return
	}
	// At most one link a minute to a JID, sent after the answer: the
	// answer is the same, and as quick, whoever the JID is.
	if h.sendsTo.Allow(j, now) {
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			if err := h.svc.SendLoginLink(ctx, j); err != nil {
				h.log.Info("no login link sent", "jid", j, "why", err)
			} else {
				h.log.Info("login link sent over XMPP", "admin", j)
			}
		}()
	}
	p.Notes = []string{"If " + j + " is an admin of " + h.svc.Domain() + ", a login link is on its way to it over XMPP (it works once, within minutes)."}
	h.render(w, http.StatusOK, "login", p)
}

// loginLink shows a login link's page: a button that uses it. The link is
// not used by opening it, since chat clients and previews fetch links on
// their own.
func (h *Handler) loginLink(w http.ResponseWriter, r *http.Request) {
	secret := r.PathValue("secret")
	k, err := h.svc.WebLogin(r.Context(), secret)
	if err != nil {
		h.refuseLogin(w, r, err)
		return
	}
	h.render(w, http.StatusOK, "loginlink", page{Title: "Log in", Domain: h.svc.Domain(), Data: struct {
		JID, Secret string
		Expires     time.Time
	}{k.JID, secret, k.Expires}})
}

func (h *Handler) loginUse(w http.ResponseWriter, r *http.Request) {
	sec, k, err := h.svc.Login(r.Context(), r.PathValue("secret"))
	if err != nil {
		h.refuseLogin(w, r, err)
		return
	}
	h.setCookie(w, sec, k.Until)
	h.log.Info("logged in", "admin", k.JID)
	http.Redirect(w, r, "/inbox", http.StatusSeeOther)
}

func (h *Handler) refuseLogin(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, gate.ErrLogin) {
		h.log.Error("checking a login link", "err", err)
		h.fail(w, r, http.StatusInternalServerError, "The login could not be checked: "+err.Error())
		return
	}
	h.log.Warn("login link refused", "why", err)
	msg := strings.TrimPrefix(err.Error(), "gate: ")
	h.fail(w, r, http.StatusForbidden, "This login link does not work: "+msg+". Send \"login\" to "+h.svc.Domain()+" over XMPP for a new one.")
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s session) {
	if err := h.svc.Logout(r.Context(), s.secret); err != nil {
		h.fail(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	h.clearCookie(w)
	h.log.Info("logged out", "admin", s.JID)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- inbox ---

// inboxFilter is what the inbox shows: requests to one entity, from one
// domain, or with a text in them.
type inboxFilter struct {
	Entity, Domain, Q string
	Highlight         int64
}

func readInboxFilter(r *http.Request) inboxFilter {
	q := r.URL.Query()
	f := inboxFilter{Entity: q.Get("entity"), Domain: strings.ToLower(strings.TrimSpace(q.Get("domain"))), Q: strings.TrimSpace(q.Get("q"))}
	f.Highlight, _ = strconv.ParseInt(q.Get("id"), 10, 64)
	return f
}

func (f inboxFilter) query() string {
	v := url.Values{}
	if f.Entity != "" {
		v.Set("entity", f.Entity)
	}
	if f.Domain != "" {
		v.Set("domain", f.Domain)
	}
	if f.Q != "" {
		v.Set("q", f.Q)
	}
	return v.Encode()
}

// request is a held request as the inbox shows it.
type request struct {
	roster.Request
	EntityJID string
	Why       string
	Waiting   string
	Highlight bool
}

type inboxData struct {
	Filter   inboxFilter
	Filtered bool
	// Action is where the decisions go (the inbox, filtered as it is
	// shown); RowsURL where the live update reads the rows.
	Action, RowsURL template.URL
	Entities        []string // JIDs
	Rows            []request
	Total           int // held, before the filter
}

func (h *Handler) inboxData(ctx context.Context, f inboxFilter) (inboxData, error) {
	reqs, err := h.svc.Pending(ctx)
	if err != nil {
		return inboxData{}, err
	}
	d := inboxData{Filter: f, Total: len(reqs), Action: "/inbox", RowsURL: "/inbox/rows"}
	if q := f.query(); q != "" {
		d.Filtered, d.Action, d.RowsURL = true, template.URL("/inbox?"+q), template.URL("/inbox/rows?"+q)
	}
	for _, e := range h.svc.Entities() {
		d.Entities = append(d.Entities, h.svc.EntityJID(e))
	}
	q := strings.ToLower(f.Q)
	for _, r := range reqs {
		ej := h.svc.EntityJID(r.Entity)
		why := h.svc.HeldReason(r.Rule)
		switch {
		case f.Entity != "" && f.Entity != ej:
			continue
		case f.Domain != "" && domainOf(r.Contact) != f.Domain:
			continue
		case q != "" && !strings.Contains(strings.ToLower(r.Contact+" "+ej+" "+why), q):
			continue
		}
		d.Rows = append(d.Rows, request{Request: r, EntityJID: ej, Why: why, Waiting: ago(r.Created), Highlight: r.ID == f.Highlight})
	}
	return d, nil
}

func domainOf(j string) string {
	if i := strings.LastIndexByte(j, '@'); i >= 0 {
		return j[i+1:]
	}
	return j
}

func (h *Handler) inbox(w http.ResponseWriter, r *http.Request, s session) {
	h.showInbox(w, r, s, http.StatusOK, nil, nil)
}

// refuseDecision shows the inbox with what is wrong with a decision's form.
func (h *Handler) refuseDecision(w http.ResponseWriter, r *http.Request, s session, msg string) {
	h.showInbox(w, r, s, http.StatusUnprocessableEntity, nil, []string{msg})
}

func (h *Handler) showInbox(w http.ResponseWriter, r *http.Request, s session, status int, notes, errs []string) {
	p := h.newPage(r.Context(), s, "Inbox", "inbox")
	p.Notes, p.Errors = notes, errs
	d, err := h.inboxData(r.Context(), readInboxFilter(r))
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The held requests could not be read: "+err.Error())
		return
	}
	p.Data = d
	h.render(w, status, "inbox", p)
}

// inboxRows is the inbox's table body alone, for the live update.
func (h *Handler) inboxRows(w http.ResponseWriter, r *http.Request, s session) {
	d, err := h.inboxData(r.Context(), readInboxFilter(r))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Held", strconv.Itoa(d.Total))
	if err := h.pages["inbox"].ExecuteTemplate(w, "rows", page{CSRF: s.CSRF, Data: d}); err != nil {
		h.log.Error("rendering the inbox's rows", "err", err)
	}
}

// inboxEvents tells the page (server-sent events) when the held requests
// change: one arrives, or someone decides one, through any interface and
// any instance. One watcher reads the store for every open page (hub); the
// session is checked every 30 s, and the stream ends with it.
func (h *Handler) inboxEvents(w http.ResponseWriter, r *http.Request, s session) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "webui: streaming unsupported", http.StatusInternalServerError)
		return
	}
	rc := http.NewResponseController(w)
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !send("retry: 5000\n\n") {
		return
	}
	ch, done := h.hub.subscribe()
	defer done()
	ctx := r.Context()
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	check := time.NewTicker(30 * time.Second)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-ch:
			if !send("event: changed\ndata: %d\n\n", st.n) {
				return
			}
		case <-beat.C:
			if !send(": still here\n\n") {
				return
			}
		case <-check.C:
			if _, err := h.svc.Session(ctx, s.secret, false); err != nil {
				send("event: ended\ndata: the session ended\n\n")
				return
			}
		}
	}
}

// version names a set of held requests.
func version(reqs []roster.Request) string {
	hs := sha256.New()
	for _, r := range reqs {
		fmt.Fprintf(hs, "%d,", r.ID)
	}
	return hex.EncodeToString(hs.Sum(nil))
}

// maxDecide bounds the requests one form decides.
const maxDecide = 500

// decide approves or rejects the requests ticked (or the one whose button
// was pressed), then shows the inbox with what came of each.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, s session) {
	var ids []int64
	action := r.PostFormValue("action")
	if one := r.PostFormValue("one"); one != "" {
		a, id, ok := strings.Cut(one, ":")
		n, err := strconv.ParseInt(id, 10, 64)
		if !ok || err != nil || n <= 0 {
			h.refuseDecision(w, r, s, fmt.Sprintf("%q is not an act on a request", one))
			return
		}
		action, ids = a, []int64{n}
	} else {
		if n := len(r.PostForm["id"]); n > maxDecide {
			h.refuseDecision(w, r, s, fmt.Sprintf("%d requests at once; at most %d.", n, maxDecide))
			return
		}
		seen := map[int64]bool{}
		for _, v := range r.PostForm["id"] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				h.refuseDecision(w, r, s, fmt.Sprintf("%q is not a request id", v))
				return
			}
			if !seen[n] {
				seen[n] = true
				ids = append(ids, n)
			}
		}
	}
	if action != "approve" && action != "reject" {
		h.refuseDecision(w, r, s, fmt.Sprintf("%q is neither approve nor reject", action))
		return
	}
	if len(ids) == 0 {
		h.refuseDecision(w, r, s, "No request ticked: tick the requests to "+action+".")
		return
	}
	outs, err := h.svc.Decide(r.Context(), s.actor(), ids, action == "approve")
	if err != nil {
		h.showInbox(w, r, s, http.StatusInternalServerError, nil, []string{roster.UserText(err)})
		return
	}
	var notes, errs []string
	verb := map[bool]string{true: "Approved", false: "Rejected"}[action == "approve"]
	for i, o := range outs {
		id := ids[i]
		var de *roster.DecidedError
		switch {
		case o.Err == nil:
			line := fmt.Sprintf("%s #%d: %s → %s", verb, id, o.Request.Contact, h.svc.EntityJID(o.Request.Entity))
			if action == "approve" && o.Request.SubscribeBack {
				line += " (and subscribed back)"
			}
			notes = append(notes, line)
		case errors.As(o.Err, &de):
			errs = append(errs, fmt.Sprintf("#%d is not pending: %s", id, strings.TrimPrefix(de.Error(), fmt.Sprintf("request #%d ", id))))
		case errors.Is(o.Err, store.ErrNotFound):
			errs = append(errs, fmt.Sprintf("#%d is not pending (unknown, or withdrawn by its requester)", id))
		default:
			errs = append(errs, fmt.Sprintf("#%d: %s", id, roster.UserText(o.Err)))
		}
	}
	h.showInbox(w, r, s, http.StatusOK, notes, errs)
}

// --- audit ---

// auditPage is how many events a page of the audit log shows.
const auditPage = 100

type auditFilter struct {
	Entity, Contact, Action, Via, Since string
}

type auditData struct {
	Filter        auditFilter
	CSV, JSON     template.URL // the matches as files
	Older         template.URL // the next page; "" if none
	Events        []roster.Event
	Actions, Vias []string
	Entities      []string // JIDs
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request, s session) {
	v := r.URL.Query()
	f := auditFilter{Entity: strings.TrimSpace(v.Get("entity")), Contact: strings.TrimSpace(v.Get("contact")), Action: strings.TrimSpace(v.Get("action")),
		Via: v.Get("via"), Since: strings.TrimSpace(v.Get("since"))}
	p := h.newPage(r.Context(), s, "Audit log", "audit")
	q := store.AuditQuery{Contact: f.Contact, Action: f.Action, Via: f.Via}
	if f.Since != "" {
		t, err := time.Parse("2006-01-02", f.Since)
		if err != nil {
			p.Errors = append(p.Errors, fmt.Sprintf("since: %q is not a date as 2026-12-31", f.Since))
		}
		q.Since = t
	}
	if b := v.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			p.Errors = append(p.Errors, fmt.Sprintf("before: %q is not an event id", b))
		}
		q.Before = n
	}
	if f.Entity != "" {
		local, err := roster.ParseEntity(h.svc.Domain(), f.Entity)
		if err != nil {
			p.Errors = append(p.Errors, "entity: "+roster.UserText(err))
		}
		q.Entity, q.HasEntity = local, true
	}
	if len(p.Errors) > 0 {
		p.Data = auditData{Filter: f}
		h.render(w, http.StatusUnprocessableEntity, "audit", p)
		return
	}
	switch format := v.Get("format"); format {
	case "", "html":
	case "csv", "json":
		h.auditDownload(w, r, q, format)
		return
	default:
		h.fail(w, r, http.StatusUnprocessableEntity, fmt.Sprintf("format: %q is not one of csv, json", format))
		return
	}
	q.Desc, q.Limit = true, auditPage+1
	evs, err := h.svc.AuditPage(r.Context(), q)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The audit log could not be read: "+err.Error())
		return
	}
	keep := url.Values{}
	for k, x := range map[string]string{"entity": f.Entity, "contact": f.Contact, "action": f.Action, "via": f.Via, "since": f.Since} {
		if x != "" {
			keep.Set(k, x)
		}
	}
	link := func(k, x string) template.URL {
		l := url.Values{}
		for kk, vv := range keep {
			l[kk] = vv
		}
		l.Set(k, x)
		return template.URL("/audit?" + l.Encode())
	}
	d := auditData{Filter: f, CSV: link("format", "csv"), JSON: link("format", "json"),
		Actions: []string{"accept", "reject", "review", "drop", "state", "add", "remove"},
		Vias:    []string{roster.ViaStream, roster.ViaChat, roster.ViaAdhoc, roster.ViaCLI, roster.ViaWeb, roster.ViaAPI, roster.ViaTTL}}
	if len(evs) > auditPage {
		evs = evs[:auditPage]
		d.Older = link("before", strconv.FormatInt(evs[len(evs)-1].ID, 10))
	}
	for _, e := range h.svc.Entities() {
		d.Entities = append(d.Entities, h.svc.EntityJID(e))
	}
	d.Events = evs
	p.Data = d
	h.render(w, http.StatusOK, "audit", p)
}

// auditDownload writes the matching events, oldest first, as CSV or JSON:
// read a thousand at a time, so that no read of the store stays open on a
// slow download. A download cut short by an error is aborted, not ended
// cleanly.
func (h *Handler) auditDownload(w http.ResponseWriter, r *http.Request, q store.AuditQuery, format string) {
	name := "rostergate-audit-" + h.now().UTC().Format("20060102-150405") + "." + format
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	type row struct {
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
	rc := http.NewResponseController(w)
	var cw *csv.Writer
	var enc *json.Encoder
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw = csv.NewWriter(w)
		_ = cw.Write([]string{"id", "at", "entity", "contact", "kind", "action", "rule", "from", "to", "actor", "via", "detail"})
	} else {
		w.Header().Set("Content-Type", "application/json")
		enc = json.NewEncoder(w)
		_, _ = w.Write([]byte("["))
	}
	abort := func(err error) {
		h.log.Error("audit download cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	q.Limit, q.Desc = 1000, false
	first := true
	for {
		evs, err := h.svc.AuditPage(r.Context(), q)
		if err != nil {
			abort(err)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for _, e := range evs {
			ej := h.svc.EntityJID(e.Entity)
			if cw != nil {
				err = cw.Write([]string{strconv.FormatInt(e.ID, 10), e.At.UTC().Format(time.RFC3339Nano), cell(ej), cell(e.Contact), cell(e.Kind),
					cell(e.Action), cell(e.Rule), cell(e.From), cell(e.To), cell(e.Actor), cell(e.Interface), cell(e.Detail)})
			} else {
				if !first {
					_, err = w.Write([]byte(","))
				}
				if err == nil {
					err = enc.Encode(row{e.ID, e.At.UTC(), ej, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail})
				}
			}
			if err != nil {
				abort(err)
			}
			first = false
		}
		if len(evs) < q.Limit {
			break
		}
		q.After = evs[len(evs)-1].ID
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			abort(err)
		}
	} else if _, err := w.Write([]byte("]\n")); err != nil {
		abort(err)
	}
}

// cell keeps a spreadsheet from reading a value as a formula.
func cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// --- rosters ---

func (h *Handler) rosters(w http.ResponseWriter, r *http.Request, s session) {
	p := h.newPage(r.Context(), s, "Rosters", "rosters")
	type ent struct{ Local, JID string }
	var es []ent
	for _, e := range h.svc.Entities() {
		es = append(es, ent{e, h.svc.EntityJID(e)})
	}
	p.Data = es
	h.render(w, http.StatusOK, "rosters", p)
}

// maxRoster bounds the items a roster page lists.
const maxRoster = 1000

func (h *Handler) roster(w http.ResponseWriter, r *http.Request, s session) {
	name := r.PathValue("entity")
	local, err := roster.ParseEntity(h.svc.Domain(), name)
	if err != nil {
		h.fail(w, r, http.StatusNotFound, roster.UserText(err))
		return
	}
	if !h.svc.IsEntity(local) {
		h.fail(w, r, http.StatusNotFound, h.svc.EntityJID(local)+" is not an entity (no [[entity]] with local = \""+local+"\").")
		return
	}
	items, err := h.svc.Roster(r.Context(), h.svc.EntityJID(local), maxRoster+1)
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, roster.UserText(err))
		return
	}
	ej := h.svc.EntityJID(local)
	p := h.newPage(r.Context(), s, "Roster of "+ej, "rosters")
	more := len(items) > maxRoster
	if more {
		items = items[:maxRoster]
	}
	p.Data = struct {
		JID   string
		Items []roster.Item
		More  bool
		Max   int
	}{ej, items, more, maxRoster}
	h.render(w, http.StatusOK, "roster", p)
}

// --- lists ---

func (h *Handler) lists(w http.ResponseWriter, r *http.Request, s session) {
	h.showLists(w, r, s, http.StatusOK, nil, nil)
}

func (h *Handler) showLists(w http.ResponseWriter, r *http.Request, s session, status int, notes, errs []string) {
	p := h.newPage(r.Context(), s, "Allow and deny lists", "lists")
	p.Notes, p.Errors = notes, errs
	allow, deny, err := h.svc.Lists(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The lists could not be read: "+err.Error())
		return
	}
	p.Data = struct{ Allow, Deny []string }{allow, deny}
	h.render(w, status, "lists", p)
}

func (h *Handler) editList(w http.ResponseWriter, r *http.Request, s session) {
	list, op, pattern := r.PostFormValue("list"), r.PostFormValue("op"), strings.TrimSpace(r.PostFormValue("pattern"))
	if list != "allow" && list != "deny" {
		h.showLists(w, r, s, http.StatusUnprocessableEntity, nil, []string{fmt.Sprintf("list: %q is neither allow nor deny", list)})
		return
	}
	if op != "add" && op != "remove" {
		h.showLists(w, r, s, http.StatusUnprocessableEntity, nil, []string{fmt.Sprintf("op: %q is neither add nor remove", op)})
		return
	}
	if pattern == "" {
		h.showLists(w, r, s, http.StatusUnprocessableEntity, nil, []string{"No pattern given: a JID, or a pattern such as *@example.com."})
		return
	}
	changed, err := h.svc.EditList(r.Context(), s.actor(), list, op == "add", pattern)
	if err != nil {
		h.showLists(w, r, s, http.StatusUnprocessableEntity, nil, []string{roster.UserText(err)})
		return
	}
	var note string
	switch {
	case changed && op == "add":
		note = fmt.Sprintf("Added %q to the %s list.", pattern, list)
	case changed:
		note = fmt.Sprintf("Removed %q from the %s list.", pattern, list)
	case op == "add":
		note = fmt.Sprintf("%q was already on the %s list.", pattern, list)
	default:
		note = fmt.Sprintf("%q was not on the %s list.", pattern, list)
	}
	h.showLists(w, r, s, http.StatusOK, []string{note}, nil)
}

// --- explain ---

func (h *Handler) explain(w http.ResponseWriter, r *http.Request, s session) {
	p := h.newPage(r.Context(), s, "Explain", "explain")
	q := r.URL.Query()
	contact, entity := strings.TrimSpace(q.Get("contact")), strings.TrimSpace(q.Get("entity"))
	d := struct {
		Contact, Entity string
		Entities        []string
		Result          *roster.Explanation
	}{Contact: contact, Entity: entity, Entities: h.svc.Entities()}
	status := http.StatusOK
	if contact != "" || entity != "" {
		ex, err := h.svc.Explain(r.Context(), contact, entity)
		if err != nil {
			p.Errors = []string{roster.UserText(err)}
			status = http.StatusUnprocessableEntity
		} else {
			d.Result = &ex
		}
	}
	p.Data = d
	h.render(w, status, "explain", p)
}

// clientIP is the address a request came from (no proxy is trusted); an
// IPv6 address stands for its /64, which one host may hold whole.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}
