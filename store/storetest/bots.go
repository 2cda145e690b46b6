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

// testBotEvents: events are committed with the batch, their ids increase
// per entity in commit order, they are read per entity after an id, and
// trimmed by age and by count with the trim reported.
func testBotEvents(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	old := t0.Add(-time.Hour)
	b1 := store.Batch{
		Changes:   []store.Change{{Item: roster.Item{Entity: "bot", Contact: "a@x", Sub: roster.SubFrom}}},
		BotEvents: []store.BotEvent{{Entity: "bot", At: old, Type: "subscription", Data: `{"jid":"a@x"}`}},
	}
	b2 := store.Batch{BotEvents: []store.BotEvent{ // events alone make a batch
		{Entity: "bot", At: t0, Type: "message", Data: `{"body":"hello"}`},
		{Entity: "other", At: t0, Type: "message", Data: `{"body":"hi"}`},
		{Entity: "bot", At: t0, Type: "presence", Data: `{"from":"a@x/r"}`},
	}}
	b3 := store.Batch{BotEvents: []store.BotEvent{{Entity: "bot", At: t0, Type: "presence", Data: `{}`}}}
	for _, b := range []store.Batch{b1, b2, b3} {
		if _, err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	ids := []int64{b1.BotEvents[0].ID, b2.BotEvents[0].ID, b2.BotEvents[2].ID, b3.BotEvents[0].ID}
	if ids[0] <= 0 || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 4 {
		t.Fatalf("bot's ids not increasing: %d", ids)
	}
	if o := b2.BotEvents[1].ID; o <= 0 || slices.Contains(ids, o) {
		t.Fatalf("other's id %d: not unique", o)
	}
	evs, trimmed, err := s.BotEvents(ctx, "bot", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range evs {
		got = append(got, e.ID)
	}
	if trimmed != 0 || !slices.Equal(got, ids) || evs[0].Type != "subscription" || evs[1].Data != `{"body":"hello"}` || evs[2].Type != "presence" {
		t.Fatalf("BotEvents = %+v, trimmed %d", evs, trimmed)
	}
	if !evs[0].At.Equal(old) || evs[0].Entity != "bot" || !evs[1].At.Equal(t0) {
		t.Errorf("events %+v, want the first at %v, the second at %v", evs[:2], old, t0)
	}
	for after, want := range map[int64][]int64{ids[0]: ids[1:2], ids[1]: ids[2:3], ids[3]: nil} {
		evs, _, err := s.BotEvents(ctx, "bot", after, 1)
		got = got[:0]
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("after %d, limit 1: %d, %v; want %d", after, got, err, want)
		}
	}
	if last, err := s.LastBotEvent(ctx, "bot"); err != nil || last != ids[3] {
		t.Errorf("LastBotEvent = %d, %v; want %d", last, err, ids[3])
	}
	if last, err := s.LastBotEvent(ctx, "nobody"); err != nil || last != 0 {
		t.Errorf("LastBotEvent(nobody) = %d, %v", last, err)
	}
	// Data that is not one JSON object, or a type that is not a word, fails
	// the whole batch.
	for _, ev := range []store.BotEvent{
		{Entity: "bot", Type: "message", Data: `{`},
		{Entity: "bot", Type: "message", Data: `{}],["presence",0,{}`},
		{Entity: "bot", Type: "message", Data: `[1]`},
		{Entity: "bot", Type: "message", Data: `{"a":}`},
		{Entity: "bot", Type: "message", Data: `{"a":1,}`},
		{Entity: "bot", Type: `a"b`, Data: `{}`},
	} {
		bad := store.Batch{
			Changes:   []store.Change{{Item: roster.Item{Entity: "bot", Contact: "b@x", Sub: roster.SubTo}}},
			BotEvents: []store.BotEvent{ev},
		}
		if _, err := s.Commit(ctx, bad); err == nil {
			t.Fatalf("Commit with %+v: no error", ev)
		}
		wantNoItem(t, s, "bot", "b@x")
	}

	// By age: the old event goes, and the trim is reported.
	n, err := s.TrimBotEvents(ctx, t0.Add(-time.Minute), 0)
	if err != nil || n != 1 {
		t.Fatalf("TrimBotEvents by age = %d, %v; want 1", n, err)
	}
	evs, trimmed, _ = s.BotEvents(ctx, "bot", 0, 10)
	if len(evs) != 3 || evs[0].ID != ids[1] || trimmed != ids[0] {
		t.Fatalf("after the trim by age: %+v, trimmed %d (want %d)", evs, trimmed, ids[0])
	}
	// By count: the newest kept; a commit's events may go together.
	if n, err := s.TrimBotEvents(ctx, old.Add(-time.Hour), 1); err != nil || n != 2 {
		t.Fatalf("TrimBotEvents by count = %d, %v; want 2", n, err)
	}
	evs, trimmed, _ = s.BotEvents(ctx, "bot", 0, 10)
	if len(evs) != 1 || evs[0].ID != ids[3] || trimmed != ids[2] {
		t.Fatalf("after the trim by count: %+v, trimmed %d (want %d)", evs, trimmed, ids[2])
	}
	if evs, trimmed, _ := s.BotEvents(ctx, "other", 0, 10); len(evs) != 1 || trimmed != 0 {
		t.Fatalf("other entity: %+v, trimmed %d", evs, trimmed)
	}
	// A later, smaller trim does not lower the mark.
	if _, err := s.TrimBotEvents(ctx, old.Add(-time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if _, trimmed, _ := s.BotEvents(ctx, "bot", 0, 10); trimmed != ids[2] {
		t.Errorf("trim mark moved to %d", trimmed)
	}
	// Ids keep increasing after everything was deleted.
	if _, err := s.TrimBotEvents(ctx, t0.Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	b4 := store.Batch{BotEvents: []store.BotEvent{{Entity: "bot", At: t0, Type: "message", Data: `{}`}}}
	if _, err := s.Commit(ctx, b4); err != nil {
		t.Fatal(err)
	}
	if b4.BotEvents[0].ID <= ids[3] {
		t.Errorf("an id after a full trim: %d, not above %d", b4.BotEvents[0].ID, ids[3])
	}
	// With every event of an entity deleted, its last id is the newest
	// deleted.
	if _, err := s.TrimBotEvents(ctx, t0.Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastBotEvent(ctx, "bot"); err != nil || last != b4.BotEvents[0].ID {
		t.Errorf("LastBotEvent after a full trim = %d, %v; want %d", last, err, b4.BotEvents[0].ID)
	}
}

// testTokens: tokens are found by hash only, listed, revoked, and their use
// marks the entity.
func testTokens(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	h1, h2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	tk, err := s.CreateToken(ctx, h1[:], []string{"helpdesk", ""}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateToken(ctx, h1[:], []string{"x"}, false); err == nil {
		t.Error("a second token with the same hash: no error")
	}
	if _, err := s.CreateToken(ctx, []byte("short"), nil, false); err == nil {
		t.Error("a hash of 5 bytes: no error")
	}
	got, err := s.TokenByHash(ctx, h1[:])
	if err != nil || got.ID != tk.ID || !slices.Equal(got.Entities, []string{"helpdesk", ""}) || !got.LastUsed.IsZero() || !got.Revoked.IsZero() {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	h4 := sha256.Sum256([]byte("admin"))
	if at, err := s.CreateToken(ctx, h4[:], nil, true); err != nil || !at.Admin {
		t.Errorf("an admin token: %+v, %v", at, err)
	} else if got, err := s.TokenByHash(ctx, h4[:]); err != nil || !got.Admin || len(got.Entities) != 0 {
		t.Errorf("the admin token read back: %+v, %v", got, err)
	}
	if got, _ := s.TokenByHash(ctx, h1[:]); got.Admin {
		t.Error("an entity's token read back as an admin's")
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
	// A second token for the same entity keeps a bot behind it when the
	// first is revoked; revoking both leaves none.
	h3 := sha256.Sum256([]byte("three"))
	tk2, err := s.CreateToken(ctx, h3[:], []string{"helpdesk"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TokenUsed(ctx, tk2.ID, "helpdesk", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	if ents, _ := s.BotEntities(ctx); !slices.Equal(ents, []string{"helpdesk"}) {
		t.Errorf("BotEntities with one token left = %q", ents)
	}
	if err := s.RevokeToken(ctx, tk2.ID); err != nil {
		t.Fatal(err)
	}
	if ents, _ := s.BotEntities(ctx); len(ents) != 0 {
		t.Errorf("BotEntities with every token revoked = %q", ents)
	}
	if err := s.RevokeToken(ctx, tk.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeToken(unknown) = %v", err)
	}
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 3 || ts[0].Revoked.IsZero() {
		t.Fatalf("Tokens = %+v, %v", ts, err)
	}
}

// testBotState: cursors and the presence bots set are kept.
func testBotState(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	if id, ok, err := s.Cursor(ctx, "webhook:bot"); err != nil || id != 0 || ok {
		t.Fatalf("Cursor before any = %d, %v, %v", id, ok, err)
	}
	for _, id := range []int64{5, 9} {
		if err := s.SetCursor(ctx, "webhook:bot", id); err != nil {
			t.Fatal(err)
		}
	}
	if id, ok, err := s.Cursor(ctx, "webhook:bot"); err != nil || id != 9 || !ok {
		t.Errorf("Cursor = %d, %v, %v; want 9", id, ok, err)
	}
	if err := s.SetCursor(ctx, "webhook:new", 0); err != nil {
		t.Fatal(err)
	}
	if id, ok, err := s.Cursor(ctx, "webhook:new"); err != nil || id != 0 || !ok {
		t.Errorf("a cursor stored at 0 = %d, %v, %v", id, ok, err)
	}
	if err := s.DeleteCursor(ctx, "webhook:new"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Cursor(ctx, "webhook:new"); err != nil || ok {
		t.Errorf("a deleted cursor: %v, %v", ok, err)
	}
	for _, p := range []store.Presence{{Show: "away", Status: "lunch"}, {Show: "dnd", Status: "busy"}} {
		if err := s.SetPresence(ctx, "bot", &p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPresence(ctx, "gone", &store.Presence{Show: "xa"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPresence(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Presences(ctx)
	if err != nil || len(ps) != 1 || ps["bot"] != (store.Presence{Show: "dnd", Status: "busy"}) {
		t.Errorf("Presences = %+v, %v", ps, err)
	}
}
