package engine

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/directory"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/xmpp/stanza"
)

// Entity is a configured JID at the component domain.
type Entity struct {
	Local  string // normalised localpart; "" is the domain itself
	Name   string
	Nick   string // its nickname (vCard)
	Show   string // "", away, chat, dnd or xa
	Status string
	// AutoReply answers a message while no bot is behind the entity; ""
	// answers service-unavailable.
	AutoReply string
	// AcceptMessages is whose messages reach the entity: AcceptContacts
	// ("" too) or AcceptAnyone.
	AcceptMessages string
	// Avatar is its picture (XEP-0153), of MIME type AvatarType; nil for
	// none.
	Avatar     []byte
	AvatarType string
	// Webhook says a webhook receives the entity's events: a bot is behind
	// it.
	Webhook bool
	// SendTo is whom its bot may message: SendSubscribers ("" too) or
	// SendAnyone.
	SendTo string
	// PlaceIn are the users whose rosters the entity is put on ([[entity]]
	// place_in): normalised bare JIDs, and groups of the directory as
	// "group:NAME" (NAME lower-case).
	PlaceIn []string
}

// PlaceGroupPrefix starts a PlaceIn entry that names a group.
const PlaceGroupPrefix = "group:"

// The values of Entity.SendTo.
const (
	SendSubscribers = "subscribers" // JIDs with a subscription to the entity (from or both)
	SendAnyone      = "anyone"
)

// face is what an entity's available presence carries besides show and
// status: its avatar's hash (XEP-0153) and its capabilities (XEP-0115).
func face(ent Entity) string {
	photo := "<photo/>"
	if len(ent.Avatar) > 0 {
		sum := sha1.Sum(ent.Avatar) // #nosec G401 -- XEP-0153 names SHA-1
		photo = "<photo>" + hex.EncodeToString(sum[:]) + "</photo>"
	}
	return "<x xmlns='" + stanza.NSVCardUpdate + "'>" + photo + "</x>" +
		"<c xmlns='" + stanza.NSCaps + "' hash='sha-1' node='" + stanza.CapsNode + "' ver='" +
		stanza.CapsVer("client", "bot", ent.Name, stanza.EntityFeatures()) + "'/>"
}

// The values of Entity.AcceptMessages.
const (
	AcceptContacts = "contacts" // JIDs with a subscription either way
	AcceptAnyone   = "anyone"
)

// Settings are what a reload (SIGHUP) may change while rostergate runs.
type Settings struct {
	Entities []Entity
	// UnknownOnline makes JIDs at the domain that are not in Entities
	// available, as when the policy accepts subscriptions to them; otherwise
	// their subscribers (say, of an entity since removed from the config)
	// see them unavailable.
	UnknownOnline bool
	// Policy decides requests; the allow and deny lists kept in the Store
	// are added to it.
	Policy *policy.Policy
	// Admins are the bare JIDs allowed to decide held requests.
	Admins []string
	// ReviewTTL rejects requests held for review longer than this; 0 = never.
	ReviewTTL time.Duration
	Limits    Limits
	// Directory is where the policy's group rules look groups up; its
	// zero value is none.
	Directory directory.Config
	// Placement paces the placing of entities on users' rosters.
	Placement Placement
}

// Placement paces the placing of entities on users' rosters ([[entity]]
// place_in): see package placement.
type Placement struct {
	// Interval is how often the placements are brought in line with
	// place_in and the directory's groups (besides at connect and after a
	// reload); 0 is DefaultPlaceInterval.
	Interval time.Duration
	// ResendAfter is how long a subscription request the user has not
	// answered waits before it is sent again; 0 is DefaultResendAfter.
	ResendAfter time.Duration
}

// Defaults of Placement.
const (
	DefaultPlaceInterval = 5 * time.Minute
	DefaultResendAfter   = 24 * time.Hour
)

// PlacementSettings returns the placement pacing in force, with the
// defaults filled in.
func (e *Engine) PlacementSettings() Placement {
	p := e.live.Load().Placement
	if p.Interval <= 0 {
		p.Interval = DefaultPlaceInterval
	}
	if p.ResendAfter <= 0 {
		p.ResendAfter = DefaultResendAfter
	}
	return p
}

// Reloaded returns a channel that is closed at the next reload (Reload
// that succeeded).
func (e *Engine) Reloaded() <-chan struct{} {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	return e.reloaded
}

// Limits bound the requests rostergate takes in.
type Limits struct {
	ContactRate         limits.Rate   // requests per contact
	DomainRate          limits.Rate   // requests per contact domain
	MaxPendingPerDomain int           // held requests from one domain; 0 = no cap
	MaxPending          int           // held requests in all; 0 = no cap
	Action              policy.Action // over a limit: policy.Drop (the default) or policy.Reject
}

// maxBucketKeys bounds the memory of the rate limiters under a flood of
// distinct contacts.
const maxBucketKeys = 100_000

// live is the settings in force, with what is derived from them; replaced
// whole on reload and on list edits.
type live struct {
	Settings
	entities map[string]Entity
	faces    map[string]string // face of each entity
	admins   map[string]bool
	policy   *policy.Policy // Settings.Policy with the allow and deny lists
	contacts *limits.Buckets
	domains  *limits.Buckets
}

func newLive(s Settings, allow, deny []string, prev *live) (*live, error) {
	if s.Policy == nil {
		return nil, fmt.Errorf("engine: settings: no policy")
	}
	if s.Limits.Action == "" {
		s.Limits.Action = policy.Drop
	}
	if s.Limits.Action != policy.Drop && s.Limits.Action != policy.Reject {
		return nil, fmt.Errorf("engine: settings: limit action %q (want drop or reject)", s.Limits.Action)
	}
	p, err := s.Policy.WithLists(allow, deny)
	if err != nil {
		return nil, fmt.Errorf("engine: allow/deny lists: %w", err)
	}
	l := &live{Settings: s, entities: map[string]Entity{}, faces: map[string]string{}, admins: map[string]bool{}, policy: p}
	for _, e := range s.Entities {
		l.entities[e.Local] = e
		l.faces[e.Local] = face(e)
	}
	for _, a := range s.Admins {
		j, err := jid.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("engine: admin %q: %w", a, err)
		}
		l.admins[j.Bare().String()] = true
	}
	// Keep the buckets (and what they have counted) when the rates stay.
	if prev != nil && prev.ContactRate() == s.Limits.ContactRate {
		l.contacts = prev.contacts
	} else {
		l.contacts = limits.NewBuckets(s.Limits.ContactRate, maxBucketKeys)
	}
	if prev != nil && prev.DomainRate() == s.Limits.DomainRate {
		l.domains = prev.domains
	} else {
		l.domains = limits.NewBuckets(s.Limits.DomainRate, maxBucketKeys)
	}
	return l, nil
}

// ContactRate and DomainRate are the rates the buckets were made for.
func (l *live) ContactRate() limits.Rate { return l.Limits.ContactRate }
func (l *live) DomainRate() limits.Rate  { return l.Limits.DomainRate }

// face returns the face of entity's available presence; none for a JID
// that is no entity (available through unknown_entity), which answers no
// vCard or capabilities query.
func (l *live) face(entity string) string { return l.faces[entity] }

// isAdmin reports whether from (any JID, any resource, any case) is an admin.
func (l *live) isAdmin(from string) bool {
	j, err := jid.Parse(from)
	return err == nil && l.admins[j.Bare().String()]
}

// adminList returns the admins, sorted.
func (l *live) adminList() []string {
	out := make([]string, 0, len(l.admins))
	for a := range l.admins {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Reload puts new settings in force: entities, policy, admins, TTL and
// limits. The allow and deny lists are read again from the store. On error
// the settings in force are kept.
func (e *Engine) Reload(ctx context.Context, s Settings) error {
	e.lock()
	defer e.mu.Unlock()
	// Read under the lock, so that a list edit cannot slip in between.
	allow, deny, err := e.store.Lists(ctx)
	if err != nil {
		return fmt.Errorf("engine: reload: %w", err)
	}
	l, err := newLive(s, allow, deny, e.live.Load())
	if err != nil {
		return fmt.Errorf("engine: reload: %w", err)
	}
	// The directory first: a rule of the new policy finds its groups.
	if err := e.dir.Configure(s.Directory); err != nil {
		return fmt.Errorf("engine: reload: %w", err)
	}
	e.live.Store(l)
	e.reloadMu.Lock()
	close(e.reloaded)
	e.reloaded = make(chan struct{})
	e.reloadMu.Unlock()
	e.log.Info("settings reloaded", "entities", len(s.Entities), "rules", len(s.Policy.Rules()), "admins", len(l.admins))
	return nil
}

// reloadLists applies the allow and deny lists as stored; e.mu is held.
func (e *Engine) reloadLists(ctx context.Context) error {
	allow, deny, err := e.store.Lists(ctx)
	if err != nil {
		return err
	}
	cur := e.live.Load()
	l, err := newLive(cur.Settings, allow, deny, cur)
	if err != nil {
		return err
	}
	e.live.Store(l)
	return nil
}

// IsAdmin reports whether from (any JID, any resource, any case) is an
// admin by the settings in force.
func (e *Engine) IsAdmin(from string) bool { return e.live.Load().isAdmin(from) }

// Entity returns the configured entity with localpart local.
func (e *Engine) Entity(local string) (Entity, bool) {
	ent, ok := e.live.Load().entities[local]
	return ent, ok
}

// Entities returns the configured entities, by localpart.
func (e *Engine) Entities() []Entity {
	l := e.live.Load()
	out := make([]Entity, 0, len(l.entities))
	for _, ent := range l.entities {
		out = append(out, ent)
	}
	slices.SortFunc(out, func(a, b Entity) int { return strings.Compare(a.Local, b.Local) })
	return out
}

// ReviewTTL returns the review_ttl in force; 0 is none.
func (e *Engine) ReviewTTL() time.Duration { return e.live.Load().ReviewTTL }
