package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/webhook"
)

// Webhook is where one entity's events are POSTed.
type Webhook struct {
	Entity string // localpart
	URL    string
	Secret webhook.Secret
	MaxAge time.Duration // how long an event is retried; default 24 h
}

// Retry backoff: from minBackoff, doubled per failure up to maxBackoff,
// each wait jittered by up to a half.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 5 * time.Minute
	// maxReply bounds what is read of a receiver's answer.
	maxReply = 64 << 10
	// cursorEvery is how often a webhook's cursor is stored while events
	// flow.
	cursorEvery = 250 * time.Millisecond
	// deliverPage is how many events a delivery reads at a time: a commit's
	// events of one entity are stored together, up to thousands, and each
	// read decodes its page whole.
	deliverPage = 1000
)

// hooks are the deliveries running, one per entity with a webhook.
type hooks struct {
	mu      sync.Mutex
	closed  bool // stopAll ran: no delivery starts any more
	running map[string]*hook
	wg      sync.WaitGroup
	// Delivered and Dropped count events delivered, and given up after
	// their max age, since the start.
	delivered, dropped, failures, gaps atomic.Int64
}

type hook struct {
	cfg    Webhook
	cancel context.CancelFunc
	done   chan struct{}
}

// Stats are the webhook deliveries' counts since the start: events taken,
// failed attempts, events dropped after webhook_max_age, and the times
// retention deleted events before their webhook took them.
type Stats struct {
	Delivered, Failures, Dropped, Gaps int64
}

// Stats returns the webhook deliveries' counts.
func (s *Server) Stats() Stats {
	return Stats{Delivered: s.hooks.delivered.Load(), Failures: s.hooks.failures.Load(), Dropped: s.hooks.dropped.Load(), Gaps: s.hooks.gaps.Load()}
}

// PrepareWebhooks settles where each webhook not running yet starts (its
// entity's newest event), before a reload lets the engine log events for
// it: what is logged after is delivered.
func (s *Server) PrepareWebhooks(ctx context.Context, ws []Webhook) {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	for _, w := range ws {
		if h, ok := s.hooks.running[w.Entity]; ok && h.cfg.URL == w.URL {
			continue
		}
		if _, err := s.startCursor(ctx, w.Entity, "webhook:"+w.Entity); err != nil {
			s.hookLog.Error("reading a webhook's cursor", "entity", s.svc.EntityJID(w.Entity), "err", err)
		}
	}
}

// SetWebhooks puts the webhooks in force (at start, and on reload): a
// delivery whose webhook changed or went is stopped (where an event was
// being delivered, it is sent again by its successor: at least once), a new
// one started.
func (s *Server) SetWebhooks(ctx context.Context, ws []Webhook) {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	if s.hooks.closed {
		return
	}
	want := map[string]Webhook{}
	for _, w := range ws {
		if w.MaxAge <= 0 {
			w.MaxAge = 24 * time.Hour
		}
		want[w.Entity] = w
	}
	for ent, h := range s.hooks.running {
		if w, ok := want[ent]; !ok || w.URL != h.cfg.URL || !w.Secret.Equal(h.cfg.Secret) || w.MaxAge != h.cfg.MaxAge {
			h.cancel()
			<-h.done
			delete(s.hooks.running, ent)
			if !ok {
				// Gone: a webhook set later starts afresh, after the
				// newest event, not with this one's backlog. (A new URL
				// goes on where the old one stood.)
				if err := s.svc.DeleteCursor(context.WithoutCancel(ctx), "webhook:"+ent); err != nil {
					s.hookLog.Error("forgetting a removed webhook's cursor", "entity", s.svc.EntityJID(ent), "err", err)
				}
			}
		}
	}
	for ent, w := range want {
		if _, ok := s.hooks.running[ent]; ok {
			continue
		}
		// Where it starts is settled before anything more is logged: a
		// new webhook starts after the newest event (see startCursor).
		if _, err := s.startCursor(ctx, w.Entity, "webhook:"+w.Entity); err != nil {
			s.hookLog.Error("reading the webhook's cursor; its delivery tries again", "entity", s.svc.EntityJID(w.Entity), "err", err)
		}
		hctx, cancel := context.WithCancel(ctx)
		h := &hook{cfg: w, cancel: cancel, done: make(chan struct{})}
		s.hooks.running[ent] = h
		s.hooks.wg.Add(1)
		go func() {
			defer s.hooks.wg.Done()
			defer close(h.done)
			s.deliver(hctx, w)
		}()
	}
}

func (h *hooks) stopAll() {
	h.mu.Lock()
	h.closed = true
	for ent, r := range h.running {
		r.cancel()
		delete(h.running, ent)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// deliver POSTs entity's events to its webhook, in order, each until it is
// taken (2xx) or older than MaxAge, and moves the entity's stored cursor
// past it only then: after a restart, delivery resumes at the first event
// not known to be taken.
func (s *Server) deliver(ctx context.Context, w Webhook) {
	cursorName := "webhook:" + w.Entity
	log := s.hookLog.With("entity", s.svc.EntityJID(w.Entity), "webhook", redactURL(w.URL))
	cursor, err := s.startCursor(ctx, w.Entity, cursorName)
	for err != nil {
		log.Error("reading the webhook's cursor", "err", err)
		if !sleep(ctx, time.Second) {
			return
		}
		cursor, err = s.startCursor(ctx, w.Entity, cursorName)
	}
	// The cursor is stored at most every cursorEvery while events flow,
	// and before any wait: a crash re-delivers at most that much (with
	// the same ids), and a busy webhook costs one write per page, not one
	// per event.
	stored, lastStore := cursor, time.Now()
	store := func(ctx context.Context) bool {
		for stored != cursor {
			err := s.svc.SetCursor(ctx, cursorName, cursor)
			if err == nil {
				stored, lastStore = cursor, time.Now()
				return true
			}
			log.Error("storing the webhook's cursor", "err", err)
			if !sleep(ctx, time.Second) {
				return false
			}
		}
		return true
	}
	defer func() {
		// Stopped: what was taken is recorded before going.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		store(sctx)
	}()
	failures := 0
	for ctx.Err() == nil {
		sig := s.svc.EventsSignal()
		evs, trimmed, err := s.svc.BotEvents(ctx, w.Entity, cursor, deliverPage)
		if err != nil {
			log.Error("reading events", "err", err)
			if !sleep(ctx, time.Second) {
				return
			}
			continue
		}
		if trimmed > cursor {
			// Gone before they were taken: say so once, and go on after them.
			log.Error("events deleted by retention (event_retention, max_events) before their webhook took them", "after", cursor, "through", trimmed)
			s.hooks.gaps.Add(1)
			cursor = trimmed
			if !store(ctx) {
				return
			}
		}
		if len(evs) == 0 {
			wait := 30 * time.Second
			if stored != cursor {
				wait = max(0, cursorEvery-time.Since(lastStore))
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-sig:
				t.Stop()
			case <-t.C:
				if !store(ctx) {
					return
				}
			}
			continue
		}
		for _, ev := range evs {
			for {
				age := time.Since(ev.At)
				if age > w.MaxAge {
					s.hooks.dropped.Add(1)
					log.Error("webhook event dropped: not taken within webhook_max_age", "id", ev.ID, "type", ev.Type, "age", age.Round(time.Second), "max_age", w.MaxAge)
					break
				}
				err := s.post(ctx, w, ev)
				if err == nil {
					s.hooks.delivered.Add(1)
					if s.opts.OnDelivered != nil {
						s.opts.OnDelivered(time.Since(ev.At))
					}
					failures = 0
					break
				}
				if ctx.Err() != nil {
					return
				}
				s.hooks.failures.Add(1)
				failures++
				wait := backoff(failures)
				log.Warn("webhook delivery failed; retrying", "id", ev.ID, "err", err, "attempt", failures, "retry_in", wait.Round(time.Millisecond))
				if !store(ctx) || !sleep(ctx, wait) {
					return
				}
			}
			cursor = ev.ID
			if time.Since(lastStore) >= cursorEvery && !store(ctx) {
				return
			}
		}
	}
}

// startCursor returns where a webhook's delivery starts: its stored
// cursor, or for a webhook new to the entity its newest event (stored at
// once), so that a webhook added later does not replay the log its bot
// had already read by long poll.
func (s *Server) startCursor(ctx context.Context, entity, name string) (int64, error) {
	c, ok, err := s.svc.Cursor(ctx, name)
	if err != nil || ok {
		return c, err
	}
	last, err := s.svc.LastEvent(ctx, entity)
	if err != nil {
		return 0, err
	}
	if err := s.svc.SetCursor(ctx, name, last); err != nil {
		return 0, err
	}
	return last, nil
}

// backoff is the wait before retry n (1, 2, …): exponential, capped,
// jittered.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 20 {
		d = min(minBackoff<<(n-1), maxBackoff)
	}
	return d/2 + rand.N(d/2+1) // #nosec G404 -- jitter, not a secret
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// webhookReply is what a receiver's 2xx answer may hold: a reply to the
// message event it took.
type webhookReply struct {
	Reply *struct {
		Body   string `json:"body"`
		Type   string `json:"type"`
		Thread string `json:"thread"`
	} `json:"reply"`
}

// post delivers one event, and sends the receiver's reply, if any: the
// event counts as taken only once the reply is sent too.
func (s *Server) post(ctx context.Context, w Webhook, ev store.BotEvent) error {
	body := s.eventJSON(ev)
	id := "evt_" + strconv.FormatInt(ev.ID, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("httpapi: webhook: %w", err)
	}
	for k, v := range w.Secret.Header(id, time.Now(), body) {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "rostergate")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("httpapi: webhook: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxReply+1))
	if err != nil {
		return fmt.Errorf("httpapi: webhook: reading the answer: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("httpapi: webhook: %s", resp.Status)
	}
	if ev.Type != engine.EventMessage || len(bytes.TrimSpace(answer)) == 0 {
		return nil
	}
	var rep webhookReply
	if len(answer) > maxReply || json.Unmarshal(answer, &rep) != nil || rep.Reply == nil {
		// Taken; what came back is no reply.
		return nil
	}
	var msg engine.MessageEvent
	if err := json.Unmarshal([]byte(ev.Data), &msg); err != nil {
		return nil
	}
	typ := rep.Reply.Type
	if typ == "" {
		typ = msg.Type
	}
	thread := rep.Reply.Thread
	if thread == "" {
		thread = msg.Thread
	}
	out, err := MessageRequest{To: msg.From, Body: rep.Reply.Body, Type: typ, Thread: thread}.check()
	if err != nil {
		s.hookLog.Warn("webhook reply not sent: not a message", "entity", s.svc.EntityJID(w.Entity), "id", ev.ID, "err", err)
		return nil
	}
	out.Reply = true
	actor := roster.Actor{JID: "webhook", Via: roster.ViaAPI}
	for {
		_, err := s.svc.SendMessage(ctx, actor, w.Entity, out)
		if err == nil || !errors.Is(err, engine.ErrNotConnected) {
			if err != nil {
				s.hookLog.Warn("webhook reply not sent", "entity", s.svc.EntityJID(w.Entity), "id", ev.ID, "err", err)
			}
			return nil
		}
		// Wait for the stream: the reply is part of taking the event.
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
		if time.Since(ev.At) > w.MaxAge {
			s.hookLog.Error("webhook reply dropped: not connected within webhook_max_age", "entity", s.svc.EntityJID(w.Entity), "id", ev.ID)
			return nil
		}
	}
}

// redactURL is a webhook's URL as logs show it: without a password or a
// query, which may carry a secret.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if p.User != nil {
		p.User = url.User(p.User.Username())
	}
	if p.RawQuery != "" {
		p.RawQuery = "…"
	}
	return p.String()
}
