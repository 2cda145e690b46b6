package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
)

// The kinds of act the command line queues, each a typed request with a
// typed result, kept as JSON in the store.
const (
	KindDecide = "decide" // DecideRequest -> DecideResult
	KindList   = "list"   // ListRequest -> ListResult
	KindAct    = "act"    // ActRequest -> ActResult
)

// DecideRequest asks to approve or reject held requests.
type DecideRequest struct {
	IDs     []int64 `json:"ids"`
	Approve bool    `json:"approve"`
}

// DecideResult is what came of a DecideRequest: one outcome per id.
type DecideResult struct {
	Results []OutcomeResult `json:"results"`
	Error   string          `json:"error,omitempty"` // the act as a whole was refused
}

// OutcomeResult is one roster.Outcome as JSON.
type OutcomeResult struct {
	ID       int64           `json:"id"`
	Request  *roster.Request `json:"request,omitempty"`
	Error    string          `json:"error,omitempty"`
	NotFound bool            `json:"not_found,omitempty"` // the error matches store.ErrNotFound
	// Decided says who decided the request, when it was no longer pending
	// because it was decided.
	Decided *roster.DecidedError `json:"decided,omitempty"`
}

// Outcomes turns r back into one roster.Outcome per id.
func (r DecideResult) Outcomes(ids []int64) []roster.Outcome {
	out := make([]roster.Outcome, len(ids))
	for i, id := range ids {
		out[i].ID = id
		if i >= len(r.Results) {
			out[i].Err = errors.New("gate: no outcome recorded")
			continue
		}
		o := r.Results[i]
		if o.Request != nil {
			out[i].Request = *o.Request
		}
		switch {
		case o.Decided != nil:
			out[i].Err = fmt.Errorf("%w: %w", o.Decided, store.ErrNotFound)
		case o.NotFound:
			out[i].Err = fmt.Errorf("%s: %w", o.Error, store.ErrNotFound)
		case o.Error != "":
			out[i].Err = errors.New(o.Error)
		}
	}
	return out
}

// ListRequest asks to edit the allow or deny list.
type ListRequest struct {
	List    string `json:"list"` // allow or deny
	Add     bool   `json:"add"`
	Pattern string `json:"pattern"`
}

// ListResult is what came of a ListRequest.
type ListResult struct {
	Changed bool   `json:"changed"`
	Error   string `json:"error,omitempty"`
}

// ActRequest asks an entity to send subscription presences to a contact.
type ActRequest struct {
	Entity  string   `json:"entity"` // localpart
	Contact string   `json:"contact"`
	Kinds   []string `json:"kinds,omitempty"` // subscribe, subscribed, unsubscribe, unsubscribed
	// Remove takes the contact off the roster instead (RFC 6121 §2.5.2):
	// the kinds are chosen from the state when the act is carried out.
	Remove bool `json:"remove,omitempty"`
}

// ActResult is what came of an ActRequest.
type ActResult struct {
	Error string `json:"error,omitempty"`
}

// queue records req for the running instance and waits for its result,
// decoded into res. Without a running instance the act stays queued, and
// the error matches ErrNotRunning.
func (s *Service) queue(ctx context.Context, actor roster.Actor, req any, res any) error {
	var kind string
	switch req.(type) {
	case DecideRequest:
		kind = KindDecide
	case ListRequest:
		kind = KindList
	case ActRequest:
		kind = KindAct
	default:
		return fmt.Errorf("gate: cannot queue a %T", req)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	id, err := s.store.QueueAction(ctx, actor.JID, kind, string(body))
	if err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	release, err := s.store.Hold(ctx)
	switch {
	case err == nil:
		release()
		return &QueuedError{ID: id, Kind: kind}
	case !errors.Is(err, store.ErrHeld):
		return fmt.Errorf("gate: the %s is queued (action %d), but whether rostergate runs cannot be told: %w", kind, id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.wait)
	defer cancel()
	// Why the wait ended: the act stays queued in every case but a result.
	gaveUp := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("gate: stopped waiting for action %d, which stays queued: %w", id, ctx.Err())
		case wctx.Err() != nil:
			return fmt.Errorf("gate: rostergate run has not carried out action %d within %s (is it connected to the server?); it stays queued", id, s.wait)
		default:
			return fmt.Errorf("gate: action %d (queued): %w", id, err)
		}
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		a, err := s.store.Action(wctx, id)
		if err != nil {
			return gaveUp(err)
		}
		if !a.Done.IsZero() {
			if err := json.Unmarshal([]byte(a.Result), res); err != nil {
				return fmt.Errorf("gate: action %d: unreadable result %q: %w", id, a.Result, err)
			}
			var refused struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(a.Result), &refused) == nil && refused.Error != "" {
				return fmt.Errorf("gate: action %d: %s", id, refused.Error)
			}
			return nil
		}
		select {
		case <-wctx.Done():
			return gaveUp(wctx.Err())
		case <-t.C:
		}
	}
}

// Housekeeping state of the running instance: when held requests were last
// looked at for expiry.
type housekeeping struct {
	mu         sync.Mutex
	stream     uint64 // the engine's stream lastExpiry was on
	lastExpiry time.Time
	lastTrim   time.Time // of the web page's expired keys
}

// Housekeep carries out the acts the command line queued and expires held
// requests older than review_ttl, while the stream is up. The transport
// calls it on a short tick (every 250 ms): what an admin asks on the command
// line goes out within a second. Expiry runs on the first call on each
// stream, then at most every ttl/4 (and at least every minute).
func (s *Service) Housekeep(ctx context.Context, now time.Time) {
	if s.eng == nil {
		return
	}
	s.runActions(ctx)
	s.refreshBots(ctx, now)
	s.trimWebKeys(ctx, now)
	ttl := s.eng.ReviewTTL()
	if ttl <= 0 {
		return
	}
	s.hk.mu.Lock()
	if st := s.eng.Streams(); st != s.hk.stream {
		s.hk.stream, s.hk.lastExpiry = st, time.Time{}
	}
	due := now.Sub(s.hk.lastExpiry) >= min(ttl/4, time.Minute)
	if due {
		s.hk.lastExpiry = now
	}
	s.hk.mu.Unlock()
	if due {
		s.eng.Expire(ctx, now)
	}
}

// trimWebKeys deletes the web page's expired login links and sessions,
// every ten minutes.
func (s *Service) trimWebKeys(ctx context.Context, now time.Time) {
	s.hk.mu.Lock()
	due := now.Sub(s.hk.lastTrim) >= 10*time.Minute
	if due {
		s.hk.lastTrim = now
	}
	s.hk.mu.Unlock()
	if !due {
		return
	}
	if _, err := s.store.TrimWebKeys(ctx, now); err != nil && ctx.Err() == nil {
		s.log.Error("trimming the web page's expired logins", "err", err)
	}
}

// runActions carries out what the command line queued and records what
// came of each.
func (s *Service) runActions(ctx context.Context) {
	actions, err := s.store.WaitingActions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reading the command line's actions", "err", err)
		}
		return
	}
	for _, a := range actions {
		if !s.eng.Sync() {
			return // the rest wait for the next stream
		}
		result := s.Do(ctx, a)
		// Recorded even if the stream is closing now: it was carried out.
		// Should recording fail, the act runs again on the next tick; every
		// act is idempotent (a decided request is "not pending", a list edit
		// changes nothing, a subscription stanza repeats the state).
		if err := s.store.FinishAction(context.WithoutCancel(ctx), a.ID, result); err != nil {
			s.log.Error("recording a command line action", "id", a.ID, "err", err)
			return
		}
		s.log.Info("command line action carried out", "id", a.ID, "actor", a.Actor, "kind", a.Kind, "request", a.Request)
	}
}

// Do carries out one queued act, as its actor through the command line,
// and returns its result as JSON.
func (s *Service) Do(ctx context.Context, a store.Action) string {
	actor := roster.Actor{JID: a.Actor, Via: roster.ViaCLI}
	var res any
	switch a.Kind {
	case KindDecide:
		var req DecideRequest
		if err := strictJSON(a.Request, &req); err != nil {
			res = DecideResult{Error: err.Error()}
			break
		}
		outs, err := s.Decide(ctx, actor, req.IDs, req.Approve)
		if err != nil {
			res = DecideResult{Error: err.Error()}
			break
		}
		r := DecideResult{Results: make([]OutcomeResult, len(outs))}
		for i, o := range outs {
			r.Results[i] = OutcomeResult{ID: o.ID}
			if o.Request.Contact != "" {
				req := o.Request
				r.Results[i].Request = &req
			}
			if o.Err != nil {
				r.Results[i].Error = o.Err.Error()
				r.Results[i].NotFound = errors.Is(o.Err, store.ErrNotFound)
				var de *roster.DecidedError
				if errors.As(o.Err, &de) {
					r.Results[i].Decided = de
				}
			}
		}
		res = r
	case KindList:
		var req ListRequest
		if err := strictJSON(a.Request, &req); err != nil {
			res = ListResult{Error: err.Error()}
			break
		}
		changed, err := s.EditList(ctx, actor, req.List, req.Add, req.Pattern)
		r := ListResult{Changed: changed}
		if err != nil {
			r.Error = err.Error()
		}
		res = r
	case KindAct:
		var req ActRequest
		if err := strictJSON(a.Request, &req); err != nil {
			res = ActResult{Error: err.Error()}
			break
		}
		r := ActResult{}
		if req.Remove {
			if len(req.Kinds) > 0 {
				r.Error = "gate: a removal names no kinds"
			} else if err := s.Remove(ctx, actor, req.Entity, req.Contact); err != nil {
				r.Error = err.Error()
			}
			res = r
			break
		}
		kinds, err := outboundKinds(req.Kinds)
		if err != nil {
			res = ActResult{Error: err.Error()}
			break
		}
		if err := s.act(ctx, actor, req.Entity, req.Contact, kinds...); err != nil {
			r.Error = err.Error()
		}
		res = r
	default:
		res = ActResult{Error: fmt.Sprintf("gate: unknown kind of act %q", a.Kind)}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return `{"error":"gate: encoding the result failed"}`
	}
	return string(b)
}

// strictJSON decodes a queued request, refusing fields it does not know.
func strictJSON(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("gate: request %q: %w", s, err)
	}
	if d.More() {
		return fmt.Errorf("gate: request %q: more than one JSON value", s)
	}
	return nil
}

// outboundKinds parses the kinds of an ActRequest: each must be a
// subscription presence an entity sends (not a probe).
func outboundKinds(names []string) ([]subscription.Kind, error) {
	kinds := make([]subscription.Kind, len(names))
	for i, k := range names {
		kind, ok := subscription.ParseKind(k)
		if !ok || kind == subscription.Probe {
			return nil, fmt.Errorf("gate: %q is not an outbound act", k)
		}
		kinds[i] = kind
	}
	return kinds, nil
}
