package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"rostergate/store"
)

// insertBotEvents appends evs to their entities' logs within tx, in one
// statement fed a JSON array, and sets their ids: the rows of one INSERT
// ... SELECT get consecutive ids (the writer is alone), the last reported.
func insertBotEvents(ctx context.Context, tx *sql.Tx, evs []store.BotEvent, now time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range evs {
		ev := &evs[i]
		if ev.Type == "" || !json.Valid([]byte(ev.Data)) {
			return fmt.Errorf("sqlite: bot event %d (%q): no type, or data is not JSON", i, ev.Entity)
		}
		at := ev.At
		if at.IsZero() {
			at = now
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		for _, s := range []string{ev.Entity, ev.Type, ev.Data} {
			q, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("sqlite: bot event %d: %w", i, err)
			}
			b.Write(q)
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(millis(at), 10))
		b.WriteByte(']')
	}
	b.WriteByte(']')
	res, err := tx.ExecContext(ctx, `INSERT INTO bot_events (entity, type, data, at)
		SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?)`, b.String())
	if err != nil {
		return fmt.Errorf("sqlite: bot events: %w", err)
	}
	last, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("sqlite: bot events: %w", err)
	}
	for i := range evs {
		evs[i].ID = last - int64(len(evs)-1-i)
	}
	return nil
}

// BotEvents returns up to limit events of entity with ids above after,
// oldest first, and the highest id retention deleted from its log.
func (db *DB) BotEvents(ctx context.Context, entity string, after int64, limit int) ([]store.BotEvent, int64, error) {
	if limit <= 0 {
		limit = 100
	}
	// One snapshot for both reads: a trim in between cannot hide itself.
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var trimmed int64
	err = tx.QueryRowContext(ctx, `SELECT through FROM bot_event_trims WHERE entity = ?`, entity).Scan(&trimmed)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, at, type, data FROM bot_events WHERE entity = ? AND id > ? ORDER BY id LIMIT ?`,
		entity, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	defer rows.Close()
	var out []store.BotEvent
	for rows.Next() {
		ev := store.BotEvent{Entity: entity}
		var at int64
		if err := rows.Scan(&ev.ID, &at, &ev.Type, &ev.Data); err != nil {
			return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
		}
		ev.At = fromMillis(at)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	return out, trimmed, nil
}

// LastBotEvent returns the id of entity's newest event, 0 if none.
func (db *DB) LastBotEvent(ctx context.Context, entity string) (int64, error) {
	var id sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT max(id) FROM bot_events WHERE entity = ?`, entity).Scan(&id); err != nil {
		return 0, fmt.Errorf("sqlite: last bot event: %w", err)
	}
	return id.Int64, nil
}

// TrimBotEvents deletes events older than before and, with keep > 0, all
// but the newest keep of each entity, noting per entity the highest id
// deleted.
func (db *DB) TrimBotEvents(ctx context.Context, before time.Time, keep int) (int64, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	doomed := `SELECT id, entity FROM bot_events WHERE at < ?`
	args := []any{millis(before)}
	if keep > 0 {
		doomed += ` UNION SELECT id, entity FROM (SELECT id, entity, row_number() OVER (PARTITION BY entity ORDER BY id DESC) AS n FROM bot_events) WHERE n > ?`
		args = append(args, keep)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO bot_event_trims (entity, through)
		SELECT entity, max(id) FROM (`+doomed+`) WHERE true GROUP BY entity
		ON CONFLICT (entity) DO UPDATE SET through = max(through, excluded.through)`, args...); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM bot_events WHERE id IN (SELECT id FROM (`+doomed+`))`, args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	return n, nil
}

const tokenColumns = `id, entities, created, last_used, revoked`

func scanToken(s scanner) (store.Token, error) {
	var t store.Token
	var ents string
	var created int64
	var used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &ents, &created, &used, &revoked); err != nil {
		return t, err
	}
	if err := json.Unmarshal([]byte(ents), &t.Entities); err != nil {
		return t, fmt.Errorf("token %d: entities: %w", t.ID, err)
	}
	t.Created = fromMillis(created)
	if used.Valid {
		t.LastUsed = fromMillis(used.Int64)
	}
	if revoked.Valid {
		t.Revoked = fromMillis(revoked.Int64)
	}
	return t, nil
}

// CreateToken stores a token's hash with the entities it may act for.
func (db *DB) CreateToken(ctx context.Context, hash []byte, entities []string) (store.Token, error) {
	if len(hash) != 32 {
		return store.Token{}, fmt.Errorf("sqlite: create token: hash of %d bytes, want 32", len(hash))
	}
	if entities == nil {
		entities = []string{}
	}
	ents, err := json.Marshal(entities)
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: create token: %w", err)
	}
	now := time.Now()
	res, err := db.w.ExecContext(ctx, `INSERT INTO tokens (hash, entities, created) VALUES (?, ?, ?)`, hash, string(ents), millis(now))
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: create token: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: create token: %w", err)
	}
	return store.Token{ID: id, Entities: entities, Created: fromMillis(millis(now))}, nil
}

// TokenByHash returns the token with this hash.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	t, err := scanToken(db.tokenBy.QueryRowContext(ctx, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound{"token"}
	}
	if err != nil {
		return t, fmt.Errorf("sqlite: token: %w", err)
	}
	return t, nil
}

// Tokens returns every token, oldest first.
func (db *DB) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tokens: %w", err)
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes a token (again: a no-op).
func (db *DB) RevokeToken(ctx context.Context, id int64) error {
	res, err := db.w.ExecContext(ctx, `UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ?`, millis(time.Now()), id)
	if err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: revoke token %d: %w", id, notFound{"token"})
	}
	return nil
}

// TokenUsed records that token id was used for entity.
func (db *DB) TokenUsed(ctx context.Context, id int64, entity string, at time.Time) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used = ? WHERE id = ?`, millis(at), id); err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO bot_entities (entity, since) VALUES (?, ?) ON CONFLICT DO NOTHING`, entity, millis(at)); err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	return nil
}

// BotEntities returns the entities a token has been used for.
func (db *DB) BotEntities(ctx context.Context) ([]string, error) {
	return db.strings(ctx, "bot entities", `SELECT entity FROM bot_entities ORDER BY entity`)
}

func (db *DB) strings(ctx context.Context, what, query string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return out, nil
}

// Cursor returns a consumer's last event id, 0 if none.
func (db *DB) Cursor(ctx context.Context, name string) (int64, error) {
	var id int64
	err := db.r.QueryRowContext(ctx, `SELECT id FROM cursors WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	return id, nil
}

// SetCursor stores a consumer's last event id.
func (db *DB) SetCursor(ctx context.Context, name string, id int64) error {
	if _, err := db.w.ExecContext(ctx, `INSERT INTO cursors (name, id) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET id = excluded.id`, name, id); err != nil {
		return fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	return nil
}

// Presences returns the presence bots set, by entity.
func (db *DB) Presences(ctx context.Context) (map[string]store.Presence, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT entity, show, status FROM entity_presence`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: presences: %w", err)
	}
	defer rows.Close()
	out := map[string]store.Presence{}
	for rows.Next() {
		var e string
		var p store.Presence
		if err := rows.Scan(&e, &p.Show, &p.Status); err != nil {
			return nil, fmt.Errorf("sqlite: presences: %w", err)
		}
		out[e] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: presences: %w", err)
	}
	return out, nil
}

// SetPresence stores the presence a bot set for entity.
func (db *DB) SetPresence(ctx context.Context, entity string, p store.Presence) error {
	if _, err := db.w.ExecContext(ctx, `INSERT INTO entity_presence (entity, show, status, updated) VALUES (?, ?, ?, ?)
		ON CONFLICT (entity) DO UPDATE SET show = excluded.show, status = excluded.status, updated = excluded.updated`,
		entity, p.Show, p.Status, millis(time.Now())); err != nil {
		return fmt.Errorf("sqlite: set presence: %w", err)
	}
	return nil
}
