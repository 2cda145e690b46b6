package postgres

import (
	"context"
	"errors"
	"fmt"
	"rostergate/roster"
	"rostergate/store"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

const inviteColumns = `id, hash, entity, creator, created, expires, max_uses, uses, subscribe_back, revoked`

func scanInvite(row pgx.Row) (store.Invite, error) {
	var inv store.Invite
	var expires, revoked pgtype.Timestamptz
	if err := row.Scan(&inv.ID, &inv.Hash, &inv.Entity, &inv.Creator, &inv.Created, &expires, &inv.MaxUses, &inv.Uses, &inv.SubscribeBack, &revoked); err != nil {
		return inv, err
	}
	inv.Created = inv.Created.UTC()
	if expires.Valid {
		inv.Expires = expires.Time.UTC()
	}
	if revoked.Valid {
		inv.Revoked = revoked.Time.UTC()
	}
	return inv, nil
}

// nullTime is t to the millisecond, or NULL when t is zero.
func nullTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: ms(t), Valid: true}
}

// inTx runs fn in a transaction that starts with the lead's check and
// the write lock, and commits it. The write lock comes before any invite's
// row, as in Commit: the other order deadlocks against a commit that uses
// the invite.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	if err := db.checkTx(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, lockWrites, writeLockKey); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return fenceErr(tx.Commit(ctx))
}

// auditTx inserts ev (if not nil) in tx, in the audit log's commit order
// (under the write lock), and sets its id.
func auditTx(ctx context.Context, tx pgx.Tx, ev *roster.Event, now time.Time) error {
	if ev == nil {
		return nil
	}
	id, err := insertOneAudit(ctx, tx, ev, now)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	ev.ID = id
	return nil
}

// CreateInvite stores an invite and its audit event in one transaction.
func (db *DB) CreateInvite(ctx context.Context, inv store.Invite, ev *roster.Event) (store.Invite, error) {
	if len(inv.Hash) != 32 {
		return store.Invite{}, fmt.Errorf("postgres: create invite: hash of %d bytes, want 32", len(inv.Hash))
	}
	if inv.MaxUses < 1 {
		return store.Invite{}, fmt.Errorf("postgres: create invite: max uses %d, want at least 1", inv.MaxUses)
	}
	now := ms(time.Now())
	if inv.Created.IsZero() {
		inv.Created = now
	}
	inv.Created, inv.Uses = ms(inv.Created), 0
	if !inv.Expires.IsZero() {
		inv.Expires = ms(inv.Expires)
	}
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO invites (hash, entity, creator, created, expires, max_uses, subscribe_back, revoked)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			inv.Hash, inv.Entity, inv.Creator, inv.Created, nullTime(inv.Expires), inv.MaxUses, inv.SubscribeBack, nullTime(inv.Revoked)).Scan(&inv.ID); err != nil {
			return err
		}
		if ev != nil {
			ev.Rule = "invite " + strconv.FormatInt(inv.ID, 10)
		}
		return auditTx(ctx, tx, ev, now)
	})
	if err != nil {
		return store.Invite{}, fmt.Errorf("postgres: create invite: %w", err)
	}
	return inv, nil
}

func (db *DB) oneInvite(ctx context.Context, where string, arg any) (store.Invite, error) {
	inv, err := scanInvite(db.pool.QueryRow(ctx, `SELECT `+inviteColumns+` FROM invites WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return inv, notFound{"invite"}
	}
	if err != nil {
		return inv, fmt.Errorf("postgres: invite: %w", err)
	}
	return inv, nil
}

// InviteByHash returns the invite with this hash.
func (db *DB) InviteByHash(ctx context.Context, hash []byte) (store.Invite, error) {
	return db.oneInvite(ctx, `hash = $1`, hash)
}

// Invite returns the invite with this id.
func (db *DB) Invite(ctx context.Context, id int64) (store.Invite, error) {
	return db.oneInvite(ctx, `id = $1`, id)
}

// Invites returns every invite, oldest first.
func (db *DB) Invites(ctx context.Context) ([]store.Invite, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+inviteColumns+` FROM invites ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: invites: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Invite, error) { return scanInvite(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: invites: %w", err)
	}
	return out, nil
}

// RevokeInvite revokes an invite, with its audit event, in one transaction.
func (db *DB) RevokeInvite(ctx context.Context, id int64, at time.Time, ev *roster.Event) (bool, error) {
	var changed bool
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE invites SET revoked = $1 WHERE id = $2 AND revoked IS NULL`, ms(at), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			err := tx.QueryRow(ctx, `SELECT 1 FROM invites WHERE id = $1`, id).Scan(&one)
			if errors.Is(err, pgx.ErrNoRows) {
				return notFound{"invite"}
			}
			return err
		}
		changed = true
		return auditTx(ctx, tx, ev, ms(time.Now()))
	})
	if err != nil {
		return false, fmt.Errorf("postgres: revoke invite %d: %w", id, err)
	}
	return changed, nil
}

// useInvites is the statement that adds one to the uses of each invite
// named in $1, once per time it is named.
const useInvites = `UPDATE invites SET uses = uses + u.n
	FROM (SELECT id, count(*) AS n FROM unnest($1::bigint[]) AS id GROUP BY id) AS u WHERE invites.id = u.id`
