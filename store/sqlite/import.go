package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// Import loads exported records in one transaction, as they are.
func (db *DB) Import(ctx context.Context, r store.ImportRecords) (err error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, it := range r.Items {
		var since sql.NullInt64
		if it.PendingIn && !it.PendingSince.IsZero() {
			since = sql.NullInt64{Int64: millis(it.PendingSince), Valid: true}
		}
		sub := it.Sub
		if sub == "" {
			sub = roster.SubNone
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO roster (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, it.Entity, it.Contact, sub, boolInt(it.PendingOut), boolInt(it.PendingIn), boolInt(it.Approved), since, millis(it.Updated)); err != nil {
			return fmt.Errorf("sqlite: import: item (%q, %q): %w", it.Entity, it.Contact, err)
		}
	}
	for _, q := range r.Requests {
		if _, err := tx.ExecContext(ctx, `INSERT INTO requests (id, entity, contact, rule, subscribe_back, created) VALUES (?, ?, ?, ?, ?, ?)`,
			q.ID, q.Entity, q.Contact, q.Rule, boolInt(q.SubscribeBack), millis(q.Created)); err != nil {
			return fmt.Errorf("sqlite: import: request %d: %w", q.ID, err)
		}
	}
	for _, l := range r.Lists {
		if _, err := tx.ExecContext(ctx, `INSERT INTO lists (list, pattern, added_by, created) VALUES (?, ?, 'import', ?)`,
			l.List, l.Pattern, millis(time.Now())); err != nil {
			return fmt.Errorf("sqlite: import: %s list %q: %w", l.List, l.Pattern, err)
		}
	}
	for _, e := range r.Events {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.ID, millis(e.At), e.Entity, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail); err != nil {
			return fmt.Errorf("sqlite: import: audit event %d: %w", e.ID, err)
		}
	}
	for _, t := range r.Tokens {
		if len(t.Hash) != 32 {
			return fmt.Errorf("sqlite: import: token %d: hash of %d bytes, want 32", t.ID, len(t.Hash))
		}
		ents := t.Entities
		if ents == nil {
			ents = []string{}
		}
		b, err := json.Marshal(ents)
		if err != nil {
			return fmt.Errorf("sqlite: import: token %d: %w", t.ID, err)
		}
		var used, revoked sql.NullInt64
		if !t.LastUsed.IsZero() {
			used = sql.NullInt64{Int64: millis(t.LastUsed), Valid: true}
		}
		if !t.Revoked.IsZero() {
			revoked = sql.NullInt64{Int64: millis(t.Revoked), Valid: true}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (id, hash, entities, admin, created, last_used, revoked) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Hash, string(b), boolInt(t.Admin), millis(t.Created), used, revoked); err != nil {
			return fmt.Errorf("sqlite: import: token %d: %w", t.ID, err)
		}
	}
	for _, inv := range r.Invites {
		if err := checkInvite(inv); err != nil {
			return fmt.Errorf("sqlite: import: invite %d: %w", inv.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO invites (id, hash, entity, creator, created, expires, max_uses, uses, subscribe_back, revoked)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, inv.ID, inv.Hash, inv.Entity, inv.Creator, millis(inv.Created), nullMillis(inv.Expires),
			inv.MaxUses, inv.Uses, boolInt(inv.SubscribeBack), nullMillis(inv.Revoked)); err != nil {
			return fmt.Errorf("sqlite: import: invite %d: %w", inv.ID, err)
		}
	}
	ps := make([]store.PlacementChange, len(r.Placements))
	for i, p := range r.Placements {
		ps[i] = store.PlacementChange{Placement: p}
	}
	if err := writePlacements(ctx, tx, ps, time.Now()); err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: import: %w", err)
	}
	return nil
}
