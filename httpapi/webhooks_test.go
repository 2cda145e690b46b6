package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/httpapi"
	"rostergate/webhook"
	"rostergate/xmpp/stanza"
)

// receiver is a bot's webhook endpoint: it verifies each POST, fails the
// first failFirst, and answers message events with an echo.
type receiver struct {
	t         *testing.T
	secret    webhook.Secret
	mu        sync.Mutex
	failFirst int
	down      bool
	attempts  []string // webhook-id of each attempt
	taken     []event  // events answered 2xx, in order
	got       chan struct{}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(400)
		return
	}
	if err := r.secret.Verify(req.Header, body, time.Now(), 0); err != nil {
		r.t.Errorf("webhook signature: %v", err)
		w.WriteHeader(401)
		return
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.t.Errorf("webhook body %s: %v", body, err)
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, req.Header.Get(webhook.HeaderID))
	if r.down || len(r.attempts) <= r.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.taken = append(r.taken, ev)
	select {
	case r.got <- struct{}{}:
	default:
	}
	if ev.Type == "message" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"reply":{"body":"echo: `+ev.Message.Body+`"}}`)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) wait(t *testing.T, n int) []event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		r.mu.Lock()
		if len(r.taken) >= n {
			out := slices.Clone(r.taken)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d events taken, want %d", len(r.taken), n)
		}
	}
}

// Webhooks: each event POSTed, signed, in order; a receiver that fails is
// retried with the same webhook-id; a 2xx reply answers the message; the
// cursor is stored, so a new server resumes after it.
func TestWebhookDelivery(t *testing.T) {
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	sec, err := webhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{t: t, secret: sec, failFirst: 2, got: make(chan struct{}, 1)}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	hooks := []httpapi.Webhook{{Entity: "helpdesk", URL: hook.URL + "/in", Secret: sec, MaxAge: time.Hour}}
	var lagMu sync.Mutex
	var lags []time.Duration
	onDelivered := func(lag time.Duration) {
		lagMu.Lock()
		lags = append(lags, lag)
		lagMu.Unlock()
	}
	f := newFixture(t, httpapi.Options{Listen: "127.0.0.1:0", Webhooks: hooks, OnDelivered: onDelivered}, engine.Entity{Local: "helpdesk", Webhook: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := f.api.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ent := "helpdesk@" + domain
	f.handle(t, pres("subscribe", "ann@example.com", ent))
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: ent, ID: "m1", Body: "hi", Thread: "th"})
	got := rcv.wait(t, 2)
	if got[0].Type != "subscription" || got[1].Type != "message" || got[0].ID >= got[1].ID {
		t.Errorf("taken: %+v", got)
	}
	rcv.mu.Lock()
	attempts := slices.Clone(rcv.attempts)
	rcv.mu.Unlock()
	first := "evt_" + itoa(got[0].ID)
	if len(attempts) != 4 || attempts[0] != first || attempts[1] != first || attempts[2] != first {
		t.Errorf("attempts %q: want the first event three times (two failures), then the second", attempts)
	}
	// The reply reaches ann, from the entity's resource, in the thread.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.w.String(), "echo: hi") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w := f.w.String(); !strings.Contains(w, `<message from='helpdesk@bots.localhost/rostergate' to='ann@example.com/pc'`) ||
		!strings.Contains(w, "<body>echo: hi</body><thread>th</thread>") || !strings.Contains(w, "type='chat'") {
		t.Errorf("reply sent: %s", w)
	}
	if st := f.api.Stats(); st.Delivered != 2 || st.Failures != 2 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	// Each event taken is told with its lag: the first waited out two
	// retries (at least 250 ms, then 500 ms, by backoff).
	lagMu.Lock()
	if len(lags) != 2 || lags[0] < 750*time.Millisecond || lags[0] > 20*time.Second || lags[1] < 0 || lags[1] > 20*time.Second {
		t.Errorf("lags told: %v, want two, the first at least 750ms", lags)
	}
	lagMu.Unlock()
	f.api.Close()
	if c, _, err := f.svc.Cursor(context.Background(), "webhook:helpdesk"); err != nil || c != got[1].ID {
		t.Errorf("cursor %d, %v; want %d", c, err, got[1].ID)
	}

	// A second server over the same store resumes after the cursor: only
	// the new event is delivered.
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: ent, ID: "m2", Body: "later"})
	api2, err := httpapi.New(httpapi.Options{Service: f.svc, Webhooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	if err := api2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer api2.Close()
	got = rcv.wait(t, 3)
	if len(got) != 3 || got[2].Message == nil || got[2].Message.Body != "later" {
		t.Errorf("after the restart: %+v", got)
	}
}

// An event not taken within the webhook's max age is dropped, logged and
// counted, and delivery goes on.
func TestWebhookMaxAge(t *testing.T) {
	sec, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{t: t, secret: sec, down: true, got: make(chan struct{}, 1)}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	f := newFixture(t, httpapi.Options{Webhooks: []httpapi.Webhook{{Entity: "helpdesk", URL: hook.URL, Secret: sec, MaxAge: 1500 * time.Millisecond}}},
		engine.Entity{Local: "helpdesk", Webhook: true})
	if err := f.api.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer f.api.Close()
	f.handle(t, pres("subscribe", "ann@example.com", "helpdesk@"+domain))
	deadline := time.Now().Add(20 * time.Second)
	for f.api.Stats().Dropped == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := f.api.Stats(); st.Dropped != 1 || st.Delivered != 0 || st.Failures == 0 {
		t.Fatalf("stats %+v", st)
	}
	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: "helpdesk@" + domain, ID: "m1", Body: "hi"})
	if got := rcv.wait(t, 1); got[0].Type != "message" {
		t.Errorf("after the drop: %+v", got)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// Retention that deletes events before the webhook took them is logged and
// counted once, and delivery goes on after them; a webhook added to an
// entity whose bot already had events starts after them.
func TestWebhookAfterTrimAndNew(t *testing.T) {
	sec, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{t: t, secret: sec, down: true, got: make(chan struct{}, 1)}
	hook := httptest.NewServer(rcv)
	defer hook.Close()
	hooks := []httpapi.Webhook{{Entity: "helpdesk", URL: hook.URL, Secret: sec, MaxAge: time.Hour}}
	f := newFixture(t, httpapi.Options{Webhooks: hooks}, engine.Entity{Local: "helpdesk", Webhook: true}, engine.Entity{Local: "other"})
	ctx := context.Background()
	if err := f.api.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.api.Close()
	ent := "helpdesk@" + domain
	f.handle(t, pres("subscribe", "ann@example.com", ent))
	deadline := time.Now().Add(20 * time.Second)
	for f.api.Stats().Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The first event is being retried; the second, not read yet, is
	// deleted by retention with it.
	f.handle(t, pres("subscribe", "bob@example.com", ent))
	if _, err := f.svc.TrimEvents(ctx, time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()
	// Other entities' commits wake the delivery too: the gap is still
	// reported once.
	for i := range 3 {
		f.handle(t, pres("subscribe", fmt.Sprintf("c%d@example.com", i), "other@"+domain))
	}
	f.handle(t, &stanza.Element{Name: "message", Type: "chat", From: "ann@example.com/pc", To: ent, ID: "m1", Body: "after"})
	got := rcv.wait(t, 2)
	if got[0].Type != "subscription" || got[1].Type != "message" {
		t.Errorf("the event in hand, then after the gap: %+v", got)
	}
	if st := f.api.Stats(); st.Gaps != 1 || st.Dropped != 0 {
		t.Errorf("stats %+v: want one gap, nothing dropped", st)
	}

	// A webhook new to "other", which a token bot already used: it starts
	// after the events that bot had.
	tok := f.token(t, "other")
	if status, _ := f.call(t, "GET", "/api/v1/entities/other/roster", tok, ""); status != 200 {
		t.Fatal(status)
	}
	f.handle(t, pres("subscribe", "old@example.com", "other@"+domain))
	rcv2 := &receiver{t: t, secret: sec, got: make(chan struct{}, 1)}
	hook2 := httptest.NewServer(rcv2)
	defer hook2.Close()
	f.api.SetWebhooks(ctx, append(hooks, httpapi.Webhook{Entity: "other", URL: hook2.URL, Secret: sec, MaxAge: time.Hour}))
	f.handle(t, pres("subscribe", "new@example.com", "other@"+domain))
	got = rcv2.wait(t, 1)
	time.Sleep(200 * time.Millisecond)
	rcv2.mu.Lock()
	n := len(rcv2.taken)
	rcv2.mu.Unlock()
	if n != 1 || got[0].Type != "subscription" {
		t.Errorf("the new webhook took %d events (%+v), want only the new one", n, got)
	}

	// Removed, events meanwhile (read by the token bot), added again: it
	// starts after them too.
	f.api.SetWebhooks(ctx, hooks)
	f.handle(t, pres("subscribe", "while-away@example.com", "other@"+domain))
	f.api.PrepareWebhooks(ctx, append(hooks, httpapi.Webhook{Entity: "other", URL: hook2.URL, Secret: sec, MaxAge: time.Hour}))
	f.api.SetWebhooks(ctx, append(hooks, httpapi.Webhook{Entity: "other", URL: hook2.URL, Secret: sec, MaxAge: time.Hour}))
	f.handle(t, pres("subscribe", "back@example.com", "other@"+domain))
	rcv2.wait(t, 2)
	time.Sleep(200 * time.Millisecond)
	rcv2.mu.Lock()
	n = len(rcv2.taken)
	rcv2.mu.Unlock()
	if n != 2 {
		t.Errorf("after removal and re-adding, the webhook has taken %d events, want 2 (the events while away not replayed)", n)
	}
}
