// Package instance wires one running rostergate: the decision engine over a
// store, the service over both, the XEP-0114 transport that feeds the
// engine, the HTTP side and the metrics that watch them all. The command line and the benchmarks start rostergate through it,
// so that they run the same assembly.
package instance

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"rostergate/engine"
	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/metrics"
	"rostergate/store"
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
	Logger                 *slog.Logger
	// HTTP, if not nil, serves the bots' API and delivers their webhooks
	// (its Service is filled in).
	HTTP *httpapi.Options

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
	// Metrics are served at GET /metrics on the HTTP listener; the command
	// line records its reloads in them.
	Metrics *metrics.Metrics
}

// New wires an Instance.
func New(ctx context.Context, c Config) (*Instance, error) {
	m := metrics.New(c.Version)
	eng, err := engine.New(ctx, engine.Options{Domain: c.Domain, Resource: c.Resource, Store: c.Store, Settings: c.Settings, Logger: c.Logger,
		API: c.HTTP != nil && c.HTTP.Listen != "", OnCommit: m.ObserveCommit})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	svc, err := gate.New(gate.Options{Domain: eng.Domain(), Store: c.Store, Engine: eng, Settings: c.Settings, Logger: c.Logger})
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
		Logger:         c.Logger,
		MinBackoff:     c.MinBackoff,
		MaxBackoff:     c.MaxBackoff,
		Dial:           c.Dial,
	})
	if err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	inst := &Instance{Engine: eng, Service: svc, Component: comp, Metrics: m}
	src := metrics.Sources{Engine: eng, Stream: comp}
	if c.HTTP != nil {
		o := *c.HTTP
		o.Service = svc
		if o.Logger == nil {
			o.Logger = c.Logger
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
	return inst, nil
}

// Run serves until ctx is cancelled; see component.Run. The HTTP API, if
// any, listens first: a port that is taken fails the start.
func (i *Instance) Run(ctx context.Context) error {
	if i.HTTP != nil {
		if err := i.HTTP.Start(ctx); err != nil {
			return fmt.Errorf("instance: %w", err)
		}
		defer i.HTTP.Close()
	}
	return i.Component.Run(ctx)
}
