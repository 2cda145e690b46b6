package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"
)

// StandbyOptions configure what a standby instance serves on the HTTP
// listener while another instance is active: the probes (live, not ready,
// saying which instance is active), its own metrics, and a 503 for
// everything else, so that a load balancer sends the API and the web page to
// the active instance.
type StandbyOptions struct {
	Listen, TLSCert, TLSKey string
	// Active describes the active instance ("" if none is known).
	Active       func(ctx context.Context) string
	Metrics      http.Handler // nil: no /metrics
	MetricsAllow []netip.Prefix
	Logger       hclog.Logger
}

// Standby is the HTTP listener of a standby instance.
type Standby struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// StartStandby listens and serves the standby's answers until Close.
func StartStandby(o StandbyOptions) (*Standby, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	ln, err := listen(o.Listen, o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, err
	}
	s := &Standby{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           StandbyHandler(o),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          o.Logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("standby HTTP listener stopped", "err", err)
		}
	}()
	return s, nil
}

// Close stops serving, and frees the address for the active instance's
// listener.
func (s *Standby) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.done
}

// StandbyHandler answers as a standby instance does.
func StandbyHandler(o StandbyOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, struct {
			Live bool   `json:"live"`
			Role string `json:"role"`
		}{true, "standby"})
	})
	active := func(r *http.Request) string {
		if o.Active == nil {
			return ""
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		return o.Active(ctx)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusServiceUnavailable, struct {
			Ready  bool   `json:"ready"`
			Role   string `json:"role"`
			Active string `json:"active,omitempty"`
		}{false, "standby", active(r)})
	})
	if o.Metrics != nil {
		allow := o.MetricsAllow
		mux.Handle("GET /metrics", MetricsGuard(func() []netip.Prefix { return allow }, o.Metrics))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "5")
		if a := active(r); a != "" {
			fail(w, http.StatusServiceUnavailable, "this rostergate is a standby; the active one is %s", a)
			return
		}
		fail(w, http.StatusServiceUnavailable, "this rostergate is a standby; no instance is active yet")
	})
	return mux
}
