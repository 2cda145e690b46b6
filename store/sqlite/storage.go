// Package sqlite is rostergate's embedded store: the store contract
// (package store) kept in one SQLite file. It holds the roster items of
// every entity (RFC 6121 subscription state), the held requests, the
// append-only audit log, the outbox, the allow and deny lists and the
// command line's queued acts.
//
// The database runs in WAL mode with synchronous=FULL (a commit is on disk
// before the reply that reports it is sent, even across a power loss), a
// 5 s busy timeout and foreign keys on, so that the command line may read,
// and queue acts in, the same file while rostergate runs. Roster state
// changes go through [DB.Commit], which writes a whole batch of changes,
// their audit rows and their outbox row in one transaction: a batch is
// stored entirely or not at all, even if the process is killed mid-way, and
// batching many decisions into one commit (group commit) is what makes the
// write rate high. List edits ([DB.EditList]) and queued acts
// ([DB.QueueAction], [DB.FinishAction]) are small transactions of their own.
//
// Inside a [DB] there are two connection pools on the same file: a single
// writer connection, which serialises this process's transactions and starts
// each with BEGIN IMMEDIATE, and a pool of query-only reader connections.
// Under WAL a reader never waits for the writer nor the writer for a reader,
// so a long [DB.Items] iteration can run while [DB.Commit] commits.
//
// [DB.Hold] keeps a second `rostergate run` off the same file (an flock on
// a file beside it); [DB.Backup] copies the database while it runs.
//
// Times are stored as unix milliseconds and come back in UTC with millisecond
// precision.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver

	"rostergate/roster"
	"rostergate/store"
)

// notFound names what was not found and unwraps to store.ErrNotFound.
type notFound struct{ what string }

func (e notFound) Error() string { return "sqlite: " + e.what + " not found" }
func (e notFound) Unwrap() error { return store.ErrNotFound }

// DB is an open rostergate database. It is safe for concurrent use.
type DB struct {
	path string  // absolute path of the database file
	w    *sql.DB // one connection: all writes, BEGIN IMMEDIATE
	r    *sql.DB // query-only connections for reads

	upsertItems   *sql.Stmt // rows of a JSONB array
	deleteItems   *sql.Stmt // keys of a JSONB array
	deleteRequest *sql.Stmt
	insertRequest *sql.Stmt
	insertEvents  *sql.Stmt // rows of a JSONB array
	deleteOutbox  *sql.Stmt
	insertOutbox  *sql.Stmt

	getItem *sql.Stmt // on the readers
	getMany *sql.Stmt // keys of a JSONB array, on the readers
	tokenBy *sql.Stmt // a token by its hash, on the readers: once per API request
}

const busyTimeout = 5 * time.Second

// The page caches, in KiB. SQLite's default (2 MiB) is far smaller than the
// roster of a busy gate: every batch of upserts then reads its pages back
// from the file. The writer's cache is what matters (measured: 32 MiB takes
// a 300,000-item batch run from ~70k to ~110k decisions/s); the readers
// (up to 4 idle connections) get less, so that memory stays bounded.
const (
	writerCacheKiB = 32 << 10
	readerCacheKiB = 8 << 10
)

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
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	// The umask may have taken bits away; make it exactly 0600.
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sqlite: create database file: %w", err)
	}
	return nil
}

// Open opens the database at path, creating it (mode 0600) if it does not
// exist, and brings its schema up to date. A database whose schema is newer
// than this code knows is refused.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	if err := createFile(abs); err != nil {
		return nil, err
	}

	db := &DB{path: abs}
	ok := false
	defer func() {
		if !ok {
			db.Close() //nolint:errcheck // the first error is the one to report
		}
	}()

	db.w, err = sql.Open("sqlite3", dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_cache_size":   {strconv.Itoa(-writerCacheKiB)},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)

	var mode string
	if err := db.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("sqlite: open %s: journal mode is %q, not wal", abs, mode)
	}
	if err := migrate(ctx, db.w, ms, db.Hold); err != nil {
		return nil, err
	}

	db.r, err = sql.Open("sqlite3", dsn(abs, url.Values{"_query_only": {"1"}, "_cache_size": {strconv.Itoa(-readerCacheKiB)}}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// No limit on open readers: an Items callback may itself read (Get),
	// and a cap would let such nested reads wait for each other forever.
	db.r.SetMaxIdleConns(4)
	if err := db.r.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}

	for _, p := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&db.upsertItems, `INSERT INTO roster (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
			SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7
			FROM jsonb_each(?) WHERE true
			ON CONFLICT (entity, contact) DO UPDATE SET
				sub = excluded.sub, pending_out = excluded.pending_out, pending_in = excluded.pending_in,
				approved = excluded.approved, pending_since = excluded.pending_since, updated = excluded.updated`},
		{&db.deleteItems, `DELETE FROM roster WHERE (entity, contact) IN (SELECT value->>0, value->>1 FROM jsonb_each(?))`},
		{&db.deleteRequest, `DELETE FROM requests WHERE entity = ? AND contact = ?`},
		{&db.insertRequest, `INSERT INTO requests (entity, contact, rule, subscribe_back, created) VALUES (?, ?, ?, ?, ?)`},
		{&db.insertEvents, `INSERT INTO audit (at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
			SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10
			FROM jsonb_each(?)`},
		{&db.deleteOutbox, `DELETE FROM outbox WHERE id <= ?`},
		{&db.insertOutbox, `INSERT INTO outbox (created, stanzas) VALUES (?, ?)`},
	} {
		if *p.stmt, err = db.w.PrepareContext(ctx, p.sql); err != nil {
			return nil, fmt.Errorf("sqlite: open: prepare: %w", err)
		}
	}
	if db.getItem, err = db.r.PrepareContext(ctx, `SELECT `+itemColumns+` FROM roster WHERE entity = ? AND contact = ?`); err != nil {
		return nil, fmt.Errorf("sqlite: open: prepare: %w", err)
	}
	if db.getMany, err = db.r.PrepareContext(ctx, `SELECT `+itemColumns+` FROM roster
		WHERE (entity, contact) IN (SELECT value->>0, value->>1 FROM jsonb_each(?))`); err != nil {
		return nil, fmt.Errorf("sqlite: open: prepare: %w", err)
	}
	if db.tokenBy, err = db.r.PrepareContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = ?`); err != nil {
		return nil, fmt.Errorf("sqlite: open: prepare: %w", err)
	}
	ok = true
	return db, nil
}

// Close closes the database. Apply and the reads must have returned.
func (db *DB) Close() error {
	var errs []error
	for _, s := range []*sql.Stmt{db.upsertItems, db.deleteItems, db.deleteRequest, db.insertRequest, db.insertEvents, db.deleteOutbox, db.insertOutbox, db.getItem, db.getMany, db.tokenBy} {
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
		return fmt.Errorf("sqlite: close: %w", err)
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
func (db *DB) Apply(ctx context.Context, changes []store.Change) error {
	_, err := db.Commit(ctx, store.Batch{Changes: changes})
	return err
}

// Commit writes a batch in one transaction, all or nothing, and returns the
// id of its outbox row (0 when Send is empty). An empty batch is a no-op.
//
// However many changes the batch holds, it costs a handful of statements:
// the final state of each item in one upsert and one delete, the audit rows
// in one insert, each fed a JSONB array (one bound parameter, not one per
// column per row). Review requests, rare, are written one at a time after
// the items, in the batch's order.
func (db *DB) Commit(ctx context.Context, b store.Batch) (outboxID int64, err error) {
	changes := b.Changes
	if len(changes) == 0 && b.Send == "" && b.Delivered == 0 && len(b.BotEvents) == 0 && len(b.InviteUses) == 0 && len(b.Placements) == 0 {
		return 0, nil
	}
	now := time.Now()
	plan, err := planItems(changes, now)
	if err != nil {
		return 0, err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: apply: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	stmt := func(s *sql.Stmt) *sql.Stmt { return tx.StmtContext(ctx, s) }
	if len(plan.deletes) > 0 {
		if _, err := stmt(db.deleteItems).ExecContext(ctx, plan.deletes); err != nil {
			return 0, fmt.Errorf("sqlite: apply: delete items: %w", err)
		}
	}
	if len(plan.upserts) > 0 {
		if _, err := stmt(db.upsertItems).ExecContext(ctx, plan.upserts); err != nil {
			return 0, fmt.Errorf("sqlite: apply: write items: %w", err)
		}
	}

	// Requests, in the batch's order. Deleting an item deletes its request
	// (ON DELETE CASCADE); the bulk delete above did that for requests older
	// than the batch, and here it is done where the batch deleted an item
	// that it had queued a request for before, or that it writes again later.
	var reqIDs []int64
	var queued map[roster.Key]bool
	deleteRequest, insertRequest := stmt(db.deleteRequest), stmt(db.insertRequest)
	for i := range changes {
		c := &changes[i]
		k := roster.Key{Entity: c.Item.Entity, Contact: c.Item.Contact}
		if plan.deletedAt[i] && (queued[k] || !plan.finalDelete[k]) {
			if _, err := deleteRequest.ExecContext(ctx, k.Entity, k.Contact); err != nil {
				return 0, fmt.Errorf("sqlite: apply: change %d (%q, %q): delete item's request: %w", i, k.Entity, k.Contact, err)
			}
		}
		if c.Dequeue {
			if _, err := deleteRequest.ExecContext(ctx, c.Item.Entity, c.Item.Contact); err != nil {
				return 0, fmt.Errorf("sqlite: apply: change %d (%q, %q): dequeue: %w", i, c.Item.Entity, c.Item.Contact, err)
			}
		}
		q := c.Queue
		if q == nil {
			continue
		}
		entity, contact := q.Entity, q.Contact
		if contact == "" {
			entity, contact = c.Item.Entity, c.Item.Contact
		}
		if queued == nil {
			queued = map[roster.Key]bool{}
		}
		queued[roster.Key{Entity: entity, Contact: contact}] = true
		created := q.Created
		if created.IsZero() {
			created = now
		}
		if _, err := deleteRequest.ExecContext(ctx, entity, contact); err != nil {
			return 0, fmt.Errorf("sqlite: apply: change %d: replace request: %w", i, err)
		}
		res, err := insertRequest.ExecContext(ctx, entity, contact, q.Rule, boolInt(q.SubscribeBack), millis(created))
		if err != nil {
			return 0, fmt.Errorf("sqlite: apply: change %d: queue request: %w", i, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return 0, fmt.Errorf("sqlite: apply: change %d: queue request: %w", i, err)
		}
		reqIDs = append(reqIDs, id)
	}

	events, nEvents := eventsJSONB(changes, now)
	var lastEvent int64
	if nEvents > 0 {
		res, err := stmt(db.insertEvents).ExecContext(ctx, events)
		if err != nil {
			return 0, fmt.Errorf("sqlite: apply: audit: %w", err)
		}
		if lastEvent, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("sqlite: apply: audit: %w", err)
		}
	}
	if err := insertBotEvents(ctx, tx, b.BotEvents, now); err != nil {
		return 0, err
	}
	if err := useInvites(ctx, tx, b.InviteUses); err != nil {
		return 0, err
	}
	if err := writePlacements(ctx, tx, b.Placements, now); err != nil {
		return 0, err
	}
	if b.Delivered > 0 {
		if _, err := stmt(db.deleteOutbox).ExecContext(ctx, b.Delivered); err != nil {
			return 0, fmt.Errorf("sqlite: apply: outbox: %w", err)
		}
	}
	if b.Send != "" {
		res, err := stmt(db.insertOutbox).ExecContext(ctx, millis(now), b.Send)
		if err != nil {
			return 0, fmt.Errorf("sqlite: apply: outbox: %w", err)
		}
		if outboxID, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("sqlite: apply: outbox: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: apply: commit: %w", err)
	}

	// Only now are the ids real. The audit rows of one INSERT ... SELECT get
	// consecutive rowids (the writer is alone, and the table has no
	// AUTOINCREMENT gaps within a statement), the last one reported.
	nextEvent := lastEvent - int64(nEvents) + 1
	for i := range changes {
		if q := changes[i].Queue; q != nil {
			q.ID, reqIDs = reqIDs[0], reqIDs[1:]
		}
		if e := changes[i].Audit; e != nil {
			e.ID = nextEvent
			nextEvent++
		}
	}
	return outboxID, nil
}

// itemPlan is how Commit writes the items of a batch: within one
// transaction only the last change to an item counts, so each item is
// written once, by one bulk upsert or one bulk delete.
type itemPlan struct {
	upserts, deletes []byte              // JSONB arrays of rows and of keys; nil when none
	deletedAt        []bool              // per change: its item part is a delete
	finalDelete      map[roster.Key]bool // items whose last change deletes them
}

// planItems checks each item first, so that an error names the change at
// fault, and returns the plan.
func planItems(changes []store.Change, now time.Time) (itemPlan, error) {
	type final struct {
		i   int // the change that decides the item
		del bool
	}
	var (
		order []roster.Key
		last  map[roster.Key]final
		plan  = itemPlan{deletedAt: make([]bool, len(changes))}
	)
	for i := range changes {
		c := &changes[i]
		it := c.Item
		if it.Contact == "" || (it.Sub == "" && !c.Delete) {
			continue // no item part
		}
		if !utf8.ValidString(it.Entity) || !utf8.ValidString(it.Contact) {
			return plan, fmt.Errorf("sqlite: apply: change %d (%q, %q): entity and contact must be UTF-8", i, it.Entity, it.Contact)
		}
		del := c.Delete || it.Empty()
		if !del {
			switch it.Sub {
			case roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth:
			default:
				return plan, fmt.Errorf("sqlite: apply: change %d (%q, %q): unknown subscription state %q", i, it.Entity, it.Contact, it.Sub)
			}
		}
		plan.deletedAt[i] = del
		if last == nil {
			last = make(map[roster.Key]final, len(changes))
		}
		k := roster.Key{Entity: it.Entity, Contact: it.Contact}
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = final{i, del}
	}
	var up, dl []byte
	for _, k := range order {
		f := last[k]
		it := changes[f.i].Item
		if f.del {
			if plan.finalDelete == nil {
				plan.finalDelete = map[roster.Key]bool{}
			}
			plan.finalDelete[k] = true
			if dl == nil {
				dl = jsonbOpen(nil)
			}
			row := len(dl)
			dl = jsonbOpen(dl)
			dl = appendJSONBText(dl, it.Entity)
			dl = appendJSONBText(dl, it.Contact)
			dl = jsonbClose(dl, row)
			continue
		}
		updated := it.Updated
		if updated.IsZero() {
			updated = now
		}
		if up == nil {
			up = jsonbOpen(make([]byte, 0, 64*len(order)))
		}
		row := len(up)
		up = jsonbOpen(up)
		up = appendJSONBText(up, it.Entity)
		up = appendJSONBText(up, it.Contact)
		up = appendJSONBText(up, it.Sub)
		up = appendJSONBInt(up, boolInt(it.PendingOut))
		up = appendJSONBInt(up, boolInt(it.PendingIn))
		up = appendJSONBInt(up, boolInt(it.Approved))
		if it.PendingIn {
			t := it.PendingSince
			if t.IsZero() {
				t = now
			}
			up = appendJSONBInt(up, millis(t))
		} else {
			up = append(up, jsonbNull)
		}
		up = appendJSONBInt(up, millis(updated))
		up = jsonbClose(up, row)
	}
	if up != nil {
		plan.upserts = jsonbClose(up, 0)
	}
	if dl != nil {
		plan.deletes = jsonbClose(dl, 0)
	}
	return plan, nil
}

// eventsJSONB returns the audit rows of the changes as a JSONB array, in
// order, and their number; nil when there are none.
func eventsJSONB(changes []store.Change, now time.Time) ([]byte, int) {
	var b []byte
	n := 0
	for i := range changes {
		e := changes[i].Audit
		if e == nil {
			continue
		}
		at := e.At
		if at.IsZero() {
			at = now
		}
		if b == nil {
			b = jsonbOpen(make([]byte, 0, 128*len(changes)))
		}
		row := len(b)
		b = jsonbOpen(b)
		b = appendJSONBInt(b, millis(at))
		for _, s := range [...]string{e.Entity, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail} {
			b = appendJSONBText(b, s)
		}
		b = jsonbClose(b, row)
		n++
	}
	if b == nil {
		return nil, 0
	}
	return jsonbClose(b, 0), n
}

// The bulk statements are fed SQLite's binary JSON, JSONB
// (https://sqlite.org/jsonb.html), built here: SQLite then neither parses
// JSON text nor Go escapes it (measured: 15-20% less CPU per change in
// batches of 1500). Only what those statements read is written: arrays of
// arrays of TEXT, INT and null. Each element is a header (type in the low
// four bits; payload size in the high four bits if it is at most 11, else
// the size follows big-endian in 1, 2 or 4 bytes, marked by 12, 13 or 14)
// and its payload. TestJSONB checks the encoding against SQLite's own.
const (
	jsonbNull    = 0x0 // no payload
	jsonbInt     = 0x3 // payload: the integer in decimal ASCII
	jsonbTextRaw = 0xa // payload: UTF-8 text, nothing escaped
	jsonbArray   = 0xb // payload: the elements

	jsonbMaxHeader = 5
)

func appendJSONBHeader(b []byte, typ byte, n int) []byte {
	switch {
	case n <= 11:
		return append(b, byte(n)<<4|typ)
	case n <= 0xff:
		return append(b, 0xc0|typ, byte(n))
	case n <= 0xffff:
		return append(b, 0xd0|typ, byte(n>>8), byte(n))
	default:
		return append(b, 0xe0|typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// jsonbOpen starts an array at the end of b, room left for its header;
// jsonbClose(b, start) writes the header of the array opened at start, its
// elements being all that follows, and moves them up to it.
func jsonbOpen(b []byte) []byte { return append(b, make([]byte, jsonbMaxHeader)...) }

func jsonbClose(b []byte, start int) []byte {
	var h [jsonbMaxHeader]byte
	hdr := appendJSONBHeader(h[:0], jsonbArray, len(b)-start-jsonbMaxHeader)
	gap := jsonbMaxHeader - len(hdr)
	copy(b[start+gap:], hdr)
	if gap > 0 {
		copy(b[start:], b[start+gap:])
		b = b[:len(b)-gap]
	}
	return b
}

func appendJSONBInt(b []byte, v int64) []byte {
	var d [20]byte
	digits := strconv.AppendInt(d[:0], v, 10)
	b = appendJSONBHeader(b, jsonbInt, len(digits))
	return append(b, digits...)
}

// appendJSONBText appends s as a JSONB string. Bytes that are not UTF-8
// become U+FFFD, as SQLite's TEXT is UTF-8.
func appendJSONBText(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		var v []byte
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				v = utf8.AppendRune(v, utf8.RuneError)
			} else {
				v = append(v, s[i:i+size]...)
			}
			i += size
		}
		s = string(v)
	}
	b = appendJSONBHeader(b, jsonbTextRaw, len(s))
	return append(b, s...)
}

const itemColumns = `entity, contact, sub, pending_out, pending_in, approved, pending_since, updated`

type scanner interface{ Scan(...any) error }

func scanItem(s scanner) (roster.Item, error) {
	var (
		it            roster.Item
		out, in, appr int64
		since         sql.NullInt64
		updated       int64
	)
	if err := s.Scan(&it.Entity, &it.Contact, &it.Sub, &out, &in, &appr, &since, &updated); err != nil {
		return roster.Item{}, err
	}
	it.PendingOut, it.PendingIn, it.Approved = out != 0, in != 0, appr != 0
	if since.Valid {
		it.PendingSince = fromMillis(since.Int64)
	}
	it.Updated = fromMillis(updated)
	return it, nil
}

// Get returns the item of entity for contact, or an error wrapping
// store.ErrNotFound.
func (db *DB) Get(ctx context.Context, entity, contact string) (roster.Item, error) {
	row := db.getItem.QueryRowContext(ctx, entity, contact)
	it, err := scanItem(row)
	if errors.Is(err, sql.ErrNoRows) {
		return roster.Item{}, notFound{fmt.Sprintf("roster item (%q, %q)", entity, contact)}
	}
	if err != nil {
		return roster.Item{}, fmt.Errorf("sqlite: get item (%q, %q): %w", entity, contact, err)
	}
	return it, nil
}

// GetMany returns the stored items among keys, in no particular order; a
// key with no item is left out. It costs one query however many keys there
// are: a batch of decisions reads the items it needs at once.
func (db *DB) GetMany(ctx context.Context, keys []roster.Key) ([]roster.Item, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	b := jsonbOpen(make([]byte, 0, 48*len(keys)))
	for _, k := range keys {
		row := len(b)
		b = jsonbOpen(b)
		b = appendJSONBText(b, k.Entity)
		b = appendJSONBText(b, k.Contact)
		b = jsonbClose(b, row)
	}
	rows, err := db.getMany.QueryContext(ctx, jsonbClose(b, 0))
	if err != nil {
		return nil, fmt.Errorf("sqlite: get items: %w", err)
	}
	defer rows.Close()
	var items []roster.Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: get items: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: get items: %w", err)
	}
	return items, nil
}

// itemsQuery builds the query for Items. Its ORDER BY follows the primary
// key, so SQLite walks the table in order and never sorts (or buffers) rows.
func itemsQuery(f store.Filter) (string, []any, error) {
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
			case roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth:
			default:
				return "", nil, fmt.Errorf("sqlite: items: unknown subscription state %q", s)
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
func (db *DB) Items(ctx context.Context, f store.Filter, fn func(roster.Item) error) error {
	q, args, err := itemsQuery(f)
	if err != nil {
		return err
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("sqlite: items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return fmt.Errorf("sqlite: items: %w", err)
		}
		if err := fn(it); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: items: %w", err)
	}
	return nil
}

const requestColumns = `id, entity, contact, rule, subscribe_back, created`

func scanRequest(s scanner) (roster.Request, error) {
	var (
		r       roster.Request
		back    int64
		created int64
	)
	if err := s.Scan(&r.ID, &r.Entity, &r.Contact, &r.Rule, &back, &created); err != nil {
		return roster.Request{}, err
	}
	r.SubscribeBack = back != 0
	r.Created = fromMillis(created)
	return r, nil
}

// Requests returns the pending review requests, oldest first.
func (db *DB) Requests(ctx context.Context) ([]roster.Request, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+requestColumns+` FROM requests ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: requests: %w", err)
	}
	defer rows.Close()
	var rs []roster.Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: requests: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: requests: %w", err)
	}
	return rs, nil
}

// Request returns the pending review request with the given id, or an error
// wrapping store.ErrNotFound.
func (db *DB) Request(ctx context.Context, id int64) (roster.Request, error) {
	r, err := scanRequest(db.r.QueryRowContext(ctx, `SELECT `+requestColumns+` FROM requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return roster.Request{}, notFound{fmt.Sprintf("request %d", id)}
	}
	if err != nil {
		return roster.Request{}, fmt.Errorf("sqlite: request %d: %w", id, err)
	}
	return r, nil
}

// Events streams the audit rows with At >= since, oldest first (rows of the
// same millisecond in the order they were appended), calling fn for each. If
// fn returns an error, Events stops and returns that error as it is.
func (db *DB) Events(ctx context.Context, since time.Time, fn func(roster.Event) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail
		FROM audit WHERE at >= ? ORDER BY at, id`, millis(since))
	if err != nil {
		return fmt.Errorf("sqlite: events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e  roster.Event
			at int64
		)
		if err := rows.Scan(&e.ID, &at, &e.Entity, &e.Contact, &e.Kind, &e.Action, &e.Rule,
			&e.From, &e.To, &e.Actor, &e.Interface, &e.Detail); err != nil {
			return fmt.Errorf("sqlite: events: %w", err)
		}
		e.At = fromMillis(at)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: events: %w", err)
	}
	return nil
}

// Writable starts a write transaction (BEGIN IMMEDIATE) and rolls it back:
// nil if the database takes writes now.
func (db *DB) Writable(ctx context.Context) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: not writable: %w", err)
	}
	if err := tx.Rollback(); err != nil {
		return fmt.Errorf("sqlite: not writable: %w", err)
	}
	return nil
}

// RequestDecision returns the newest audit event that decided held request
// id, or an error matching store.ErrNotFound.
func (db *DB) RequestDecision(ctx context.Context, id int64) (roster.Event, error) {
	var e roster.Event
	var at int64
	err := db.r.QueryRowContext(ctx, `SELECT id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail
		FROM audit WHERE detail = ? AND action IN ('accept', 'reject') ORDER BY id DESC LIMIT 1`, "request #"+strconv.FormatInt(id, 10)).Scan(
		&e.ID, &at, &e.Entity, &e.Contact, &e.Kind, &e.Action, &e.Rule, &e.From, &e.To, &e.Actor, &e.Interface, &e.Detail)
	if errors.Is(err, sql.ErrNoRows) {
		return e, notFound{fmt.Sprintf("decision of request #%d", id)}
	}
	if err != nil {
		return e, fmt.Errorf("sqlite: request decision: %w", err)
	}
	e.At = fromMillis(at)
	return e, nil
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
		return fmt.Errorf("sqlite: integrity check: %s", strings.Join(msgs, "; "))
	}
	rows, err := db.r.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("sqlite: foreign key check: %w", err)
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
			return fmt.Errorf("sqlite: foreign key check: %w", err)
		}
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf("%s row %d has no %s", table, rowid.Int64, parent))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: foreign key check: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("sqlite: foreign key check: %s", strings.Join(bad, "; "))
	}
	return nil
}

func (db *DB) pragmaLines(ctx context.Context, pragma string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, pragma)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", strings.ToLower(pragma), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", strings.ToLower(pragma), err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", strings.ToLower(pragma), err)
	}
	return out, nil
}

// Outbox returns the stanzas committed but not yet known to be delivered,
// oldest first: what a crash or a dropped stream left unsent.
func (db *DB) Outbox(ctx context.Context) ([]store.Outgoing, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, created, stanzas FROM outbox ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: outbox: %w", err)
	}
	defer rows.Close()
	var out []store.Outgoing
	for rows.Next() {
		var o store.Outgoing
		var created int64
		if err := rows.Scan(&o.ID, &created, &o.Stanzas); err != nil {
			return nil, fmt.Errorf("sqlite: outbox: %w", err)
		}
		o.Created = fromMillis(created)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: outbox: %w", err)
	}
	return out, nil
}

// Delivered deletes the outbox rows with ids up to upto.
func (db *DB) Delivered(ctx context.Context, upto int64) error {
	if _, err := db.Commit(ctx, store.Batch{Delivered: upto}); err != nil {
		return fmt.Errorf("sqlite: delivered: %w", err)
	}
	return nil
}

var _ store.Store = (*DB)(nil)
