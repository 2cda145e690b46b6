package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"rostergate/roster"
	"rostergate/store"
)

// ms is t as stored: to the millisecond, in UTC.
func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// The statements of Commit. The bulk ones take arrays, one per column
// (unnest): a handful of parameters however many rows.
const (
	lockWrites  = `SELECT pg_advisory_xact_lock($1)`
	deleteItems = `DELETE FROM items WHERE (entity, contact) IN (SELECT * FROM unnest($1::text[], $2::text[]))`
	upsertItems = `INSERT INTO items (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bool[], $6::bool[], $7::timestamptz[], $8::timestamptz[])
		ON CONFLICT (entity, contact) DO UPDATE SET
			sub = excluded.sub, pending_out = excluded.pending_out, pending_in = excluded.pending_in,
			approved = excluded.approved, pending_since = excluded.pending_since, updated = excluded.updated`
	deleteRequest = `DELETE FROM requests WHERE entity = $1 AND contact = $2`
	insertRequest = `INSERT INTO requests (entity, contact, rule, subscribe_back, created) VALUES ($1, $2, $3, $4, $5) RETURNING id`
	deleteOutbox  = `DELETE FROM outbox WHERE id <= $1`
	insertOutbox  = `INSERT INTO outbox (created, stanzas) VALUES ($1, $2) RETURNING id`
)

// Commit writes a batch in one transaction, all or nothing, and returns the
// id of its outbox row (0 when Send is empty). An empty batch is a no-op.
//
// Its statements go to the server in one pipeline: the final state of each
// item in one upsert and one delete, the held requests one statement each
// in the batch's order, the outbox's; then the new items
// (store.Change.New), the audit rows and the bot events each by one COPY
// (see copy.go). The ids of requests, audit rows and bot events are set on the
// caller's structs only once the transaction has committed.
//
// A new item that is stored after all (the hint was wrong) fails the
// COPY: the transaction is then done again without the hints.
func (db *DB) Commit(ctx context.Context, b store.Batch) (outboxID int64, err error) {
	changes := b.Changes
	if len(changes) == 0 && b.Send == "" && b.Delivered == 0 && len(b.BotEvents) == 0 && len(b.InviteUses) == 0 && len(b.Placements) == 0 {
		return 0, nil
	}
	id, hinted, err := db.commit(ctx, b, true)
	if hinted && isItemsKey(err) {
		id, _, err = db.commit(ctx, b, false)
	}
	return id, err
}

// isItemsKey reports whether err is a duplicate key of the items.
func isItemsKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "items_pkey"
}

// commit is Commit, the new items inserted without looking for them if
// hints; hinted reports whether any was.
func (db *DB) commit(ctx context.Context, b store.Batch, hints bool) (outboxID int64, hinted bool, err error) {
	changes := b.Changes
	now := ms(time.Now())
	plan, err := planItems(changes, now, hints)
	if err != nil {
		return 0, false, err
	}
	hinted = len(plan.ins) > 0
	if err := checkBotEvents(b.BotEvents); err != nil {
		return 0, hinted, err
	}

	var batch pgx.Batch
	if err := db.queueCheck(&batch); err != nil {
		return 0, hinted, fmt.Errorf("postgres: commit: %w", err)
	}
	// Every COPY's data is ready before the transaction begins.
	var items *copyRows
	if len(plan.ins) > 0 {
		items = itemsCopy(plan.ins)
	}
	audit, bots := auditCopy(changes, now), botEventsCopy(b.BotEvents, now)
	nAudit := 0
	if audit != nil {
		nAudit = len(audit.ids)
	}
	if nAudit > 0 || len(b.BotEvents) > 0 || len(b.InviteUses) > 0 {
		// Before any invite's row: RevokeInvite takes this lock first too.
		batch.Queue(lockWrites, writeLockKey)
	}
	var lastAudit, lastBot int64
	if nAudit > 0 {
		batch.Queue(reserveIDs, "audit", int64(nAudit)).QueryRow(func(row pgx.Row) error { return row.Scan(&lastAudit) })
	}
	if len(b.BotEvents) > 0 {
		batch.Queue(reserveIDs, "bot_events", int64(len(b.BotEvents))).QueryRow(func(row pgx.Row) error { return row.Scan(&lastBot) })
	}
	if len(plan.delEntity) > 0 {
		batch.Queue(deleteItems, plan.delEntity, plan.delContact)
	}
	if len(plan.up.entity) > 0 {
		u := &plan.up
		batch.Queue(upsertItems, u.entity, u.contact, u.sub, u.out, u.in, u.approved, u.since, u.updated)
	}

	// Requests, in the batch's order. Deleting an item deletes its request
	// (ON DELETE CASCADE); the bulk delete above did that for requests
	// older than the batch, and here it is done where the batch deleted an
	// item that it had queued a request for before, or that it writes
	// again later.
	reqIDs := make([]int64, 0, 1)
	var queued map[roster.Key]bool
	for i := range changes {
		c := &changes[i]
		k := roster.Key{Entity: c.Item.Entity, Contact: c.Item.Contact}
		if plan.deletedAt[i] && (queued[k] || !plan.finalDelete[k]) {
			batch.Queue(deleteRequest, k.Entity, k.Contact)
		}
		if c.Dequeue {
			batch.Queue(deleteRequest, k.Entity, k.Contact)
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
		batch.Queue(deleteRequest, entity, contact)
		n := len(reqIDs)
		reqIDs = append(reqIDs, 0)
		batch.Queue(insertRequest, entity, contact, q.Rule, q.SubscribeBack, ms(created)).QueryRow(func(row pgx.Row) error {
			return row.Scan(&reqIDs[n])
		})
	}

	if len(b.InviteUses) > 0 {
		batch.Queue(useInvites, b.InviteUses)
	}
	queuePlacements(&batch, b.Placements, now)
	if b.Delivered > 0 {
		batch.Queue(deleteOutbox, b.Delivered)
	}
	if b.Send != "" {
		batch.Queue(insertOutbox, now, b.Send).QueryRow(func(row pgx.Row) error { return row.Scan(&outboxID) })
	}

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, hinted, fmt.Errorf("postgres: commit: begin: %w", err)
	}
	defer rollback(ctx, tx)
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return 0, hinted, fmt.Errorf("postgres: commit: %w", fenceErr(err))
	}
	if items != nil {
		if err := copyIn(ctx, tx, copyItems, items, len(plan.ins)); err != nil {
			return 0, hinted, fmt.Errorf("postgres: commit: new items: %w", err)
		}
	}
	firstAudit := lastAudit - int64(nAudit) + 1
	if audit != nil {
		audit.setIDs(firstAudit)
		if err := copyIn(ctx, tx, copyAudit, audit, nAudit); err != nil {
			return 0, hinted, fmt.Errorf("postgres: commit: audit: %w", err)
		}
	}
	firstBot := lastBot - int64(len(b.BotEvents)) + 1
	if bots != nil {
		bots.setIDs(firstBot)
		if err := copyIn(ctx, tx, copyBotEvents, bots, len(b.BotEvents)); err != nil {
			return 0, hinted, fmt.Errorf("postgres: commit: bot events: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, hinted, fmt.Errorf("postgres: commit: %w", err)
	}

	// Only now are the ids real.
	id := firstAudit
	for i := range changes {
		if q := changes[i].Queue; q != nil {
			q.ID, reqIDs = reqIDs[0], reqIDs[1:]
		}
		if e := changes[i].Audit; e != nil {
			e.ID = id
			id++
		}
	}
	for i := range b.BotEvents {
		b.BotEvents[i].ID = firstBot + int64(i)
	}
	return outboxID, hinted, nil
}

// itemPlan is how Commit writes the items of a batch: within one
// transaction only the last change to an item counts, so each item is
// written once, by one bulk upsert or one bulk delete.
type itemPlan struct {
	up struct {
		entity, contact, sub []string
		out, in, approved    []bool
		since, updated       []pgtype.Timestamptz
	}
	ins                   []roster.Item // new items, as stored (storedItem), inserted without looking for them
	delEntity, delContact []string
	deletedAt             []bool              // per change: its item part is a delete
	finalDelete           map[roster.Key]bool // items whose last change deletes them
}

// planItems checks each item first, so that an error names the change at
// fault, and returns the plan. If hints, the items whose first change in
// the batch says New, and whose last does not delete them, go in ins.
func planItems(changes []store.Change, now time.Time, hints bool) (itemPlan, error) {
	type final struct {
		i     int // the change that decides the item
		del   bool
		isNew bool // the item's first change says New
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
		if !validText(it.Entity) || !validText(it.Contact) {
			return plan, fmt.Errorf("postgres: commit: change %d (%q, %q): entity and contact must be UTF-8 without NUL", i, it.Entity, it.Contact)
		}
		del := c.Delete || it.Empty()
		if !del {
			switch it.Sub {
			case roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth:
			default:
				return plan, fmt.Errorf("postgres: commit: change %d (%q, %q): unknown subscription state %q", i, it.Entity, it.Contact, it.Sub)
			}
		}
		plan.deletedAt[i] = del
		if last == nil {
			last = make(map[roster.Key]final, len(changes))
		}
		k := roster.Key{Entity: it.Entity, Contact: it.Contact}
		f, seen := last[k]
		if !seen {
			order = append(order, k)
			f.isNew = hints && c.New
		}
		f.i, f.del = i, del
		last[k] = f
	}
	u := &plan.up
	for _, k := range order {
		f := last[k]
		it := changes[f.i].Item
		if f.del {
			if plan.finalDelete == nil {
				plan.finalDelete = map[roster.Key]bool{}
			}
			plan.finalDelete[k] = true
			plan.delEntity = append(plan.delEntity, k.Entity)
			plan.delContact = append(plan.delContact, k.Contact)
			continue
		}
		if f.isNew {
			if plan.ins == nil {
				plan.ins = make([]roster.Item, 0, len(order))
			}
			plan.ins = append(plan.ins, storedItem(it, now))
			continue
		}
		if u.entity == nil {
			n := len(order)
			u.entity, u.contact, u.sub = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
			u.out, u.in, u.approved = make([]bool, 0, n), make([]bool, 0, n), make([]bool, 0, n)
			u.since, u.updated = make([]pgtype.Timestamptz, 0, n), make([]pgtype.Timestamptz, 0, n)
		}
		it = storedItem(it, now)
		var since pgtype.Timestamptz
		if it.PendingIn {
			since = pgtype.Timestamptz{Time: it.PendingSince, Valid: true}
		}
		u.entity = append(u.entity, it.Entity)
		u.contact = append(u.contact, it.Contact)
		u.sub = append(u.sub, it.Sub)
		u.out = append(u.out, it.PendingOut)
		u.in = append(u.in, it.PendingIn)
		u.approved = append(u.approved, it.Approved)
		u.since = append(u.since, since)
		u.updated = append(u.updated, pgtype.Timestamptz{Time: it.Updated, Valid: true})
	}
	return plan, nil
}

// storedItem is it as Commit writes it: its times to the millisecond, a
// zero Updated (or PendingSince, while PendingIn) now, PendingSince zero
// unless PendingIn.
func storedItem(it roster.Item, now time.Time) roster.Item {
	if it.Updated.IsZero() {
		it.Updated = now
	}
	it.Updated = ms(it.Updated)
	switch {
	case !it.PendingIn:
		it.PendingSince = time.Time{}
	case it.PendingSince.IsZero():
		it.PendingSince = now
	default:
		it.PendingSince = ms(it.PendingSince)
	}
	return it
}

// validText reports whether PostgreSQL's text takes s: UTF-8, no NUL.
func validText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// textOf is s as PostgreSQL's text takes it: bytes that are not UTF-8
// become U+FFFD, as in package sqlite, and NUL goes.
func textOf(s string) string {
	if validText(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

const itemColumns = `entity, contact, sub, pending_out, pending_in, approved, pending_since, updated`

func scanItem(row pgx.Row) (roster.Item, error) {
	var (
		it    roster.Item
		since pgtype.Timestamptz
	)
	if err := row.Scan(&it.Entity, &it.Contact, &it.Sub, &it.PendingOut, &it.PendingIn, &it.Approved, &since, &it.Updated); err != nil {
		return roster.Item{}, err
	}
	if since.Valid {
		it.PendingSince = since.Time.UTC()
	}
	it.Updated = it.Updated.UTC()
	return it, nil
}

// Get returns the item of entity for contact, or an error matching
// store.ErrNotFound.
func (db *DB) Get(ctx context.Context, entity, contact string) (roster.Item, error) {
	it, err := scanItem(db.pool.QueryRow(ctx, `SELECT `+itemColumns+` FROM items WHERE entity = $1 AND contact = $2`, entity, contact))
	if errors.Is(err, pgx.ErrNoRows) {
		return roster.Item{}, notFound{fmt.Sprintf("roster item (%q, %q)", entity, contact)}
	}
	if err != nil {
		return roster.Item{}, fmt.Errorf("postgres: get item (%q, %q): %w", entity, contact, err)
	}
	return it, nil
}

// GetMany returns the stored items among keys, in no particular order, in
// one query.
func (db *DB) GetMany(ctx context.Context, keys []roster.Key) ([]roster.Item, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	entities, contacts := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		entities[i], contacts[i] = k.Entity, k.Contact
	}
	rows, err := db.pool.Query(ctx, `SELECT `+itemColumns+` FROM items
		WHERE (entity, contact) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, entities, contacts)
	if err != nil {
		return nil, fmt.Errorf("postgres: get items: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (roster.Item, error) { return scanItem(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: get items: %w", err)
	}
	return items, nil
}

// itemsQuery builds the query for Items; its ORDER BY follows the primary
// key.
func itemsQuery(f store.Filter) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !f.AllEntities {
		where = append(where, "entity = "+arg(f.Entity))
	}
	if len(f.Subs) > 0 {
		for _, s := range f.Subs {
			switch s {
			case roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth:
			default:
				return "", nil, fmt.Errorf("postgres: items: unknown subscription state %q", s)
			}
		}
		where = append(where, "sub = ANY("+arg(f.Subs)+"::text[])")
	}
	if f.After != nil {
		where = append(where, "(entity, contact) > ("+arg(f.After.Entity)+", "+arg(f.After.Contact)+")")
	}
	q := `SELECT ` + itemColumns + ` FROM items`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY entity, contact`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	return q, args, nil
}

// Items streams the items f selects, ordered by entity then contact, from
// the snapshot of one query, calling fn for each as its row arrives. fn
// may call other methods of db (on other connections of the pool). An
// error from fn stops Items and is returned as it is.
func (db *DB) Items(ctx context.Context, f store.Filter, fn func(roster.Item) error) error {
	q, args, err := itemsQuery(f)
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("postgres: items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return fmt.Errorf("postgres: items: %w", err)
		}
		if err := fn(it); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("postgres: items: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: items: %w", err)
	}
	return nil
}

const requestColumns = `id, entity, contact, rule, subscribe_back, created`

func scanRequest(row pgx.Row) (roster.Request, error) {
	var r roster.Request
	if err := row.Scan(&r.ID, &r.Entity, &r.Contact, &r.Rule, &r.SubscribeBack, &r.Created); err != nil {
		return roster.Request{}, err
	}
	r.Created = r.Created.UTC()
	return r, nil
}

// Requests returns the held requests, oldest first.
func (db *DB) Requests(ctx context.Context) ([]roster.Request, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+requestColumns+` FROM requests ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: requests: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (roster.Request, error) { return scanRequest(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: requests: %w", err)
	}
	return rs, nil
}

// Request returns one held request, or an error matching store.ErrNotFound.
func (db *DB) Request(ctx context.Context, id int64) (roster.Request, error) {
	r, err := scanRequest(db.pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM requests WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return roster.Request{}, notFound{fmt.Sprintf("request %d", id)}
	}
	if err != nil {
		return roster.Request{}, fmt.Errorf("postgres: request %d: %w", id, err)
	}
	return r, nil
}

// Outbox returns the stanzas committed but not known to be delivered,
// oldest first.
func (db *DB) Outbox(ctx context.Context) ([]store.Outgoing, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, created, stanzas FROM outbox ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Outgoing, error) {
		var o store.Outgoing
		err := r.Scan(&o.ID, &o.Created, &o.Stanzas)
		o.Created = o.Created.UTC()
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: outbox: %w", err)
	}
	return out, nil
}

// Delivered deletes the outbox rows with ids up to id.
func (db *DB) Delivered(ctx context.Context, id int64) error {
	if err := db.write(ctx, func(b *pgx.Batch) { b.Queue(deleteOutbox, id) }); err != nil {
		return fmt.Errorf("postgres: delivered: %w", err)
	}
	return nil
}
