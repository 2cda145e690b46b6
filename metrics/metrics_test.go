package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rostergate/directory"
	"rostergate/engine"
	"rostergate/engine/enginetest"
	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/metrics"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store/sqlite"
	"rostergate/webhook"
	"rostergate/xmpp/component"
	"rostergate/xmpp/stanza"
)

const domain = "bots.localhost"

// stream stands for the transport, whose counts its own tests check.
type stream struct{ s component.Stats }

func (s stream) Stats() component.Stats { return s.s }

// series is a scrape: each sample by its series as written
// (name{label="value",...}), and every label value seen.
type series struct {
	samples map[string]float64
	values  []string
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// scrape GETs url and parses the text format.
func scrape(t *testing.T, url string) series {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	s := series{samples: map[string]float64{}}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("not a sample: %q", line)
		}
		s.samples[line[:i]] = v
		for _, m := range labelRE.FindAllStringSubmatch(line[:i], -1) {
			s.values = append(s.values, m[2])
		}
	}
	return s
}

// Real activity through the engine, the service and the webhooks, then a
// scrape of GET /metrics: every count moved by what was done, with the
// labels it should have, and no label holds a JID.
func TestScrapeAfterActivity(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Drop,
		Rules: []policy.Rule{{Domain: "good.example", Action: policy.Accept}, {Domain: "other.example", Group: "staff", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	st := engine.Settings{Entities: []engine.Entity{{Local: "helpdesk", Webhook: true}}, Policy: p,
		Directory: directory.Config{File: "groups.toml", Groups: map[string][]string{"staff": {"ann@good.example"}}}}
	m := metrics.New("test")
	eng, err := engine.New(ctx, engine.Options{Domain: domain, Store: db, Settings: st, OnCommit: m.ObserveCommit})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Attach(ctx, &enginetest.Wire{}); err != nil {
		t.Fatal(err)
	}
	svc, err := gate.New(gate.Options{Domain: domain, Store: db, Engine: eng, Settings: st})
	if err != nil {
		t.Fatal(err)
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(hook.Close)
	sec, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{Service: svc, Metrics: m.Handler(), OnDelivered: m.ObserveDelivered,
		MetricsAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Webhooks:     []httpapi.Webhook{{Entity: "helpdesk", URL: hook.URL, Secret: sec, MaxAge: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Start(ctx); err != nil { // the webhooks only: no Listen
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	up := component.Stats{Up: true, Reconnects: 2, In: component.StanzaCounts{Presence: 3, Message: 2, IQ: 1}, Out: component.StanzaCounts{Presence: 4}}
	if err := m.Watch(metrics.Sources{Engine: eng, Stream: stream{up}, Webhooks: api}); err != nil {
		t.Fatal(err)
	}

	admin := roster.Actor{JID: "admin@localhost", Via: roster.ViaAdhoc}
	if _, err := eng.EditList(ctx, "deny", true, "*@spam.example", admin); err != nil {
		t.Fatal(err)
	}
	sub := func(from string) *stanza.Element {
		return &stanza.Element{Name: "presence", Type: "subscribe", From: from, To: "helpdesk@" + domain}
	}
	if err := eng.Handle(ctx, []*stanza.Element{sub("ann@good.example"), sub("bob@other.example"), sub("eve@spam.example")}, nil); err != nil {
		t.Fatal(err)
	}
	reqs, err := db.Requests(ctx)
	if err != nil || len(reqs) != 1 {
		t.Fatalf("held: %+v, %v", reqs, err)
	}
	if o, err := svc.Decide(ctx, admin, []int64{reqs[0].ID}, true); err != nil || o[0].Err != nil {
		t.Fatalf("approve: %v %+v", err, o)
	}
	m.Reloaded(metrics.ViaSIGHUP, nil)
	m.Reloaded(metrics.ViaHTTP, errors.New("config: bad"))

	// Wait for the webhook to take every event logged (10 s at most).
	evs, _, err := svc.BotEvents(ctx, "helpdesk", 0, 1000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %d, %v", len(evs), err)
	}
	var s series
	for deadline := time.Now().Add(10 * time.Second); ; {
		s = scrape(t, hs.URL+"/metrics")
		if s.samples["rostergate_webhook_event_lag_seconds_count"] == float64(len(evs)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := db.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`rostergate_decisions_total{action="accept",rule="rule"}`:             1,
		`rostergate_decisions_total{action="review",rule="default"}`:          1,
		`rostergate_decisions_total{action="reject",rule="deny_list"}`:        1,
		`rostergate_decisions_total{action="accept",rule="default"}`:          0,
		`rostergate_decisions_total{action="drop",rule="limit"}`:              0,
		`rostergate_held_requests`:                                            0,
		`rostergate_held_decisions_total{decision="approve",via="adhoc"}`:     1,
		`rostergate_held_decisions_total{decision="reject",via="chat"}`:       0,
		`rostergate_held_decisions_total{decision="reject",via="review_ttl"}`: 0,
		`rostergate_limit_hits_total{limit="max_pending"}`:                    0,
		`rostergate_limit_hits_total{limit="contact_rate"}`:                   0,
		`rostergate_messages_dropped_total`:                                   0,
		`rostergate_outbox_depth`:                                             float64(len(out)),
		`rostergate_stanzas_total{direction="in",kind="presence"}`:            3,
		`rostergate_stanzas_total{direction="in",kind="message"}`:             2,
		`rostergate_stanzas_total{direction="in",kind="iq"}`:                  1,
		`rostergate_stanzas_total{direction="out",kind="presence"}`:           4,
		`rostergate_stanzas_total{direction="out",kind="iq"}`:                 0,
		`rostergate_stream_up`:                                                1,
		`rostergate_stream_reconnects_total`:                                  2,
		// Two commits: the three requests in one batch, the approval.
		`rostergate_commit_duration_seconds_count`:                       2,
		`rostergate_commit_batch_size_count`:                             2,
		`rostergate_commit_batch_size_sum`:                               4,
		`rostergate_commit_batch_size_bucket{le="1"}`:                    1,
		`rostergate_webhook_deliveries_total{result="ok"}`:               float64(len(evs)),
		`rostergate_webhook_deliveries_total{result="failed"}`:           0,
		`rostergate_webhook_events_dropped_total`:                        0,
		`rostergate_webhook_gaps_total`:                                  0,
		`rostergate_webhook_event_lag_seconds_count`:                     float64(len(evs)),
		`rostergate_config_reloads_total{result="success",via="SIGHUP"}`: 1,
		`rostergate_config_reloads_total{result="failure",via="http"}`:   1,
		`rostergate_config_reloads_total{result="success",via="http"}`:   0,
		`rostergate_config_reloads_total{result="failure",via="SIGHUP"}`: 0,
		`rostergate_config_last_reload_successful`:                       0,
		`rostergate_build_info{version="test"}`:                          1,
		// bob@other.example: rule 2 asked whether he is in staff.
		`rostergate_directory_lookups_total{result="not_member"}`: 1,
		`rostergate_directory_lookups_total{result="member"}`:     0,
		`rostergate_directory_lookups_total{result="error"}`:      0,
		`rostergate_directory_cache_hits_total`:                   0,
		`rostergate_directory_up`:                                 1,
	}
	for k, v := range want {
		got, ok := s.samples[k]
		if !ok {
			t.Errorf("%s missing", k)
		} else if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if len(out) == 0 {
		t.Error("the outbox is empty: its depth checks nothing")
	}
	if ts := s.samples["rostergate_config_last_reload_success_timestamp_seconds"]; ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last successful reload at %v, want about now", ts)
	}
	if s.samples["rostergate_commit_duration_seconds_sum"] <= 0 {
		t.Error("commits took no time")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := s.samples[name]; !ok {
			t.Errorf("%s missing: no Go or process collector", name)
		}
	}
	// JIDs went through (ann@good.example, the pattern *@spam.example,
	// admin@localhost): none is in a label.
	if len(s.values) < 20 {
		t.Fatalf("only %d label values parsed", len(s.values))
	}
	for _, v := range s.values {
		if strings.Contains(v, "@") {
			t.Errorf("a label value holds a JID: %q", v)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "rostergate_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}

	// An address off the list gets a JSON 403, not the metrics.
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	rec := httptest.NewRecorder()
	api.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"error"`) || strings.Contains(rec.Body.String(), "rostergate_") {
		t.Errorf("192.0.2.7: %d %s", rec.Code, rec.Body)
	}
}

// ObserveCommit allocates nothing: it runs on every commit.
func TestObserveCommitAllocatesNothing(t *testing.T) {
	m := metrics.New("test")
	if n := testing.AllocsPerRun(100, func() { m.ObserveCommit(3*time.Millisecond, 17) }); n != 0 {
		t.Errorf("ObserveCommit: %.0f allocations", n)
	}
}
