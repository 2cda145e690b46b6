package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"rostergate/store"
)

// testWebKeys: a login link is taken once, and not after it expires; a
// session is read, its idle deadline moved on but never past its end;
// expired keys are trimmed; a key of one kind is not found as the other.
func testWebKeys(t *testing.T, o opener) {
	ctx := context.Background()
	s := o.fresh(t)
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	h := func(s string) []byte { x := sha256.Sum256([]byte(s)); return x[:] }
	link := store.WebKey{Hash: h("link"), Kind: store.KindLogin, JID: "admin@localhost", Created: now, Expires: now.Add(5 * time.Minute)}
	if err := s.CreateWebKey(ctx, link); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWebKey(ctx, link); err == nil {
		t.Error("a second key with the same hash: no error")
	}
	if err := s.CreateWebKey(ctx, store.WebKey{Hash: []byte("short"), Kind: store.KindLogin, Expires: now.Add(time.Minute)}); err == nil {
		t.Error("a hash of 5 bytes: no error")
	}
	if _, err := s.TakeWebKey(ctx, link.Hash, store.KindSession, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a login link taken as a session: %v, want ErrNotFound", err)
	}
	if _, err := s.TakeWebKey(ctx, link.Hash, store.KindLogin, now.Add(5*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a link taken at its expiry: %v, want ErrNotFound", err)
	}
	// Two takers at once: one gets it.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.TakeWebKey(ctx, link.Hash, store.KindLogin, now)
			if err == nil {
				mu.Lock()
				got++
				mu.Unlock()
				if k.JID != link.JID || !k.Expires.Equal(link.Expires) {
					t.Errorf("taken: %+v, want %+v", k, link)
				}
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("take: %v", err)
			}
		}()
	}
	wg.Wait()
	if got != 1 {
		t.Errorf("a one-time link taken %d times, want 1", got)
	}

	sess := store.WebKey{Hash: h("session"), Kind: store.KindSession, JID: "admin@localhost", Created: now,
		Expires: now.Add(30 * time.Minute), Until: now.Add(time.Hour)}
	if err := s.CreateWebKey(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if k, err := s.WebKey(ctx, sess.Hash, store.KindSession, now.Add(time.Minute), 0); err != nil || !k.Expires.Equal(sess.Expires) || !k.Until.Equal(sess.Until) {
		t.Errorf("WebKey without touch = %+v, %v; want it as created", k, err)
	}
	if k, err := s.WebKey(ctx, sess.Hash, store.KindSession, now.Add(20*time.Minute), 30*time.Minute); err != nil || !k.Expires.Equal(now.Add(50*time.Minute)) {
		t.Errorf("touched at +20m for 30m: %+v, %v; want expires at +50m", k, err)
	}
	if k, err := s.WebKey(ctx, sess.Hash, store.KindSession, now.Add(45*time.Minute), 30*time.Minute); err != nil || !k.Expires.Equal(sess.Until) {
		t.Errorf("touched at +45m for 30m: %+v, %v; want expires at its end (+60m)", k, err)
	}
	if _, err := s.WebKey(ctx, sess.Hash, store.KindSession, now.Add(time.Hour), 30*time.Minute); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a session read at its end: %v, want ErrNotFound", err)
	}
	if _, err := s.WebKey(ctx, sess.Hash, store.KindLogin, now, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a session read as a login link: %v, want ErrNotFound", err)
	}

	other := store.WebKey{Hash: h("other"), Kind: store.KindSession, JID: "b@localhost", Created: now, Expires: now.Add(2 * time.Hour), Until: now.Add(2 * time.Hour)}
	if err := s.CreateWebKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	if n, err := s.TrimWebKeys(ctx, now.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("TrimWebKeys = %d, %v; want 1 (the session that ended)", n, err)
	}
	if _, err := s.WebKey(ctx, other.Hash, store.KindSession, now, 0); err != nil {
		t.Errorf("a live session after the trim: %v", err)
	}
	if err := s.DeleteWebKey(ctx, other.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WebKey(ctx, other.Hash, store.KindSession, now, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted session: %v, want ErrNotFound", err)
	}
	if err := s.DeleteWebKey(ctx, other.Hash); err != nil {
		t.Errorf("deleting it again: %v", err)
	}
}
