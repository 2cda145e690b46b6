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
// and an audit row, with the batch's outbox row (and, in the second, a bot
// event per decision), and reports decisions per second.
func BenchmarkCommit(b *testing.B) {
	for _, withEvents := range []bool{false, true} {
		b.Run(fmt.Sprintf("events=%t", withEvents), func(b *testing.B) {
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
