// Package httpapi is rostergate's HTTP interface for bots: a JSON API under
// /api/v1/entities/{entity}/ through which the bot behind an entity reads
// its roster, sends messages, sets its presence, asks for and removes
// contacts and takes its events (a long poll), and the webhook delivery
// that POSTs each event to the entity's webhook, signed the Standard
// Webhooks way (package webhook).
//
// It is an adapter over the one service (package gate): it touches neither
// the store nor the stream. Tokens (gate.CreateToken) are sent as
// "Authorization: Bearer …" and are scoped to the entities they were made
// for. Every refusal is a JSON object {"error": "…"} with the status that
// says what kind it is: 400 a body that is not the JSON asked for, 401 no
// token or an unknown or revoked one, 403 a token for another entity or a
// recipient the entity may not message, 404 no such entity or contact, 413 a
// body over the limit, 422 a value that is wrong (a JID that does not parse,
// an unknown type), 429 over the token's rate, 503 rostergate not connected
// to its server. Nothing is stored or sent for a refused request.
//
// Beside the API the listener serves the probes (GET /livez, /readyz), the
// reload (POST /-/reload, admins' tokens) and, when given a handler, the
// metrics (GET /metrics, without a token, to the addresses on an
// allow-list only; package metrics makes the handler).
package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/gate"
	"rostergate/limits"
	"rostergate/roster"
	"rostergate/store"
)

// Options configure a Server.
type Options struct {
	Listen  string // host:port; port 0 picks one (see Addr)
	TLSCert string // PEM files: HTTPS when set
	TLSKey  string
	Service *gate.Service
	MaxBody int64       // bytes a request body may hold; default 64 KiB
	Rate    limits.Rate // requests per token; zero = unlimited
	// EventRetention and MaxEvents bound the events kept (by age, and per
	// entity); defaults 7 days and 100,000.
	EventRetention time.Duration
	MaxEvents      int
	Webhooks       []Webhook
	Logger         hclog.Logger
	// Client posts the webhooks; default one with a 10 s timeout that
	// follows no redirect.
	Client *http.Client
	// Web, if not nil, serves every path that is not the API's (the
	// admins' web page).
	Web http.Handler
	// Reload does what SIGHUP does (POST /-/reload, admin tokens only); nil
	// answers 501.
	Reload func(ctx context.Context) error
	// Metrics, if set, answers GET /metrics, without a token, to the
	// addresses in MetricsAllow (none: to no one); the others get 403.
	// SetMetricsAllow changes the list.
	Metrics      http.Handler
	MetricsAllow []netip.Prefix
	// OnDelivered, if set, is told of each event a webhook took: how long
	// after the event was committed. It must be quick.
	OnDelivered func(lag time.Duration)
}

// Server serves the API and delivers the webhooks; see the package
// documentation.
type Server struct {
	opts    Options
	svc     *gate.Service
	log     hclog.Logger
	hookLog hclog.Logger // the webhooks' deliveries: log, named "webhook"
	rate    *limits.Buckets
	handler http.Handler

	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc // ends long polls and deliveries
	wg     sync.WaitGroup

	hooks hooks

	metricsAllow atomic.Pointer[[]netip.Prefix] // who may GET /metrics
}

// New returns a Server; Start makes it listen.
func New(opts Options) (*Server, error) {
	if opts.Service == nil {
		return nil, errors.New("httpapi: no service")
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 64 << 10
	}
	if opts.EventRetention <= 0 {
		opts.EventRetention = 7 * 24 * time.Hour
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &Server{opts: opts, svc: opts.Service, log: opts.Logger, hookLog: opts.Logger.Named("webhook"), rate: limits.NewBuckets(opts.Rate, 100_000)}
	s.hooks.running = map[string]*hook{}
	s.SetMetricsAllow(opts.MetricsAllow)
	mux := http.NewServeMux()
	const ent = "/api/v1/entities/{entity}/"
	mux.HandleFunc("GET "+ent+"roster", s.bot(s.getRoster))
	mux.HandleFunc("DELETE "+ent+"roster/{jid}", s.bot(s.deleteContact))
	mux.HandleFunc("POST "+ent+"messages", s.bot(s.postMessage))
	mux.HandleFunc("PUT "+ent+"presence", s.bot(s.putPresence))
	mux.HandleFunc("DELETE "+ent+"presence", s.bot(s.deletePresence))
	mux.HandleFunc("POST "+ent+"subscriptions", s.bot(s.postSubscription))
	mux.HandleFunc("GET "+ent+"events", s.bot(s.getEvents))
	mux.HandleFunc("POST /-/reload", s.adminOnly(s.postReload))
	s.adminRoutes(mux)
	// Probes, without a token: they tell nothing but whether rostergate
	// serves.
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, struct {
			Live bool `json:"live"`
		}{true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		rd, ok := s.svc.Ready(ctx)
		status := http.StatusOK
		if !ok {
			status = http.StatusServiceUnavailable
		}
		reply(w, status, struct {
			Ready bool `json:"ready"`
			gate.Readiness
		}{ok, rd})
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", s.metricsGuard(opts.Metrics))
	}
	s.handler = jsonErrors(mux)
	if web := opts.Web; web != nil {
		api := s.handler
		s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isAPIPath(r.URL.Path) {
				api.ServeHTTP(w, r)
				return
			}
			web.ServeHTTP(w, r)
		})
	}
	return s, nil
}

// isAPIPath reports whether a path is the API's (JSON) rather than the web
// page's.
func isAPIPath(p string) bool {
	return strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/-/") || p == "/api" ||
		p == "/livez" || p == "/readyz" || p == "/metrics"
}

// jsonErrors answers what the mux refuses itself (no such path: 404; a
// method the path does not take: 405, with Allow) in JSON like every other
// refusal.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			rec := &statusOnly{header: http.Header{}}
			mux.ServeHTTP(rec, r)
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			if rec.status == http.StatusMethodNotAllowed {
				fail(w, rec.status, "%s does not take %s (it takes %s)", r.URL.Path, r.Method, rec.header.Get("Allow"))
				return
			}
			fail(w, http.StatusNotFound, "no such resource: %s %s (the API is under /api/v1/entities/{entity}/)", r.Method, r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// statusOnly keeps the status and headers of the mux's own refusal.
type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(p []byte) (int, error) { return len(p), nil }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }

// Handler returns the API's handler, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens, then serves the API, delivers the webhooks and applies
// the event retention until ctx ends or Close is called. Without Listen
// only the webhooks are delivered.
func (s *Server) Start(ctx context.Context) error {
	if s.opts.Listen == "" {
		ctx, s.cancel = context.WithCancel(ctx)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.retain(ctx)
		}()
		s.SetWebhooks(ctx, s.opts.Webhooks)
		if len(s.opts.Webhooks) > 0 {
			s.log.Info("webhooks delivered; no HTTP API ([http] listen not set)", "webhooks", len(s.opts.Webhooks))
		}
		return nil
	}
	ln, err := listen(s.opts.Listen, s.opts.TLSCert, s.opts.TLSKey)
	if err != nil {
		return err
	}
	s.ln = ln
	ctx, s.cancel = context.WithCancel(ctx)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP API stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	go func() {
		defer s.wg.Done()
		s.retain(ctx)
	}()
	s.SetWebhooks(ctx, s.opts.Webhooks)
	scheme := "http"
	if s.opts.TLSCert != "" {
		scheme = "https"
	}
	s.log.Info("HTTP API listening", "url", scheme+"://"+ln.Addr().String()+"/api/v1/", "webhooks", len(s.opts.Webhooks))
	return nil
}

// listen listens at addr, with TLS when cert is set.
func listen(addr, cert, key string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("httpapi: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12})
	}
	return ln, nil
}

// Addr returns the address the server listens on, once started; nil
// without Listen.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Web reports whether the server serves a web page beside the API.
func (s *Server) Web() bool { return s.opts.Web != nil }

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.opts.TLSCert != "" }

// Close stops serving and delivering, and waits for both.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.hooks.stopAll()
	s.wg.Wait()
}

// retain deletes the events past the retention, every minute.
func (s *Server) retain(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		n, err := s.svc.TrimEvents(ctx, time.Now().Add(-s.opts.EventRetention), s.opts.MaxEvents)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("trimming the event logs", "err", err)
		} else if n > 0 {
			s.log.Info("events past their retention deleted", "events", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// token authenticates a request: a token is required, known, not revoked,
// and within its rate. It answers the refusal itself (ok false).
func (s *Server) token(w http.ResponseWriter, r *http.Request) (store.Token, bool) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" { // the scheme is case-insensitive (RFC 6750 §2.1, RFC 9110 §11.1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="rostergate"`)
		fail(w, http.StatusUnauthorized, "no token: send Authorization: Bearer <token> (made with rostergate token create)")
		return store.Token{}, false
	}
	t, err := s.svc.Authenticate(r.Context(), tok)
	if errors.Is(err, gate.ErrBadToken) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rostergate", error="invalid_token"`)
		fail(w, http.StatusUnauthorized, "%s", strings.TrimPrefix(err.Error(), "gate: "))
		return store.Token{}, false
	}
	if err != nil {
		s.log.Error("checking a token", "err", err)
		fail(w, http.StatusInternalServerError, "checking the token failed")
		return store.Token{}, false
	}
	if !s.rate.Allow(strconv.FormatInt(t.ID, 10), time.Now()) {
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusTooManyRequests, "token %d is over its rate of %s requests", t.ID, s.opts.Rate)
		return store.Token{}, false
	}
	return t, true
}

// adminOnly serves h to admins' tokens only.
func (s *Server) adminOnly(h func(http.ResponseWriter, *http.Request, store.Token)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.token(w, r)
		if !ok {
			return
		}
		if !t.Admin {
			fail(w, http.StatusForbidden, "token %d is not an admin's (make one with rostergate token create -admin)", t.ID)
			return
		}
		h(w, r, t)
	}
}

// postReload does what SIGHUP does.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request, t store.Token) {
	if s.opts.Reload == nil {
		fail(w, http.StatusNotImplemented, "reload is not available here")
		return
	}
	s.log.Info("reload asked over HTTP", "token", t.ID)
	if err := s.opts.Reload(r.Context()); err != nil {
		fail(w, http.StatusUnprocessableEntity, "reload refused, the config in force is kept: %v", err)
		return
	}
	reply(w, http.StatusOK, struct {
		Reloaded bool `json:"reloaded"`
	}{true})
}

// SetMetricsAllow puts in force who may GET /metrics: the peers whose
// address is in one of allow (none: no one). A reload may change it.
func (s *Server) SetMetricsAllow(allow []netip.Prefix) {
	a := slices.Clone(allow)
	s.metricsAllow.Store(&a)
}

// metricsGuard serves h to the peers MetricsAllow lets in: the address of
// the connection, not a header a proxy may set.
func (s *Server) metricsGuard(h http.Handler) http.Handler {
	return MetricsGuard(func() []netip.Prefix { return *s.metricsAllow.Load() }, h)
}

// MetricsGuard serves h to the peers on the list allow returns ([http]
// metrics_allow): the address of the connection, not a header a proxy may
// set; 403 in JSON to the others, to everyone when the list is empty.
func MetricsGuard(allowList func() []netip.Prefix, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allow := allowList()
		if len(allow) == 0 {
			fail(w, http.StatusForbidden, "/metrics is off: [http] metrics_allow is empty")
			return
		}
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			fail(w, http.StatusForbidden, "/metrics: the peer's address %q is not an IP address", r.RemoteAddr)
			return
		}
		ip := ap.Addr().Unmap().WithZone("") // fe80::1%eth0 is fe80::1 to the list
		if !slices.ContainsFunc(allow, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			fail(w, http.StatusForbidden, "/metrics: %s is not in [http] metrics_allow", ip)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// request is what a bot's handler is given: the entity (localpart) it
// acts for, checked against its token, and the actor it acts as.
type request struct {
	entity string
	actor  roster.Actor
	token  store.Token
}

// bot authenticates a request for an entity's API: a token is required,
// must name the entity, and is rate limited; its first use for the entity
// puts a bot behind it.
func (s *Server) bot(h func(http.ResponseWriter, *http.Request, request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.token(w, r)
		if !ok {
			return
		}
		name := r.PathValue("entity")
		local, err := roster.ParseEntity(s.svc.Domain(), name)
		if err != nil || strings.Contains(name, "/") || !s.svc.IsEntity(local) {
			fail(w, http.StatusNotFound, "%q is no entity of %s", name, s.svc.Domain())
			return
		}
		allowed := false
		for _, e := range t.Entities {
			allowed = allowed || e == local
		}
		if !allowed {
			fail(w, http.StatusForbidden, "token %d is not for %s", t.ID, s.svc.EntityJID(local))
			return
		}
		if err := s.svc.BotAttached(r.Context(), t, local); err != nil {
			s.log.Error("recording a token's use", "err", err)
			fail(w, http.StatusInternalServerError, "recording the token's use failed")
			return
		}
		h(w, r, request{entity: local, token: t, actor: roster.Actor{JID: "token:" + strconv.FormatInt(t.ID, 10), Via: roster.ViaAPI}})
	}
}

// errorBody is every refusal's body.
type errorBody struct {
	Error string `json:"error"`
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	reply(w, status, errorBody{Error: fmt.Sprintf(format, args...)})
}

func reply(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // bodies and JIDs as written; the type is JSON, never HTML
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		b.Reset()
		b.WriteString(`{"error":"encoding the answer failed"}` + "\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
