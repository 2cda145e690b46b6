package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/engine/enginetest"
	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

const domain = "bots.localhost"

// fixture is an engine over a fresh store, attached to a Wire, with the
// service and the API over it.
type fixture struct {
	eng  *engine.Engine
	db   *sqlite.DB
	w    *enginetest.Wire
	svc  *gate.Service
	api  *httpapi.Server
	http *httptest.Server
}

func newFixture(t *testing.T, o httpapi.Options, ents ...engine.Entity) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Drop})
	if err != nil {
		t.Fatal(err)
	}
	if ents == nil {
		ents = []engine.Entity{{Local: "helpdesk"}, {Local: "other"}, {Local: "open", SendTo: engine.SendAnyone}}
	}
	st := engine.Settings{Entities: ents, Policy: p}
	eng, err := engine.New(ctx, engine.Options{Domain: domain, Store: db, Settings: st, API: true})
	if err != nil {
		t.Fatal(err)
	}
	w := &enginetest.Wire{}
	if err := eng.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	svc, err := gate.New(gate.Options{Domain: domain, Store: db, Engine: eng, Settings: st})
	if err != nil {
		t.Fatal(err)
	}
	o.Service = svc
	api, err := httpapi.New(o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &fixture{eng: eng, db: db, w: w, svc: svc, api: api, http: hs}
}

// handle feeds stanzas to the engine as the server would.
func (f *fixture) handle(t *testing.T, els ...*stanza.Element) {
	t.Helper()
	if err := f.eng.Handle(context.Background(), els, nil); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) token(t *testing.T, entities ...string) string {
	t.Helper()
	tok, _, err := f.svc.CreateToken(context.Background(), entities)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call makes a request and returns the status and the body.
func (f *fixture) call(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (f *fixture) audit(t *testing.T) []roster.Event {
	t.Helper()
	var out []roster.Event
	if err := f.db.Events(context.Background(), time.Time{}, func(e roster.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func pres(typ, from, to string) *stanza.Element {
	return &stanza.Element{Name: "presence", Type: typ, From: from, To: to, ID: "x"}
}

// Every bad request is refused with a JSON error naming what is wrong and
// the status of its kind; nothing is sent, nothing stored.
func TestRefusals(t *testing.T) {
	f := newFixture(t, httpapi.Options{MaxBody: 2048})
	tok := f.token(t, "helpdesk")
	otherTok := f.token(t, "other")
	revoked, rt, err := f.svc.CreateToken(context.Background(), []string{"helpdesk"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.RevokeToken(context.Background(), rt.ID); err != nil {
		t.Fatal(err)
	}
	f.handle(t, pres("subscribe", "ann@example.com", "helpdesk@"+domain)) // a subscriber (from)
	auditBefore := len(f.audit(t))
	f.w.Reset()
	const msgs = "/api/v1/entities/helpdesk/messages"
	big := `{"to":"ann@example.com","body":"` + strings.Repeat("x", 3000) + `"}`
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		says                            string
	}{
		{"no token", "GET", "/api/v1/entities/helpdesk/roster", "", "", 401, "no token"},
		{"unknown token", "GET", "/api/v1/entities/helpdesk/roster", "rgt_AAAA", "", 401, "unknown or revoked"},
		{"not a token", "GET", "/api/v1/entities/helpdesk/roster", "hunter2", "", 401, "unknown or revoked"},
		{"revoked token", "GET", "/api/v1/entities/helpdesk/roster", revoked, "", 401, "revoked"},
		{"another entity's token", "GET", "/api/v1/entities/helpdesk/roster", otherTok, "", 403, "not for helpdesk@" + domain},
		{"no such entity", "GET", "/api/v1/entities/nobody/roster", tok, "", 404, `"nobody" is no entity`},
		{"not JSON", "POST", msgs, tok, `{"to":`, 400, "not the JSON object"},
		{"empty body", "POST", msgs, tok, ``, 400, "empty body"},
		{"unknown field", "POST", msgs, tok, `{"to":"ann@example.com","body":"x","html":"<b/>"}`, 400, `unknown field "html"`},
		{"two values", "POST", msgs, tok, `{"to":"ann@example.com","body":"x"} {}`, 400, "more than one JSON value"},
		{"wrong JSON type", "POST", msgs, tok, `{"to":5,"body":"x"}`, 400, "not the JSON object"},
		{"too big", "POST", msgs, tok, big, 413, "larger than 2048 bytes"},
		{"a JID that does not parse", "POST", msgs, tok, `{"to":"ann@@example.com","body":"x"}`, 422, "is not a JID"},
		{"no to", "POST", msgs, tok, `{"body":"x"}`, 422, "to: required"},
		{"an unknown type", "POST", msgs, tok, `{"to":"ann@example.com","body":"x","type":"groupchat"}`, 422, "not chat, normal or headline"},
		{"no body", "POST", msgs, tok, `{"to":"ann@example.com"}`, 422, "body: required"},
		{"a character XML forbids", "POST", msgs, tok, `{"to":"ann@example.com","body":"a\u0001b"}`, 422, "U+0001"},
		{"a non-subscriber", "POST", msgs, tok, `{"to":"bob@example.com","body":"x"}`, 403, "not a subscriber"},
		{"a bad show", "PUT", "/api/v1/entities/helpdesk/presence", tok, `{"show":"sleeping"}`, 422, "show"},
		{"a full JID to subscribe to", "POST", "/api/v1/entities/helpdesk/subscriptions", tok, `{"jid":"ann@example.com/pc"}`, 422, "not a bare JID"},
		{"no such contact", "DELETE", "/api/v1/entities/helpdesk/roster/zed@example.com", tok, "", 404, "not on the roster"},
		{"a bad after", "GET", "/api/v1/entities/helpdesk/events?after=-1", tok, "", 400, "after"},
		{"a wait too long", "GET", "/api/v1/entities/helpdesk/events?wait=1h", tok, "", 400, "wait"},
		{"no such path", "GET", "/api/v2/x", tok, "", 404, "no such resource"},
		{"a method the path does not take", "POST", "/api/v1/entities/helpdesk/roster", tok, "{}", 405, "does not take POST"},
		{"an entity with a resource", "GET", "/api/v1/entities/helpdesk%2Fx/roster", tok, "", 404, "is no entity"},
	} {
		status, body := f.call(t, tc.method, tc.path, tc.token, tc.body)
		var e struct {
			Error string `json:"error"`
		}
		if status != tc.status || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tc.says) {
			t.Errorf("%s: %d %s, want %d and an error saying %q", tc.name, status, body, tc.status, tc.says)
		}
	}
	if f.w.String() != "" {
		t.Errorf("refused requests sent %s", f.w.String())
	}
	if n := len(f.audit(t)); n != auditBefore {
		t.Errorf("refused requests stored %d audit rows", n-auditBefore)
	}
	if last, err := f.svc.LastEvent(context.Background(), "helpdesk"); err != nil || last != 0 {
		t.Errorf("refused requests logged events (last %d, %v)", last, err)
	}
	if ps, err := f.db.Presences(context.Background()); err != nil || len(ps) != 0 {
		t.Errorf("a refused presence was stored: %v, %v", ps, err)
	}
	// The scheme is case-insensitive (RFC 6750 §2.1).
	req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/entities/helpdesk/roster", nil)
	req.Header.Set("Authorization", "bearer "+tok)
	if resp, err := f.http.Client().Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("a lower-case bearer: %v, %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	// Without a stream nothing can be sent: 503, and the state is kept.
	f.eng.Detach()
	if status, body := f.call(t, "POST", msgs, tok, `{"to":"ann@example.com","body":"x"}`); status != 503 || !strings.Contains(body, "not connected") {
		t.Errorf("while disconnected: %d %s", status, body)
	}
	if status, _ := f.call(t, "POST", "/api/v1/entities/helpdesk/subscriptions", tok, `{"jid":"ann@example.com"}`); status != 503 {
		t.Errorf("subscribe while disconnected: %d", status)
	}
	if it, err := f.db.Get(context.Background(), "helpdesk", "ann@example.com"); err != nil || it.PendingOut {
		t.Errorf("after a refused subscribe: %+v, %v", it, err)
	}
}

// The token's rate: over it, 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	r, err := limits.ParseRate("2/1m")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, httpapi.Options{Rate: r})
	tok, other := f.token(t, "helpdesk"), f.token(t, "helpdesk")
	for i, want := range []int{200, 200, 429} {
		if status, body := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", tok, ""); status != want {
			t.Errorf("request %d: %d %s, want %d", i+1, status, body, want)
		}
	}
	if status, _ := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", other, ""); status != 200 {
		t.Errorf("another token is not limited by the first: %d", status)
	}
}

// What a bot does through the API: its roster with its contacts'
// presence, messages, its presence, subscribing and removing; every act
// audited as the token's.
func TestBotActs(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	tok, info, err := f.svc.CreateToken(context.Background(), []string{"helpdesk@" + domain})
	if err != nil {
		t.Fatal(err)
	}
	ent := "helpdesk@" + domain
	// ann: both ways; bob: a subscriber only.
	f.handle(t, pres("subscribe", "ann@example.com", ent), pres("subscribe", "bob@example.com", ent))
	if status, body := f.call(t, "POST", "/api/v1/entities/helpdesk/subscriptions", tok, `{"jid":"Ann@Example.com"}`); status != 202 || !strings.Contains(body, `"ann@example.com"`) {
		t.Fatalf("subscribe: %d %s", status, body)
	}
	if !strings.Contains(f.w.String(), "type='subscribe'") {
		t.Errorf("no subscribe sent: %s", f.w.String())
	}
	f.handle(t, pres("subscribed", "ann@example.com", ent))
	f.handle(t, &stanza.Element{Name: "presence", From: "ann@example.com/phone", To: ent, Show: "away", Status: "on the train"})
	status, body := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", tok, "")
	want := `{"items":[{"jid":"ann@example.com","subscription":"both","pending_in":false,"pending_out":false,"presence":[{"resource":"phone","show":"away","status":"on the train"}]},` +
		`{"jid":"bob@example.com","subscription":"from","pending_in":false,"pending_out":false,"presence":[]}]}` + "\n"
	if status != 200 || body != want {
		t.Errorf("roster: %d\n%s\nwant\n%s", status, body, want)
	}

	f.w.Reset()
	status, body = f.call(t, "POST", "/api/v1/entities/helpdesk/messages", tok, `{"to":"bob@example.com/pc","body":"Hello <Bob>","type":"normal","thread":"t7","id":"mine-1"}`)
	if status != 202 || body != `{"id":"mine-1"}`+"\n" {
		t.Errorf("message: %d %s", status, body)
	}
	wantMsg := `<message from='helpdesk@bots.localhost/rostergate' to='bob@example.com/pc' id='mine-1' type='normal'><body>Hello &lt;Bob&gt;</body><thread>t7</thread></message>`
	if f.w.String() != wantMsg {
		t.Errorf("sent %s\nwant %s", f.w.String(), wantMsg)
	}

	f.w.Reset()
	if status, body := f.call(t, "PUT", "/api/v1/entities/helpdesk/presence", tok, `{"show":"dnd","status":"in a meeting"}`); status != 200 {
		t.Errorf("presence: %d %s", status, body)
	}
	if got := f.w.Presences(); len(got) != 2 || !strings.Contains(f.w.String(), "<show>dnd</show>") {
		t.Errorf("presence sent to the subscribers: %q\n%s", got, f.w.String())
	}

	// DELETE presence puts the configured one back (none here: available).
	f.w.Reset()
	if status, body := f.call(t, "DELETE", "/api/v1/entities/helpdesk/presence", tok, ""); status != 204 {
		t.Errorf("presence back: %d %s", status, body)
	}
	if got := f.w.Presences(); len(got) != 2 || strings.Contains(f.w.String(), "<show>") {
		t.Errorf("the configured presence sent: %q\n%s", got, f.w.String())
	}
	if ps, _ := f.db.Presences(context.Background()); len(ps) != 0 {
		t.Errorf("the bot's presence still stored: %v", ps)
	}

	f.w.Reset()
	if status, body := f.call(t, "DELETE", "/api/v1/entities/helpdesk/roster/ann@example.com", tok, ""); status != 204 {
		t.Errorf("remove: %d %s", status, body)
	}
	if got := f.w.Presences(); len(got) < 2 || !strings.Contains(f.w.String(), "type='unsubscribe'") || !strings.Contains(f.w.String(), "type='unsubscribed'") {
		t.Errorf("remove sent %q", got)
	}
	actor := fmt.Sprintf("token:%d", info.ID)
	n := 0
	for _, e := range f.audit(t) {
		if e.Actor == actor {
			n++
			if e.Interface != roster.ViaAPI {
				t.Errorf("audited via %q", e.Interface)
			}
		}
	}
	if n != 3 { // subscribe, unsubscribe, unsubscribed
		t.Errorf("%d audit rows by %s, want 3", n, actor)
	}
	// The token is now marked used; the entity has a bot behind it.
	ts, _ := f.svc.Tokens(context.Background())
	if ts[0].LastUsed.IsZero() {
		t.Error("token not marked used")
	}
}

type eventPage struct {
	Events    []json.RawMessage `json:"events"`
	Trimmed   bool              `json:"trimmed"`
	NextAfter int64             `json:"next_after"`
}

func (f *fixture) events(t *testing.T, tok, query string) eventPage {
	t.Helper()
	status, body := f.call(t, "GET", "/api/v1/entities/helpdesk/events"+query, tok, "")
	var p eventPage
	if status != 200 || json.Unmarshal([]byte(body), &p) != nil {
		t.Fatalf("events%s: %d %s", query, status, body)
	}
	return p
}

type event struct {
	ID      int64                `json:"id"`
	Type    string               `json:"type"`
	At      string               `json:"at"`
	Entity  string               `json:"entity"`
	Message *engine.MessageEvent `json:"message"`
}

// The long poll: events after an id, waiting for the next one, and the
// trim reported.
func TestEventsLongPoll(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	tok := f.token(t, "helpdesk")
	ent := "helpdesk@" + domain
	// The first use puts a bot behind the entity: from now on its events are logged.
	if p := f.events(t, tok, ""); len(p.Events) != 0 || p.Trimmed {
		t.Fatalf("before anything: %+v", p)
	}
	f.handle(t, pres("subscribe", "ann@example.com", ent))
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: ent, ID: "m1", Body: "hi"})
	p := f.events(t, tok, "?after=0")
	if len(p.Events) != 2 {
		t.Fatalf("events: %s", p.Events)
	}
	var ev event
	if err := json.Unmarshal(p.Events[1], &ev); err != nil || ev.Type != "message" || ev.Entity != ent || ev.Message == nil || ev.Message.Body != "hi" || ev.Message.From != "ann@example.com/pc" {
		t.Fatalf("message event %s: %+v %v", p.Events[1], ev, err)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.At); err != nil {
		t.Errorf("at %q: %v", ev.At, err)
	}
	if f.w.String() != "" && strings.Contains(f.w.String(), "service-unavailable") {
		t.Errorf("a message to a bot answered with an error: %s", f.w.String())
	}
	// Waiting: the next message wakes the poll.
	done := make(chan eventPage, 1)
	go func() {
		done <- f.events(t, tok, fmt.Sprintf("?after=%d&wait=30s", ev.ID))
	}()
	time.Sleep(100 * time.Millisecond)
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: ent, ID: "m2", Body: "again"})
	var last event
	select {
	case p := <-done:
		if len(p.Events) != 1 || !strings.Contains(string(p.Events[0]), `"again"`) {
			t.Fatalf("woken with %s", p.Events)
		}
		if err := json.Unmarshal(p.Events[0], &last); err != nil || last.ID <= ev.ID {
			t.Fatalf("the next event's id: %s (%v), not above %d", p.Events[0], err, ev.ID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll did not wake")
	}
	// A wait that ends with nothing.
	start := time.Now()
	if p := f.events(t, tok, fmt.Sprintf("?after=%d&wait=200ms", last.ID)); len(p.Events) != 0 {
		t.Errorf("events after the last: %s", p.Events)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Error("the poll did not wait")
	}
	// Retention: what was deleted before being read is reported.
	if _, err := f.svc.TrimEvents(context.Background(), time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	p = f.events(t, tok, "?after=0")
	if len(p.Events) != 0 || !p.Trimmed || p.NextAfter < last.ID {
		t.Errorf("after a trim: %+v", p)
	}
	// Going on from next_after, the trim is not reported again.
	if p := f.events(t, tok, fmt.Sprintf("?after=%d", p.NextAfter)); p.Trimmed {
		t.Errorf("the trim reported twice: %+v", p)
	}
	if p := f.events(t, tok, fmt.Sprintf("?after=%d", last.ID)); p.Trimmed {
		t.Errorf("trimmed reported for events already read")
	}
}

// Revoking an entity's last token takes its bot away: its messages are
// answered by rostergate again, and no longer logged.
func TestRevokeDetaches(t *testing.T) {
	f := newFixture(t, httpapi.Options{}, engine.Entity{Local: "helpdesk", AcceptMessages: engine.AcceptAnyone})
	tok, info, err := f.svc.CreateToken(context.Background(), []string{"helpdesk"})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", tok, ""); status != 200 {
		t.Fatal(status)
	}
	msg := func(body string) {
		f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: "helpdesk@" + domain, ID: "m", Body: body})
	}
	f.w.Reset()
	msg("to the bot")
	if f.w.String() != "" {
		t.Errorf("with a bot, rostergate answered: %s", f.w.String())
	}
	if err := f.svc.RevokeToken(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	before, _ := f.svc.LastEvent(context.Background(), "helpdesk")
	msg("no one there")
	if !strings.Contains(f.w.String(), "service-unavailable") {
		t.Errorf("after the revocation: %s", f.w.String())
	}
	if after, _ := f.svc.LastEvent(context.Background(), "helpdesk"); after != before {
		t.Errorf("a message logged after the revocation")
	}
}

// The component domain itself may be an entity: its path segment is the
// domain, and its tokens are made for the domain.
func TestDomainEntity(t *testing.T) {
	f := newFixture(t, httpapi.Options{}, engine.Entity{Local: ""}, engine.Entity{Local: "helpdesk"})
	tok := f.token(t, domain)
	f.handle(t, pres("subscribe", "ann@example.com", domain))
	status, body := f.call(t, "GET", "/api/v1/entities/"+domain+"/roster", tok, "")
	if status != 200 || !strings.Contains(body, `"jid":"ann@example.com"`) {
		t.Errorf("the domain's roster: %d %s", status, body)
	}
	if status, _ := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", tok, ""); status != 403 {
		t.Errorf("the domain's token for helpdesk: %d", status)
	}
}

// The probes: live while the process serves; ready while the stream is up
// and the store takes writes; no token needed.
func TestProbes(t *testing.T) {
	f := newFixture(t, httpapi.Options{})
	if status, body := f.call(t, "GET", "/livez", "", ""); status != 200 || body != `{"live":true}`+"\n" {
		t.Errorf("livez: %d %s", status, body)
	}
	if status, body := f.call(t, "GET", "/readyz", "", ""); status != 200 || body != `{"ready":true,"role":"active","stream":"up","store":"writable"}`+"\n" {
		t.Errorf("readyz: %d %s", status, body)
	}
	f.eng.Detach()
	if status, body := f.call(t, "GET", "/readyz", "", ""); status != 503 || !strings.Contains(body, `"stream":"not connected to the server"`) {
		t.Errorf("readyz without a stream: %d %s", status, body)
	}
	if status, _ := f.call(t, "POST", "/readyz", "", ""); status != 405 {
		t.Errorf("POST /readyz: %d", status)
	}
	// A store that takes no writes.
	f.db.Close()
	if status, body := f.call(t, "GET", "/readyz", "", ""); status != 503 || !strings.Contains(body, `"store":"sqlite: not writable`) {
		t.Errorf("readyz without a store: %d %s", status, body)
	}
}

// POST /-/reload: admins' tokens only; the outcome in the answer.
func TestReloadEndpoint(t *testing.T) {
	var calls int
	var fail error
	f := newFixture(t, httpapi.Options{Reload: func(context.Context) error { calls++; return fail }})
	admin, _, err := f.svc.CreateAdminToken(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	bot := f.token(t, "helpdesk")
	for _, tc := range []struct {
		name, token string
		fail        error
		status      int
		says        string
		calls       int
	}{
		{"no token", "", nil, 401, "no token", 0},
		{"a bot's token", bot, nil, 403, "not an admin's", 0},
		{"an admin's", admin, nil, 200, `"reloaded":true`, 1},
		{"a config refused", admin, errors.New("config: c.toml: [policy] default: unknown action"), 422, "reload refused, the config in force is kept: config: c.toml", 2},
	} {
		fail = tc.fail
		status, body := f.call(t, "POST", "/-/reload", tc.token, "")
		if status != tc.status || !strings.Contains(body, tc.says) || calls != tc.calls {
			t.Errorf("%s: %d %s (%d calls), want %d saying %q (%d calls)", tc.name, status, body, calls, tc.status, tc.says, tc.calls)
		}
	}
	// An admin's token is no bot's.
	if status, _ := f.call(t, "GET", "/api/v1/entities/helpdesk/roster", admin, ""); status != 403 {
		t.Errorf("an admin's token for a bot's API: %d", status)
	}
	g := newFixture(t, httpapi.Options{})
	admin2, _, _ := g.svc.CreateAdminToken(context.Background(), nil)
	if status, _ := g.call(t, "POST", "/-/reload", admin2, ""); status != 501 {
		t.Errorf("no reload: %d", status)
	}
}
