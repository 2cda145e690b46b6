package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"rostergate/store"
)

// CreateWebKey stores an admin's key to the web page.
func (db *DB) CreateWebKey(ctx context.Context, k store.WebKey) error {
	if len(k.Hash) != 32 {
		return fmt.Errorf("sqlite: create web key: hash of %d bytes, want 32", len(k.Hash))
	}
	if k.Kind != store.KindLogin && k.Kind != store.KindSession {
		return fmt.Errorf("sqlite: create web key: unknown kind %q", k.Kind)
	}
	until := k.Until
	if until.IsZero() || until.Before(k.Expires) {
		until = k.Expires
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO web_keys (hash, kind, jid, created, expires, until) VALUES (?, ?, ?, ?, ?, ?)`,
		k.Hash, k.Kind, k.JID, millis(k.Created), millis(k.Expires), millis(until))
	if err != nil {
		return fmt.Errorf("sqlite: create web key: %w", err)
	}
	return nil
}

const webKeyColumns = `hash, kind, jid, created, expires, until`

func scanWebKey(row interface{ Scan(...any) error }) (store.WebKey, error) {
	var k store.WebKey
	var created, expires, until int64
	if err := row.Scan(&k.Hash, &k.Kind, &k.JID, &created, &expires, &until); err != nil {
		return k, err
	}
	k.Created, k.Expires, k.Until = fromMillis(created), fromMillis(expires), fromMillis(until)
	return k, nil
}

// TakeWebKey deletes and returns a key that has not expired: one statement,
// so of two takers one gets it.
func (db *DB) TakeWebKey(ctx context.Context, hash []byte, kind string, now time.Time) (store.WebKey, error) {
	k, err := scanWebKey(db.w.QueryRowContext(ctx, `DELETE FROM web_keys WHERE hash = ? AND kind = ? AND expires > ? RETURNING `+webKeyColumns,
		hash, kind, millis(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return k, notFound{"web key"}
	}
	if err != nil {
		return k, fmt.Errorf("sqlite: take web key: %w", err)
	}
	return k, nil
}

// WebKey returns a key that has not expired, its idle deadline first moved
// on by touch.
func (db *DB) WebKey(ctx context.Context, hash []byte, kind string, now time.Time, touch time.Duration) (store.WebKey, error) {
	var row *sql.Row
	if touch > 0 {
		row = db.w.QueryRowContext(ctx, `UPDATE web_keys SET expires = min(until, ?) WHERE hash = ? AND kind = ? AND expires > ? RETURNING `+webKeyColumns,
			millis(now.Add(touch)), hash, kind, millis(now))
	} else {
		row = db.r.QueryRowContext(ctx, `SELECT `+webKeyColumns+` FROM web_keys WHERE hash = ? AND kind = ? AND expires > ?`, hash, kind, millis(now))
	}
	k, err := scanWebKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return k, notFound{"web key"}
	}
	if err != nil {
		return k, fmt.Errorf("sqlite: web key: %w", err)
	}
	return k, nil
}

// DeleteWebKey deletes a key.
func (db *DB) DeleteWebKey(ctx context.Context, hash []byte) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM web_keys WHERE hash = ?`, hash); err != nil {
		return fmt.Errorf("sqlite: delete web key: %w", err)
	}
	return nil
}

// TrimWebKeys deletes the expired keys.
func (db *DB) TrimWebKeys(ctx context.Context, now time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM web_keys WHERE expires <= ?`, millis(now))
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim web keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: trim web keys: %w", err)
	}
	return n, nil
}
