package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the parts' counts at each scrape and reports them as
// constant metrics.
type collector struct {
	src Sources

	decisions, held, heldDecisions, limitHits, messagesDropped, outboxDepth *prometheus.Desc
	stanzas, streamUp, reconnects                                           *prometheus.Desc
	deliveries, dropped, gaps                                               *prometheus.Desc
	dirLookups, dirHits, dirUp                                              *prometheus.Desc
}

func newCollector(s Sources) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &collector{
		src: s,
		decisions: d("decisions_total",
			"Decisions on contacts' subscription requests, by action (accept, reject, review: held, drop) and by the kind of what decided (rule, default, unknown_entity, deny_list, allow_list, limit, admin, pre_approved, invite).",
			"action", "rule"),
		held: d("held_requests", "Subscription requests held for an admin's review now."),
		heldDecisions: d("held_decisions_total",
			"Held requests decided, by decision (approve, reject) and by the interface it came through (chat, adhoc, cli, web, api, review_ttl: expired).",
			"decision", "via"),
		limitHits: d("limit_hits_total",
			"Requests over a limit, by limit (contact_rate, domain_rate, max_pending, max_pending_per_domain); each got [limits] action.",
			"limit"),
		messagesDropped: d("messages_dropped_total", "Messages from non-contacts dropped (accept_messages = \"contacts\")."),
		outboxDepth: d("outbox_depth",
			"Batches of replies in the outbox: committed, not yet known to have reached the server (sent again on the next stream)."),
		stanzas: d("stanzas_total",
			"Stanzas received from the server (in) and written to it (out), by kind (presence, message, iq).",
			"direction", "kind"),
		streamUp:   d("stream_up", "Whether the stream to the XMPP server is up (1) or not (0)."),
		reconnects: d("stream_reconnects_total", "Times the stream dropped, or connecting failed, and rostergate tried again."),
		deliveries: d("webhook_deliveries_total",
			"Webhook delivery attempts, by result: ok (the event taken) or failed (retried later).",
			"result"),
		dropped: d("webhook_events_dropped_total", "Webhook events given up after webhook_max_age."),
		gaps:    d("webhook_gaps_total", "Times retention deleted events before their webhook took them."),
		dirLookups: d("directory_lookups_total",
			"Group memberships group rules asked of [directory] (decisions and explain), by result: member, not_member, or error (the directory could not say: down, slow or misconfigured; the rule did not match).",
			"result"),
		dirHits: d("directory_cache_hits_total", "Directory lookups answered from the cache (LDAP's answers are kept for cache_ttl)."),
		dirUp:   d("directory_up", "Whether [directory] answers (1), or has failed and not answered since (0); absent without a [directory]."),
	}
}

// Describe sends every metric's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.decisions, c.held, c.heldDecisions, c.limitHits, c.messagesDropped, c.outboxDepth,
		c.stanzas, c.streamUp, c.reconnects, c.deliveries, c.dropped, c.gaps, c.dirLookups, c.dirHits, c.dirUp} {
		ch <- d
	}
}

// Collect reads the counts.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if e := c.src.Engine; e != nil {
		s := e.Stats()
		for _, d := range s.Decisions {
			counter(c.decisions, float64(d.N), string(d.Action), d.Kind)
		}
		gauge(c.held, float64(s.Held))
		for _, h := range s.HeldDecisions {
			decision := "reject"
			if h.Approve {
				decision = "approve"
			}
			counter(c.heldDecisions, float64(h.N), decision, h.Via)
		}
		for l, n := range s.LimitHits {
			counter(c.limitHits, float64(n), l)
		}
		counter(c.messagesDropped, float64(s.MessagesDropped))
		gauge(c.outboxDepth, float64(s.OutboxDepth))
		d := s.Directory
		counter(c.dirLookups, float64(d.Member), "member")
		counter(c.dirLookups, float64(d.NotMember), "not_member")
		counter(c.dirLookups, float64(d.Errors), "error")
		counter(c.dirHits, float64(d.CacheHits))
		if d.Source != "" {
			up := 0.0
			if d.Up {
				up = 1
			}
			gauge(c.dirUp, up)
		}
	}
	if t := c.src.Stream; t != nil {
		s := t.Stats()
		for dir, n := range map[string]struct{ p, m, iq uint64 }{
			"in":  {s.In.Presence, s.In.Message, s.In.IQ},
			"out": {s.Out.Presence, s.Out.Message, s.Out.IQ},
		} {
			counter(c.stanzas, float64(n.p), dir, "presence")
			counter(c.stanzas, float64(n.m), dir, "message")
			counter(c.stanzas, float64(n.iq), dir, "iq")
		}
		up := 0.0
		if s.Up {
			up = 1
		}
		gauge(c.streamUp, up)
		counter(c.reconnects, float64(s.Reconnects))
	}
	if w := c.src.Webhooks; w != nil {
		s := w.Stats()
		counter(c.deliveries, float64(s.Delivered), "ok")
		counter(c.deliveries, float64(s.Failures), "failed")
		counter(c.dropped, float64(s.Dropped))
		counter(c.gaps, float64(s.Gaps))
	}
}
