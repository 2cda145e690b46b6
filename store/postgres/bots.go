package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"rostergate/store"
)

// checkBotEvents refuses, before anything is sent, what the bot_events
// table would: a type that is not a word of a-z and _, data that is not
// one JSON object (whether it is valid JSON, the cast to json says).
func checkBotEvents(evs []store.BotEvent) error {
	for i := range evs {
		ev := &evs[i]
		if !isWord(ev.Type) {
			return fmt.Errorf("postgres: bot event %d (%q): type %q is not a word of a-z and _", i, ev.Entity, ev.Type)
		}
		if !oneObject(ev.Data) {
			return fmt.Errorf("postgres: bot event %d (%q): data is not one JSON object", i, ev.Entity)
		}
		if !validText(ev.Entity) || !validText(ev.Data) {
			return fmt.Errorf("postgres: bot event %d (%q): entity and data must be UTF-8 without NUL", i, ev.Entity)
		}
	}
	return nil
}

// oneObject reports whether s is one brace-delimited whole: it opens with
// {, and its brackets, outside strings, close only at its last byte.
func oneObject(s string) bool {
	if len(s) < 2 || s[0] != '{' {
		return false
	}
	depth, inString := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth < 0 || depth == 0 && i != len(s)-1 {
				return false
			}
		}
	}
	return depth == 0 && !inString
}

// isWord reports whether s is a non-empty word of a-z and _.
func isWord(s string) bool {
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return s != ""
}

// BotEvents returns up to limit events of entity with ids above after,
// oldest first, and the highest id retention deleted from its log.
func (db *DB) BotEvents(ctx context.Context, entity string, after int64, limit int) ([]store.BotEvent, int64, error) {
	if limit <= 0 {
		limit = 100
	}
	// One snapshot for both reads: a trim in between cannot hide itself.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: bot events: %w", err)
	}
	defer rollback(ctx, tx)
	var trimmed int64
	if err := tx.QueryRow(ctx, `SELECT through FROM bot_event_trims WHERE entity = $1`, entity).Scan(&trimmed); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("postgres: bot events: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id, at, type, data::text FROM bot_events WHERE entity = $1 AND id > $2 ORDER BY id LIMIT $3`,
		entity, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: bot events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BotEvent, error) {
		ev := store.BotEvent{Entity: entity}
		err := r.Scan(&ev.ID, &ev.At, &ev.Type, &ev.Data)
		ev.At = ev.At.UTC()
		return ev, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: bot events: %w", err)
	}
	return out, trimmed, nil
}

// LastBotEvent returns the id of entity's newest event, or of the newest
// retention deleted if that is newer; 0 if none ever.
func (db *DB) LastBotEvent(ctx context.Context, entity string) (int64, error) {
	var last int64
	err := db.pool.QueryRow(ctx, `SELECT greatest(
		coalesce((SELECT max(id) FROM bot_events WHERE entity = $1), 0),
		coalesce((SELECT through FROM bot_event_trims WHERE entity = $1), 0))`, entity).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("postgres: last bot event: %w", err)
	}
	return last, nil
}

// TrimBotEvents deletes events older than before and, with keep > 0, the
// oldest of each entity beyond keep (an event at a time: one row each),
// and notes per entity the highest id deleted, in one statement.
func (db *DB) TrimBotEvents(ctx context.Context, before time.Time, keep int) (int64, error) {
	var n int64
	err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`WITH gone AS (
			DELETE FROM bot_events WHERE at < $1 OR ($2 > 0 AND id IN (
				SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY entity ORDER BY id DESC) AS newer FROM bot_events) r
				WHERE newer > $2))
			RETURNING entity, id
		), marks AS (
			INSERT INTO bot_event_trims (entity, through) SELECT entity, max(id) FROM gone GROUP BY entity
			ON CONFLICT (entity) DO UPDATE SET through = greatest(bot_event_trims.through, excluded.through)
		)
		SELECT count(*) FROM gone`, ms(before), keep).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: trim bot events: %w", err)
	}
	return n, nil
}

const tokenColumns = `id, hash, entities, admin, created, last_used, revoked`

func scanToken(row pgx.Row) (store.Token, error) {
	var t store.Token
	var used, revoked pgtype.Timestamptz
	if err := row.Scan(&t.ID, &t.Hash, &t.Entities, &t.Admin, &t.Created, &used, &revoked); err != nil {
		return t, err
	}
	t.Created = t.Created.UTC()
	if used.Valid {
		t.LastUsed = used.Time.UTC()
	}
	if revoked.Valid {
		t.Revoked = revoked.Time.UTC()
	}
	return t, nil
}

// CreateToken stores a token's hash with the entities it may act for.
func (db *DB) CreateToken(ctx context.Context, hash []byte, entities []string, admin bool) (store.Token, error) {
	if len(hash) != 32 {
		return store.Token{}, fmt.Errorf("postgres: create token: hash of %d bytes, want 32", len(hash))
	}
	if entities == nil {
		entities = []string{}
	}
	now := ms(time.Now())
	var id int64
	if err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO tokens (hash, entities, admin, created) VALUES ($1, $2, $3, $4) RETURNING id`,
			hash, entities, admin, now).QueryRow(func(row pgx.Row) error { return row.Scan(&id) })
	}); err != nil {
		return store.Token{}, fmt.Errorf("postgres: create token: %w", err)
	}
	return store.Token{ID: id, Hash: hash, Entities: entities, Admin: admin, Created: now}, nil
}

// TokenByHash returns the token with this hash.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	t, err := scanToken(db.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, notFound{"token"}
	}
	if err != nil {
		return t, fmt.Errorf("postgres: token: %w", err)
	}
	return t, nil
}

// Tokens returns every token, oldest first.
func (db *DB) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken revokes a token (again: a no-op).
func (db *DB) RevokeToken(ctx context.Context, id int64) error {
	var tag pgconn.CommandTag
	err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`UPDATE tokens SET revoked = coalesce(revoked, $1) WHERE id = $2`, ms(time.Now()), id).
			Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	})
	if err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke token %d: %w", id, notFound{"token"})
	}
	return nil
}

// TokenUsed records that token id was used for entity, in one statement.
func (db *DB) TokenUsed(ctx context.Context, id int64, entity string, at time.Time) error {
	if err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`WITH used AS (UPDATE tokens SET last_used = $1 WHERE id = $2 RETURNING id)
		INSERT INTO bot_entities (entity, token, since) SELECT $3, id, $1 FROM used ON CONFLICT DO NOTHING`,
			ms(at), id, entity)
	}); err != nil {
		return fmt.Errorf("postgres: token used: %w", err)
	}
	return nil
}

// BotEntities returns the entities a token that is not revoked has been
// used for.
func (db *DB) BotEntities(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT DISTINCT b.entity FROM bot_entities b JOIN tokens t ON t.id = b.token
		WHERE t.revoked IS NULL ORDER BY b.entity`)
	if err != nil {
		return nil, fmt.Errorf("postgres: bot entities: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("postgres: bot entities: %w", err)
	}
	return out, nil
}

// Cursor returns a consumer's last event id, and whether it stored one.
func (db *DB) Cursor(ctx context.Context, name string) (int64, bool, error) {
	var id int64
	err := db.pool.QueryRow(ctx, `SELECT id FROM cursors WHERE name = $1`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("postgres: cursor %q: %w", name, err)
	}
	return id, true, nil
}

// SetCursor stores a consumer's last event id. It commits without waiting
// for the WAL to be flushed (synchronous_commit off for this transaction),
// as package sqlite's does without its fsync: a crash may lose the latest
// cursors, and their consumers then take those events again (at least
// once), but no commit waits behind a cursor's flush.
func (db *DB) SetCursor(ctx context.Context, name string, id int64) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: cursor %q: %w", name, err)
	}
	defer rollback(ctx, tx)
	var batch pgx.Batch
	if err := db.queueCheck(&batch); err != nil {
		return fmt.Errorf("postgres: cursor %q: %w", name, err)
	}
	batch.Queue(`SET LOCAL synchronous_commit = off`)
	batch.Queue(`INSERT INTO cursors (name, id) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET id = excluded.id`, name, id)
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return fmt.Errorf("postgres: cursor %q: %w", name, fenceErr(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: cursor %q: %w", name, err)
	}
	return nil
}

// DeleteCursor forgets a consumer's cursor.
func (db *DB) DeleteCursor(ctx context.Context, name string) error {
	if err := db.write(ctx, func(b *pgx.Batch) { b.Queue(`DELETE FROM cursors WHERE name = $1`, name) }); err != nil {
		return fmt.Errorf("postgres: cursor %q: %w", name, err)
	}
	return nil
}

// Presences returns the presence bots set, by entity.
func (db *DB) Presences(ctx context.Context) (map[string]store.Presence, error) {
	rows, err := db.pool.Query(ctx, `SELECT entity, show, status FROM entity_presence`)
	if err != nil {
		return nil, fmt.Errorf("postgres: presences: %w", err)
	}
	defer rows.Close()
	out := map[string]store.Presence{}
	for rows.Next() {
		var e string
		var p store.Presence
		if err := rows.Scan(&e, &p.Show, &p.Status); err != nil {
			return nil, fmt.Errorf("postgres: presences: %w", err)
		}
		out[e] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: presences: %w", err)
	}
	return out, nil
}

// SetPresence stores the presence a bot set for entity, or with nil
// forgets it.
func (db *DB) SetPresence(ctx context.Context, entity string, p *store.Presence) error {
	err := db.write(ctx, func(b *pgx.Batch) {
		if p == nil {
			b.Queue(`DELETE FROM entity_presence WHERE entity = $1`, entity)
		} else {
			b.Queue(`INSERT INTO entity_presence (entity, show, status, updated) VALUES ($1, $2, $3, $4)
			ON CONFLICT (entity) DO UPDATE SET show = excluded.show, status = excluded.status, updated = excluded.updated`,
				entity, p.Show, p.Status, ms(time.Now()))
		}
	})
	if err != nil {
		return fmt.Errorf("postgres: set presence: %w", err)
	}
	return nil
}
