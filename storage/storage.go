// Package storage keeps rostergate's state in SQLite: the roster items of
// every entity (RFC 6121 subscription state), pending review requests and an
// append-only audit log.
//
// The database runs in WAL mode with synchronous=FULL (a commit is on disk
// before the reply that reports it is sent, even across a power loss), a 5 s busy timeout
// and foreign keys on, so another process (the CLI) may read, and write, the
// same file while the component runs. Every write goes through [DB.Commit],
// which commits a whole batch of changes in one transaction: a batch is
// stored entirely or not at all, even if the process is killed mid-way, and
// batching many decisions into one commit (group commit) is what makes the
// write rate high.
//
// Inside a [DB] there are two connection pools on the same file: a single
// writer connection, which serialises this process's transactions and starts
// each with BEGIN IMMEDIATE, and a pool of query-only reader connections.
// Under WAL a reader never waits for the writer nor the writer for a reader,
// so a long [DB.Items] iteration can run while [DB.Apply] commits.
//
// Times are stored as unix milliseconds and come back in UTC with millisecond
// precision.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// ErrNotFound is returned (wrapped) when an item or request does not exist;
// test for it with errors.Is.
var ErrNotFound = errors.New("storage: not found")

// notFound names what was not found and unwraps to ErrNotFound.
type notFound struct{ what string }

func (e notFound) Error() string { return "storage: " + e.what + " not found" }
func (e notFound) Unwrap() error { return ErrNotFound }

// Subscription states an Item's Sub may hold.
const (
	SubNone = "none"
	SubTo   = "to"
	SubFrom = "from"
	SubBoth = "both"
)

// Item is one roster item, seen from the entity's side.
type Item struct {
	Entity       string    // localpart of the entity ("" = the component domain itself)
	Contact      string    // normalised bare JID of the contact
	Sub          string    // "none", "to", "from" or "both" (CHECK constraint in SQL)
	PendingOut   bool      // the entity asked for the contact's presence (ask=subscribe)
	PendingIn    bool      // the contact asked for the entity's presence, not yet decided
	Approved     bool      // pre-approval (RFC 6121 §3.4)
	PendingSince time.Time // when PendingIn was set; zero when not pending
	Updated      time.Time
}

// empty reports whether the item carries no state worth keeping.
func (it Item) empty() bool {
	return it.Sub == SubNone && !it.PendingOut && !it.PendingIn && !it.Approved
}

// Request is a subscription request held for an admin's decision.
type Request struct {
	ID            int64 // short id admins use; assigned by Apply
	Entity        string
	Contact       string
	Rule          string // the policy reason that sent it to review, e.g. "rule 2"
	SubscribeBack bool   // whether approving also asks for the contact's presence
	Created       time.Time
}

// Event is one row of the append-only audit log.
type Event struct {
	ID        int64
	At        time.Time
	Entity    string
	Contact   string
	Kind      string // what came in or was asked: "subscribe", "unsubscribe", "subscribed", "unsubscribed", "approve", ...
	Action    string // what was done: "accept", "reject", "review", "drop", "state", ...
	Rule      string // policy reason, "" if none
	From, To  string // subscription state before and after, e.g. "none+in", "from"
	Actor     string // who: the contact JID, "policy", an admin JID
	Interface string // "stream", "cli", "adhoc", "chat", ...
	Detail    string
}

// Change is one unit of a batch given to Apply. Its parts are applied in
// this order: the item, Dequeue, Queue, Audit.
//
// The item part is skipped when Item.Contact is "" or, unless Delete is set,
// when Item.Sub is "": such a change can dequeue, queue or audit without
// touching the stored item. Otherwise the item is upserted, or deleted when
// Delete is set or when it is "none" with nothing pending or approved. When
// writing, a zero Item.Updated becomes the batch's time, PendingSince is
// stored only while PendingIn is set, and a zero PendingSince with PendingIn
// set becomes the batch's time.
//
// A queued request needs its roster item to exist when the batch commits
// (foreign key), and deleting an item also deletes its pending request.
type Change struct {
	Item    Item     // the item's new state, written with an upsert keyed by (Entity, Contact)
	Delete  bool     // delete the item instead (a "none" item with nothing pending or approved is not kept)
	Queue   *Request // if non-nil, insert it as a pending review request (replacing any for the same entity+contact); Apply sets Queue.ID
	Dequeue bool     // remove the pending request for (Item.Entity, Item.Contact), if any
	Audit   *Event   // if non-nil, append it
}

// Filter selects the items Items streams.
type Filter struct {
	Entity      string   // only this entity's items...
	AllEntities bool     // ...unless this is set
	Subs        []string // only items whose Sub is one of these; empty = all
	After       *Key     // only items after this key in (entity, contact) order, for reading in pages
	Limit       int      // at most this many items; 0 = no limit
}

// Key identifies a roster item.
type Key struct{ Entity, Contact string }

// DB is an open rostergate database. It is safe for concurrent use.
type DB struct {
	w *sql.DB // one connection: all writes, BEGIN IMMEDIATE
	r *sql.DB // query-only connections for reads

	upsertItem    *sql.Stmt
	deleteItem    *sql.Stmt
	deleteRequest *sql.Stmt
	insertRequest *sql.Stmt
	insertEvent   *sql.Stmt
}

const busyTimeout = 5 * time.Second

// dsn builds a go-sqlite3 data source name for the file at path (absolute).
// The path goes in as a file: URI, so no character in it can be mistaken for
// a parameter; mode=rw makes SQLite refuse to create the file itself (Open
// creates it, with mode 0600).
func dsn(path string, params url.Values) string {
	params.Set("mode", "rw")
	params.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	params.Set("_foreign_keys", "1")
	params.Set("_synchronous", "FULL")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	return u.String() + "?" + params.Encode()
}

// createFile creates the database file with mode 0600 unless it exists; an
// existing file's mode is left alone. SQLite gives its -wal and -shm files
// the mode of the database file.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: create database file: %w", err)
	}
	// The umask may have taken bits away; make it exactly 0600.
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storage: create database file: %w", err)
	}
	return nil
}

// Open opens the database at path, creating it (mode 0600) if it does not
// exist, and brings its schema up to date. A database whose schema is newer
// than this code knows is refused.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("storage: open: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	if err := createFile(abs); err != nil {
		return nil, err
	}

	db := &DB{}
	ok := false
	defer func() {
		if !ok {
			db.Close() //nolint:errcheck // the first error is the one to report
		}
	}()

	db.w, err = sql.Open("sqlite3", dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)

	var mode string
	if err := db.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", abs, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("storage: open %s: journal mode is %q, not wal", abs, mode)
	}
	if err := migrate(ctx, db.w, ms); err != nil {
		return nil, err
	}

	db.r, err = sql.Open("sqlite3", dsn(abs, url.Values{"_query_only": {"1"}}))
	if err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	// No limit on open readers: an Items callback may itself read (Get),
	// and a cap would let such nested reads wait for each other forever.
	db.r.SetMaxIdleConns(4)
	if err := db.r.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", abs, err)
	}

	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&db.upsertItem, `INSERT INTO roster (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (entity, contact) DO UPDATE SET
				sub = excluded.sub, pending_out = excluded.pending_out, pending_in = excluded.pending_in,
				approved = excluded.approved, pending_since = excluded.pending_since, updated = excluded.updated`},
		{&db.deleteItem, `DELETE FROM roster WHERE entity = ? AND contact = ?`},
		{&db.deleteRequest, `DELETE FROM requests WHERE entity = ? AND contact = ?`},
		{&db.insertRequest, `INSERT INTO requests (entity, contact, rule, subscribe_back, created) VALUES (?, ?, ?, ?, ?)`},
		{&db.insertEvent, `INSERT INTO audit (at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		if *p.stmt, err = db.w.PrepareContext(ctx, p.sql); err != nil {
			return nil, fmt.Errorf("storage: open: prepare: %w", err)
		}
	}
	ok = true
	return db, nil
}

// Close closes the database. Apply and the reads must have returned.
func (db *DB) Close() error {
	var errs []error
	for _, s := range []*sql.Stmt{db.upsertItem, db.deleteItem, db.deleteRequest, db.insertRequest, db.insertEvent} {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	for _, p := range []*sql.DB{db.r, db.w} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Apply writes a batch of changes in one transaction: all of it is stored or
// none of it. An empty batch is a no-op. On success it sets the ID of every
// queued Request and appended Event.
func (db *DB) Apply(ctx context.Context, changes []Change) error {
	_, err := db.Commit(ctx, Batch{Changes: changes})
	return err
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
}

// Outgoing is an outbox row: stanzas committed but not known to be delivered.
type Outgoing struct {
	ID      int64
	Created time.Time
	Stanzas string
}

// Commit writes a batch in one transaction, all or nothing, and returns the
// id of its outbox row (0 when Send is empty). An empty batch is a no-op.
func (db *DB) Commit(ctx context.Context, b Batch) (outboxID int64, err error) {
	changes := b.Changes
	if len(changes) == 0 && b.Send == "" && b.Delivered == 0 {
		return 0, nil
	}
	now := time.Now()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("storage: apply: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	stmt := func(s *sql.Stmt) *sql.Stmt { return tx.StmtContext(ctx, s) }
	upsertItem, deleteItem := stmt(db.upsertItem), stmt(db.deleteItem)
	deleteRequest, insertRequest := stmt(db.deleteRequest), stmt(db.insertRequest)
	insertEvent := stmt(db.insertEvent)

	var reqIDs, eventIDs []int64
	for i := range changes {
		c := &changes[i]
		if err := applyOne(ctx, c, now, upsertItem, deleteItem, deleteRequest); err != nil {
			return 0, fmt.Errorf("storage: apply: change %d (%q, %q): %w", i, c.Item.Entity, c.Item.Contact, err)
		}
		if q := c.Queue; q != nil {
			entity, contact := q.Entity, q.Contact
			if contact == "" {
				entity, contact = c.Item.Entity, c.Item.Contact
			}
			created := q.Created
			if created.IsZero() {
				created = now
			}
			if _, err := deleteRequest.ExecContext(ctx, entity, contact); err != nil {
				return 0, fmt.Errorf("storage: apply: change %d: replace request: %w", i, err)
			}
			res, err := insertRequest.ExecContext(ctx, entity, contact, q.Rule, boolInt(q.SubscribeBack), millis(created))
			if err != nil {
				return 0, fmt.Errorf("storage: apply: change %d: queue request: %w", i, err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return 0, fmt.Errorf("storage: apply: change %d: queue request: %w", i, err)
			}
			reqIDs = append(reqIDs, id)
		}
		if e := c.Audit; e != nil {
			at := e.At
			if at.IsZero() {
				at = now
			}
			res, err := insertEvent.ExecContext(ctx, millis(at), e.Entity, e.Contact, e.Kind, e.Action, e.Rule,
				e.From, e.To, e.Actor, e.Interface, e.Detail)
			if err != nil {
				return 0, fmt.Errorf("storage: apply: change %d: audit: %w", i, err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return 0, fmt.Errorf("storage: apply: change %d: audit: %w", i, err)
			}
			eventIDs = append(eventIDs, id)
		}
	}
	if b.Delivered > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE id <= ?`, b.Delivered); err != nil {
			return 0, fmt.Errorf("storage: apply: outbox: %w", err)
		}
	}
	if b.Send != "" {
		res, err := tx.ExecContext(ctx, `INSERT INTO outbox (created, stanzas) VALUES (?, ?)`, millis(now), b.Send)
		if err != nil {
			return 0, fmt.Errorf("storage: apply: outbox: %w", err)
		}
		if outboxID, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("storage: apply: outbox: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("storage: apply: commit: %w", err)
	}

	// Only now are the ids real.
	for i := range changes {
		if q := changes[i].Queue; q != nil {
			q.ID, reqIDs = reqIDs[0], reqIDs[1:]
		}
		if e := changes[i].Audit; e != nil {
			e.ID, eventIDs = eventIDs[0], eventIDs[1:]
		}
	}
	return outboxID, nil
}

// applyOne writes the item part and the Dequeue of one change.
func applyOne(ctx context.Context, c *Change, now time.Time, upsertItem, deleteItem, deleteRequest *sql.Stmt) error {
	it := c.Item
	switch {
	case it.Contact == "" || (it.Sub == "" && !c.Delete):
		// No item part.
	case c.Delete || it.empty():
		if _, err := deleteItem.ExecContext(ctx, it.Entity, it.Contact); err != nil {
			return fmt.Errorf("delete item: %w", err)
		}
	default:
		updated := it.Updated
		if updated.IsZero() {
			updated = now
		}
		var since sql.NullInt64
		if it.PendingIn {
			t := it.PendingSince
			if t.IsZero() {
				t = now
			}
			since = sql.NullInt64{Int64: millis(t), Valid: true}
		}
		if _, err := upsertItem.ExecContext(ctx, it.Entity, it.Contact, it.Sub,
			boolInt(it.PendingOut), boolInt(it.PendingIn), boolInt(it.Approved), since, millis(updated)); err != nil {
			return fmt.Errorf("write item: %w", err)
		}
	}
	if c.Dequeue {
		if _, err := deleteRequest.ExecContext(ctx, it.Entity, it.Contact); err != nil {
			return fmt.Errorf("dequeue: %w", err)
		}
	}
	return nil
}

const itemColumns = `entity, contact, sub, pending_out, pending_in, approved, pending_since, updated`

type scanner interface{ Scan(...any) error }

func scanItem(s scanner) (Item, error) {
	var (
		it            Item
		out, in, appr int64
		since         sql.NullInt64
		updated       int64
	)
	if err := s.Scan(&it.Entity, &it.Contact, &it.Sub, &out, &in, &appr, &since, &updated); err != nil {
		return Item{}, err
	}
	it.PendingOut, it.PendingIn, it.Approved = out != 0, in != 0, appr != 0
	if since.Valid {
		it.PendingSince = fromMillis(since.Int64)
	}
	it.Updated = fromMillis(updated)
	return it, nil
}

// Get returns the item of entity for contact, or an error wrapping
// ErrNotFound.
func (db *DB) Get(ctx context.Context, entity, contact string) (Item, error) {
	row := db.r.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM roster WHERE entity = ? AND contact = ?`, entity, contact)
	it, err := scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, notFound{fmt.Sprintf("roster item (%q, %q)", entity, contact)}
	}
	if err != nil {
		return Item{}, fmt.Errorf("storage: get item (%q, %q): %w", entity, contact, err)
	}
	return it, nil
}

// itemsQuery builds the query for Items. Its ORDER BY follows the primary
// key, so SQLite walks the table in order and never sorts (or buffers) rows.
func itemsQuery(f Filter) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	if !f.AllEntities {
		where = append(where, "entity = ?")
		args = append(args, f.Entity)
	}
	if len(f.Subs) > 0 {
		for _, s := range f.Subs {
			switch s {
			case SubNone, SubTo, SubFrom, SubBoth:
			default:
				return "", nil, fmt.Errorf("storage: items: unknown subscription state %q", s)
			}
			args = append(args, s)
		}
		where = append(where, "sub IN (?"+strings.Repeat(", ?", len(f.Subs)-1)+")")
	}
	if f.After != nil {
		where = append(where, "(entity, contact) > (?, ?)")
		args = append(args, f.After.Entity, f.After.Contact)
	}
	q := `SELECT ` + itemColumns + ` FROM roster`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY entity, contact`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return q, args, nil
}

// Items streams the items f selects, ordered by entity then contact, calling
// fn for each. Rows are read one at a time, never all at once, from a single
// snapshot of the database: changes committed during the iteration are not
// seen. fn may call other methods of db, Apply included. If fn returns an
// error, Items stops and returns that error as it is.
func (db *DB) Items(ctx context.Context, f Filter, fn func(Item) error) error {
	q, args, err := itemsQuery(f)
	if err != nil {
		return err
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("storage: items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return fmt.Errorf("storage: items: %w", err)
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: items: %w", err)
	}
	return nil
}

const requestColumns = `id, entity, contact, rule, subscribe_back, created`

func scanRequest(s scanner) (Request, error) {
	var (
		r       Request
		back    int64
		created int64
	)
	if err := s.Scan(&r.ID, &r.Entity, &r.Contact, &r.Rule, &back, &created); err != nil {
		return Request{}, err
	}
	r.SubscribeBack = back != 0
	r.Created = fromMillis(created)
	return r, nil
}

// Requests returns the pending review requests, oldest first.
func (db *DB) Requests(ctx context.Context) ([]Request, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+requestColumns+` FROM requests ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("storage: requests: %w", err)
	}
	defer rows.Close()
	var rs []Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("storage: requests: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: requests: %w", err)
	}
	return rs, nil
}

// Request returns the pending review request with the given id, or an error
// wrapping ErrNotFound.
func (db *DB) Request(ctx context.Context, id int64) (Request, error) {
	r, err := scanRequest(db.r.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Request{}, notFound{fmt.Sprintf("request %d", id)}
	}
	if err != nil {
		return Request{}, fmt.Errorf("storage: request %d: %w", id, err)
	}
	return r, nil
}

// Events streams the audit rows with At >= since, oldest first (rows of the
// same millisecond in the order they were appended), calling fn for each. If
// fn returns an error, Events stops and returns that error as it is.
func (db *DB) Events(ctx context.Context, since time.Time, fn func(Event) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail
		FROM audit WHERE at >= ? ORDER BY at, id`, millis(since))
	if err != nil {
		return fmt.Errorf("storage: events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e  Event
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Entity, &e.Contact, &e.Kind, &e.Action, &e.Rule,
			&e.From, &e.To, &e.Actor, &e.Interface, &e.Detail); err != nil {
			return fmt.Errorf("storage: events: %w", err)
		}
		e.At = fromMillis(at)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: events: %w", err)
	}
	return nil
}

// Check verifies the database: PRAGMA integrity_check must say "ok" and
// PRAGMA foreign_key_check must find nothing. Otherwise the error quotes what
// they said.
func (db *DB) Check(ctx context.Context) error {
	msgs, err := db.pragmaLines(ctx, "PRAGMA integrity_check")
	if err != nil {
		return err
	}
	if len(msgs) != 1 || msgs[0] != "ok" {
		return fmt.Errorf("storage: integrity check: %s", strings.Join(msgs, "; "))
	}
	rows, err := db.r.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("storage: foreign key check: %w", err)
	}
	defer rows.Close()
	var bad []string
	for rows.Next() {
		var (
			table, parent string
			rowid         sql.NullInt64
			fkid          int64
		)
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return fmt.Errorf("storage: foreign key check: %w", err)
		}
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("%s row %d has no %s", table, rowid.Int64, parent))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: foreign key check: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("storage: foreign key check: %s", strings.Join(bad, "; "))
	}
	return nil
}

func (db *DB) pragmaLines(ctx context.Context, pragma string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, pragma)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(pragma), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(pragma), err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: %s: %w", strings.ToLower(pragma), err)
	}
	return out, nil
}

// Outbox returns the stanzas committed but not yet known to be delivered,
// oldest first: what a crash or a dropped stream left unsent.
func (db *DB) Outbox(ctx context.Context) ([]Outgoing, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, created, stanzas FROM outbox ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("storage: outbox: %w", err)
	}
	defer rows.Close()
	var out []Outgoing
	for rows.Next() {
		var o Outgoing
		var created int64
		if err := rows.Scan(&o.ID, &created, &o.Stanzas); err != nil {
			return nil, fmt.Errorf("storage: outbox: %w", err)
		}
		o.Created = fromMillis(created)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("storage: outbox: %w", err)
	}
	return out, nil
}

// Delivered deletes the outbox rows with ids up to upto.
func (db *DB) Delivered(ctx context.Context, upto int64) error {
	if _, err := db.Commit(ctx, Batch{Delivered: upto}); err != nil {
		return fmt.Errorf("storage: delivered: %w", err)
	}
	return nil
}
