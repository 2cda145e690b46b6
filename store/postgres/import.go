package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"rostergate/roster"
	"rostergate/store"
)

// Import loads exported records in one transaction, as they are, their ids
// given (OVERRIDING SYSTEM VALUE); the identities then go on from the
// highest id stored.
func (db *DB) Import(ctx context.Context, r store.ImportRecords) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if err := db.checkTx(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, lockWrites, writeLockKey); err != nil {
			return err
		}
		for _, it := range r.Items {
			var since any
			if it.PendingIn && !it.PendingSince.IsZero() {
				since = ms(it.PendingSince)
			}
			sub := it.Sub
			if sub == "" {
				sub = roster.SubNone
			}
			if _, err := tx.Exec(ctx, `INSERT INTO items (entity, contact, sub, pending_out, pending_in, approved, pending_since, updated)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, it.Entity, it.Contact, sub, it.PendingOut, it.PendingIn, it.Approved, since, ms(it.Updated)); err != nil {
				return fmt.Errorf("item (%q, %q): %w", it.Entity, it.Contact, err)
			}
		}
		for _, q := range r.Requests {
			if _, err := tx.Exec(ctx, `INSERT INTO requests (id, entity, contact, rule, subscribe_back, created) OVERRIDING SYSTEM VALUE
				VALUES ($1, $2, $3, $4, $5, $6)`, q.ID, q.Entity, q.Contact, q.Rule, q.SubscribeBack, ms(q.Created)); err != nil {
				return fmt.Errorf("request %d: %w", q.ID, err)
			}
		}
		for _, l := range r.Lists {
			if _, err := tx.Exec(ctx, `INSERT INTO lists (list, pattern, added_by, created) VALUES ($1, $2, 'import', now())`, l.List, l.Pattern); err != nil {
				return fmt.Errorf("%s list %q: %w", l.List, l.Pattern, err)
			}
		}
		for _, e := range r.Events {
			if _, err := tx.Exec(ctx, `INSERT INTO audit (id, at, entity, contact, kind, action, rule, from_state, to_state, actor, interface, detail) OVERRIDING SYSTEM VALUE
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, e.ID, ms(e.At), e.Entity, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail); err != nil {
				return fmt.Errorf("audit event %d: %w", e.ID, err)
			}
		}
		for _, t := range r.Tokens {
			ents := t.Entities
			if ents == nil {
				ents = []string{}
			}
			var used, revoked any
			if !t.LastUsed.IsZero() {
				used = ms(t.LastUsed)
			}
			if !t.Revoked.IsZero() {
				revoked = ms(t.Revoked)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tokens (id, hash, entities, admin, created, last_used, revoked) OVERRIDING SYSTEM VALUE
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, t.ID, t.Hash, ents, t.Admin, ms(t.Created), used, revoked); err != nil {
				return fmt.Errorf("token %d: %w", t.ID, err)
			}
		}
		for _, inv := range r.Invites {
			if _, err := tx.Exec(ctx, `INSERT INTO invites (id, hash, entity, creator, created, expires, max_uses, uses, subscribe_back, revoked)
				OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, inv.ID, inv.Hash, inv.Entity, inv.Creator, ms(inv.Created),
				nullTime(inv.Expires), inv.MaxUses, inv.Uses, inv.SubscribeBack, nullTime(inv.Revoked)); err != nil {
				return fmt.Errorf("invite %d: %w", inv.ID, err)
			}
		}
		for _, p := range r.Placements {
			if _, err := tx.Exec(ctx, upsertPlacement, p.Entity, p.Contact, p.Method, p.State, p.Source, p.Detail, p.Attempts,
				nullTime(p.Sent), ms(p.Created), ms(p.Updated)); err != nil {
				return fmt.Errorf("placement (%q, %q): %w", p.Entity, p.Contact, err)
			}
		}
		// The identities go on after what was imported.
		for _, table := range []string{"requests", "audit", "tokens", "invites"} {
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('`+table+`', 'id'), GREATEST((SELECT max(id) FROM `+table+`), nextval(pg_get_serial_sequence('`+table+`', 'id')) - 1, 1))`); err != nil {
				return fmt.Errorf("%s ids: %w", table, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: import: %w", err)
	}
	return nil
}
