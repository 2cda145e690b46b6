// Package gate is rostergate's one service: every act an admin or a bot can
// ask for, typed, each with the actor who asks. XMPP chat and XEP-0050
// ad-hoc commands (package xmpp/adminui), the command line, and the HTTP
// interfaces to come are thin adapters over it; none touches the store or
// the stream itself.
//
// A Service runs in one of two places. In the running instance it has the
// decision engine, and acts are carried out at once. In a command-line
// process it has only the store: reads are answered from it, and acts are
// queued there as typed requests (JSON) for the running instance, which
// carries them out (Housekeep) and records a typed result that the command
// line waits for.
package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/subscription"
)

// Options configure a Service.
type Options struct {
	Domain string
	Store  store.Store
	// Engine is the running instance's decision engine; nil in a
	// command-line process, whose acts are queued for the running instance.
	Engine *engine.Engine
	// Settings are the configured settings: what Explain and Entities use
	// where there is no Engine.
	Settings engine.Settings
	Logger   hclog.Logger
	// Wait bounds how long a queued act is waited for; default 10 s.
	Wait time.Duration
	// Web is the admins' web page; its zero value: there is none.
	Web Web
}

// Service is the one service; see the package documentation.
type Service struct {
	domain   string
	store    store.Store
	eng      *engine.Engine
	settings engine.Settings
	log      hclog.Logger
	wait     time.Duration
	hk       housekeeping
	uses     botUse
	web      Web
	webURL   atomic.Pointer[string]
}

// ErrNotRunning is matched (errors.Is) by the error of an act asked of a
// command-line Service while no instance runs: the act stays queued for the
// next start. The error is a *QueuedError.
var ErrNotRunning = errors.New("gate: rostergate is not running")

// QueuedError is an act queued while no instance runs: it will be carried
// out when rostergate next connects.
type QueuedError struct {
	ID   int64  // the queued act's id
	Kind string // KindDecide, KindList or KindAct
}

func (e *QueuedError) Error() string {
	return fmt.Sprintf("gate: rostergate is not running: the %s is queued (action %d) and will be carried out when it connects", e.Kind, e.ID)
}

func (e *QueuedError) Unwrap() error { return ErrNotRunning }

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("gate: no store")
	}
	if opts.Domain == "" {
		return nil, errors.New("gate: no domain")
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Wait <= 0 {
		opts.Wait = 10 * time.Second
	}
	return &Service{domain: opts.Domain, store: opts.Store, eng: opts.Engine, settings: opts.Settings, log: opts.Logger, wait: opts.Wait,
		web: opts.Web.withDefaults()}, nil
}

// Domain returns the component domain.
func (s *Service) Domain() string { return s.domain }

// Entities returns the configured entities' localparts, sorted ("" is the
// domain itself).
func (s *Service) Entities() []string {
	var es []engine.Entity
	if s.eng != nil {
		es = s.eng.Entities()
	} else {
		es = s.settings.Entities
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Local)
	}
	return sortedUnique(out)
}

// Pending returns the held requests, oldest first.
func (s *Service) Pending(ctx context.Context) ([]roster.Request, error) {
	reqs, err := s.store.Requests(ctx)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return reqs, nil
}

// Decide approves (approve) or rejects held requests by id, through the
// state machine: approving sends subscribed (and subscribe, when the rule
// said to subscribe back) and the entity's presence; rejecting sends
// unsubscribed. It returns one Outcome per id, in order; an id that is not
// held has an error matching store.ErrNotFound.
func (s *Service) Decide(ctx context.Context, actor roster.Actor, ids []int64, approve bool) ([]roster.Outcome, error) {
	if len(ids) == 0 {
		return nil, errors.New("gate: no request named")
	}
	if s.eng != nil {
		return s.eng.DecideHeld(ctx, ids, approve, actor), nil
	}
	var res DecideResult
	if err := s.queue(ctx, actor, DecideRequest{IDs: ids, Approve: approve}, &res); err != nil {
		return nil, err
	}
	return res.Outcomes(ids), nil
}

// Explain says how a request from contact to entity would be decided now:
// by the policy and lists in force in the running instance, or by the
// configured policy and the stored lists in a command-line process.
func (s *Service) Explain(ctx context.Context, contact, entity string) (roster.Explanation, error) {
	if s.eng != nil {
		return s.eng.Explain(ctx, contact, entity)
	}
	allow, deny, err := s.store.Lists(ctx)
	if err != nil {
		return roster.Explanation{}, fmt.Errorf("gate: %w", err)
	}
	return engine.Explain(ctx, s.settings, allow, deny, s.domain, contact, entity)
}

// Roster returns up to limit roster items of an entity (its localpart, or
// its JID at the domain), ordered by contact; limit 0 is no limit.
func (s *Service) Roster(ctx context.Context, entity string, limit int) ([]roster.Item, error) {
	var items []roster.Item
	err := s.eachItem(ctx, entity, limit, func(it roster.Item) error {
		items = append(items, it)
		return nil
	})
	return items, err
}

// EntityItems streams every roster item of an entity (its localpart, or its
// JID at the domain), ordered by contact: a roster of any size, a row at a
// time.
func (s *Service) EntityItems(ctx context.Context, entity string, fn func(roster.Item) error) error {
	return s.eachItem(ctx, entity, 0, fn)
}

func (s *Service) eachItem(ctx context.Context, entity string, limit int, fn func(roster.Item) error) error {
	local, err := roster.ParseEntity(s.domain, entity)
	if err != nil {
		return err
	}
	// fn's own error comes back as it is, as the store's (prefixed) do.
	return s.store.Items(ctx, store.Filter{Entity: local, Limit: limit}, fn)
}

// AllItems streams every entity's roster items, ordered by entity then
// contact.
func (s *Service) AllItems(ctx context.Context, fn func(roster.Item) error) error {
	return s.store.Items(ctx, store.Filter{AllEntities: true}, fn)
}

// Lists returns the allow and deny lists.
func (s *Service) Lists(ctx context.Context) (allow, deny []string, err error) {
	allow, deny, err = s.store.Lists(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("gate: %w", err)
	}
	return allow, deny, nil
}

// EditList adds pattern to, or removes it from, the list "allow" or "deny";
// the lists are in force at once. It reports whether the list changed. Its
// errors name what is wrong (a bad pattern, an unknown list).
func (s *Service) EditList(ctx context.Context, actor roster.Actor, list string, add bool, pattern string) (bool, error) {
	if s.eng != nil {
		return s.eng.EditList(ctx, list, add, pattern, actor)
	}
	// Refused at once rather than by the running instance.
	if _, err := engine.CheckListEdit(list, pattern); err != nil {
		return false, err
	}
	var res ListResult
	if err := s.queue(ctx, actor, ListRequest{List: list, Add: add, Pattern: pattern}, &res); err != nil {
		return false, err
	}
	return res.Changed, nil
}

// Audit streams the audit log from since on, oldest first.
func (s *Service) Audit(ctx context.Context, since time.Time, fn func(roster.Event) error) error {
	return s.store.Events(ctx, since, fn)
}

// Subscribe makes the entity ask for contact's presence (RFC 6121 §3.1.1).
func (s *Service) Subscribe(ctx context.Context, actor roster.Actor, entity, contact string) error {
	return s.act(ctx, actor, entity, contact, subscription.Subscribe)
}

// Unsubscribe makes the entity stop receiving contact's presence, or
// withdraw its request for it (§3.3.1).
func (s *Service) Unsubscribe(ctx context.Context, actor roster.Actor, entity, contact string) error {
	return s.act(ctx, actor, entity, contact, subscription.Unsubscribe)
}

// Cancel ends contact's subscription to the entity, or declines or
// withdraws a pre-approval of it (§3.2.1, §3.4).
func (s *Service) Cancel(ctx context.Context, actor roster.Actor, entity, contact string) error {
	return s.act(ctx, actor, entity, contact, subscription.Unsubscribed)
}

// Remove removes contact from the entity's roster: unsubscribe, then
// unsubscribed (§2.5.2).
func (s *Service) Remove(ctx context.Context, actor roster.Actor, entity, contact string) error {
	local, err := roster.ParseEntity(s.domain, entity)
	if err != nil {
		return err
	}
	if s.eng != nil {
		return s.eng.Remove(ctx, actor, local, contact)
	}
	var res ActResult
	return s.queue(ctx, actor, ActRequest{Entity: local, Contact: contact, Remove: true}, &res)
}

func (s *Service) act(ctx context.Context, actor roster.Actor, entity, contact string, kinds ...subscription.Kind) error {
	local, err := roster.ParseEntity(s.domain, entity)
	if err != nil {
		return err
	}
	if s.eng != nil {
		return s.eng.Act(ctx, actor, local, contact, kinds...)
	}
	ks := make([]string, len(kinds))
	for i, k := range kinds {
		ks[i] = k.String()
	}
	// A result with an error comes back as the error of queue.
	var res ActResult
	return s.queue(ctx, actor, ActRequest{Entity: local, Contact: contact, Kinds: ks}, &res)
}

// Reload puts new settings in force in the running instance.
func (s *Service) Reload(ctx context.Context, settings engine.Settings) error {
	if s.eng == nil {
		return errors.New("gate: reload: not the running instance (send it SIGHUP)")
	}
	return s.eng.Reload(ctx, settings)
}

// Counters are what the running instance has counted since it started.
type Counters struct {
	Held            int            // held requests, as counted for the caps
	LimitHits       map[string]int // requests over a limit, by limit
	MessagesDropped int            // messages from non-contacts dropped (accept_messages)
}

// Counters returns the running instance's counters; zero in a command-line
// process.
func (s *Service) Counters() Counters {
	if s.eng == nil {
		return Counters{}
	}
	return Counters{Held: s.eng.Held(), LimitHits: s.eng.LimitHits(), MessagesDropped: s.eng.MessagesDropped()}
}

func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
