// Package instance wires one running rostergate: the decision engine over a
// store, the service over both, the XEP-0114 transport that feeds the
// engine, the HTTP side and the metrics that watch them all. The command line and the benchmarks start rostergate through it,
// so that they run the same assembly.
package instance

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/directory"
	"rostergate/engine"
	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/metrics"
	"rostergate/store"
	"rostergate/webui"
	"rostergate/xmpp/component"
)

// Config is what one running rostergate is made of.
type Config struct {
	Domain, Server, Secret string
	Resource               string // of the entities' available presence; default "rostergate"
	Keepalive              time.Duration
	MaxStanzaBytes         int64
	Version                string
	Store                  store.Store
	Settings               engine.Settings
	// Logger is the root logger; each part logs through a sub-logger
	// named after it (component, engine, directory, gate, http), which follows the
	// root's level. nil logs nothing.
	Logger hclog.Logger
	// HTTP, if not nil, serves the bots' API and delivers their webhooks
	// (its Service is filled in).
	HTTP *httpapi.Options
	// Web is the admins' web page, served beside the API when HTTP
	// listens; WebURL where admins reach it ("": the address it listens
	// at).
	Web    gate.Web
	WebURL string

	// For tests: reconnect backoff bounds and the dialer (defaults as in
	// component.Options).
	MinBackoff, MaxBackoff time.Duration
	Dial                   func(ctx context.Context, addr string) (net.Conn, error)
}

// Instance is a rostergate ready to Run.
type Instance struct {
	Engine    *engine.Engine
	Service   *gate.Service
	Component *component.Component
	HTTP      *httpapi.Server // nil without [http]
	webURL    string
	// Metrics are served at GET /metrics on the HTTP listener; the command
	// line records its reloads in them.
	Metrics *metrics.Metrics
	dir     *directory.Directory // the engine's, closed when Run returns
}

// New wires an Instance.
func New(ctx context.Context, c Config) (*Instance, error) {
	m := metrics.New(c.Version)
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	dir, err := directory.New(c.Settings.Directory, directory.Options{Logger: c.Logger.Named("directory")})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	made := false
	defer func() {
		if !made {
			_ = dir.Close()
		}
	}()
	eng, err := engine.New(ctx, engine.Options{Domain: c.Domain, Resource: c.Resource, Store: c.Store, Settings: c.Settings, Logger: c.Logger.Named("engine"),
		API: c.HTTP != nil && c.HTTP.Listen != "", OnCommit: m.ObserveCommit, Directory: dir})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	svc, err := gate.New(gate.Options{Domain: eng.Domain(), Store: c.Store, Engine: eng, Settings: c.Settings, Logger: c.Logger.Named("gate"), Web: c.Web})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	comp, err := component.New(component.Options{
		Server:         c.Server,
		Secret:         c.Secret,
		Keepalive:      c.Keepalive,
		MaxStanzaBytes: c.MaxStanzaBytes,
		Version:        c.Version,
		Engine:         eng,
		Service:        svc,
		Logger:         c.Logger.Named("component"),
		MinBackoff:     c.MinBackoff,
		MaxBackoff:     c.MaxBackoff,
		Dial:           c.Dial,
	})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	inst := &Instance{Engine: eng, Service: svc, Component: comp, Metrics: m, webURL: c.WebURL, dir: dir}
	src := metrics.Sources{Engine: eng, Stream: comp}
	if c.HTTP != nil {
		o := *c.HTTP
		o.Service = svc
		if o.Logger == nil {
			o.Logger = c.Logger.Named("http")
		}
		if o.Listen != "" {
			if o.Web, err = webui.New(webui.Options{Service: svc, Logger: c.Logger.Named("web"),
				// Secure cookies over TLS, here or at a proxy in front.
				Secure: o.TLSCert != "" || strings.HasPrefix(strings.ToLower(c.WebURL), "https://")}); err != nil {
				return nil, fmt.Errorf("instance: %w", err)
			}
		}
		o.Metrics, o.OnDelivered = m.Handler(), m.ObserveDelivered
		if inst.HTTP, err = httpapi.New(o); err != nil {
			return nil, fmt.Errorf("instance: %w", err)
		}
		src.Webhooks = inst.HTTP
	}
	if err := m.Watch(src); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	made = true
	return inst, nil
}

// WebAddress is http(s)://addr/, with an unspecified host read as
// localhost: where admins reach the web page when no web_url is set.
func WebAddress(addr string, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return scheme + "://" + addr + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/"
}

// Run serves until ctx is cancelled; see component.Run. The HTTP API, if
// any, listens first: a port that is taken fails the start. The
// directory's connection is closed when it returns.
func (i *Instance) Run(ctx context.Context) error {
	defer i.dir.Close()
	if i.HTTP != nil {
		if err := i.HTTP.Start(ctx); err != nil {
			return fmt.Errorf("instance: %w", err)
		}
		defer i.HTTP.Close()
		if addr := i.HTTP.Addr(); addr != nil && i.HTTP.Web() {
			u := i.webURL
			if u == "" {
				u = WebAddress(addr.String(), i.HTTP.TLS())
			}
			i.Service.SetWebURL(u)
		}
	}
	return i.Component.Run(ctx)
}
