// Package store is the contract every rostergate store backend keeps: the
// roster items (RFC 6121 state), the held requests, the audit log, the
// outbox of stanzas committed but not yet known to be sent, the allow and
// deny lists, and the queue of acts the command line asks of the running
// instance.
//
// It names no driver. The embedded default is package store/sqlite; every
// backend passes the behaviour suite in store/storetest.
//
// The promises a backend makes, which the decision engine relies on:
//   - Commit is atomic: a batch of changes, its audit rows and its outbox row
//     are stored entirely or not at all, whatever instant the process dies.
//   - Once Commit returns, the batch is durable: the stanzas that report it
//     may be sent.
//   - Reads see every batch committed before they started.
//   - One running instance at a time holds the store (Hold); another is
//     refused until the first lets go or dies.
package store

import (
	"context"
	"errors"
	"time"

	"rostergate/roster"
)

// ErrNotFound is returned (wrapped) when an item, request or action does
// not exist; test for it with errors.Is.
var ErrNotFound = errors.New("store: not found")

// ErrHeld is returned (wrapped) by Hold when another running instance holds
// the store.
var ErrHeld = errors.New("store: held by another running rostergate")

// Change is one unit of a batch given to Commit. Its parts are applied in
// this order: the item, Dequeue, Queue, Audit.
//
// The item part is skipped when Item.Contact is "" or, unless Delete is set,
// when Item.Sub is "": such a change can dequeue, queue or audit without
// touching the stored item. Otherwise the item is upserted, or deleted when
// Delete is set or when it is Empty. When writing, a zero Item.Updated
// becomes the batch's time, PendingSince is stored only while PendingIn is
// set, and a zero PendingSince with PendingIn set becomes the batch's time.
//
// A queued request needs its roster item to exist when the batch commits,
// and deleting an item also deletes its held request.
type Change struct {
	Item    roster.Item     // the item's new state, written with an upsert keyed by (Entity, Contact)
	Delete  bool            // delete the item instead (an Empty item is not kept either)
	Queue   *roster.Request // if non-nil, hold it for review (replacing any for the same entity and contact); Commit sets Queue.ID
	Dequeue bool            // remove the held request for (Item.Entity, Item.Contact), if any
	Audit   *roster.Event   // if non-nil, append it; Commit sets Audit.ID
	// New says the caller read no stored item for (Item.Entity,
	// Item.Contact) before this batch: a hint, which lets a store insert
	// the item without looking for one first. It is only a hint: when an
	// item is stored after all, Commit writes it as it would without.
	// Within a batch, the first change of an item carries it.
	New bool
}

// Batch is one transaction: state changes, the stanzas that report them, and
// the outbox rows that have been delivered since the last batch.
type Batch struct {
	Changes []Change
	// Send holds the stanzas to write to the stream once the batch is
	// committed. It is kept in the outbox, in the same transaction, until
	// Delivered names it: a reply is never lost between commit and write.
	Send string
	// Delivered deletes the outbox rows with ids up to this one.
	Delivered int64
	// BotEvents are appended to the entities' event logs, in order, in the
	// same transaction; Commit sets their ids.
	BotEvents []BotEvent
	// InviteUses names the invites the batch's decisions used, one id per
	// use: each adds one to its invite's Uses, in the same transaction.
	InviteUses []int64
	// Placements are written (or, with Delete, deleted) in the same
	// transaction, after the items: what rostergate did to put an entity
	// on a user's roster goes with the state it made.
	Placements []PlacementChange
}

// Placement records that rostergate put an entity on a user's roster
// ([[entity]] place_in), how, and how far it got. Only a user with a
// placement has an item rostergate may take away again: items the users
// made themselves have none.
type Placement struct {
	Entity  string // the entity's localpart ("" is the domain itself)
	Contact string // the user's normalised bare JID
	// Method is how: PlaceByPrivilege (the user's roster item written
	// through the server, XEP-0356) or PlaceBySubscription (the entity
	// asked, pre-approving the user's own request, RFC 6121 §3.4).
	Method string
	// State is how far it got: PlacePlaced, PlaceWaiting, PlaceAccepted,
	// PlaceFailed or PlaceDeclined.
	State string
	// Source is the place_in entry that put the user there (the first one
	// that lists them): "group:sales" or the JID itself.
	Source string
	// Detail says what happened last, in words: a failure's reason, why the
	// privileged way was not taken.
	Detail   string
	Attempts int       // subscription requests sent so far
	Sent     time.Time // when the last one went (zero: none)
	Created  time.Time // the first placement
	Updated  time.Time
}

// Methods and states of a Placement.
const (
	PlaceByPrivilege    = "privilege"
	PlaceBySubscription = "subscription"

	PlacePlaced   = "placed"   // written as both on the user's roster
	PlaceWaiting  = "waiting"  // subscription sent, the user has not accepted yet
	PlaceAccepted = "accepted" // the user accepted: both
	PlaceFailed   = "failed"   // neither way worked (Detail says why); tried again later
	PlaceDeclined = "declined" // the user took the entity off after it was placed: left alone
)

// PlacementChange is one placement to write, or to delete.
type PlacementChange struct {
	Placement
	Delete bool
}

// BotEvent is one event of an entity's log: what the bot behind the entity
// learns (a message to it, a contact's presence, a subscription change, a
// held request). An entity's ids increase in the order its events were
// committed (in a batch's order within a batch); they need not be
// consecutive, and ids are unique across entities.
type BotEvent struct {
	ID     int64
	Entity string // the entity's localpart ("" is the domain itself)
	At     time.Time
	Type   string // message, presence, subscription or request
	Data   string // the type's fields: a JSON object
}

// Token is an HTTP API token. Only a hash of its secret is stored.
type Token struct {
	ID       int64
	Hash     []byte   // SHA-256 of the secret (an export carries it, so that tokens keep working)
	Entities []string // the localparts it may act for
	Admin    bool     // an admin's token: the admin API
	Created  time.Time
	LastUsed time.Time // zero if never used
	Revoked  time.Time // zero unless revoked
}

// Invite is a pre-authenticated subscription link to an entity (XEP-0379):
// a subscribe carrying its token is accepted whatever the policy says (the
// deny list excepted), up to MaxUses times, until Expires. Only a hash of
// its token is stored.
type Invite struct {
	ID            int64
	Hash          []byte // SHA-256 of the token
	Entity        string // the entity's localpart ("" is the domain itself)
	Creator       string // who made it, as the audit log names actors: an admin's JID, "cli:root", "token:3"
	Created       time.Time
	Expires       time.Time // zero: never
	MaxUses       int       // how many requests it may accept, at least 1
	Uses          int       // how many it has accepted
	SubscribeBack bool      // the entity subscribes back to whoever uses it
	Revoked       time.Time // zero unless revoked
}

// Unusable says why inv accepts no more requests at now, after pending
// more uses not stored yet: "revoked", "expired" or "used up"; "" when it
// accepts one more.
func (inv Invite) Unusable(now time.Time, pending int) string {
	switch {
	case !inv.Revoked.IsZero():
		return "revoked"
	case !inv.Expires.IsZero() && !now.Before(inv.Expires):
		return "expired"
	case inv.Uses+pending >= inv.MaxUses:
		return "used up"
	}
	return ""
}

// WebKey is an admin's key to the web page: a one-time login link
// (KindLogin) or a session (KindSession). Only a hash of its secret is
// stored.
type WebKey struct {
	Hash    []byte // SHA-256 of the secret
	Kind    string // KindLogin or KindSession
	JID     string // the admin's bare JID
	Created time.Time
	// Expires is when the key stops working: a link's end, a session's
	// idle deadline. A session never outlives Until.
	Expires, Until time.Time
}

// Kinds of WebKey.
const (
	KindLogin   = "login"
	KindSession = "session"
)

// Presence is what an entity's bot set as its presence (show, status).
type Presence struct {
	Show, Status string
}

// Outgoing is an outbox row: stanzas committed but not known to be delivered.
type Outgoing struct {
	ID      int64
	Created time.Time
	Stanzas string
}

// Filter selects the items Items streams.
type Filter struct {
	Entity      string      // only this entity's items...
	AllEntities bool        // ...unless this is set
	Subs        []string    // only items whose Sub is one of these; empty = all
	After       *roster.Key // only items after this key in (entity, contact) order, for reading in pages
	Limit       int         // at most this many items; 0 = no limit
}

// Action is an act the command line asks of the running instance, which
// alone holds the stream: a typed request (JSON, see package gate) and,
// once carried out, its typed result.
type Action struct {
	ID      int64
	Created time.Time
	Actor   string // who asked, e.g. "cli:root"
	Kind    string // what is asked, e.g. "decide" or "list"
	Request string // the request, JSON
	Done    time.Time
	Result  string // what came of it, JSON; "" until Done
}

// Roster reads and changes roster state: what the decision engine needs.
type Roster interface {
	// Get returns the item of contact on entity's roster, or an error
	// matching ErrNotFound.
	Get(ctx context.Context, entity, contact string) (roster.Item, error)
	// GetMany returns the stored items among keys, in any order; keys with
	// no item are left out. It costs one round trip however many keys.
	GetMany(ctx context.Context, keys []roster.Key) ([]roster.Item, error)
	// Commit writes a batch in one transaction, all or nothing, and returns
	// the id of its outbox row (0 when Send is empty). An empty batch is a
	// no-op.
	Commit(ctx context.Context, b Batch) (outboxID int64, err error)
	// Outbox returns what was committed but not known to be delivered,
	// oldest first.
	Outbox(ctx context.Context) ([]Outgoing, error)
	// Delivered deletes the outbox rows up to id.
	Delivered(ctx context.Context, id int64) error
	// Items streams the items f selects, ordered by entity then contact,
	// from one snapshot, calling fn for each; fn may call other methods.
	// An error from fn stops Items and is returned as it is.
	Items(ctx context.Context, f Filter, fn func(roster.Item) error) error
	// Requests returns the held requests, oldest first.
	Requests(ctx context.Context) ([]roster.Request, error)
	// Request returns one held request, or an error matching ErrNotFound.
	Request(ctx context.Context, id int64) (roster.Request, error)
}

// Lists keeps the allow and deny lists that admins edit at run time.
type Lists interface {
	// Lists returns the allow and deny lists, each sorted.
	Lists(ctx context.Context) (allow, deny []string, err error)
	// EditList adds pattern to, or removes it from, the list "allow" or
	// "deny", with its audit event, in one transaction. It reports whether
	// the list changed.
	EditList(ctx context.Context, list, pattern string, add bool, ev *roster.Event) (changed bool, err error)
}

// Audit reads the audit log.
type Audit interface {
	// RequestDecision returns the audit event that decided held request
	// id (approved, rejected, expired), or an error matching ErrNotFound.
	// It may read the whole log: it answers an admin, not a stanza.
	RequestDecision(ctx context.Context, id int64) (roster.Event, error)
	// Events streams the events with At >= since, oldest first, calling fn
	// for each. An error from fn stops Events and is returned as it is.
	Events(ctx context.Context, since time.Time, fn func(roster.Event) error) error
	// AuditPage returns up to q.Limit events that match q, by id: newest
	// first with q.Desc, else oldest first.
	AuditPage(ctx context.Context, q AuditQuery) ([]roster.Event, error)
}

// AuditQuery selects a page of the audit log. Zero fields select
// everything.
type AuditQuery struct {
	Entity    string // the entity's localpart, when HasEntity ("" is the domain itself)
	HasEntity bool
	Contact   string // a part of the contact's JID, any case
	Action    string
	Via       string // the interface
	Since     time.Time
	After     int64 // only ids above
	Before    int64 // only ids below (0: no bound)
	Limit     int   // at least 1, at most 10,000
	Desc      bool  // newest first
}

// Actions is the queue of the command line's acts.
type Actions interface {
	// QueueAction records an act for the running instance and returns its id.
	QueueAction(ctx context.Context, actor, kind, request string) (int64, error)
	// WaitingActions returns the acts not carried out yet, oldest first.
	WaitingActions(ctx context.Context) ([]Action, error)
	// FinishAction marks an act carried out, with its result.
	FinishAction(ctx context.Context, id int64, result string) error
	// Action returns one act, or an error matching ErrNotFound.
	Action(ctx context.Context, id int64) (Action, error)
}

// Bots keeps what the bots behind entities use: their tokens, the entities'
// event logs and their delivery cursors, and the presence bots set.
type Bots interface {
	// BotEvents returns up to limit events of entity with ids above after,
	// oldest first, and the highest id that retention has deleted from
	// entity's log (0 if none): events above after and up to it are lost.
	BotEvents(ctx context.Context, entity string, after int64, limit int) (evs []BotEvent, trimmed int64, err error)
	// LastBotEvent returns the id of entity's newest event, or of the
	// newest that retention deleted if that is newer (0 if none ever).
	LastBotEvent(ctx context.Context, entity string) (int64, error)
	// TrimBotEvents deletes events older than before, and the oldest of
	// each entity beyond the newest keep (keep 0: no cap), and returns how
	// many it deleted. A backend may delete a commit's events of one
	// entity together: only once all are older than before, or once keep
	// newer remain without them.
	TrimBotEvents(ctx context.Context, before time.Time, keep int) (int64, error)
	// CreateToken stores a token's hash with the entities it may act for,
	// and whether it is an admin's.
	CreateToken(ctx context.Context, hash []byte, entities []string, admin bool) (Token, error)
	// TokenByHash returns the token with this hash, or an error matching
	// ErrNotFound.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	// Tokens returns every token, oldest first.
	Tokens(ctx context.Context) ([]Token, error)
	// RevokeToken revokes a token, or returns an error matching ErrNotFound.
	RevokeToken(ctx context.Context, id int64) error
	// TokenUsed records that token id was used for entity (and when): a
	// bot is behind that entity while the token is not revoked.
	TokenUsed(ctx context.Context, id int64, entity string, at time.Time) error
	// BotEntities returns the entities a token that is not revoked has
	// been used for.
	BotEntities(ctx context.Context) ([]string, error)
	// Cursor returns the last event id a consumer (say "webhook:helpdesk")
	// has taken, and whether it has stored one; SetCursor stores it.
	Cursor(ctx context.Context, name string) (id int64, ok bool, err error)
	SetCursor(ctx context.Context, name string, id int64) error
	// DeleteCursor forgets a consumer's cursor (none: a no-op).
	DeleteCursor(ctx context.Context, name string) error
	// Presences returns the presence the bots set, by entity;
	// SetPresence stores one, or with nil forgets it.
	Presences(ctx context.Context) (map[string]Presence, error)
	SetPresence(ctx context.Context, entity string, p *Presence) error
}

// Web keeps the admins' keys to the web page: one-time login links and
// sessions, each by the SHA-256 of its secret.
type Web interface {
	// CreateWebKey stores a key; a hash stored already is an error.
	CreateWebKey(ctx context.Context, k WebKey) error
	// TakeWebKey deletes the key of this hash and kind and returns it if
	// it has not expired at now; otherwise (unknown, another kind, expired,
	// taken already) it returns an error matching ErrNotFound. Of two
	// takers of one key, one gets it.
	TakeWebKey(ctx context.Context, hash []byte, kind string, now time.Time) (WebKey, error)
	// WebKey returns the key of this hash and kind if it has not expired at
	// now, else an error matching ErrNotFound. With touch > 0 it first
	// moves the key's Expires to now+touch (never past Until).
	WebKey(ctx context.Context, hash []byte, kind string, now time.Time, touch time.Duration) (WebKey, error)
	// DeleteWebKey deletes a key (none: a no-op).
	DeleteWebKey(ctx context.Context, hash []byte) error
	// TrimWebKeys deletes the keys expired at now and returns how many.
	TrimWebKeys(ctx context.Context, now time.Time) (int64, error)
}

// Invites keeps the invites (pre-authenticated subscription links).
type Invites interface {
	// CreateInvite stores inv (its ID and Uses are ignored) and its audit
	// event ev (if not nil; its Rule is set to "invite ID") in one
	// transaction, and returns it with its id.
	// A hash stored already, or one that is not 32 bytes, is an error.
	CreateInvite(ctx context.Context, inv Invite, ev *roster.Event) (Invite, error)
	// InviteByHash returns the invite with this hash, Invite the one with
	// this id; either returns an error matching ErrNotFound.
	InviteByHash(ctx context.Context, hash []byte) (Invite, error)
	Invite(ctx context.Context, id int64) (Invite, error)
	// Invites returns every invite, oldest first.
	Invites(ctx context.Context) ([]Invite, error)
	// RevokeInvite revokes invite id at at, with its audit event ev (if not
	// nil), in one transaction. It reports false, and stores nothing, when
	// the invite was revoked already; an unknown id is an error matching
	// ErrNotFound.
	RevokeInvite(ctx context.Context, id int64, at time.Time, ev *roster.Event) (bool, error)
}

// Placements keeps the placements (see Placement); they are written by
// Commit (Batch.Placements).
type Placements interface {
	// Placements returns every placement, by entity then contact.
	Placements(ctx context.Context) ([]Placement, error)
}

// ImportRecords are records of an export (rostergate export) to load into
// a store as they are: with their ids and times.
type ImportRecords struct {
	Items    []roster.Item
	Requests []roster.Request // each needs its item, imported before or with it
	Lists    []ListEntry
	Events   []roster.Event // the audit log, with their ids
	Tokens   []Token        // with their hashes
	Invites  []Invite       // with their hashes, uses and ids
	// Placements, with their times: what rostergate placed, which it
	// alone may take back.
	Placements []Placement
}

// ListEntry is a pattern on the allow or deny list.
type ListEntry struct {
	List    string // "allow" or "deny"
	Pattern string
}

// Importer loads exported records.
type Importer interface {
	// Import writes the records in one transaction, keeping their ids,
	// times and states; a record whose key or id is stored already fails
	// the whole call. Ids assigned later follow the highest imported.
	Import(ctx context.Context, r ImportRecords) error
}

// ErrFenced is returned (wrapped) by a write of an instance that is no
// longer the active one: another instance took over, and the write was not
// made.
var ErrFenced = errors.New("store: another instance is active now; nothing was written")

// Instance describes a running rostergate sharing a store.
type Instance struct {
	ID      string    // unique per process: host, pid and start
	Host    string    // the machine's name
	PID     int       // its process id
	Started time.Time // when the process started
	Active  bool      // the active one (it holds the lead)
	Since   time.Time // when it became active (zero for a standby)
	Seen    time.Time // when it last said it runs
}

// Lease is the lead of an active instance. Lost is closed when the lead
// is lost (the store session that held it ended, or could not be checked
// within the lease's timeout): from then on the instance's writes fail with
// ErrFenced, and it must stop acting at once. Release gives the lead up (a
// standby takes over); calling it again does nothing.
type Lease interface {
	Lost() <-chan struct{}
	Release()
}

// Leader is a store several running instances share (PostgreSQL): one of
// them is active, the others stand by and take over when the active one
// goes. A store that only one instance can use (SQLite) offers Hold only.
type Leader interface {
	// Lead waits until self is the active instance, or ctx ends. While it
	// waits, self is listed as a standby. Once it returns, the store fences
	// every write of an earlier active instance.
	Lead(ctx context.Context, self Instance) (Lease, error)
	// Instances returns the instances that said they run within the last
	// minute, the active one first.
	Instances(ctx context.Context) ([]Instance, error)
}

// Store is everything a running rostergate keeps.
type Store interface {
	Importer
	Roster
	Lists
	Audit
	Actions
	Bots
	Web
	Invites
	Placements
	// Hold claims the store for one running instance until release is
	// called or the process ends; while held, another Hold fails with an
	// error matching ErrHeld. The command line uses it to learn whether an
	// instance runs.
	Hold(ctx context.Context) (release func(), err error)
	// Check verifies the stored data is consistent, and returns an error
	// naming what is wrong otherwise.
	Check(ctx context.Context) error
	// Writable returns nil if a write transaction can start now (the
	// readiness probe), else why not.
	Writable(ctx context.Context) error
	// Close releases the store. Nothing may be in progress.
	Close() error
}
