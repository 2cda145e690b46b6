package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"rostergate/store"
)

// CreateWebKey stores an admin's key to the web page.
func (db *DB) CreateWebKey(ctx context.Context, k store.WebKey) error {
	if len(k.Hash) != 32 {
		return fmt.Errorf("postgres: create web key: hash of %d bytes, want 32", len(k.Hash))
	}
	if k.Kind != store.KindLogin && k.Kind != store.KindSession {
		return fmt.Errorf("postgres: create web key: unknown kind %q", k.Kind)
	}
	until := k.Until
	if until.IsZero() || until.Before(k.Expires) {
		until = k.Expires
	}
	if err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO web_keys (hash, kind, jid, created, expires, until) VALUES ($1, $2, $3, $4, $5, $6)`,
			k.Hash, k.Kind, k.JID, ms(k.Created), ms(k.Expires), ms(until))
	}); err != nil {
		return fmt.Errorf("postgres: create web key: %w", err)
	}
	return nil
}

const webKeyColumns = `hash, kind, jid, created, expires, until`

func scanWebKey(row pgx.Row) (store.WebKey, error) {
	var k store.WebKey
	if err := row.Scan(&k.Hash, &k.Kind, &k.JID, &k.Created, &k.Expires, &k.Until); err != nil {
		return store.WebKey{}, err
	}
	k.Created, k.Expires, k.Until = k.Created.UTC(), k.Expires.UTC(), k.Until.UTC()
	return k, nil
}

// TakeWebKey deletes and returns a key that has not expired: one
// statement, so of two takers one gets it.
func (db *DB) TakeWebKey(ctx context.Context, hash []byte, kind string, now time.Time) (store.WebKey, error) {
	var k store.WebKey
	err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`DELETE FROM web_keys WHERE hash = $1 AND kind = $2 AND expires > $3 RETURNING `+webKeyColumns,
			hash, kind, ms(now)).QueryRow(func(row pgx.Row) (err error) { k, err = scanWebKey(row); return err })
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return k, notFound{"web key"}
	}
	if err != nil {
		return k, fmt.Errorf("postgres: take web key: %w", err)
	}
	return k, nil
}

// WebKey returns a key that has not expired, its idle deadline first moved
// on by touch (never past its end).
func (db *DB) WebKey(ctx context.Context, hash []byte, kind string, now time.Time, touch time.Duration) (store.WebKey, error) {
	var (
		k   store.WebKey
		err error
	)
	if touch > 0 {
		err = db.write(ctx, func(b *pgx.Batch) {
			b.Queue(`UPDATE web_keys SET expires = least(until, $1) WHERE hash = $2 AND kind = $3 AND expires > $4 RETURNING `+webKeyColumns,
				ms(now.Add(touch)), hash, kind, ms(now)).QueryRow(func(row pgx.Row) (err error) { k, err = scanWebKey(row); return err })
		})
	} else {
		k, err = scanWebKey(db.pool.QueryRow(ctx, `SELECT `+webKeyColumns+` FROM web_keys WHERE hash = $1 AND kind = $2 AND expires > $3`, hash, kind, ms(now)))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return k, notFound{"web key"}
	}
	if err != nil {
		return k, fmt.Errorf("postgres: web key: %w", err)
	}
	return k, nil
}

// DeleteWebKey deletes a key.
func (db *DB) DeleteWebKey(ctx context.Context, hash []byte) error {
	if err := db.write(ctx, func(b *pgx.Batch) { b.Queue(`DELETE FROM web_keys WHERE hash = $1`, hash) }); err != nil {
		return fmt.Errorf("postgres: delete web key: %w", err)
	}
	return nil
}

// TrimWebKeys deletes the expired keys.
func (db *DB) TrimWebKeys(ctx context.Context, now time.Time) (int64, error) {
	var tag pgconn.CommandTag
	err := db.write(ctx, func(b *pgx.Batch) {
		b.Queue(`DELETE FROM web_keys WHERE expires <= $1`, ms(now)).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: trim web keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
