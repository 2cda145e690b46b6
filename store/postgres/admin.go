package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"rostergate/roster"
	"rostergate/store"
)

const eventColumns = `id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail`

func scanEvent(row pgx.Row) (roster.Event, error) {
	var e roster.Event
	if err := row.Scan(&e.ID, &e.At, &e.Entity, &e.Contact, &e.Kind, &e.Action, &e.Rule,
		&e.From, &e.To, &e.Actor, &e.Interface, &e.Detail); err != nil {
		return roster.Event{}, err
	}
	e.At = e.At.UTC()
	return e, nil
}

func collectEvent(r pgx.CollectableRow) (roster.Event, error) { return scanEvent(r) }

// Events streams the audit rows with At >= since, oldest first (rows of
// one instant in the order they were appended), calling fn for each. An
// error from fn stops Events and is returned as it is.
func (db *DB) Events(ctx context.Context, since time.Time, fn func(roster.Event) error) error {
	rows, err := db.pool.Query(ctx, `SELECT `+eventColumns+` FROM audit WHERE at >= $1 ORDER BY at, id`, ms(since))
	if err != nil {
		return fmt.Errorf("postgres: events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("postgres: events: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: events: %w", err)
	}
	return nil
}

// RequestDecision returns the newest audit event that decided held request
// id, or an error matching store.ErrNotFound.
func (db *DB) RequestDecision(ctx context.Context, id int64) (roster.Event, error) {
	e, err := scanEvent(db.pool.QueryRow(ctx, `SELECT `+eventColumns+` FROM audit
		WHERE detail = $1 AND action IN ('accept', 'reject') ORDER BY id DESC LIMIT 1`, "request #"+strconv.FormatInt(id, 10)))
	if errors.Is(err, pgx.ErrNoRows) {
		return e, notFound{fmt.Sprintf("decision of request #%d", id)}
	}
	if err != nil {
		return e, fmt.Errorf("postgres: request decision: %w", err)
	}
	return e, nil
}

// AuditPage returns a page of the audit log, its filters in SQL.
func (db *DB) AuditPage(ctx context.Context, q store.AuditQuery) ([]roster.Event, error) {
	if q.Limit < 1 || q.Limit > 10_000 {
		return nil, fmt.Errorf("postgres: audit page: limit %d out of range (1 to 10000)", q.Limit)
	}
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{"id > " + arg(q.After)}
	if q.Before > 0 {
		where = append(where, "id < "+arg(q.Before))
	}
	if q.HasEntity {
		where = append(where, "entity = "+arg(q.Entity))
	}
	if q.Contact != "" {
		// lower() of the C collation folds ASCII only, as SQLite's does.
		where = append(where, "strpos(lower(contact), lower("+arg(textOf(q.Contact))+"::text COLLATE \"C\")) > 0")
	}
	if q.Action != "" {
		where = append(where, "action = "+arg(q.Action))
	}
	if q.Via != "" {
		where = append(where, "interface = "+arg(q.Via))
	}
	if !q.Since.IsZero() {
		where = append(where, "at >= "+arg(ms(q.Since)))
	}
	order := "ASC"
	if q.Desc {
		order = "DESC"
	}
	rows, err := db.pool.Query(ctx, `SELECT `+eventColumns+` FROM audit WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id `+order+` LIMIT `+arg(q.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit page: %w", err)
	}
	out, err := pgx.CollectRows(rows, collectEvent)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit page: %w", err)
	}
	return out, nil
}

// Lists returns the allow and deny lists, each sorted (bytewise).
func (db *DB) Lists(ctx context.Context) (allow, deny []string, err error) {
	rows, err := db.pool.Query(ctx, `SELECT list, pattern FROM lists ORDER BY list, pattern`)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var list, pattern string
		if err := rows.Scan(&list, &pattern); err != nil {
			return nil, nil, fmt.Errorf("postgres: lists: %w", err)
		}
		if list == "allow" {
			allow = append(allow, pattern)
		} else {
			deny = append(deny, pattern)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("postgres: lists: %w", err)
	}
	return allow, deny, nil
}

// EditList adds pattern to, or removes it from, the list "allow" or "deny",
// with its audit event (only if the list changed), in one transaction.
func (db *DB) EditList(ctx context.Context, list, pattern string, add bool, ev *roster.Event) (changed bool, err error) {
	if list != "allow" && list != "deny" {
		return false, fmt.Errorf("postgres: edit list: unknown list %q", list)
	}
	now := ms(time.Now())
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("postgres: edit list: %w", err)
	}
	defer rollback(ctx, tx)
	if err := db.checkTx(ctx, tx); err != nil {
		return false, fmt.Errorf("postgres: edit list: %w", err)
	}
	var tag pgconn.CommandTag
	if add {
		actor := ""
		if ev != nil {
			actor = ev.Actor
		}
		tag, err = tx.Exec(ctx, `INSERT INTO lists (list, pattern, added_by, created) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			list, pattern, actor, now)
	} else {
		tag, err = tx.Exec(ctx, `DELETE FROM lists WHERE list = $1 AND pattern = $2`, list, pattern)
	}
	if err != nil {
		return false, fmt.Errorf("postgres: edit list: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil // nothing to commit
	}
	var id int64
	if ev != nil {
		at := now
		if !ev.At.IsZero() {
			at = ms(ev.At)
		}
		if id, err = insertOneAudit(ctx, tx, ev, at); err != nil {
			return false, fmt.Errorf("postgres: edit list: audit: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: edit list: %w", err)
	}
	if ev != nil {
		ev.ID = id
	}
	return true, nil
}

// QueueAction records an act for the running instance to carry out.
func (db *DB) QueueAction(ctx context.Context, actor, kind, request string) (int64, error) {
	var id int64
	if err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO actions (created, actor, kind, request) VALUES ($1, $2, $3, $4) RETURNING id`,
			ms(time.Now()), actor, kind, request).QueryRow(func(row pgx.Row) error { return row.Scan(&id) })
	}); err != nil {
		return 0, fmt.Errorf("postgres: queue action: %w", err)
	}
	return id, nil
}

// WaitingActions returns the acts not carried out yet, oldest first.
func (db *DB) WaitingActions(ctx context.Context) ([]store.Action, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, created, actor, kind, request FROM actions WHERE done IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: actions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Action, error) {
		var a store.Action
		err := r.Scan(&a.ID, &a.Created, &a.Actor, &a.Kind, &a.Request)
		a.Created = a.Created.UTC()
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: actions: %w", err)
	}
	return out, nil
}

// FinishAction marks an act carried out, with what came of it.
func (db *DB) FinishAction(ctx context.Context, id int64, result string) error {
	if err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE actions SET done = $1, result = $2 WHERE id = $3 AND done IS NULL`, ms(time.Now()), result, id)
	}); err != nil {
		return fmt.Errorf("postgres: finish action %d: %w", id, err)
	}
	return nil
}

// Action returns one act, or an error matching store.ErrNotFound.
func (db *DB) Action(ctx context.Context, id int64) (store.Action, error) {
	var a store.Action
	var done pgtype.Timestamptz
	err := db.pool.QueryRow(ctx, `SELECT id, created, actor, kind, request, done, result FROM actions WHERE id = $1`, id).
		Scan(&a.ID, &a.Created, &a.Actor, &a.Kind, &a.Request, &done, &a.Result)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, notFound{fmt.Sprintf("action %d", id)}
	}
	if err != nil {
		return a, fmt.Errorf("postgres: action %d: %w", id, err)
	}
	a.Created = a.Created.UTC()
	if done.Valid {
		a.Done = done.Time.UTC()
	}
	return a, nil
}

// insertOneAudit inserts one audit event in tx, under the write lock (so
// that ids follow the commit order), its time ev.At or else at; it returns
// its id.
func insertOneAudit(ctx context.Context, tx pgx.Tx, ev *roster.Event, at time.Time) (int64, error) {
	if !ev.At.IsZero() {
		at = ms(ev.At)
	}
	if _, err := tx.Exec(ctx, lockWrites, writeLockKey); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO audit (at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		at, textOf(ev.Entity), textOf(ev.Contact), textOf(ev.Kind), textOf(ev.Action), textOf(ev.Rule), textOf(ev.From), textOf(ev.To),
		textOf(ev.Actor), textOf(ev.Interface), textOf(ev.Detail)).Scan(&id)
	return id, err
}
