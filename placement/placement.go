// Package placement puts rostergate's entities on users' rosters
// ([[entity]] place_in = ["group:sales", "alice@example.com"]) and keeps
// them there as the directory's groups change: the entity becomes a both
// contact of each user listed, directly or through a group.
//
// Where the server grants the component the roster permission of XEP-0356
// (Privileged Entity; namespaces urn:xmpp:privilege:1 and :2), the user's
// roster item is written as both through the server, and the entity's own
// state is set to match. Where it does not, or where the write fails, the
// entity asks the user to subscribe to it and pre-approves the user's own
// request (RFC 6121 §3.4): the user accepts once, and both subscriptions
// are in place. Each user's placement (how, how far, why) is stored, and
// each step audited (kind "place", actor "rostergate", interface
// "privilege" or "fallback").
//
// Reconcile brings the placements in line with place_in: at connect,
// after a reload and every Interval. It adds the users who are listed and
// not placed yet; it takes the entity off the rosters of users who are no
// longer listed, but only where rostergate placed it itself (an item the
// user made has no placement) and only when every source that could list
// them answered: a group the directory could not list, or listed empty
// while rostergate had placed some of its members, removes no one. A user
// who took a placed entity off their roster is left alone. An unanswered
// subscription request is sent again after ResendAfter (a day), not
// sooner.
package placement

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
)

// Namespaces of XEP-0356's advertisement: version 0.2 (ejabberd 23.01)
// and 0.3 and later (prosody-modules' mod_privilege).
const (
	NSPrivilege1 = "urn:xmpp:privilege:1"
	NSPrivilege2 = "urn:xmpp:privilege:2"
)

// Grant is what the server advertised to the component for rosters on a
// stream: the namespace and the type of the roster permission ("none",
// "get", "set" or "both"; "" when none was advertised).
type Grant struct {
	NS     string
	Roster string
	From   string // the server domain that advertised it
}

// CanSet reports whether g lets the component write users' roster items.
func (g Grant) CanSet() bool { return g.Roster == "set" || g.Roster == "both" }

// String says g in words, for the log, the audit log and status.
func (g Grant) String() string {
	switch {
	case g.NS == "":
		return "no privilege advertised (XEP-0356)"
	case g.Roster == "" || g.Roster == "none":
		return fmt.Sprintf("%s advertised no roster permission (%s)", g.From, g.NS)
	case !g.CanSet():
		return fmt.Sprintf("%s granted roster=%s, not set (%s)", g.From, g.Roster, g.NS)
	}
	return fmt.Sprintf("%s granted roster=%s (%s)", g.From, g.Roster, g.NS)
}

// Engine is what placing needs of the engine.
type Engine interface {
	Domain() string
	Entities() []engine.Entity
	PlacementSettings() engine.Placement
	Item(ctx context.Context, entity, contact string) (roster.Item, error)
	Placements(ctx context.Context) ([]store.Placement, error)
	Place(ctx context.Context, op engine.PlaceOp) error
	Audit(ctx context.Context, ev roster.Event) error
}

// Directory lists a group's members (normalised bare JIDs).
type Directory interface {
	Members(ctx context.Context, group string) ([]string, error)
}

// RosterItem is a user's roster item as a privileged set writes it.
type RosterItem struct {
	JID          string
	Name         string
	Subscription string // "both", or "remove" to delete it
}

// RefusedError is the server's error answer to a privileged roster set.
type RefusedError struct {
	Condition string // the stanza error's defined condition, e.g. "forbidden"
	Text      string // its text, if any
}

func (e *RefusedError) Error() string {
	if e.Text != "" {
		return e.Condition + " (" + e.Text + ")"
	}
	return e.Condition
}

// refusesAll reports whether err, a privileged set's failure for one user,
// says the server will refuse every user: the module failing (ejabberd
// 23.01 answers internal-server-error), the permission not honoured. A
// user the server does not know (Prosody: service-unavailable) is that
// user's matter, and so is an answer that does not come.
func refusesAll(err error) bool {
	var re *RefusedError
	if !errors.As(err, &re) {
		return false
	}
	switch re.Condition {
	case "forbidden", "internal-server-error", "not-allowed", "feature-not-implemented", "bad-request", "not-authorized":
		return true
	}
	return false
}

// Server writes users' roster items through the XMPP server (XEP-0356
// §4.3): an error is the server's refusal (a *RefusedError), or no answer
// in time.
type Server interface {
	SetRosterItem(ctx context.Context, user string, it RosterItem) error
}

// The methods in force, as the log, the audit log and status name them.
const (
	MethodPrivileged = "privileged roster"
	MethodFallback   = "subscription fallback"
)

// Actor is who placements are audited as.
const Actor = "rostergate"

// Interfaces the audit log names a placement's way with.
const (
	ViaPrivilege = "privilege"
	ViaFallback  = "fallback"
)

// Placer places the entities over one stream: the grant is that
// stream's.
type Placer struct {
	eng Engine
	dir Directory
	srv Server
	log hclog.Logger
	now func() time.Time

	mu    sync.Mutex
	grant Grant
	// broken is the first failure of a privileged roster set on this
	// stream: the rest of it falls back at once (a server that refuses one
	// user refuses them all: ejabberd 23.01 fails every set).
	broken error
	run    sync.Mutex // one Reconcile at a time
}

// New returns a Placer over eng, dir and srv, with no grant yet.
func New(eng Engine, dir Directory, srv Server, log hclog.Logger) *Placer {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Placer{eng: eng, dir: dir, srv: srv, log: log, now: time.Now}
}

// SetGrant records what the server advertised on this stream.
func (p *Placer) SetGrant(g Grant) {
	p.mu.Lock()
	p.grant = g
	p.mu.Unlock()
}

// Grant returns what the server advertised on this stream.
func (p *Placer) Grant() Grant {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grant
}

// Wanted reports whether any entity has place_in.
func (p *Placer) Wanted() bool {
	for _, e := range p.eng.Entities() {
		if len(e.PlaceIn) > 0 {
			return true
		}
	}
	return false
}

// Summary counts what one Reconcile did.
type Summary struct {
	Placed, Asked, Accepted, Failed, Removed, Declined int
	// Unsure are the entities whose sources did not all answer: nobody
	// was taken off their rosters.
	Unsure []string
}

// Reconcile brings every entity's placements in line with its place_in
// (see the package documentation).
func (p *Placer) Reconcile(ctx context.Context) (Summary, error) {
	p.run.Lock()
	defer p.run.Unlock()
	var sum Summary
	stored, err := p.eng.Placements(ctx)
	if err != nil {
		return sum, fmt.Errorf("placement: %w", err)
	}
	byEntity := map[string]map[string]store.Placement{}
	for _, pl := range stored {
		if byEntity[pl.Entity] == nil {
			byEntity[pl.Entity] = map[string]store.Placement{}
		}
		byEntity[pl.Entity][pl.Contact] = pl
	}
	configured := map[string]bool{}
	for _, ent := range p.eng.Entities() {
		configured[ent.Local] = true
		if err := p.entity(ctx, ent, byEntity[ent.Local], &sum); err != nil {
			return sum, err
		}
	}
	// An entity no longer configured: its placements stay as they are
	// (it may come back; an admin removes it with its roster).
	for ent := range byEntity {
		if !configured[ent] {
			p.log.Debug("placements of an entity no longer configured kept", "entity", ent)
		}
	}
	return sum, nil
}

// want is who place_in lists for one entity: contact → the first source.
func (p *Placer) want(ctx context.Context, ent engine.Entity, have map[string]store.Placement) (map[string]string, bool) {
	want := map[string]string{}
	sure := true
	for _, src := range ent.PlaceIn {
		group, isGroup := strings.CutPrefix(src, engine.PlaceGroupPrefix)
		if !isGroup {
			if _, ok := want[src]; !ok {
				want[src] = src
			}
			continue
		}
		if p.dir == nil {
			sure = false
			continue
		}
		members, err := p.dir.Members(ctx, group)
		if err != nil {
			// A directory that fails never means change: nobody is taken
			// off, and the group's new members wait for the next round.
			p.log.Warn("group not listed: nobody is taken off the entity's placements until it is", "entity", p.jid(ent.Local),
				"group", group, "err", err)
			sure = false
			continue
		}
		if len(members) == 0 {
			for _, pl := range have {
				if pl.Source == src {
					p.log.Warn("group listed empty while members were placed: taken for a fault, nobody is taken off",
						"entity", p.jid(ent.Local), "group", group)
					sure = false
					break
				}
			}
		}
		for _, m := range members {
			if _, ok := want[m]; !ok {
				want[m] = src
			}
		}
	}
	return want, sure
}

func (p *Placer) jid(local string) string { return roster.EntityJID(p.eng.Domain(), local) }

// entity reconciles one entity's placements.
func (p *Placer) entity(ctx context.Context, ent engine.Entity, have map[string]store.Placement, sum *Summary) error {
	if len(ent.PlaceIn) == 0 && len(have) == 0 {
		return nil
	}
	want, sure := p.want(ctx, ent, have)
	if !sure {
		sum.Unsure = append(sum.Unsure, p.jid(ent.Local))
	}
	settings := p.eng.PlacementSettings()
	contacts := make([]string, 0, len(want))
	for c := range want {
		contacts = append(contacts, c)
	}
	slices.Sort(contacts)
	for _, c := range contacts {
		if err := ctx.Err(); err != nil {
			return err
		}
		it, err := p.eng.Item(ctx, ent.Local, c)
		if err != nil {
			return fmt.Errorf("placement: %w", err)
		}
		pl, placed := have[c]
		switch {
		case !placed && it.Sub == roster.SubBoth:
			// Theirs already: nothing to do, and nothing rostergate may
			// take away later.
			continue
		case !placed:
			err = p.place(ctx, ent, c, want[c], store.Placement{}, sum)
		default:
			err = p.check(ctx, ent, c, it, pl, settings, sum)
		}
		if err != nil {
			if errors.Is(err, engine.ErrNotConnected) || ctx.Err() != nil {
				return fmt.Errorf("placement: %w", err)
			}
			p.log.Error("placement failed", "entity", p.jid(ent.Local), "contact", c, "err", err)
		}
	}
	if !sure {
		return nil
	}
	gone := make([]string, 0)
	for c := range have {
		if _, ok := want[c]; !ok {
			gone = append(gone, c)
		}
	}
	slices.Sort(gone)
	for _, c := range gone {
		if err := p.remove(ctx, ent, c, have[c], sum); err != nil {
			if errors.Is(err, engine.ErrNotConnected) || ctx.Err() != nil {
				return fmt.Errorf("placement: %w", err)
			}
			p.log.Error("taking a placement back failed", "entity", p.jid(ent.Local), "contact", c, "err", err)
		}
	}
	return nil
}

// maxAttempts is how many times an unanswered request is sent, at most.
const maxAttempts = 5

// check moves a stored placement on: a request accepted, one to send
// again, a placed item the user removed, a failure to try again.
func (p *Placer) check(ctx context.Context, ent engine.Entity, c string, it roster.Item, pl store.Placement, s engine.Placement, sum *Summary) error {
	now := p.now()
	switch pl.State {
	case store.PlacePlaced, store.PlaceAccepted:
		if it.Sub == roster.SubBoth {
			return nil
		}
		pl.State, pl.Detail = store.PlaceDeclined, fmt.Sprintf("the user took it off (now %s): left alone", it.Sub)
		sum.Declined++
		return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
			Audit: p.event("place", "declined", via(pl.Method), pl.Detail)})
	case store.PlaceWaiting:
		if it.Sub == roster.SubBoth {
			pl.State, pl.Detail = store.PlaceAccepted, fmt.Sprintf("the user accepted (after %d request(s))", pl.Attempts)
			sum.Accepted++
			return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
				Audit: p.event("place", "accepted", ViaFallback, pl.Detail)})
		}
		if it.Sub == roster.SubTo {
			// The user accepted the entity's request without asking back
			// (a client that only accepts): asking again changes nothing,
			// only the user can add the entity now.
			const half = "the user accepted, but did not ask back: the entity sees them, they do not see it (to)"
			if pl.Detail == half {
				return nil
			}
			pl.Detail = half
			return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
				Audit: p.event("place", "half", ViaFallback, pl.Detail)})
		}
		if !it.PendingOut {
			// The request is no longer pending and was not accepted: the
			// user refused it (unsubscribed), or accepted then took the
			// entity off. Asked again it would be refused again.
			pl.State, pl.Detail = store.PlaceDeclined, fmt.Sprintf("the user refused the request (now %s): left alone", it.Sub)
			sum.Declined++
			return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
				Audit: p.event("place", "declined", ViaFallback, pl.Detail)})
		}
		if now.Sub(pl.Sent) < s.ResendAfter {
			return nil
		}
		if pl.Attempts >= maxAttempts {
			// Unanswered this many times: whoever it is does not answer.
			return nil
		}
		return p.place(ctx, ent, c, pl.Source, pl, sum)
	case store.PlaceFailed:
		if it.Sub == roster.SubBoth {
			pl.State, pl.Detail = store.PlaceAccepted, "both now"
			sum.Accepted++
			return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
				Audit: p.event("place", "accepted", via(pl.Method), pl.Detail)})
		}
		return p.place(ctx, ent, c, pl.Source, pl, sum)
	}
	return nil // declined: left alone
}

func via(method string) string {
	if method == store.PlaceByPrivilege {
		return ViaPrivilege
	}
	return ViaFallback
}

func (p *Placer) event(kind, action, via, detail string) roster.Event {
	return roster.Event{Kind: kind, Action: action, Rule: "place_in", Actor: Actor, Interface: via, Detail: detail}
}

// place puts the entity on c's roster: through the server where the
// stream's grant allows it, else (or if that fails) by asking.
func (p *Placer) place(ctx context.Context, ent engine.Entity, c, source string, prev store.Placement, sum *Summary) error {
	g := p.Grant()
	why := g.String()
	p.mu.Lock()
	broken := p.broken
	p.mu.Unlock()
	if broken != nil {
		why = "the privileged roster set failed on this stream: " + broken.Error()
	}
	local := strings.EqualFold(c[strings.LastIndexByte(c, '@')+1:], g.From)
	if g.CanSet() && !local {
		// The grant is the server's, for its own users: another domain's
		// user is asked (and that server's refusal would say nothing of
		// this one's).
		why = "not a user of " + g.From + ", which granted the roster permission"
	}
	if g.CanSet() && local && p.srv != nil && broken == nil {
		name := ent.Name
		if name == "" {
			name = ent.Nick
		}
		err := p.srv.SetRosterItem(ctx, c, RosterItem{JID: p.jid(ent.Local), Name: name, Subscription: roster.SubBoth})
		if err == nil {
			pl := store.Placement{Method: store.PlaceByPrivilege, State: store.PlacePlaced, Source: source,
				Detail: "written as both on the user's roster: " + g.String(), Attempts: prev.Attempts}
			sum.Placed++
			return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceWritten, Placement: pl,
				Audit: p.event("place", "both", ViaPrivilege, pl.Detail)})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		why = "the privileged roster set failed: " + err.Error()
		if !refusesAll(err) {
			p.log.Warn("privileged roster set failed: falling back to a subscription request", "entity", p.jid(ent.Local),
				"contact", c, "err", err)
		} else {
			p.log.Warn("privileged roster set failed: falling back to subscription requests for the rest of this stream",
				"entity", p.jid(ent.Local), "contact", c, "err", err)
			p.mu.Lock()
			p.broken = err
			p.mu.Unlock()
			if err := p.eng.Audit(ctx, roster.Event{Kind: "privilege", Action: GrantAction, Rule: MethodFallback, Actor: Actor,
				Interface: ViaPrivilege, Detail: g.String() + ", but its roster set failed: " + err.Error()}); err != nil {
				p.log.Warn("recording the fallback", "err", err)
			}
		}
	}
	pl := store.Placement{Method: store.PlaceBySubscription, State: store.PlaceWaiting, Source: source,
		Detail: "subscription requested, the user pre-approved; " + why, Attempts: prev.Attempts + 1, Sent: p.now()}
	err := p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceAsk, Placement: pl,
		Audit: p.event("place", "subscribe", ViaFallback, pl.Detail)})
	if err == nil {
		sum.Asked++
		return nil
	}
	if errors.Is(err, engine.ErrNotConnected) || ctx.Err() != nil {
		return err
	}
	sum.Failed++
	pl.State, pl.Detail, pl.Attempts, pl.Sent = store.PlaceFailed, "neither way worked: "+why+"; asking: "+err.Error(), prev.Attempts, prev.Sent
	return p.eng.Place(ctx, engine.PlaceOp{Entity: ent.Local, Contact: c, Step: engine.PlaceRecord, Placement: pl,
		Audit: p.event("place", "failed", ViaFallback, pl.Detail)})
}

// remove takes the entity off the roster of c, who is no longer listed,
// the way it was put there.
func (p *Placer) remove(ctx context.Context, ent engine.Entity, c string, pl store.Placement, sum *Summary) error {
	op := engine.PlaceOp{Entity: ent.Local, Contact: c, Placement: pl, DeletePlacement: true}
	switch {
	case pl.State == store.PlaceDeclined || pl.State == store.PlaceFailed:
		// Nothing of ours is on the user's roster: only the record goes.
		op.Step, op.Audit = engine.PlaceRecord, p.event("unplace", "forget", via(pl.Method), "no longer listed ("+pl.State+")")
	case pl.Method == store.PlaceByPrivilege && p.Grant().CanSet() && p.srv != nil:
		err := p.srv.SetRosterItem(ctx, c, RosterItem{JID: p.jid(ent.Local), Subscription: "remove"})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.log.Warn("privileged roster removal failed; unsubscribing instead", "entity", p.jid(ent.Local), "contact", c, "err", err)
			op.Step, op.Audit = engine.PlaceRetract, p.event("unplace", "unsubscribe", ViaFallback,
				"no longer listed; the privileged removal failed ("+err.Error()+"): unsubscribed")
			break
		}
		op.Step, op.Audit = engine.PlaceErased, p.event("unplace", "remove", ViaPrivilege, "no longer listed: removed from the user's roster")
	default:
		op.Step, op.Audit = engine.PlaceRetract, p.event("unplace", "unsubscribe", ViaFallback, "no longer listed: unsubscribed")
	}
	sum.Removed++
	return p.eng.Place(ctx, op)
}
