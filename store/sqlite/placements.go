package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"rostergate/store"
)

// Placements returns every placement, by entity then contact.
func (db *DB) Placements(ctx context.Context) ([]store.Placement, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT entity, contact, method, state, source, detail, attempts, sent, created, updated
		FROM placements ORDER BY entity, contact`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: placements: %w", err)
	}
	defer rows.Close()
	var out []store.Placement
	for rows.Next() {
		var p store.Placement
		var sent sql.NullInt64
		var created, updated int64
		if err := rows.Scan(&p.Entity, &p.Contact, &p.Method, &p.State, &p.Source, &p.Detail, &p.Attempts, &sent, &created, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: placements: %w", err)
		}
		if sent.Valid {
			p.Sent = fromMillis(sent.Int64)
		}
		p.Created, p.Updated = fromMillis(created), fromMillis(updated)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: placements: %w", err)
	}
	return out, nil
}

// writePlacements writes a batch's placements in tx, in order; zero
// Created and Updated become now.
func writePlacements(ctx context.Context, tx *sql.Tx, ps []store.PlacementChange, now time.Time) error {
	for i, p := range ps {
		if p.Delete {
			if _, err := tx.ExecContext(ctx, `DELETE FROM placements WHERE entity = ? AND contact = ?`, p.Entity, p.Contact); err != nil {
				return fmt.Errorf("sqlite: apply: placement %d: %w", i, err)
			}
			continue
		}
		created, updated := p.Created, p.Updated
		if created.IsZero() {
			created = now
		}
		if updated.IsZero() {
			updated = now
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO placements (entity, contact, method, state, source, detail, attempts, sent, created, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (entity, contact) DO UPDATE SET method = excluded.method, state = excluded.state, source = excluded.source,
				detail = excluded.detail, attempts = excluded.attempts, sent = excluded.sent, updated = excluded.updated`,
			p.Entity, p.Contact, p.Method, p.State, p.Source, p.Detail, p.Attempts, nullMillis(p.Sent), millis(created), millis(updated)); err != nil {
			return fmt.Errorf("sqlite: apply: placement %d (%q, %q): %w", i, p.Entity, p.Contact, err)
		}
	}
	return nil
}
