package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"rostergate/store"
)

// Placements returns every placement, by entity then contact.
func (db *DB) Placements(ctx context.Context) ([]store.Placement, error) {
	rows, err := db.pool.Query(ctx, `SELECT entity, contact, method, state, source, detail, attempts, sent, created, updated
		FROM placements ORDER BY entity, contact`)
	if err != nil {
		return nil, fmt.Errorf("postgres: placements: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Placement, error) {
		var p store.Placement
		var sent pgtype.Timestamptz
		if err := r.Scan(&p.Entity, &p.Contact, &p.Method, &p.State, &p.Source, &p.Detail, &p.Attempts, &sent, &p.Created, &p.Updated); err != nil {
			return p, err
		}
		if sent.Valid {
			p.Sent = sent.Time.UTC()
		}
		p.Created, p.Updated = p.Created.UTC(), p.Updated.UTC()
		return p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: placements: %w", err)
	}
	return out, nil
}

const (
	deletePlacement = `DELETE FROM placements WHERE entity = $1 AND contact = $2`
	upsertPlacement = `INSERT INTO placements (entity, contact, method, state, source, detail, attempts, sent, created, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (entity, contact) DO UPDATE SET method = excluded.method, state = excluded.state, source = excluded.source,
			detail = excluded.detail, attempts = excluded.attempts, sent = excluded.sent, updated = excluded.updated`
)

// queuePlacements queues a batch's placements, in order; zero Created and
// Updated become now.
func queuePlacements(batch *pgx.Batch, ps []store.PlacementChange, now time.Time) {
	for _, p := range ps {
		if p.Delete {
			batch.Queue(deletePlacement, p.Entity, p.Contact)
			continue
		}
		created, updated := p.Created, p.Updated
		if created.IsZero() {
			created = now
		}
		if updated.IsZero() {
			updated = now
		}
		batch.Queue(upsertPlacement, p.Entity, p.Contact, p.Method, p.State, p.Source, p.Detail, p.Attempts,
			nullTime(p.Sent), ms(created), ms(updated))
	}
}
