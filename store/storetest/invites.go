package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"rostergate/roster"
	"rostergate/store"
	"strconv"
	"testing"
	"time"
)

// testInvites: invites are stored by hash with their audit events, revoked
// once, and their uses counted by the commits that use them, all or
// nothing.
func testInvites(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	h1, h2, h3 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two")), sha256.Sum256([]byte("three"))
	ev := &roster.Event{Entity: "gated", Kind: "invite", Action: "create", Actor: "root@localhost", Interface: roster.ViaChat}
	want := store.Invite{Hash: h1[:], Entity: "gated", Creator: "root@localhost", Created: t0, Expires: t0.Add(72 * time.Hour), MaxUses: 2, SubscribeBack: true}
	inv, err := s.CreateInvite(ctx, want, ev)
	if err != nil {
		t.Fatal(err)
	}
	if inv.ID == 0 || ev.ID == 0 {
		t.Errorf("ids not set: invite %d, event %d", inv.ID, ev.ID)
	}
	got, err := s.InviteByHash(ctx, h1[:])
	want.ID = inv.ID
	if err != nil || got.ID != want.ID || got.Entity != "gated" || got.Creator != want.Creator || !got.Created.Equal(t0) ||
		!got.Expires.Equal(want.Expires) || got.MaxUses != 2 || got.Uses != 0 || !got.SubscribeBack || !got.Revoked.IsZero() {
		t.Fatalf("InviteByHash = %+v, %v; want %+v", got, err, want)
	}
	if byID, err := s.Invite(ctx, inv.ID); err != nil || byID.Entity != "gated" {
		t.Errorf("Invite(%d) = %+v, %v", inv.ID, byID, err)
	}
	evs := events(t, s)
	if len(evs) != 1 || evs[0].Kind != "invite" || evs[0].Action != "create" || evs[0].ID != ev.ID || evs[0].Rule != "invite "+strconv.FormatInt(inv.ID, 10) {
		t.Errorf("audit after create = %+v", evs)
	}
	if _, err := s.CreateInvite(ctx, store.Invite{Hash: h1[:], Entity: "x", MaxUses: 1}, nil); err == nil {
		t.Error("a second invite with the same hash: no error")
	}
	if _, err := s.CreateInvite(ctx, store.Invite{Hash: []byte("short"), Entity: "x", MaxUses: 1}, nil); err == nil {
		t.Error("a hash of 5 bytes: no error")
	}
	if _, err := s.CreateInvite(ctx, store.Invite{Hash: h3[:], Entity: "x", MaxUses: 0}, nil); err == nil {
		t.Error("max uses 0: no error")
	}
	if len(events(t, s)) != 1 {
		t.Error("a refused invite left an audit event")
	}
	if _, err := s.InviteByHash(ctx, h2[:]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("InviteByHash(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Invite(ctx, inv.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Invite(unknown) = %v, want ErrNotFound", err)
	}

	// Uses are counted with the batch that stores the decisions, once per
	// id named.
	item := roster.Item{Entity: "gated", Contact: "alice@example.com", Sub: roster.SubFrom, Updated: t0}
	if _, err := s.Commit(ctx, store.Batch{Changes: []store.Change{{Item: item}}, InviteUses: []int64{inv.ID, inv.ID}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Invite(ctx, inv.ID); got.Uses != 2 || got.Unusable(t0, 0) != "used up" {
		t.Errorf("after two uses: %+v (%q)", got, got.Unusable(t0, 0))
	}
	// A batch that fails counts nothing.
	bad := store.Batch{Changes: []store.Change{{Item: roster.Item{Entity: "gated", Contact: "bob@example.com", Sub: "bogus", Updated: t0}}}, InviteUses: []int64{inv.ID}}
	if _, err := s.Commit(ctx, bad); err == nil {
		t.Fatal("a batch with an item in state \"bogus\" was committed")
	}
	if got, _ := s.Invite(ctx, inv.ID); got.Uses != 2 {
		t.Errorf("a failed batch counted a use: %d", got.Uses)
	}
	// A batch of uses alone is no empty batch.
	other, err := s.CreateInvite(ctx, store.Invite{Hash: h2[:], Entity: "", Creator: "cli:root", MaxUses: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !other.Expires.IsZero() || other.Unusable(t0.Add(1000*time.Hour), 0) != "" || other.Unusable(t0, 1) != "used up" {
		t.Errorf("an invite without end: %+v", other)
	}
	if _, err := s.Commit(ctx, store.Batch{InviteUses: []int64{other.ID}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Invite(ctx, other.ID); got.Uses != 1 {
		t.Errorf("uses after a batch of uses alone: %d", got.Uses)
	}

	// Revoked once, audited once.
	rev := &roster.Event{Entity: "gated", Kind: "invite", Action: "revoke", Actor: "cli:root", Interface: roster.ViaCLI}
	if ok, err := s.RevokeInvite(ctx, inv.ID, t0.Add(time.Hour), rev); err != nil || !ok || rev.ID == 0 {
		t.Fatalf("RevokeInvite = %v, %v (event %d)", ok, err, rev.ID)
	}
	if ok, err := s.RevokeInvite(ctx, inv.ID, t0.Add(2*time.Hour), &roster.Event{Kind: "invite", Action: "revoke"}); err != nil || ok {
		t.Errorf("RevokeInvite again = %v, %v; want false, nil", ok, err)
	}
	if got, _ := s.Invite(ctx, inv.ID); !got.Revoked.Equal(t0.Add(time.Hour)) || got.Unusable(t0, 0) != "revoked" {
		t.Errorf("revoked: %+v", got)
	}
	if n := len(events(t, s)); n != 2 {
		t.Errorf("audit events after create and two revokes: %d, want 2", n)
	}
	if _, err := s.RevokeInvite(ctx, other.ID+100, t0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeInvite(unknown) = %v", err)
	}
	all, err := s.Invites(ctx)
	if err != nil || len(all) != 2 || all[0].ID != inv.ID || all[1].ID != other.ID {
		t.Fatalf("Invites = %+v, %v", all, err)
	}
	if got := (store.Invite{MaxUses: 1, Expires: t0}).Unusable(t0, 0); got != "expired" {
		t.Errorf("an invite at its end: %q, want expired", got)
	}
}
