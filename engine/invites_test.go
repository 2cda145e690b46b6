package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"rostergate/engine/enginetest"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/xmpp/stanza"
)

// makeInvite stores an invite to helpdesk whose token is token.
func makeInvite(t *testing.T, db *sqlite.DB, token string, inv store.Invite) store.Invite {
	t.Helper()
	h := sha256.Sum256([]byte(token))
	inv.Hash = h[:]
	if inv.Entity == "" {
		inv.Entity = "helpdesk"
	}
	if inv.Creator == "" {
		inv.Creator = "root@localhost"
	}
	if inv.MaxUses == 0 {
		inv.MaxUses = 1
	}
	out, err := db.CreateInvite(context.Background(), inv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func preauth(from, token string) *stanza.Element {
	el := subscribe(from)
	el.Preauth = token
	return el
}

// answered returns the type of the last subscription answer to contact
// ("subscribed", "unsubscribed"), "" if none, and whether the entity asked
// for the contact's presence in return.
func answered(t *testing.T, w interface{ String() string }, contact string) (typ string, back bool) {
	t.Helper()
	for _, s := range strings.Split(w.String(), "<presence ") {
		if !strings.Contains(s, "to='"+contact+"'") {
			continue
		}
		switch {
		case strings.Contains(s, "type='subscribed'"):
			typ = "subscribed"
		case strings.Contains(s, "type='unsubscribed'"):
			typ = "unsubscribed"
		case strings.Contains(s, "type='subscribe'"):
			back = true
		}
	}
	return typ, back
}

// A subscribe carrying an invite's token (XEP-0379) is accepted whatever
// the policy says (here: hold everything), as many times as the invite
// allows, even within one batch; every other token, and an invite that is
// revoked, expired, for another entity or used up, falls through to the
// policy. The deny list wins over any invite.
func TestInvites(t *testing.T) {
	ctx := context.Background()
	e, db, w := newTestEngine(t, Settings{Entities: []Entity{{Local: "helpdesk"}, {Local: "sales"}}})
	two := makeInvite(t, db, "two-uses", store.Invite{MaxUses: 2, SubscribeBack: true})
	makeInvite(t, db, "revoked", store.Invite{})
	if _, err := db.RevokeInvite(ctx, two.ID+1, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	makeInvite(t, db, "expired", store.Invite{Expires: time.Now().Add(-time.Minute)})
	makeInvite(t, db, "for-sales", store.Invite{Entity: "sales"})
	makeInvite(t, db, "denied", store.Invite{})
	if _, err := e.EditList(ctx, "deny", true, "*@spam.example", roster.Actor{JID: "root@localhost", Via: roster.ViaCLI}); err != nil {
		t.Fatal(err)
	}
	els := []*stanza.Element{
		preauth("alice@x.example", "two-uses"),
		preauth("bob@x.example", "two-uses"),
		preauth("carol@x.example", "two-uses"), // the third use of two
		preauth("dave@x.example", "revoked"),
		preauth("erin@x.example", "expired"),
		preauth("frank@x.example", "for-sales"),
		preauth("grace@x.example", "no such token"),
		preauth("heidi@x.example", stanza.BadPreauth),
		preauth("mallory@spam.example", "denied"),
	}
	if err := e.Handle(ctx, els, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"alice@x.example", "bob@x.example"} {
		if typ, back := answered(t, w, c); typ != "subscribed" || !back {
			t.Errorf("%s with the invite: answered %q, subscribed back %v; want subscribed, and back", c, typ, back)
		}
		it, err := db.Get(ctx, "helpdesk", c)
		if err != nil || it.Sub != roster.SubFrom || !it.PendingOut {
			t.Errorf("%s's item: %+v, %v", c, it, err)
		}
	}
	if typ, _ := answered(t, w, "mallory@spam.example"); typ != "unsubscribed" {
		t.Errorf("a denied contact with a good invite: answered %q, want unsubscribed", typ)
	}
	var gotHeld []string
	for _, r := range held(t, db) {
		gotHeld = append(gotHeld, r.Contact)
	}
	want := "carol@x.example dave@x.example erin@x.example frank@x.example grace@x.example heidi@x.example"
	if strings.Join(gotHeld, " ") != want {
		t.Errorf("held %q, want %q", gotHeld, want)
	}
	if got, _ := db.Invite(ctx, two.ID); got.Uses != 2 {
		t.Errorf("the invite's uses: %d, want 2", got.Uses)
	}
	var audited int
	err := db.Events(ctx, time.Time{}, func(ev roster.Event) error {
		if strings.HasPrefix(ev.Rule, "invite ") {
			audited++
			if ev.Rule != "invite "+strconv.FormatInt(two.ID, 10)+" by root@localhost" || ev.Action != "accept" {
				t.Errorf("audit: %+v", ev)
			}
		}
		return nil
	})
	if err != nil || audited != 2 {
		t.Errorf("audited invite decisions: %d, %v; want 2", audited, err)
	}
	if n := e.decisions[0][len(decisionKinds)-1].Load(); n != 2 {
		t.Errorf("accept/invite counted %d, want 2", n)
	}
}

// A batch whose commit fails uses nothing: the invite accepts the next
// request that carries it.
func TestInviteNotUsedByAFailedCommit(t *testing.T) {
	ctx := context.Background()
	e, db, _ := newTestEngine(t, Settings{})
	inv := makeInvite(t, db, "once", store.Invite{})
	e.store = failingStore{Store: db}
	if err := e.Handle(ctx, []*stanza.Element{preauth("alice@x.example", "once")}, noIQ{t}); err == nil {
		t.Fatal("Handle with a failing store: no error")
	}
	if len(e.inv.pending) != 0 {
		t.Errorf("pending uses after the failed commit: %v", e.inv.pending)
	}
	e.store = db
	w := &enginetest.Wire{}
	e.Detach()
	if err := e.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := e.Handle(ctx, []*stanza.Element{preauth("bob@x.example", "once")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	if typ, _ := answered(t, w, "bob@x.example"); typ != "subscribed" {
		t.Errorf("after the failed commit the invite did not accept: %q\n%s", typ, w.String())
	}
	if got, _ := db.Invite(ctx, inv.ID); got.Uses != 1 {
		t.Errorf("uses: %d, want 1", got.Uses)
	}
}

// chanSource hands out the stanzas sent on its channel, and ends the stream
// when it is closed.
type chanSource chan *stanza.Element

func (s chanSource) Next() (*stanza.Element, error) {
	if el, ok := <-s; ok {
		return el, nil
	}
	return nil, stanza.ErrStreamClosed
}
func (chanSource) Offset() int64 { return 0 }

// blockingStore fails its first Commit, once let go.
type blockingStore struct {
	Store
	entered, release chan struct{}
	calls            atomic.Int32
}

func (s *blockingStore) Commit(ctx context.Context, b store.Batch) (int64, error) {
	if s.calls.Add(1) == 1 {
		close(s.entered)
		<-s.release
		return 0, errors.New("disk full")
	}
	return s.Store.Commit(ctx, b)
}

// A batch that used an invite, decided while the batch before it was being
// committed, is never committed when that commit fails: its use is
// forgotten, and the invite accepts the next request that carries it.
func TestInviteNotUsedByADroppedBatch(t *testing.T) {
	ctx := context.Background()
	e, db, _ := newTestEngine(t, Settings{})
	inv := makeInvite(t, db, "once", store.Invite{})
	bs := &blockingStore{Store: db, entered: make(chan struct{}), release: make(chan struct{})}
	e.store = bs
	src := make(chanSource, 2)
	served := make(chan error, 1)
	go func() { served <- e.Serve(ctx, src, noIQ{t}) }()
	src <- subscribe("alice@x.example")
	select {
	case <-bs.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not committed")
	}
	src <- preauth("bob@x.example", "once")
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.inv.mu.Lock()
		n := e.inv.pending[inv.ID]
		e.inv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's request was not decided while the first batch was committed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(bs.release)
	close(src) // the aborted stream's end, for the reader
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("Serve = %v, want the commit's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not end after the failed commit")
	}
	e.inv.mu.Lock()
	left := len(e.inv.pending)
	e.inv.mu.Unlock()
	if left != 0 {
		t.Errorf("pending uses after the batch was dropped: %v", e.inv.pending)
	}
	// Back on a new stream, the invite works.
	e.store = db
	w := &enginetest.Wire{}
	e.Detach()
	if err := e.Attach(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := e.Handle(ctx, []*stanza.Element{preauth("bob@x.example", "once")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	if typ, _ := answered(t, w, "bob@x.example"); typ != "subscribed" {
		t.Errorf("the invite did not accept after the dropped batch: %q\n%s", typ, w.String())
	}
}

// A contact whose request is held asks again with an invite's token: the
// invite approves the held request (XEP-0379: the token authorises the
// subscription), once; asked again without a usable token, it stays held.
func TestInviteApprovesAHeldRequest(t *testing.T) {
	ctx := context.Background()
	e, db, w := newTestEngine(t, Settings{})
	inv := makeInvite(t, db, "once", store.Invite{SubscribeBack: true})
	if err := e.Handle(ctx, []*stanza.Element{subscribe("alice@x.example"), subscribe("bob@x.example")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	if n := len(held(t, db)); n != 2 {
		t.Fatalf("held: %d, want 2", n)
	}
	if err := e.Handle(ctx, []*stanza.Element{preauth("alice@x.example", "once"), preauth("bob@x.example", "once")}, noIQ{t}); err != nil {
		t.Fatal(err)
	}
	if typ, back := answered(t, w, "alice@x.example"); typ != "subscribed" || !back {
		t.Errorf("alice, held, then with the invite: answered %q, back %v", typ, back)
	}
	if typ, _ := answered(t, w, "bob@x.example"); typ != "" {
		t.Errorf("bob, after the invite's one use: answered %q", typ)
	}
	reqs := held(t, db)
	if len(reqs) != 1 || reqs[0].Contact != "bob@x.example" {
		t.Errorf("held after: %+v, want bob's only", reqs)
	}
	if e.Held() != 1 {
		t.Errorf("Held() = %d, want 1", e.Held())
	}
	if it, err := db.Get(ctx, "helpdesk", "alice@x.example"); err != nil || it.Sub != roster.SubFrom || it.PendingIn || !it.PendingOut {
		t.Errorf("alice's item: %+v, %v", it, err)
	}
	if got, _ := db.Invite(ctx, inv.ID); got.Uses != 1 {
		t.Errorf("uses: %d, want 1", got.Uses)
	}
}
