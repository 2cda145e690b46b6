package postgres

import (
	"fmt"
	"testing"
	"time"

	"rostergate/internal/pgtest"
	"rostergate/roster"
	"rostergate/store"
)

// BenchmarkCommit commits batches of 2,048 decisions, each an item written
// and an audit row, with the batch's outbox row (and, with events, a bot
// event per decision), and reports decisions per second. Every item is
// new; with new=true the changes say so (store.Change.New), as the
// engine's do, and the items go in by COPY instead of the upsert.
func BenchmarkCommit(b *testing.B) {
	for _, tc := range []struct{ withEvents, isNew bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		withEvents := tc.withEvents
		b.Run(fmt.Sprintf("events=%t/new=%t", withEvents, tc.isNew), func(b *testing.B) {
			db, err := Open(b.Context(), pgtest.Start(b).NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			const size = 2048
			n := 0
			start := time.Now()
			for b.Loop() {
				batch := store.Batch{Send: "<presence type='subscribed'/>"}
				for i := range size {
					contact := fmt.Sprintf("u%07d@example.org", n)
					n++
					batch.Changes = append(batch.Changes, store.Change{
						Item:  roster.Item{Entity: fmt.Sprintf("e%d", i%16), Contact: contact, Sub: roster.SubFrom},
						New:   tc.isNew,
						Audit: &roster.Event{Entity: "e", Contact: contact, Kind: "subscribe", Action: "accept", Rule: "rule 1", From: "none", To: "from", Actor: contact, Interface: "stream"},
					})
					if withEvents {
						batch.BotEvents = append(batch.BotEvents, store.BotEvent{Entity: fmt.Sprintf("e%d", i%16), Type: "subscription", Data: `{"jid":"` + contact + `","state":"from"}`})
					}
				}
				if _, err := db.Commit(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "decisions/s")
		})
	}
}
