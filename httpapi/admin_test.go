package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"rostergate/directory"
	"rostergate/engine"
	"rostergate/httpapi"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/xmpp/stanza"
)

// The admin API: an admin token lists the held requests, decides them (one
// decided already says by whom), edits the lists, explains, pages the audit
// log and reads a roster; an entity's token may not.
func TestAdminAPI(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	ctx := context.Background()
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Drop,
		Rules: []policy.Rule{{Group: "staff", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	staff := directory.Config{File: "groups.toml", Groups: map[string][]string{"staff": {"zed@localhost"}}}
	if err := f.svc.Reload(ctx, engine.Settings{Entities: []engine.Entity{{Local: "helpdesk"}}, Policy: p, Directory: staff}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"alice@localhost", "bob@example.com"} {
		f.handle(t, &stanza.Element{Name: "presence", Type: "subscribe", From: c, To: "helpdesk@" + domain})
	}
	admin, _, err := f.svc.CreateAdminToken(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	bot := f.token(t, "helpdesk")
	if code, body := f.call(t, "GET", "/api/v1/admin/requests", bot, ""); code != 403 || !strings.Contains(body, "not an admin's") {
		t.Errorf("an entity's token: %d %s", code, body)
	}
	if code, _ := f.call(t, "GET", "/api/v1/admin/requests", "", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}

	code, body := f.call(t, "GET", "/api/v1/admin/requests", admin, "")
	var reqs struct{ Requests []httpapi.HeldRequest }
	if err := json.Unmarshal([]byte(body), &reqs); code != 200 || err != nil || len(reqs.Requests) != 2 ||
		reqs.Requests[0].Contact != "alice@localhost" || reqs.Requests[0].Entity != "helpdesk@"+domain || reqs.Requests[0].Why != "no rule matched; held for review" {
		t.Fatalf("requests: %d %s (%v)", code, body, err)
	}
	a, b := reqs.Requests[0].ID, reqs.Requests[1].ID

	code, body = f.call(t, "POST", "/api/v1/admin/requests/decide", admin, fmt.Sprintf(`{"ids":[%d],"action":"approve"}`, a))
	if code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Errorf("approve: %d %s", code, body)
	}
	if !strings.Contains(f.w.String(), "type='subscribed'") {
		t.Errorf("approving sent no subscribed: %s", f.w.String())
	}
	code, body = f.call(t, "POST", "/api/v1/admin/requests/decide", admin, fmt.Sprintf(`{"ids":[%d,%d,999],"action":"reject"}`, a, b))
	var res struct{ Results []httpapi.Decision }
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil || len(res.Results) != 3 {
		t.Fatalf("reject: %d %s", code, body)
	}
	if r := res.Results[0]; r.OK || !strings.Contains(r.Error, "already approved by token:") || !strings.Contains(r.Error, "(api)") {
		t.Errorf("rejecting an approved request: %+v", r)
	}
	if r := res.Results[1]; !r.OK || r.Request == nil || r.Request.Contact != "bob@example.com" {
		t.Errorf("rejecting bob: %+v", r)
	}
	if r := res.Results[2]; r.OK || !strings.Contains(r.Error, "not pending") {
		t.Errorf("an unknown id: %+v", r)
	}
	for body, want := range map[string]string{
		`{"ids":[1],"action":"maybe"}`:    `\"maybe\" is neither approve nor reject`,
		`{"ids":[],"action":"approve"}`:   "no request id",
		`{"ids":[-1],"action":"approve"}`: "-1 is not a request id",
		`{"id":1}`:                        "unknown field",
	} {
		if code, got := f.call(t, "POST", "/api/v1/admin/requests/decide", admin, body); code/100 != 4 || !strings.Contains(got, want) {
			t.Errorf("%s: %d %s, want %q", body, code, got, want)
		}
	}

	code, body = f.call(t, "POST", "/api/v1/admin/lists/deny", admin, `{"pattern":"*@spam.example"}`)
	if code != 200 || !strings.Contains(body, `"changed":true`) || !strings.Contains(body, `"deny":["*@spam.example"]`) {
		t.Errorf("add to deny: %d %s", code, body)
	}
	if code, body := f.call(t, "POST", "/api/v1/admin/lists/grey", admin, `{"pattern":"x"}`); code != 404 {
		t.Errorf("an unknown list: %d %s", code, body)
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/explain?contact=eve@spam.example&entity=helpdesk", admin, ""); code != 200 || !strings.Contains(body, `"action":"reject"`) ||
		strings.Contains(body, `"groups"`) {
		t.Errorf("explain: %d %s", code, body)
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/explain?contact=zed@localhost&entity=helpdesk", admin, ""); code != 200 ||
		!strings.Contains(body, `"action":"accept"`) || !strings.Contains(body, `"groups":["rule 1 group staff: zed@localhost is a member (groups file)"]`) {
		t.Errorf("explain a group rule: %d %s", code, body)
	}
	code, body = f.call(t, "DELETE", "/api/v1/admin/lists/deny?pattern=*@spam.example", admin, "")
	if code != 200 || !strings.Contains(body, `"deny":[]`) {
		t.Errorf("remove from deny: %d %s", code, body)
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/lists", admin, ""); code != 200 || body != `{"allow":[],"deny":[]}`+"\n" {
		t.Errorf("lists: %d %q", code, body)
	}

	// The audit log, in pages.
	var all []httpapi.AuditEvent
	after := int64(0)
	for range 10 {
		code, body := f.call(t, "GET", fmt.Sprintf("/api/v1/admin/audit?limit=2&after=%d", after), admin, "")
		var page struct {
			Events    []httpapi.AuditEvent
			More      bool
			NextAfter int64 `json:"next_after"`
		}
		if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil {
			t.Fatalf("audit: %d %s", code, body)
		}
		all = append(all, page.Events...)
		after = page.NextAfter
		if !page.More {
			break
		}
	}
	byToken := 0
	for i, e := range all {
		if i > 0 && e.ID <= all[i-1].ID {
			t.Errorf("audit out of order: %d after %d", e.ID, all[i-1].ID)
		}
		if strings.HasPrefix(e.Actor, "token:") && e.Via == roster.ViaAPI {
			byToken++
		}
	}
	if len(all) < 6 || byToken != 4 {
		t.Errorf("audit: %d events, %d by the token (want 4: approve, reject, add, remove)", len(all), byToken)
	}

	code, body = f.call(t, "GET", "/api/v1/admin/entities/helpdesk/roster", admin, "")
	if code != 200 || !strings.Contains(body, `"contact":"alice@localhost","subscription":"from"`) {
		t.Errorf("roster: %d %s", code, body)
	}
	if code, body := f.call(t, "GET", "/api/v1/admin/entities/nosuch/roster", admin, ""); code != 404 || !strings.Contains(body, "not an entity") {
		t.Errorf("no such entity: %d %s", code, body)
	}
}

// With a web page mounted, the API's paths stay the API's (JSON refusals
// included) and every other path is the page's.
func TestWebBesideAPI(t *testing.T) {
	web := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "web page: "+r.URL.Path) })
	f := newFixture(t, httpapi.Options{Web: web})
	for path, want := range map[string]string{
		"/":                            "web page: /",
		"/inbox":                       "web page: /inbox",
		"/login/rgl_x":                 "web page: /login/rgl_x",
		"/apix":                        "web page: /apix",
		"/livez":                       `{"live":true}`,
		"/api/v1/nope":                 `{"error":"no such resource`,
		"/api/v1/admin/requests":       `{"error":"no token`,
		"/api/v1/entities/x/roster":    `{"error":"no token`,
		"/-/reload":                    `{"error":"/-/reload does not take GET`,
		"/api/v1/../inbox":             `{"error":"no such resource`,
		"/api/v1/entities/../../inbox": `{"error":"no such resource`,
	} {
		resp, err := http.Get(f.http.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(b), want) {
			t.Errorf("GET %s: %d %q, want %q…", path, resp.StatusCode, b, want)
		}
	}
}

// A standby's listener: live, not ready (saying who is active), its own
// metrics to the allowed peers, 503 for the rest.
func TestStandbyHandler(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "rostergate_active 0\n") })
	h := httpapi.StandbyHandler(httpapi.StandbyOptions{
		Active:       func(context.Context) string { return "db1:4242 (since 08:00)" },
		Metrics:      metrics,
		MetricsAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	for _, tc := range []struct {
		path, remote string
		status       int
		want         string
	}{
		{"/livez", "127.0.0.1:1", 200, `{"live":true,"role":"standby"}`},
		{"/readyz", "127.0.0.1:1", 503, `{"ready":false,"role":"standby","active":"db1:4242 (since 08:00)"}`},
		{"/metrics", "127.0.0.1:1", 200, "rostergate_active 0"},
		{"/metrics", "192.0.2.1:1", 403, "not in [http] metrics_allow"},
		{"/api/v1/entities/helpdesk/roster", "127.0.0.1:1", 503, "this rostergate is a standby; the active one is db1:4242"},
		{"/inbox", "127.0.0.1:1", 503, "standby"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", tc.path, nil)
		req.RemoteAddr = tc.remote
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s from %s: %d %q, want %d %q", tc.path, tc.remote, rec.Code, rec.Body.String(), tc.status, tc.want)
		}
	}
}
