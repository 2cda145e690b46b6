package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"rostergate/roster"
	"rostergate/store"
	"strconv"
	"time"
)

const inviteColumns = `id, hash, entity, creator, created, expires, max_uses, uses, subscribe_back, revoked`

func scanInvite(s scanner) (store.Invite, error) {
	var inv store.Invite
	var created int64
	var expires, revoked sql.NullInt64
	if err := s.Scan(&inv.ID, &inv.Hash, &inv.Entity, &inv.Creator, &created, &expires, &inv.MaxUses, &inv.Uses, &inv.SubscribeBack, &revoked); err != nil {
		return inv, err
	}
	inv.Created = fromMillis(created)
	if expires.Valid {
		inv.Expires = fromMillis(expires.Int64)
	}
	if revoked.Valid {
		inv.Revoked = fromMillis(revoked.Int64)
	}
	return inv, nil
}

// nullMillis is t in milliseconds, or NULL when t is zero.
func nullMillis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: millis(t), Valid: true}
}

// checkInvite rejects an invite the table would refuse, naming why.
func checkInvite(inv store.Invite) error {
	if len(inv.Hash) != 32 {
		return fmt.Errorf("hash of %d bytes, want 32", len(inv.Hash))
	}
	if inv.MaxUses < 1 {
		return fmt.Errorf("max uses %d, want at least 1", inv.MaxUses)
	}
	return nil
}

// CreateInvite stores an invite and its audit event in one transaction.
func (db *DB) CreateInvite(ctx context.Context, inv store.Invite, ev *roster.Event) (store.Invite, error) {
	if err := checkInvite(inv); err != nil {
		return store.Invite{}, fmt.Errorf("sqlite: create invite: %w", err)
	}
	now := time.Now()
	if inv.Created.IsZero() {
		inv.Created = now
	}
	inv.Created, inv.Uses = fromMillis(millis(inv.Created)), 0
	if !inv.Expires.IsZero() {
		inv.Expires = fromMillis(millis(inv.Expires))
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return store.Invite{}, fmt.Errorf("sqlite: create invite: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, `INSERT INTO invites (hash, entity, creator, created, expires, max_uses, subscribe_back, revoked)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		inv.Hash, inv.Entity, inv.Creator, millis(inv.Created), nullMillis(inv.Expires), inv.MaxUses, boolInt(inv.SubscribeBack), nullMillis(inv.Revoked))
	if err != nil {
		return store.Invite{}, fmt.Errorf("sqlite: create invite: %w", err)
	}
	if inv.ID, err = res.LastInsertId(); err != nil {
		return store.Invite{}, fmt.Errorf("sqlite: create invite: %w", err)
	}
	if ev != nil {
		ev.Rule = "invite " + strconv.FormatInt(inv.ID, 10)
		if err := insertAudit(ctx, tx, ev, now); err != nil {
			return store.Invite{}, fmt.Errorf("sqlite: create invite: audit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return store.Invite{}, fmt.Errorf("sqlite: create invite: %w", err)
	}
	return inv, nil
}

func (db *DB) oneInvite(ctx context.Context, where string, arg any) (store.Invite, error) {
	inv, err := scanInvite(db.r.QueryRowContext(ctx, `SELECT `+inviteColumns+` FROM invites WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return inv, notFound{"invite"}
	}
	if err != nil {
		return inv, fmt.Errorf("sqlite: invite: %w", err)
	}
	return inv, nil
}

// InviteByHash returns the invite with this hash.
func (db *DB) InviteByHash(ctx context.Context, hash []byte) (store.Invite, error) {
	return db.oneInvite(ctx, `hash = ?`, hash)
}

// Invite returns the invite with this id.
func (db *DB) Invite(ctx context.Context, id int64) (store.Invite, error) {
	return db.oneInvite(ctx, `id = ?`, id)
}

// Invites returns every invite, oldest first.
func (db *DB) Invites(ctx context.Context) ([]store.Invite, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+inviteColumns+` FROM invites ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: invites: %w", err)
	}
	defer rows.Close()
	var out []store.Invite
	for rows.Next() {
		inv, err := scanInvite(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: invites: %w", err)
		}
		out = append(out, inv)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: invites: %w", err)
	}
	return out, nil
}

// RevokeInvite revokes an invite, with its audit event, in one transaction.
func (db *DB) RevokeInvite(ctx context.Context, id int64, at time.Time, ev *roster.Event) (bool, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke invite: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	res, err := tx.ExecContext(ctx, `UPDATE invites SET revoked = ? WHERE id = ? AND revoked IS NULL`, millis(at), id)
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke invite: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: revoke invite: %w", err)
	}
	if n == 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM invites WHERE id = ?`, id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, notFound{"invite"}
		}
		if err != nil {
			return false, fmt.Errorf("sqlite: revoke invite: %w", err)
		}
		return false, nil
	}
	if ev != nil {
		if err := insertAudit(ctx, tx, ev, time.Now()); err != nil {
			return false, fmt.Errorf("sqlite: revoke invite: audit: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: revoke invite: %w", err)
	}
	return true, nil
}

// useInvites adds one to the uses of each invite named in ids, in tx.
func useInvites(ctx context.Context, tx *sql.Tx, ids []int64) error {
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE invites SET uses = uses + 1 WHERE id = ?`, id); err != nil {
			return fmt.Errorf("sqlite: apply: invite %d: %w", id, err)
		}
	}
	return nil
}
