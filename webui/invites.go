package webui

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"rostergate/gate"
	"rostergate/roster"
	"rostergate/store"
)

// Invites (XEP-0379 pre-authenticated subscription links): the admins'
// page that lists, makes and revokes them, and the public page an invite's
// link leads to (/invite/TOKEN: the xmpp: link, its QR code, which apps
// take it). The public page needs no login: whoever has the token may see
// what it is for, and nothing else (not who made it, nor other invites).

// maxInvitesShown bounds the invites the page lists, the newest first.
const maxInvitesShown = 500

// inviteRow is an invite as the page lists it.
type inviteRow struct {
	store.Invite
	EntityJID string
	State     string // usable, revoked, expired or used up
	Usable    bool
}

// inviteForm is what the form to make an invite holds (again, after a
// refusal).
type inviteForm struct {
	Entity, TTL, Uses string
	Back              bool
}

// newInvite is an invite just made, shown this once.
type newInvite struct {
	ID        int64
	EntityJID string
	Terms     string
	URI       string
	Landing   string
	QR        string // the QR code's path
}

type invitesData struct {
	Entities []entityChoice
	Form     inviteForm
	New      *newInvite
	Rows     []inviteRow
	More     int // invites not listed
}

type entityChoice struct{ Local, JID string }

func (h *Handler) invites(w http.ResponseWriter, r *http.Request, s session) {
	h.showInvites(w, r, s, http.StatusOK, nil, nil, nil, defaultForm())
}

func defaultForm() inviteForm {
	return inviteForm{TTL: shortDuration(gate.DefaultInviteTTL), Uses: strconv.Itoa(gate.DefaultInviteUses)}
}

// shortDuration is d as "72h" rather than "72h0m0s" when it is whole hours.
func shortDuration(d time.Duration) string {
	if d > 0 && d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

func (h *Handler) showInvites(w http.ResponseWriter, r *http.Request, s session, status int, notes, errs []string, made *newInvite, f inviteForm) {
	p := h.newPage(r.Context(), s, "Invites", "invites")
	p.Notes, p.Errors = notes, errs
	invs, err := h.svc.Invites(r.Context())
	if err != nil {
		h.fail(w, r, http.StatusInternalServerError, "The invites could not be read: "+err.Error())
		return
	}
	d := invitesData{Form: f, New: made}
	for _, e := range h.svc.Entities() {
		if e != "" { // the domain itself takes no invites
			d.Entities = append(d.Entities, entityChoice{e, h.svc.EntityJID(e)})
		}
	}
	now := h.now()
	slices.Reverse(invs)
	if len(invs) > maxInvitesShown {
		d.More = len(invs) - maxInvitesShown
		invs = invs[:maxInvitesShown]
	}
	for _, inv := range invs {
		state := inv.Unusable(now, 0)
		if state == "" {
			state = "usable"
		}
		d.Rows = append(d.Rows, inviteRow{Invite: inv, EntityJID: h.svc.EntityJID(inv.Entity), State: state, Usable: state == "usable"})
	}
	p.Data = d
	h.render(w, status, "invites", p)
}

// inviteOptions reads an invite's entity and options as a form or the
// admin API gives them, and returns the entity's localpart; the error
// names the field that is wrong.
func inviteOptions(svc *gate.Service, entity, ttl, uses string, back bool) (string, gate.InviteOptions, error) {
	o := gate.InviteOptions{TTL: gate.DefaultInviteTTL, Uses: gate.DefaultInviteUses, SubscribeBack: back}
	entity = strings.TrimSpace(entity)
	if entity == "" {
		return "", o, errors.New("entity: choose the entity the invite is for")
	}
	local, err := roster.ParseEntity(svc.Domain(), entity)
	if err != nil {
		return "", o, fmt.Errorf("entity: %s", roster.UserText(err))
	}
	if local == "" || !svc.IsEntity(local) {
		return "", o, fmt.Errorf("entity: %q is no [[entity]] of %s", entity, svc.Domain())
	}
	if ttl = strings.TrimSpace(ttl); ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil {
			return "", o, fmt.Errorf("ttl: %q is not a duration such as 72h or 30m (0: until revoked or used up)", ttl)
		}
		o.TTL = d
	}
	if uses = strings.TrimSpace(uses); uses != "" {
		n, err := strconv.Atoi(uses)
		if err != nil {
			return "", o, fmt.Errorf("uses: %q is not a count of 1 to %d", uses, gate.MaxInviteUses)
		}
		o.Uses = n
	}
	if err := gate.CheckInviteOptions(o); err != nil {
		return "", o, errors.New(strings.TrimPrefix(err.Error(), gate.ErrBadInvite.Error()+": "))
	}
	return local, o, nil
}

// createInvite makes an invite from the form and shows its link, its web
// page and its QR code this once.
func (h *Handler) createInvite(w http.ResponseWriter, r *http.Request, s session) {
	f := inviteForm{Entity: r.PostFormValue("entity"), TTL: r.PostFormValue("ttl"), Uses: r.PostFormValue("uses"), Back: r.PostFormValue("back") != ""}
	local, o, err := inviteOptions(h.svc, f.Entity, f.TTL, f.Uses, f.Back)
	if err != nil {
		h.showInvites(w, r, s, http.StatusUnprocessableEntity, nil, []string{err.Error()}, nil, f)
		return
	}
	inv, err := h.svc.CreateInvite(r.Context(), s.actor(), local, o)
	if err != nil {
		h.showInvites(w, r, s, http.StatusUnprocessableEntity, nil, []string{roster.UserText(err)}, nil, f)
		return
	}
	made := &newInvite{ID: inv.ID, EntityJID: h.svc.EntityJID(inv.Entity), Terms: gate.InviteTerms(inv.Invite), URI: inv.URI,
		Landing: inv.Landing, QR: invitePath(inv.Token) + "/qr.png"}
	if made.Landing == "" {
		made.Landing = invitePath(inv.Token)
	}
	note := fmt.Sprintf("Invite #%d to %s made. Copy its link now: it is shown this once (only its hash is kept).", inv.ID, made.EntityJID)
	h.showInvites(w, r, s, http.StatusOK, []string{note}, nil, made, defaultForm())
}

// invitePath is the path of an invite's public page.
func invitePath(token string) string { return "/invite/" + url.PathEscape(token) }

func (h *Handler) revokeInvite(w http.ResponseWriter, r *http.Request, s session) {
	v := r.PostFormValue("id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		h.showInvites(w, r, s, http.StatusUnprocessableEntity, nil, []string{fmt.Sprintf("id: %q is not an invite id", v)}, nil, defaultForm())
		return
	}
	changed, err := h.svc.RevokeInvite(r.Context(), s.actor(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.showInvites(w, r, s, http.StatusNotFound, nil, []string{fmt.Sprintf("There is no invite #%d.", id)}, nil, defaultForm())
	case err != nil:
		h.showInvites(w, r, s, http.StatusInternalServerError, nil, []string{roster.UserText(err)}, nil, defaultForm())
	case changed:
		h.showInvites(w, r, s, http.StatusOK, []string{fmt.Sprintf("Invite #%d revoked: a request that carries it now goes through the policy.", id)}, nil, nil, defaultForm())
	default:
		h.showInvites(w, r, s, http.StatusOK, []string{fmt.Sprintf("Invite #%d was revoked already.", id)}, nil, nil, defaultForm())
	}
}

// --- the public page of an invite ---

// landing is what the public page of a usable invite shows.
type landing struct {
	JID, Name     string
	URI           template.URL // the xmpp: link, made here (safe as a URL)
	URIText       string
	QR            string
	Expires       time.Time
	SubscribeBack bool
}

// Why an invite's page shows no invite. An unknown token and a revoked
// invite get the same answer (404): a revoked link may have leaked, and
// whoever holds it learns nothing of the admins' doing. An expired or used
// up invite is told as such (410), so that whoever was sent it knows to
// ask for another; that tells nothing to someone guessing tokens, who
// never finds one (32 random bytes).
const (
	inviteNotWorking = "This invite link does not work: it is not one of ours, or it was withdrawn."
	inviteExpired    = "This invite link has expired."
	inviteUsedUp     = "This invite link has been used as many times as it allows."
)

// usableInvite returns the invite of token if it is usable, or the status
// and text of a page that says it is not.
func (h *Handler) usableInvite(ctx context.Context, token string) (store.Invite, int, string) {
	if !strings.HasPrefix(token, gate.InvitePrefix) || len(token) > 100 {
		return store.Invite{}, http.StatusNotFound, inviteNotWorking
	}
	inv, err := h.svc.InviteByToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return inv, http.StatusNotFound, inviteNotWorking
	}
	if err != nil {
		h.log.Error("reading an invite", "err", err)
		return inv, http.StatusInternalServerError, "The invite could not be read; try again later."
	}
	// An invite to an entity no longer configured works no more.
	if !h.svc.IsEntity(inv.Entity) {
		return inv, http.StatusNotFound, inviteNotWorking
	}
	switch inv.Unusable(h.now(), 0) {
	case "":
		return inv, http.StatusOK, ""
	case "expired":
		return inv, http.StatusGone, inviteExpired
	case "used up":
		return inv, http.StatusGone, inviteUsedUp
	default: // revoked
		return inv, http.StatusNotFound, inviteNotWorking
	}
}

// publicInvite guards the invite's public paths: a rate per address (the
// page and its QR code each count), and no indexing.
func (h *Handler) publicInvite(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("X-Robots-Tag", "noindex, nofollow")
	if h.landings.Allow(clientIP(r), h.now()) {
		return true
	}
	w.Header().Set("Retry-After", "60")
	return false
}

// invitePage is an invite's public page: the entity, the xmpp: link, its
// QR code and which apps take it.
func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "Invitation", Domain: h.svc.Domain()}
	if !h.publicInvite(w, r) {
		p.Errors = []string{"Too many requests from your address; wait a minute and reload."}
		h.render(w, http.StatusTooManyRequests, "invite", p)
		return
	}
	token := r.PathValue("token")
	inv, status, why := h.usableInvite(r.Context(), token)
	if status != http.StatusOK {
		p.Title, p.Errors = "This invite does not work", []string{why}
		h.render(w, status, "invite", p)
		return
	}
	j := h.svc.EntityJID(inv.Entity)
	uri := h.svc.InviteURI(inv.Entity, token)
	d := landing{JID: j, Name: h.svc.EntityName(inv.Entity), URI: template.URL(uri), URIText: uri, QR: invitePath(token) + "/qr.png",
		Expires: inv.Expires, SubscribeBack: inv.SubscribeBack}
	p.Title, p.Data = "Add "+j, d
	if d.Name != "" {
		p.Title = "Add " + d.Name
	}
	h.render(w, http.StatusOK, "invite", p)
}

// inviteQR is the QR code of a usable invite's xmpp: link, as a PNG.
func (h *Handler) inviteQR(w http.ResponseWriter, r *http.Request) {
	if !h.publicInvite(w, r) {
		http.Error(w, "webui: too many requests; wait a minute", http.StatusTooManyRequests)
		return
	}
	token := r.PathValue("token")
	inv, status, why := h.usableInvite(r.Context(), token)
	if status != http.StatusOK {
		http.Error(w, why, status)
		return
	}
	img, err := qrPNG(h.svc.InviteURI(inv.Entity, token))
	if err != nil {
		h.log.Error("drawing an invite's QR code", "err", err)
		http.Error(w, "webui: the QR code could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(img)))
	_, _ = w.Write(img)
}
