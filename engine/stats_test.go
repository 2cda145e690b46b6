package engine

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"rostergate/engine/enginetest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

// Each decision is counted once, by its action and by the kind of what
// decided it; held requests decided by admins by the interface; limits by
// name; and each commit is told to OnCommit with its number of changes.
func TestStatsCountDecisions(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var mu sync.Mutex
	var commits []int
	e, err := New(ctx, Options{Domain: "bots.localhost", Store: db,
		Settings: Settings{Policy: reviewAll(t), Entities: []Entity{{Local: "helpdesk"}}, Limits: Limits{MaxPending: 2, Action: policy.Drop}},
		OnCommit: func(d time.Duration, changes int) {
			if d <= 0 {
				t.Errorf("OnCommit: duration %s", d)
			}
			mu.Lock()
			commits = append(commits, changes)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Attach(ctx, &enginetest.Wire{}); err != nil {
		t.Fatal(err)
	}
	admin := roster.Actor{JID: "admin@localhost", Via: roster.ViaChat}
	if _, err := e.EditList(ctx, "deny", true, "*@spam.example", admin); err != nil {
		t.Fatal(err)
	}
	if _, err := e.EditList(ctx, "allow", true, "friend.example", admin); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	commits = nil // the list edits are not the engine's commits of stanzas
	mu.Unlock()
	els := []*stanza.Element{
		subscribe("a@good.example"),   // accept, rule 1
		subscribe("b@spam.example"),   // reject, deny list
		subscribe("c@friend.example"), // accept, allow list
		subscribe("d@other.example"),  // review, default: held
		subscribe("e@other.example"),  // review, default: held
		subscribe("f@other.example"),  // over max_pending: drop
		{Name: "presence", Type: "subscribe", From: "g@x.example", To: "nobody@bots.localhost"}, // reject, unknown_entity
	}
	if err := e.Handle(ctx, els, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	reqs := held(t, db)
	if len(reqs) != 2 {
		t.Fatalf("held: %+v", reqs)
	}
	if o := e.DecideHeld(ctx, []int64{reqs[0].ID}, true, admin); o[0].Err != nil {
		t.Fatal(o[0].Err)
	}
	s := e.Stats()
	want := map[[2]string]uint64{
		{"accept", KindRule}: 1, {"reject", KindDenyList}: 1, {"accept", KindAllowList}: 1,
		{"review", KindDefault}: 2, {"drop", KindLimit}: 1, {"reject", KindUnknownEntity}: 1,
	}
	seen := map[[2]string]bool{}
	for _, d := range s.Decisions {
		k := [2]string{string(d.Action), d.Kind}
		if seen[k] {
			t.Errorf("%v reported twice", k)
		}
		seen[k] = true
		if d.N != want[k] {
			t.Errorf("decisions %v = %d, want %d", k, d.N, want[k])
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("decisions %v not reported", k)
		}
	}
	if !seen[[2]string{"accept", KindDefault}] || seen[[2]string{"accept", KindDenyList}] {
		t.Errorf("the zeros reported are not the combinations that can happen: %+v", s.Decisions)
	}
	if s.Held != 1 {
		t.Errorf("Held = %d, want 1", s.Held)
	}
	for _, h := range s.HeldDecisions {
		wantN := uint64(0)
		if h.Approve && h.Via == roster.ViaChat {
			wantN = 1
		}
		if h.N != wantN {
			t.Errorf("held decisions approve=%t via %s = %d, want %d", h.Approve, h.Via, h.N, wantN)
		}
	}
	if len(s.HeldDecisions) != 11 {
		t.Errorf("held decisions: %+v, want approve and reject by chat, adhoc, cli, web, api and reject by review_ttl", s.HeldDecisions)
	}
	wantHits := map[string]int{"contact_rate": 0, "domain_rate": 0, "max_pending": 1, "max_pending_per_domain": 0}
	if len(s.LimitHits) != len(wantHits) {
		t.Errorf("limit hits: %v, want %v", s.LimitHits, wantHits)
	}
	for l, n := range wantHits {
		if got, ok := s.LimitHits[l]; !ok || got != n {
			t.Errorf("limit hits %s = %d (%t), want %d", l, got, ok, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// One commit for the stanzas (a change for each request but the one
	// dropped), one for the approval.
	if len(commits) != 2 || commits[0] != 6 || commits[1] != 1 {
		t.Errorf("OnCommit saw %v, want [6 1]", commits)
	}
	out, err := db.Outbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 || s.OutboxDepth != len(out) {
		t.Errorf("Stats().OutboxDepth = %d, the outbox holds %d rows", s.OutboxDepth, len(out))
	}
}

// Every reason a decision can have has a kind; none names a JID.
func TestReasonKind(t *testing.T) {
	for reason, kind := range map[string]string{
		"rule 12": KindRule, "default": KindDefault, "unknown_entity": KindUnknownEntity,
		`deny list "*@spam.example"`: KindDenyList, `allow list "alice@example.org"`: KindAllowList,
		"limit contact_rate": KindLimit, reasonAdmin: KindAdmin, "pre-approved": KindPreApproved,
	} {
		if got := reasonKind(reason); got != kind {
			t.Errorf("reasonKind(%q) = %q, want %q", reason, got, kind)
		}
	}
}
