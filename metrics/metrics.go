// Package metrics is rostergate's monitoring: its metrics in the Prometheus
// text format (client_golang), for GET /metrics on the HTTP listener.
//
// Nothing here is global: a Metrics holds a registry of its own, with the
// Go runtime's and the process's collectors. The parts keep counting as they
// already do (engine.Stats, component.Stats, httpapi.Stats: plain counts
// under locks they hold anyway, or atomics) and a collector reads them at
// each scrape, so the stanzas' path pays nothing for it and knows nothing of
// Prometheus. Only what cannot be rebuilt from counts is observed as it
// happens: the commits' durations and sizes (engine.Options.OnCommit), the
// webhook events' lag (httpapi.Options.OnDelivered), and the outcome of
// each config reload (Reloaded).
//
// No label holds a JID or a part of one: decisions are counted by action
// and by the kind of what decided (never the list pattern, which may be a
// JID), stanzas by direction and kind, nothing by entity or contact.
// docs/metrics.md lists every metric.
package metrics

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"rostergate/engine"
	"rostergate/httpapi"
	"rostergate/xmpp/component"
)

const namespace = "rostergate"

// Reload interfaces, as the via label of the reload metrics has them (and
// the log).
const (
	ViaSIGHUP = "SIGHUP"
	ViaHTTP   = "http"
)

// Metrics is one rostergate's metrics: its registry, what is observed as it
// happens, and (once Watch is called) the collector that reads the parts'
// counts at each scrape.
type Metrics struct {
	reg *prometheus.Registry

	commitSeconds prometheus.Histogram
	commitChanges prometheus.Histogram
	webhookLag    prometheus.Histogram

	reloads    *prometheus.CounterVec
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

// New returns the metrics of a rostergate of version version, with the
// config it started with counted as a successful load.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "commit_duration_seconds",
			Help:    "How long each commit of state (one store transaction: a batch of decisions, an admin's act) took.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		commitChanges: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "commit_batch_size",
			Help:    "State changes (roster items with their audit rows) per commit: how many decisions share one transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 to 2048, the largest batch
		}),
		webhookLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "webhook_event_lag_seconds",
			Help:    "Seconds from an event's commit to its webhook taking it (retries included).",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "config_reloads_total",
			Help: "Config reloads, by result (success, failure) and by what asked (SIGHUP, http: POST /-/reload).",
		}, []string{"result", "via"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "Whether the last config reload worked (1) or was refused, the config in force kept (0); 1 at the start.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "When the config in force was loaded: the last successful reload, or the start (Unix time).",
		}),
	}
	for _, r := range []string{"success", "failure"} {
		for _, via := range []string{ViaSIGHUP, ViaHTTP} {
			m.reloads.WithLabelValues(r, via)
		}
	}
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the version of rostergate running.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	active := activeGauge()
	active.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commitSeconds, m.commitChanges, m.webhookLag, m.reloads, m.reloadOK, m.reloadTime, build, active,
	)
	return m
}

// activeGauge is rostergate_active: 1 for the instance that serves, 0 for a
// standby (several instances sharing a PostgreSQL store).
func activeGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "active",
		Help: "1 for the active instance (connected to the server, deciding), 0 for a standby waiting to take over.",
	})
}

// Standby returns what a standby instance serves at /metrics: rostergate_active
// at 0, its version, and the Go and process collectors.
func Standby(version string) http.Handler {
	reg := prometheus.NewRegistry()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the version of rostergate running.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build, activeGauge())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// ObserveCommit records one commit of state: engine.Options.OnCommit.
// It allocates nothing.
func (m *Metrics) ObserveCommit(d time.Duration, changes int) {
	m.commitSeconds.Observe(d.Seconds())
	m.commitChanges.Observe(float64(changes))
}

// ObserveDelivered records one event a webhook took, lag after its commit:
// httpapi.Options.OnDelivered.
func (m *Metrics) ObserveDelivered(lag time.Duration) {
	m.webhookLag.Observe(lag.Seconds())
}

// Reloaded records the outcome of a config reload asked by via (ViaSIGHUP,
// ViaHTTP): err nil for one put in force.
func (m *Metrics) Reloaded(via string, err error) {
	if err != nil {
		m.reloads.WithLabelValues("failure", via).Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success", via).Inc()
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
}

// Sources are the parts whose counts are read at each scrape; a nil one is
// left out.
type Sources struct {
	Engine   interface{ Stats() engine.Stats }    // *engine.Engine
	Stream   interface{ Stats() component.Stats } // *component.Component
	Webhooks interface{ Stats() httpapi.Stats }   // *httpapi.Server
}

// Watch reads s at each scrape from now on. It is called once.
func (m *Metrics) Watch(s Sources) error {
	if err := m.reg.Register(newCollector(s)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Handler serves the metrics in the Prometheus text format (or what the
// scraper asks for that client_golang speaks). It checks no address:
// httpapi's /metrics does (metrics_allow).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Registry returns the registry, for tests and for whoever adds a
// collector of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
