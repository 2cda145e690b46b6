package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"rostergate/roster"
	"rostergate/store"
	"strings"
	"time"
)

// Lists returns the allow and deny lists, each sorted.
func (db *DB) Lists(ctx context.Context) (allow, deny []string, err error) {
	rows, err := db.r.QueryContext(ctx, `SELECT list, pattern FROM lists ORDER BY list, pattern`)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var list, pattern string
		if err := rows.Scan(&list, &pattern); err != nil {
			return nil, nil, fmt.Errorf("sqlite: lists: %w", err)
		}
		if list == "allow" {
			allow = append(allow, pattern)
		} else {
			deny = append(deny, pattern)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("sqlite: lists: %w", err)
	}
	return allow, deny, nil
}

// EditList adds pattern to, or removes it from, the list "allow" or "deny",
// with its audit event, in one transaction. It reports whether the list
// changed (adding a pattern already there, or removing one that is not, does
// not).
func (db *DB) EditList(ctx context.Context, list, pattern string, add bool, ev *roster.Event) (changed bool, err error) {
	if list != "allow" && list != "deny" {
		return false, fmt.Errorf("sqlite: edit list: unknown list %q", list)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: edit list: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	now := time.Now()
	var res sql.Result
	if add {
		actor := ""
		if ev != nil {
			actor = ev.Actor
		}
		res, err = tx.ExecContext(ctx, `INSERT INTO lists (list, pattern, added_by, created) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			list, pattern, actor, millis(now))
	} else {
		res, err = tx.ExecContext(ctx, `DELETE FROM lists WHERE list = ? AND pattern = ?`, list, pattern)
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: edit list: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: edit list: %w", err)
	}
	if n > 0 && ev != nil {
		if err := insertAudit(ctx, tx, ev, now); err != nil {
			return false, fmt.Errorf("sqlite: edit list: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: edit list: %w", err)
	}
	return n > 0, nil
}

func insertAudit(ctx context.Context, tx *sql.Tx, e *roster.Event, now time.Time) error {
	at := e.At
	if at.IsZero() {
		at = now
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO audit (at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		millis(at), e.Entity, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail)
	if err != nil {
		return err
	}
	e.ID, err = res.LastInsertId()
	return err
}

// QueueAction records an act for the running instance to carry out.
func (db *DB) QueueAction(ctx context.Context, actor, kind, request string) (int64, error) {
	res, err := db.w.ExecContext(ctx, `INSERT INTO actions (created, actor, kind, request) VALUES (?, ?, ?, ?)`,
		millis(time.Now()), actor, kind, request)
	if err != nil {
		return 0, fmt.Errorf("sqlite: queue action: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("sqlite: queue action: %w", err)
	}
	return id, nil
}

// WaitingActions returns the acts not carried out yet, oldest first.
func (db *DB) WaitingActions(ctx context.Context) ([]store.Action, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id, created, actor, kind, request FROM actions WHERE done IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: actions: %w", err)
	}
	defer rows.Close()
	var out []store.Action
	for rows.Next() {
		var a store.Action
		var created int64
		if err := rows.Scan(&a.ID, &created, &a.Actor, &a.Kind, &a.Request); err != nil {
			return nil, fmt.Errorf("sqlite: actions: %w", err)
		}
		a.Created = fromMillis(created)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: actions: %w", err)
	}
	return out, nil
}

// FinishAction marks an act carried out, with what came of it.
func (db *DB) FinishAction(ctx context.Context, id int64, result string) error {
	if _, err := db.w.ExecContext(ctx, `UPDATE actions SET done = ?, result = ? WHERE id = ? AND done IS NULL`,
		millis(time.Now()), result, id); err != nil {
		return fmt.Errorf("sqlite: finish action %d: %w", id, err)
	}
	return nil
}

// Action returns one act, or an error matching store.ErrNotFound.
func (db *DB) Action(ctx context.Context, id int64) (store.Action, error) {
	var a store.Action
	var created int64
	var done sql.NullInt64
	err := db.r.QueryRowContext(ctx, `SELECT id, created, actor, kind, request, done, result FROM actions WHERE id = ?`, id).
		Scan(&a.ID, &created, &a.Actor, &a.Kind, &a.Request, &done, &a.Result)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound{fmt.Sprintf("action %d", id)}
	}
	if err != nil {
		return a, fmt.Errorf("sqlite: action %d: %w", id, err)
	}
	a.Created = fromMillis(created)
	if done.Valid {
		a.Done = fromMillis(done.Int64)
	}
	return a, nil
}

// AuditPage returns a page of the audit log, its filters in SQL.
func (db *DB) AuditPage(ctx context.Context, q store.AuditQuery) ([]roster.Event, error) {
	if q.Limit < 1 || q.Limit > 10_000 {
		return nil, fmt.Errorf("sqlite: audit page: limit %d out of range (1 to 10000)", q.Limit)
	}
	where := []string{"id > ?"}
	args := []any{q.After}
	if q.Before > 0 {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	if q.HasEntity {
		where, args = append(where, "entity = ?"), append(args, q.Entity)
	}
	if q.Contact != "" {
		where, args = append(where, "instr(lower(contact), lower(?)) > 0"), append(args, q.Contact)
	}
	if q.Action != "" {
		where, args = append(where, "action = ?"), append(args, q.Action)
	}
	if q.Via != "" {
		where, args = append(where, "interface = ?"), append(args, q.Via)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, millis(q.Since))
	}
	order := "ASC"
	if q.Desc {
		order = "DESC"
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail
		FROM audit WHERE `+strings.Join(where, " AND ")+` ORDER BY id `+order+` LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit page: %w", err)
	}
	defer rows.Close()
	var out []roster.Event
	for rows.Next() {
		var e roster.Event
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Entity, &e.Contact, &e.Kind, &e.Action, &e.Rule,
			&e.From, &e.To, &e.Actor, &e.Interface, &e.Detail); err != nil {
			return nil, fmt.Errorf("sqlite: audit page: %w", err)
		}
		e.At = fromMillis(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit page: %w", err)
	}
	return out, nil
}
