package webui_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"rostergate/directory"
	"rostergate/engine"
	"rostergate/engine/enginetest"
	"rostergate/gate"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/webui"
	"rostergate/xmpp/stanza"
)

const (
	domain = "bots.localhost"
	admin  = "admin@localhost"
)

// rig is a running rostergate's service (engine attached to a wire that
// keeps what is written) behind the web page on a test server.
type rig struct {
	db   *sqlite.DB
	eng  *engine.Engine
	wire *enginetest.Wire
	svc  *gate.Service
	srv  *httptest.Server
}

type noIQ struct{ t *testing.T }

func (h noIQ) Stanza(_ *bytes.Buffer, el *stanza.Element) { h.t.Errorf("unexpected %s", el.Name) }

func settings(t *testing.T, admins ...string) engine.Settings {
	p, err := policy.Compile(policy.Config{Default: policy.Review, UnknownEntity: policy.Reject})
	if err != nil {
		t.Fatal(err)
	}
	return engine.Settings{Entities: []engine.Entity{{Local: "helpdesk"}, {Local: "sales"}}, Policy: p, Admins: admins}
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(ctx, engine.Options{Domain: domain, Store: db, Settings: settings(t, admin)})
	if err != nil {
		t.Fatal(err)
	}
	w := &enginetest.Wire{}
	if err := eng.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	svc, err := gate.New(gate.Options{Domain: domain, Store: db, Engine: eng, Settings: settings(t, admin)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := webui.New(webui.Options{Service: svc, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	svc.SetWebURL(srv.URL)
	return &rig{db: db, eng: eng, wire: w, svc: svc, srv: srv}
}

// hold has contacts ask helpdesk for its presence (held by the policy) and
// returns the held requests' ids.
func (r *rig) hold(t *testing.T, contacts ...string) []int64 {
	t.Helper()
	ctx := context.Background()
	for _, c := range contacts {
		el := &stanza.Element{Name: "presence", Type: "subscribe", From: c, To: "helpdesk@" + domain}
		if err := r.eng.Handle(ctx, []*stanza.Element{el}, noIQ{t}); err != nil {
			t.Fatal(err)
		}
	}
	reqs, err := r.db.Requests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, c := range contacts {
		for _, q := range reqs {
			if q.Contact == c {
				ids = append(ids, q.ID)
			}
		}
	}
	if len(ids) != len(contacts) {
		t.Fatalf("held %v, want %d", reqs, len(contacts))
	}
	return ids
}

// browser is an HTTP client with a cookie jar that follows no redirect.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func post(t *testing.T, c *http.Client, u string, form url.Values, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// login logs a browser in as admin through a one-time link, and returns
// the session's CSRF token as the inbox page carries it.
func (r *rig) login(t *testing.T, c *http.Client) string {
	t.Helper()
	link, _, err := r.svc.LoginLink(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, r.srv.URL+"/login/rgl_") {
		t.Fatalf("link %q is not under %s/login/", link, r.srv.URL)
	}
	code, body, _ := get(t, c, link)
	if code != 200 || !strings.Contains(body, "as <strong>"+admin+"</strong>") {
		t.Fatalf("the link's page: %d\n%s", code, body)
	}
	code, _, hdr := post(t, c, link, nil)
	if code != http.StatusSeeOther || hdr.Get("Location") != "/inbox" {
		t.Fatalf("using the link: %d, Location %q", code, hdr.Get("Location"))
	}
	ck := hdr.Get("Set-Cookie")
	for _, want := range []string{"rostergate_session=rgs_", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("Set-Cookie %q is Secure over plain HTTP", ck)
	}
	// The link worked once.
	if code, body, _ := post(t, browser(t), link, nil); code != http.StatusForbidden || !strings.Contains(body, "used already or expired") {
		t.Errorf("the link used again: %d\n%s", code, body)
	}
	code, body, _ = get(t, c, r.srv.URL+"/inbox")
	if code != 200 {
		t.Fatalf("inbox: %d\n%s", code, body)
	}
	return csrfOf(t, body)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

func TestLoginAndDecide(t *testing.T) {
	r := newRig(t)
	ids := r.hold(t, "alice@localhost", "bob@example.com", "carol@example.com")
	c := browser(t)

	// Not logged in: the pages send to the login page; acts are refused.
	if code, _, hdr := get(t, c, r.srv.URL+"/inbox"); code != http.StatusSeeOther || hdr.Get("Location") != "/login" {
		t.Errorf("inbox without a session: %d %q", code, hdr.Get("Location"))
	}
	if code, _, _ := post(t, c, r.srv.URL+"/inbox", url.Values{"one": {fmt.Sprintf("approve:%d", ids[0])}}); code != http.StatusUnauthorized {
		t.Errorf("an act without a session: %d, want 401", code)
	}
	if code, body, _ := get(t, c, r.srv.URL+"/login"); code != 200 || !strings.Contains(body, "<kbd>login</kbd> to <strong>"+domain) {
		t.Errorf("login page: %d\n%s", code, body)
	}

	csrf := r.login(t, c)
	_, body, _ := get(t, c, r.srv.URL+"/inbox")
	for _, want := range []string{"alice@localhost", "bob@example.com", "helpdesk@" + domain, "no rule matched; held for review", "3 shown of 3 held"} {
		if !strings.Contains(body, want) {
			t.Errorf("the inbox lacks %q", want)
		}
	}
	// Filters: by the contact's domain, by text.
	if _, body, _ := get(t, c, r.srv.URL+"/inbox?domain=example.com"); !strings.Contains(body, "2 shown of 3 held") || strings.Contains(body, "alice@localhost") {
		t.Errorf("filtered by domain:\n%s", body)
	}
	if _, body, _ := get(t, c, r.srv.URL+"/inbox?q=CAROL"); !strings.Contains(body, "1 shown of 3 held") {
		t.Errorf("filtered by text:\n%s", body)
	}
	// A decision from a filtered inbox comes back to it filtered.
	if _, body, _ := get(t, c, r.srv.URL+"/inbox?domain=example.com&q=o"); !strings.Contains(body, `action="/inbox?domain=example.com&amp;q=o"`) ||
		!strings.Contains(body, `data-rows="/inbox/rows?domain=example.com&amp;q=o"`) {
		t.Errorf("a filtered inbox's form:\n%s", body)
	}

	// A forged form (no CSRF token, a wrong one, another site's) changes
	// nothing.
	for name, f := range map[string]url.Values{
		"no token":    {"one": {fmt.Sprintf("approve:%d", ids[0])}},
		"wrong token": {"one": {fmt.Sprintf("approve:%d", ids[0])}, "csrf": {"x" + csrf}},
	} {
		if code, body, _ := post(t, c, r.srv.URL+"/inbox", f); code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s: %d\n%s", name, code, body)
		}
	}
	if code, _, _ := post(t, c, r.srv.URL+"/inbox", url.Values{"one": {fmt.Sprintf("approve:%d", ids[0])}, "csrf": {csrf}},
		"Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("a cross-site form: %d, want 403", code)
	}
	if reqs, _ := r.svc.Pending(context.Background()); len(reqs) != 3 {
		t.Fatalf("after forged forms: %d pending, want 3", len(reqs))
	}

	// One by its button, then two ticked.
	code, body, _ := post(t, c, r.srv.URL+"/inbox", url.Values{"one": {fmt.Sprintf("approve:%d", ids[0])}, "csrf": {csrf}})
	if code != 200 || !strings.Contains(body, fmt.Sprintf("Approved #%d: alice@localhost → helpdesk@%s", ids[0], domain)) {
		t.Errorf("approve one: %d\n%s", code, body)
	}
	if !strings.Contains(r.wire.String(), `type='subscribed'`) {
		t.Errorf("approving sent no subscribed:\n%s", r.wire.String())
	}
	code, body, _ = post(t, c, r.srv.URL+"/inbox", url.Values{"id": {fmt.Sprint(ids[1]), fmt.Sprint(ids[2]), fmt.Sprint(ids[0])}, "action": {"reject"}, "csrf": {csrf}})
	if code != 200 || !strings.Contains(body, fmt.Sprintf("Rejected #%d: bob@example.com", ids[1])) || !strings.Contains(body, fmt.Sprintf("Rejected #%d: carol@example.com", ids[2])) ||
		!strings.Contains(body, fmt.Sprintf("#%d is not pending: was already approved by %s (web)", ids[0], admin)) {
		t.Errorf("reject many:\n%s", body)
	}
	if reqs, _ := r.svc.Pending(context.Background()); len(reqs) != 0 {
		t.Errorf("still pending: %v", reqs)
	}
	// Bad forms say what is wrong.
	for f, want := range map[string]string{
		"action=approve":      "No request ticked",
		"action=keep&id=1":    `&#34;keep&#34; is neither approve nor reject`,
		"action=approve&id=x": `&#34;x&#34; is not a request id`,
		"one=approve:":        `&#34;approve:&#34; is not an act on a request`,
	} {
		v, _ := url.ParseQuery(f)
		v.Set("csrf", csrf)
		if _, body, _ := post(t, c, r.srv.URL+"/inbox", v); !strings.Contains(body, want) {
			t.Errorf("%s: the page lacks %q", f, want)
		}
	}

	// The audit log has the acts, by the admin through the web.
	_, body, _ = get(t, c, r.srv.URL+"/audit?via=web")
	if !strings.Contains(body, admin+" (web)") || strings.Contains(body, "(stream)") {
		t.Errorf("audit via=web:\n%s", body)
	}
	// The download link of a filtered page downloads what it shows.
	_, body, _ = get(t, c, r.srv.URL+"/audit?via=web&contact=bob")
	lm := regexp.MustCompile(`href="([^"]+)" id="csv"`).FindStringSubmatch(body)
	if lm == nil {
		t.Fatalf("no CSV link:\n%s", body)
	}
	_, body, _ = get(t, c, r.srv.URL+strings.ReplaceAll(lm[1], "&amp;", "&"))
	if recs, err := csv.NewReader(strings.NewReader(body)).ReadAll(); err != nil || len(recs) != 2 || recs[1][3] != "bob@example.com" || recs[1][10] != "web" {
		t.Errorf("the filtered page's CSV (%s): %v\n%s", lm[1], err, body)
	}
	code, body, hdr := get(t, c, r.srv.URL+"/audit?via=web&format=csv")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %d %s", code, hdr.Get("Content-Type"))
	}
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 4 || recs[0][0] != "id" {
		t.Errorf("CSV: %d records, %v\n%s", len(recs), err, body)
	}
	_, body, _ = get(t, c, r.srv.URL+"/audit?format=json&contact=bob")
	var evs []map[string]any
	if err := json.Unmarshal([]byte(body), &evs); err != nil || len(evs) < 2 {
		t.Errorf("JSON: %d events, %v\n%s", len(evs), err, body)
	}
	for _, e := range evs {
		if e["contact"] != "bob@example.com" {
			t.Errorf("JSON filtered on bob has %v", e)
		}
	}
	if code, body, _ := get(t, c, r.srv.URL+"/audit?since=yesterday"); code != http.StatusUnprocessableEntity || !strings.Contains(body, `since: &#34;yesterday&#34; is not a date`) {
		t.Errorf("a bad since: %d\n%s", code, body)
	}

	// Only plain forms are taken.
	req, _ := http.NewRequest("POST", r.srv.URL+"/lists", strings.NewReader("--x\r\n"))
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("a multipart form: %s, want 415", resp.Status)
	}

	// Logging out ends the session.
	if code, _, _ := post(t, c, r.srv.URL+"/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("logout: %d", code)
	}
	if code, _, _ := get(t, c, r.srv.URL+"/inbox"); code != http.StatusSeeOther {
		t.Errorf("inbox after logout: %d, want 303 to the login page", code)
	}
}

func TestLoginRefused(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.svc.LoginLink(ctx, "eve@localhost"); err == nil {
		t.Error("a login link made for a non-admin")
	}
	// A made-up link, a session as a link, an expired link.
	c := browser(t)
	for name, path := range map[string]string{"made up": "/login/rgl_madeup", "no prefix": "/login/abc"} {
		if code, body, _ := get(t, c, r.srv.URL+path); code != http.StatusForbidden || !strings.Contains(body, "does not work") {
			t.Errorf("%s: %d\n%s", name, code, body)
		}
	}
	h := sha256.Sum256([]byte("rgl_expired"))
	past := time.Now().Add(-time.Minute)
	if err := r.db.CreateWebKey(ctx, store.WebKey{Hash: h[:], Kind: store.KindLogin, JID: admin, Created: past.Add(-5 * time.Minute), Expires: past}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post(t, c, r.srv.URL+"/login/rgl_expired", nil); code != http.StatusForbidden || !strings.Contains(body, "expired") {
		t.Errorf("an expired link: %d\n%s", code, body)
	}
	// A link made for an admin who is no longer one, and their session.
	link, _, err := r.svc.LoginLink(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	c2 := browser(t)
	csrf := r.login(t, c2)
	if err := r.svc.Reload(ctx, settings(t, "root@localhost")); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post(t, c, link, nil); code != http.StatusForbidden || !strings.Contains(body, admin+" is no longer an admin") {
		t.Errorf("a former admin's link: %d\n%s", code, body)
	}
	if code, _, _ := get(t, c2, r.srv.URL+"/inbox"); code != http.StatusSeeOther {
		t.Errorf("a former admin's session: %d, want 303 to the login page", code)
	}
	if code, _, _ := post(t, c2, r.srv.URL+"/lists", url.Values{"csrf": {csrf}, "list": {"deny"}, "op": {"add"}, "pattern": {"*@x.example"}}); code != http.StatusUnauthorized {
		t.Errorf("a former admin's act: %d, want 401", code)
	}
	if _, deny, _ := r.svc.Lists(ctx); len(deny) != 0 {
		t.Errorf("a former admin's act changed the deny list: %v", deny)
	}
}

// The login page sends a link over XMPP to an admin, and answers the same
// for anyone else (who learns nothing); too many asks are refused.
func TestLoginSend(t *testing.T) {
	r := newRig(t)
	c := browser(t)
	code, body, _ := post(t, c, r.srv.URL+"/login/send", url.Values{"jid": {"Admin@LocalHost/phone"}})
	if code != 200 || !strings.Contains(body, "If admin@localhost is an admin") {
		t.Errorf("send: %d\n%s", code, body)
	}
	// The link goes out after the answer.
	linkRE := regexp.MustCompile(`to='admin@localhost'[^>]*>.*?(http://[^\s<]+/login/rgl_[A-Za-z0-9_-]+)`)
	var m []string
	for deadline := time.Now().Add(5 * time.Second); m == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		m = linkRE.FindStringSubmatch(r.wire.String())
	}
	if m == nil {
		t.Fatalf("no login link sent over XMPP:\n%s", r.wire.String())
	}
	// The link logs in.
	if code, _, hdr := post(t, c, m[1], nil); code != http.StatusSeeOther || !strings.Contains(hdr.Get("Set-Cookie"), "rgs_") {
		t.Errorf("the link sent: %d %q", code, hdr.Get("Set-Cookie"))
	}
	// A second ask for the same JID within the minute sends nothing more.
	r.wire.Reset()
	if code, _, _ := post(t, browser(t), r.srv.URL+"/login/send", url.Values{"jid": {"admin@localhost"}}); code != 200 {
		t.Errorf("a second ask: %d", code)
	}
	code, body2, _ := post(t, c, r.srv.URL+"/login/send", url.Values{"jid": {"eve@localhost"}})
	if code != 200 || !strings.Contains(body2, "If eve@localhost is an admin") {
		t.Errorf("send to a non-admin: %d\n%s", code, body2)
	}
	time.Sleep(200 * time.Millisecond) // what would have been sent by now
	if got := r.wire.String(); got != "" {
		t.Errorf("sent after a second ask, or to a non-admin: %q", got)
	}
	if code, _, _ := post(t, c, r.srv.URL+"/login/send", url.Values{"jid": {"not a jid@@"}}); code != http.StatusUnprocessableEntity {
		t.Errorf("a bad JID: %d, want 422", code)
	}
	limited := false
	for range 5 {
		if code, _, _ := post(t, c, r.srv.URL+"/login/send", url.Values{"jid": {"eve@localhost"}}); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("no limit on the login links asked for from one address")
	}
}

// The live inbox: an event when a request arrives and when one is decided.
func TestInboxEvents(t *testing.T) {
	r := newRig(t)
	c := browser(t)
	r.login(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.srv.URL+"/inbox/events", nil)
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
		close(events)
	}()
	next := func(want string) {
		t.Helper()
		select {
		case d := <-events:
			if d != want {
				t.Errorf("event data %q, want %q", d, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %q", want)
		}
	}
	next("0")
	ids := r.hold(t, "alice@localhost")
	next("1")
	if _, err := r.svc.Decide(ctx, roster.Actor{JID: "root@localhost", Via: roster.ViaChat}, ids, true); err != nil {
		t.Fatal(err)
	}
	next("0")
	// The rows fragment for the refresh.
	r.hold(t, "bob@localhost")
	code, body, hdr := get(t, c, r.srv.URL+"/inbox/rows")
	if code != 200 || hdr.Get("X-Held") != "1" || !strings.Contains(body, "bob@localhost") || strings.Contains(body, "<html") {
		t.Errorf("rows: %d %q\n%s", code, hdr.Get("X-Held"), body)
	}
}

func TestListsExplainRosters(t *testing.T) {
	r := newRig(t)
	c := browser(t)
	csrf := r.login(t, c)
	code, body, _ := post(t, c, r.srv.URL+"/lists", url.Values{"csrf": {csrf}, "list": {"deny"}, "op": {"add"}, "pattern": {"*@spam.example"}})
	if code != 200 || !strings.Contains(body, `Added &#34;*@spam.example&#34; to the deny list.`) {
		t.Errorf("add: %d\n%s", code, body)
	}
	if _, deny, _ := r.svc.Lists(context.Background()); len(deny) != 1 || deny[0] != "*@spam.example" {
		t.Errorf("deny list %v", deny)
	}
	if code, body, _ := post(t, c, r.srv.URL+"/lists", url.Values{"csrf": {csrf}, "list": {"deny"}, "op": {"add"}, "pattern": {"[bad"}}); code != http.StatusUnprocessableEntity || !strings.Contains(body, `class="error"`) {
		t.Errorf("a bad pattern: %d\n%s", code, body)
	}
	if code, _, _ := post(t, c, r.srv.URL+"/lists", url.Values{"csrf": {csrf}, "list": {"grey"}, "op": {"add"}, "pattern": {"x"}}); code != http.StatusUnprocessableEntity {
		t.Errorf("an unknown list: %d", code)
	}
	_, body, _ = get(t, c, r.srv.URL+"/explain?contact=mallory@spam.example&entity=helpdesk")
	if !strings.Contains(body, "<strong>reject</strong>") || strings.Contains(body, `class="groups"`) {
		t.Errorf("explain a denied contact:\n%s", body)
	}
	// A group rule: what the directory said is shown.
	gs := settings(t, admin)
	var err error
	if gs.Policy, err = policy.Compile(policy.Config{Default: policy.Review, Rules: []policy.Rule{{Group: "staff", Action: policy.Accept}}}); err != nil {
		t.Fatal(err)
	}
	gs.Directory = directory.Config{File: "groups.toml", Groups: map[string][]string{"staff": {"zed@localhost"}}}
	if err := r.svc.Reload(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	_, body, _ = get(t, c, r.srv.URL+"/explain?contact=zed@localhost&entity=helpdesk")
	if !strings.Contains(body, "<strong>accept</strong>") || !strings.Contains(body, `<ul class="groups"><li>rule 1 group staff: zed@localhost is a member (groups file)</li></ul>`) {
		t.Errorf("explain a group rule:\n%s", body)
	}
	if err := r.svc.Reload(context.Background(), settings(t, admin)); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, c, r.srv.URL+"/explain?contact=&entity=helpdesk"); code != http.StatusUnprocessableEntity || !strings.Contains(body, `class="error"`) {
		t.Errorf("explain without a contact: %d\n%s", code, body)
	}
	r.hold(t, "alice@localhost")
	if _, err := r.svc.Decide(context.Background(), roster.Actor{JID: admin, Via: roster.ViaChat}, []int64{1}, true); err != nil {
		t.Fatal(err)
	}
	_, body, _ = get(t, c, r.srv.URL+"/rosters")
	if !strings.Contains(body, `href="/rosters/helpdesk"`) {
		t.Errorf("rosters:\n%s", body)
	}
	_, body, _ = get(t, c, r.srv.URL+"/rosters/helpdesk")
	if !strings.Contains(body, `<td data-label="Contact">alice@localhost</td><td data-label="Subscription">from</td>`) {
		t.Errorf("helpdesk's roster:\n%s", body)
	}
	if code, body, _ := get(t, c, r.srv.URL+"/rosters/nosuch"); code != 404 || !strings.Contains(body, "nosuch@"+domain+" is not an entity") {
		t.Errorf("no such entity: %d\n%s", code, body)
	}
	if code, _, hdr := get(t, c, r.srv.URL+"/static/app.css"); code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") {
		t.Errorf("the style sheet: %d %s", code, hdr.Get("Content-Type"))
	}
	_, _, hdr := get(t, c, r.srv.URL+"/inbox")
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if hdr.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, hdr.Get(k), want)
		}
	}
}

// A page of the audit log holds 100 events, newest first; "older" goes on.
func TestAuditPaging(t *testing.T) {
	r := newRig(t)
	c := browser(t)
	csrf := r.login(t, c)
	for i := range 130 {
		if code, _, _ := post(t, c, r.srv.URL+"/lists", url.Values{"csrf": {csrf}, "list": {"allow"}, "op": {"add"}, "pattern": {fmt.Sprintf("u%d@x.example", i)}}); code != 200 {
			t.Fatalf("add %d: %d", i, code)
		}
	}
	_, body, _ := get(t, c, r.srv.URL+"/audit?via=web")
	if n := strings.Count(body, "<tr>") - 1; n != 100 {
		t.Errorf("first page: %d events, want 100", n)
	}
	if !strings.Contains(body, "u129@x.example") || strings.Contains(body, "u29@x.example<") {
		t.Errorf("first page is not the newest 100")
	}
	m := regexp.MustCompile(`href="(/audit\?[^"]*)" id="older"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no link to older events:\n%s", body)
	}
	_, body, _ = get(t, c, r.srv.URL+strings.ReplaceAll(m[1], "&amp;", "&"))
	if n := strings.Count(body, "<tr>") - 1; n != 30 || !strings.Contains(body, "u0@x.example") || strings.Contains(body, `id="older"`) {
		t.Errorf("second page: %d events\n%s", n, body)
	}
}
