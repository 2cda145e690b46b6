// Package webui is rostergate's web page for admins: the inbox of held
// subscription requests (approve or reject one or many, live as others
// decide), the audit log (filters, paging, CSV and JSON), each entity's
// roster, the allow and deny lists, explain, and the invites (XEP-0379
// pre-authenticated subscription links: make, list, revoke). Beside them,
// without a login, each invite's public page: the xmpp: link, its QR code
// and which apps take it (rate limited per address).
//
// It is an adapter over the one service (package gate), like the bots' API
// beside it: it touches neither the store nor the stream. Pages are
// rendered on the server from templates embedded in the binary; every act
// is a plain form, so the page works without JavaScript (a small script
// only refreshes the inbox when it changes, by server-sent events).
//
// There is no password: an admin sends "login" to the component domain
// over XMPP (or asks the login page to send one) and opens the one-time
// link it gets. The session is a cookie (HttpOnly, SameSite=Strict, Secure
// over TLS) ending when idle or after its maximum life; every form carries
// a token derived from the session (gate.CSRF), and cross-origin writes are
// refused. Every act is audited with the admin's JID through "web".
package webui

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/gate"
	"rostergate/limits"
	"rostergate/roster"
	"rostergate/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// Options configure a Handler.
type Options struct {
	Service *gate.Service
	// Secure says the page is served over TLS: the cookie is then Secure
	// (and named with the __Host- prefix).
	Secure bool
	Logger hclog.Logger
	// Poll is how often the live inbox looks for changes; default 2 s.
	Poll time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler serves the web page; see the package documentation.
type Handler struct {
	svc    *gate.Service
	log    hclog.Logger
	secure bool
	poll   time.Duration
	now    func() time.Time
	cookie string
	pages  map[string]*template.Template
	mux    *http.ServeMux
	h      http.Handler
	// sends bounds the login links asked for on the login page: per
	// address, and in all.
	sends, sendsTo, sendsAll *limits.Buckets
	// landings bounds the requests for invites' public pages and QR
	// codes, per address.
	landings *limits.Buckets
	hub      *hub
}

// New returns a Handler.
func New(opts Options) (*Handler, error) {
	if opts.Service == nil {
		return nil, errors.New("webui: no service")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{svc: opts.Service, log: opts.Logger, secure: opts.Secure, poll: opts.Poll, now: opts.Now,
		cookie:   "rostergate_session",
		sends:    limits.NewBuckets(limits.Rate{N: 3, Per: time.Minute}, 10_000),
		sendsTo:  limits.NewBuckets(limits.Rate{N: 1, Per: time.Minute}, 10_000),
		sendsAll: limits.NewBuckets(limits.Rate{N: 30, Per: time.Minute}, 1),
		landings: limits.NewBuckets(limits.Rate{N: 30, Per: time.Minute}, 10_000),
	}
	if h.secure {
		h.cookie = "__Host-rostergate_session"
	}
	h.hub = newHub(opts.Service, opts.Poll, opts.Logger)
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/inbox", http.StatusSeeOther) })
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login/send", h.loginSend)
	m.HandleFunc("GET /login/{secret}", h.loginLink)
	m.HandleFunc("POST /login/{secret}", h.loginUse)
	m.HandleFunc("POST /logout", h.admin(h.logout))
	m.HandleFunc("GET /inbox", h.admin(h.inbox))
	m.HandleFunc("GET /inbox/rows", h.admin(h.inboxRows))
	m.HandleFunc("GET /inbox/events", h.admin(h.inboxEvents))
	m.HandleFunc("POST /inbox", h.admin(h.decide))
	m.HandleFunc("GET /audit", h.admin(h.audit))
	m.HandleFunc("GET /rosters", h.admin(h.rosters))
	m.HandleFunc("GET /rosters/{entity}", h.admin(h.roster))
	m.HandleFunc("GET /lists", h.admin(h.lists))
	m.HandleFunc("POST /lists", h.admin(h.editList))
	m.HandleFunc("GET /explain", h.admin(h.explain))
	m.HandleFunc("GET /invites", h.admin(h.invites))
	m.HandleFunc("POST /invites", h.admin(h.createInvite))
	m.HandleFunc("POST /invites/revoke", h.admin(h.revokeInvite))
	m.HandleFunc("GET /invite/{token}", h.invitePage)
	m.HandleFunc("GET /invite/{token}/qr.png", h.inviteQR)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "There is no page "+r.URL.Path+" here.")
	})
	h.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusForbidden, "Refused: a form sent from another site.")
	}))
	h.h = headers(cop.Handler(m))
	return h, nil
}

// ServeHTTP serves the page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// maxForm bounds a form's body.
const maxForm = 64 << 10

// headers sets what every answer carries: no caching (pages name JIDs), no
// framing, no referrer (a login link must not leak), scripts and styles
// only from the page's own files.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		if r.Method == http.MethodPost {
			// Forms only, and small: nothing here takes more.
			if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" && r.ContentLength != 0 {
				http.Error(w, "webui: forms only (application/x-www-form-urlencoded)", http.StatusUnsupportedMediaType)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		next.ServeHTTP(w, r)
	})
}

// session is a logged-in admin, as a page sees it.
type session struct {
	JID    string
	secret string
	CSRF   string
}

// admin wraps a page for admins: without a live session a GET goes to the
// login page and anything else is refused; a POST must carry the
// session's CSRF token.
func (h *Handler) admin(page func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(h.cookie)
		var k store.WebKey
		if err == nil {
			// A page view or an act counts as use; the live inbox's
			// own requests do not keep a session alive.
			touch := r.URL.Path != "/inbox/events" && r.URL.Path != "/inbox/rows"
			k, err = h.svc.Session(r.Context(), c.Value, touch)
		}
		if err != nil {
			if !errors.Is(err, gate.ErrLogin) && !errors.Is(err, http.ErrNoCookie) {
				h.log.Error("reading a session", "err", err)
				h.fail(w, r, http.StatusInternalServerError, "The session could not be read: "+err.Error())
				return
			}
			if c != nil {
				h.clearCookie(w)
			}
			if r.Method == http.MethodGet && r.URL.Path == "/inbox/events" {
				w.WriteHeader(http.StatusNoContent) // tells EventSource to stop
				return
			}
			if (r.Method == http.MethodGet && r.URL.Path != "/inbox/rows") || r.URL.Path == "/logout" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			h.fail(w, r, http.StatusUnauthorized, "You are not logged in (or your session ended): send \"login\" to "+h.svc.Domain()+" over XMPP for a new link.")
			return
		}
		s := session{JID: k.JID, secret: c.Value, CSRF: gate.CSRF(c.Value)}
		if r.Method == http.MethodPost {
			got := r.PostFormValue("csrf")
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) != 1 {
				h.log.Warn("a form without its CSRF token refused", "admin", s.JID, "path", r.URL.Path)
				h.fail(w, r, http.StatusForbidden, "Refused: the form did not come from this page (its CSRF token is missing or wrong). Reload the page and try again.")
				return
			}
		}
		page(w, r, s)
	}
}

func (s session) actor() roster.Actor { return roster.Actor{JID: s.JID, Via: roster.ViaWeb} }

func (h *Handler) setCookie(w http.ResponseWriter, secret string, until time.Time) {
	http.SetCookie(w, &http.Cookie{Name: h.cookie, Value: secret, Path: "/", Expires: until,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
}

func (h *Handler) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: h.cookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode})
}

// page is what every page's template gets.
type page struct {
	Title   string
	Nav     string // the section: inbox, audit, rosters, lists, explain, invites
	Domain  string
	Admin   string // "" when not logged in
	CSRF    string
	Notes   []string // what came of an act
	Errors  []string
	Pending int // held requests, for the navigation
	Data    any
}

func (h *Handler) newPage(ctx context.Context, s session, title, nav string) page {
	p := page{Title: title, Nav: nav, Domain: h.svc.Domain(), Admin: s.JID, CSRF: s.CSRF}
	if s.JID != "" {
		if reqs, err := h.svc.Pending(ctx); err == nil {
			p.Pending = len(reqs)
		}
	}
	return p
}

// render writes a page with status.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := h.pages[name]
	if !ok {
		http.Error(w, "webui: no template "+name, http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		h.log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "webui: rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail answers a refusal as a page saying what is wrong.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := page{Title: http.StatusText(status), Domain: h.svc.Domain(), Errors: []string{msg}}
	h.render(w, status, "error", p)
}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago":  ago,
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"eq":   func(a, b string) bool { return a == b },
		"pair": func(name string, items []string, csrf string) listView { return listView{name, items, csrf} },
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("webui: %w", err)
		}
		pages[base] = t
	}
	return pages, nil
}

// listView is one list on the lists page.
type listView struct {
	Name  string
	Items []string
	CSRF  string
}

// ago is "5m", "3h", "2d" since t.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}
