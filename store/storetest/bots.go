package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
)

// testBotEvents: events are committed with the batch, in order, with
// increasing ids, read per entity after an id, and trimmed by age and by
// count with the trim reported.
func testBotEvents(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	old := t0.Add(-time.Hour)
	b := store.Batch{
		Changes: []store.Change{{Item: roster.Item{Entity: "bot", Contact: "a@x", Sub: roster.SubFrom}}},
		BotEvents: []store.BotEvent{
			{Entity: "bot", At: old, Type: "subscription", Data: `{"jid":"a@x"}`},
			{Entity: "other", At: t0, Type: "message", Data: `{"body":"hi"}`},
			{Entity: "bot", At: t0, Type: "message", Data: `{"body":"hello"}`},
		},
	}
	if _, err := s.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !(b.BotEvents[0].ID > 0 && b.BotEvents[1].ID > b.BotEvents[0].ID && b.BotEvents[2].ID > b.BotEvents[1].ID) {
		t.Fatalf("ids not set in order: %+v", b.BotEvents)
	}
	// Events alone make a batch.
	b2 := store.Batch{BotEvents: []store.BotEvent{{Entity: "bot", At: t0, Type: "presence", Data: `{}`}}}
	if _, err := s.Commit(ctx, b2); err != nil {
		t.Fatal(err)
	}
	evs, trimmed, err := s.BotEvents(ctx, "bot", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if trimmed != 0 || len(evs) != 3 || evs[0].Type != "subscription" || evs[1].Data != `{"body":"hello"}` || evs[2].ID != b2.BotEvents[0].ID {
		t.Fatalf("BotEvents = %+v, trimmed %d", evs, trimmed)
	}
	if !evs[0].At.Equal(old) || evs[0].Entity != "bot" {
		t.Errorf("event 0 = %+v, want at %v", evs[0], old)
	}
	if evs, _, _ := s.BotEvents(ctx, "bot", evs[0].ID, 1); len(evs) != 1 || evs[0].ID != b.BotEvents[2].ID {
		t.Errorf("after the first, limit 1: %+v", evs)
	}
	if last, err := s.LastBotEvent(ctx, "bot"); err != nil || last != b2.BotEvents[0].ID {
		t.Errorf("LastBotEvent = %d, %v", last, err)
	}
	if last, err := s.LastBotEvent(ctx, "nobody"); err != nil || last != 0 {
		t.Errorf("LastBotEvent(nobody) = %d, %v", last, err)
	}
	// Data that is not JSON fails the whole batch.
	bad := store.Batch{
		Changes:   []store.Change{{Item: roster.Item{Entity: "bot", Contact: "b@x", Sub: roster.SubTo}}},
		BotEvents: []store.BotEvent{{Entity: "bot", Type: "message", Data: `{`}},
	}
	if _, err := s.Commit(ctx, bad); err == nil {
		t.Fatal("Commit with an event whose data is not JSON: no error")
	}
	wantNoItem(t, s, "bot", "b@x")

	// By age: the old event goes, and the trim is reported.
	n, err := s.TrimBotEvents(ctx, t0.Add(-time.Minute), 0)
	if err != nil || n != 1 {
		t.Fatalf("TrimBotEvents by age = %d, %v; want 1", n, err)
	}
	evs, trimmed, _ = s.BotEvents(ctx, "bot", 0, 10)
	if len(evs) != 2 || trimmed != b.BotEvents[0].ID {
		t.Fatalf("after the trim by age: %+v, trimmed %d (want %d)", evs, trimmed, b.BotEvents[0].ID)
	}
	// By count: one kept per entity.
	if n, err := s.TrimBotEvents(ctx, old.Add(-time.Hour), 1); err != nil || n != 1 {
		t.Fatalf("TrimBotEvents by count = %d, %v; want 1", n, err)
	}
	evs, trimmed, _ = s.BotEvents(ctx, "bot", 0, 10)
	if len(evs) != 1 || evs[0].ID != b2.BotEvents[0].ID || trimmed != b.BotEvents[2].ID {
		t.Fatalf("after the trim by count: %+v, trimmed %d", evs, trimmed)
	}
	if evs, trimmed, _ := s.BotEvents(ctx, "other", 0, 10); len(evs) != 1 || trimmed != 0 {
		t.Fatalf("other entity: %+v, trimmed %d", evs, trimmed)
	}
	// A later, smaller trim does not lower the mark.
	if _, err := s.TrimBotEvents(ctx, old.Add(-time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if _, trimmed, _ := s.BotEvents(ctx, "bot", 0, 10); trimmed != b.BotEvents[2].ID {
		t.Errorf("trim mark moved to %d", trimmed)
	}
}

// testTokens: tokens are found by hash only, listed, revoked, and their use
// marks the entity.
func testTokens(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	h1, h2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	tk, err := s.CreateToken(ctx, h1[:], []string{"helpdesk", ""})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(ctx, h1[:], []string{"x"}); err == nil {
		t.Error("a second token with the same hash: no error")
	}
	if _, err := s.CreateToken(ctx, []byte("short"), nil); err == nil {
		t.Error("a hash of 5 bytes: no error")
	}
	got, err := s.TokenByHash(ctx, h1[:])
	if err != nil || got.ID != tk.ID || !slices.Equal(got.Entities, []string{"helpdesk", ""}) || !got.LastUsed.IsZero() || !got.Revoked.IsZero() {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	if _, err := s.TokenByHash(ctx, h2[:]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TokenByHash(unknown) = %v, want ErrNotFound", err)
	}
	if ents, _ := s.BotEntities(ctx); len(ents) != 0 {
		t.Errorf("BotEntities before use = %q", ents)
	}
	if err := s.TokenUsed(ctx, tk.ID, "helpdesk", t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TokenByHash(ctx, h1[:]); !got.LastUsed.Equal(t0) {
		t.Errorf("LastUsed = %v, want %v", got.LastUsed, t0)
	}
	if ents, _ := s.BotEntities(ctx); !slices.Equal(ents, []string{"helpdesk"}) {
		t.Errorf("BotEntities = %q", ents)
	}
	if err := s.RevokeToken(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, tk.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v", err)
	}
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 1 || ts[0].Revoked.IsZero() {
		t.Fatalf("Tokens = %+v, %v", ts, err)
	}
}

// testBotState: cursors and the presence bots set are kept.
func testBotState(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	if id, err := s.Cursor(ctx, "webhook:bot"); err != nil || id != 0 {
		t.Fatalf("Cursor before any = %d, %v", id, err)
	}
	for _, id := range []int64{5, 9} {
		if err := s.SetCursor(ctx, "webhook:bot", id); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := s.Cursor(ctx, "webhook:bot"); err != nil || id != 9 {
		t.Errorf("Cursor = %d, %v; want 9", id, err)
	}
	if err := s.SetPresence(ctx, "bot", store.Presence{Show: "away", Status: "lunch"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPresence(ctx, "bot", store.Presence{Show: "dnd", Status: "busy"}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Presences(ctx)
	if err != nil || len(ps) != 1 || ps["bot"] != (store.Presence{Show: "dnd", Status: "busy"}) {
		t.Errorf("Presences = %+v, %v", ps, err)
	}
}
