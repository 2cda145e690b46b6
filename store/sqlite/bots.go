package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"rostergate/store"
)

// pageShift: event k of page p has the id p<<pageShift + k.
const (
	pageShift = 16
	pageMax   = 1 << pageShift
)

// insertBotEvents appends evs to their entities' logs within tx and sets
// their ids: one page (row) per entity per commit, its events in the
// batch's order (more than pageMax of one entity take several pages).
// Event data that is not JSON fails the batch (the page's CHECK).
func insertBotEvents(ctx context.Context, tx *sql.Tx, evs []store.BotEvent, now time.Time) error {
	if len(evs) == 0 {
		return nil
	}
	var order []string
	groups := map[string][]int{}
	for i := range evs {
		ev := &evs[i]
		if !isWord(ev.Type) {
			return fmt.Errorf("sqlite: bot event %d (%q): type %q is not a word of a-z and _", i, ev.Entity, ev.Type)
		}
		// Each event's data is one JSON object: pasted into the page, it
		// can be nothing else (the page's CHECK then validates the JSON).
		if !oneObject(ev.Data) {
			return fmt.Errorf("sqlite: bot event %d (%q): data is not one JSON object", i, ev.Entity)
		}
		if _, ok := groups[ev.Entity]; !ok {
			order = append(order, ev.Entity)
		}
		groups[ev.Entity] = append(groups[ev.Entity], i)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO bot_events (entity, at, n, events) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("sqlite: bot events: %w", err)
	}
	defer st.Close()
	var b []byte
	for _, entity := range order {
		idx := groups[entity]
		for len(idx) > 0 {
			page := idx[:min(len(idx), pageMax)]
			idx = idx[len(page):]
			b = append(b[:0], '[')
			var newest int64
			for k, i := range page {
				ev := &evs[i]
				at := ev.At
				if at.IsZero() {
					at = now
				}
				newest = max(newest, millis(at))
				if k > 0 {
					b = append(b, ',')
				}
				b = append(b, '[')
				b = append(b, '"')
				b = append(b, ev.Type...) // a word: nothing to escape
				b = append(b, '"')
				b = append(b, ',')
				b = strconv.AppendInt(b, millis(at), 10)
				b = append(b, ',')
				b = append(b, ev.Data...)
				b = append(b, ']')
			}
			b = append(b, ']')
			res, err := st.ExecContext(ctx, entity, newest, len(page), string(b))
			if err != nil {
				return fmt.Errorf("sqlite: bot events of %q (data not JSON?): %w", entity, err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return fmt.Errorf("sqlite: bot events: %w", err)
			}
			for k, i := range page {
				evs[i].ID = id<<pageShift + int64(k)
			}
		}
	}
	return nil
}

// oneObject reports whether s is one brace-delimited whole: it opens with
// {, and its brackets, outside strings, close only at its last byte. That
// is what keeps an event's data from reaching out of its place in a page;
// whether it is valid JSON, the page's CHECK (json_valid) says. A byte scan:
// encoding/json's Valid cost a twentieth of the decision rate here.
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
	rows, err := tx.QueryContext(ctx, `SELECT id, events FROM bot_events WHERE entity = ? AND id >= ? ORDER BY id`,
		entity, max(after, 0)>>pageShift)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	defer rows.Close()
	var out []store.BotEvent
	for len(out) < limit && rows.Next() {
		var page int64
		var raw []byte
		if err := rows.Scan(&page, &raw); err != nil {
			return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
		}
		var evs [][]json.RawMessage
		if err := json.Unmarshal(raw, &evs); err != nil {
			return nil, 0, fmt.Errorf("sqlite: bot events: page %d: %w", page, err)
		}
		for k, e := range evs {
			id := page<<pageShift + int64(k)
			if id <= after {
				continue
			}
			var typ string
			var at int64
			if len(e) != 3 || json.Unmarshal(e[0], &typ) != nil || json.Unmarshal(e[1], &at) != nil {
				return nil, 0, fmt.Errorf("sqlite: bot events: page %d: event %d is not [type, at, data]", page, k)
			}
			out = append(out, store.BotEvent{ID: id, Entity: entity, At: fromMillis(at), Type: typ, Data: string(e[2])})
			if len(out) == limit {
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sqlite: bot events: %w", err)
	}
	return out, trimmed, nil
}

// LastBotEvent returns the id of entity's newest event, or of the newest
// retention deleted if that is newer; 0 if none ever.
func (db *DB) LastBotEvent(ctx context.Context, entity string) (int64, error) {
	var last int64
	err := db.r.QueryRowContext(ctx, `SELECT max(coalesce((SELECT (id << `+strconv.Itoa(pageShift)+`) + n - 1 FROM bot_events
		WHERE entity = ?1 ORDER BY id DESC LIMIT 1), 0), coalesce((SELECT through FROM bot_event_trims WHERE entity = ?1), 0))`,
		entity).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("sqlite: last bot event: %w", err)
	}
	return last, nil
}

// TrimBotEvents deletes events older than before and, with keep > 0, the
// oldest of each entity beyond keep, a page (one commit's events of one
// entity) at a time: a page goes once all its events are older than
// before, or once keep newer events remain without it. It notes per
// entity the highest id deleted. What goes is found on a reader (pages are
// dated in id order, so the cutoff by age is a binary search over ids);
// the writer is taken only when something does, and only to delete it.
func (db *DB) TrimBotEvents(ctx context.Context, before time.Time, keep int) (int64, error) {
	rtx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	defer rtx.Rollback() //nolint:errcheck // read-only
	cut, err := ageCutoff(ctx, rtx, millis(before))
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	doomed := `SELECT id, entity, n FROM bot_events WHERE id <= ?`
	args := []any{cut}
	if keep > 0 {
		doomed += ` UNION SELECT id, entity, n FROM (SELECT id, entity, n, sum(n) OVER (PARTITION BY entity ORDER BY id DESC
			ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer FROM bot_events) WHERE newer >= ?`
		args = append(args, keep)
	}
	rows, err := rtx.QueryContext(ctx, doomed, args...)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	var pages []int64
	through := map[string]int64{}
	var n int64
	for rows.Next() {
		var id, cnt int64
		var entity string
		if err := rows.Scan(&id, &entity, &cnt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
		}
		pages = append(pages, id)
		through[entity] = max(through[entity], id<<pageShift+cnt-1)
		n += cnt
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	_ = rtx.Rollback()
	if len(pages) == 0 {
		return 0, nil
	}
	ids, err := json.Marshal(pages)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	marks, err := json.Marshal(through)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO bot_event_trims (entity, through)
		SELECT key, value FROM json_each(?) WHERE true
		ON CONFLICT (entity) DO UPDATE SET through = max(through, excluded.through)`, string(marks)); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM bot_events WHERE id IN (SELECT value FROM json_each(?))`, string(ids)); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: trim bot events: %w", err)
	}
	return n, nil
}

// ageCutoff returns the highest id of the pages whose events are all
// dated before at (0 if none), by binary search over ids: each probe is
// one rowid seek.
func ageCutoff(ctx context.Context, tx *sql.Tx, at int64) (int64, error) {
	var lo, hi sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(id), max(id) FROM bot_events`).Scan(&lo, &hi); err != nil {
		return 0, err
	}
	if !lo.Valid {
		return 0, nil
	}
	// Every page below l is dated before at (or gone); the first page at
	// or after h is not.
	l, h := lo.Int64, hi.Int64+1
	for l < h {
		mid := l + (h-l)/2
		var id, t int64
		err := tx.QueryRowContext(ctx, `SELECT id, at FROM bot_events WHERE id >= ? ORDER BY id LIMIT 1`, mid).Scan(&id, &t)
		if errors.Is(err, sql.ErrNoRows) {
			h = mid
			continue
		}
		if err != nil {
			return 0, err
		}
		if t < at {
			l = id + 1
		} else {
			h = mid
		}
	}
	return l - 1, nil
}

const tokenColumns = `id, hash, entities, admin, created, last_used, revoked`

func scanToken(s scanner) (store.Token, error) {
	var t store.Token
	var ents string
	var created int64
	var used, revoked sql.NullInt64
	if err := s.Scan(&t.ID, &t.Hash, &ents, &t.Admin, &created, &used, &revoked); err != nil {
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
func (db *DB) CreateToken(ctx context.Context, hash []byte, entities []string, admin bool) (store.Token, error) {
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
	res, err := db.w.ExecContext(ctx, `INSERT INTO tokens (hash, entities, admin, created) VALUES (?, ?, ?, ?)`, hash, string(ents), boolInt(admin), millis(now))
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: create token: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return store.Token{}, fmt.Errorf("sqlite: create token: %w", err)
	}
	return store.Token{ID: id, Hash: hash, Entities: entities, Admin: admin, Created: fromMillis(millis(now))}, nil
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO bot_entities (entity, token, since) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, entity, id, millis(at)); err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: token used: %w", err)
	}
	return nil
}

// BotEntities returns the entities a token that is not revoked has been
// used for.
func (db *DB) BotEntities(ctx context.Context) ([]string, error) {
	return db.strings(ctx, "bot entities", `SELECT DISTINCT b.entity FROM bot_entities b JOIN tokens t ON t.id = b.token
		WHERE t.revoked IS NULL ORDER BY b.entity`)
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

// Cursor returns a consumer's last event id, and whether it stored one.
func (db *DB) Cursor(ctx context.Context, name string) (int64, bool, error) {
	var id int64
	err := db.r.QueryRowContext(ctx, `SELECT id FROM cursors WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	return id, true, nil
}

// SetCursor stores a consumer's last event id.
//
// It is committed without waiting for the disk (synchronous=NORMAL for this
// one transaction): the next commit's fsync takes it along. A crash may
// lose the latest cursors, and their consumers then take those events
// again (at least once); the roster commits never wait behind a cursor's
// fsync.
func (db *DB) SetCursor(ctx context.Context, name string, id int64) (err error) {
	c, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	defer func() {
		if _, rerr := c.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = FULL`); rerr != nil {
			// The connection must not stay lax: drop it, the pool opens
			// a new one with the DSN's FULL.
			_ = c.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("sqlite: cursor %q: restoring synchronous: %w", name, rerr))
		}
	}()
	if _, err := c.ExecContext(ctx, `INSERT INTO cursors (name, id) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET id = excluded.id`, name, id); err != nil {
		return fmt.Errorf("sqlite: cursor %q: %w", name, err)
	}
	return nil
}

// DeleteCursor forgets a consumer's cursor.
func (db *DB) DeleteCursor(ctx context.Context, name string) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM cursors WHERE name = ?`, name); err != nil {
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

// SetPresence stores the presence a bot set for entity, or with nil
// forgets it.
func (db *DB) SetPresence(ctx context.Context, entity string, p *store.Presence) error {
	if p == nil {
		if _, err := db.w.ExecContext(ctx, `DELETE FROM entity_presence WHERE entity = ?`, entity); err != nil {
			return fmt.Errorf("sqlite: set presence: %w", err)
		}
		return nil
	}
	if _, err := db.w.ExecContext(ctx, `INSERT INTO entity_presence (entity, show, status, updated) VALUES (?, ?, ?, ?)
		ON CONFLICT (entity) DO UPDATE SET show = excluded.show, status = excluded.status, updated = excluded.updated`,
		entity, p.Show, p.Status, millis(time.Now())); err != nil {
		return fmt.Errorf("sqlite: set presence: %w", err)
	}
	return nil
}
