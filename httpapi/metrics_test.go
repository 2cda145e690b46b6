package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"rostergate/httpapi"
)

// GET /metrics needs no token but an address on [http] metrics_allow:
// the test server's peer is 127.0.0.1, refused with 403 (JSON) while the
// list leaves it out, served once a reload lets it in; an empty list
// refuses everyone.
func TestMetricsAllowList(t *testing.T) {
	scraped := 0
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scraped++
		io.WriteString(w, "rostergate_up 1\n")
	})
	f := newFixture(t, httpapi.Options{Metrics: metrics, MetricsAllow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	status, body := f.call(t, "GET", "/metrics", "", "")
	var e struct{ Error string }
	if status != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "127.0.0.1 is not in [http] metrics_allow") {
		t.Errorf("127.0.0.1 not allowed: %d %s", status, body)
	}
	f.api.SetMetricsAllow([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	if status, body := f.call(t, "GET", "/metrics", "", ""); status != http.StatusOK || body != "rostergate_up 1\n" {
		t.Errorf("127.0.0.1 allowed: %d %s", status, body)
	}
	f.api.SetMetricsAllow(nil)
	if status, body := f.call(t, "GET", "/metrics", "", ""); status != http.StatusForbidden || !strings.Contains(body, "metrics_allow is empty") {
		t.Errorf("empty list: %d %s", status, body)
	}
	if status, _ := f.call(t, "POST", "/metrics", "", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", status)
	}
	if scraped != 1 {
		t.Errorf("the metrics were served %d times, want once", scraped)
	}

	// IPv6 peers, and IPv4 ones seen through an IPv6 socket.
	f.api.SetMetricsAllow([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")})
	for addr, want := range map[string]int{
		"[::ffff:127.0.0.1]:4000": 200, "[::1]:4000": 200, "127.9.9.9:1": 200,
		"[::2]:4000": 403, "192.0.2.1:80": 403, "[::ffff:192.0.2.1]:80": 403, "@": 403,
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("peer %s: %d %s, want %d", addr, rec.Code, rec.Body, want)
		}
	}

	// Without metrics, no /metrics.
	g := newFixture(t, httpapi.Options{})
	if status, _ := g.call(t, "GET", "/metrics", "", ""); status != http.StatusNotFound {
		t.Errorf("no Metrics: %d, want 404", status)
	}
}
