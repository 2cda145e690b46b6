package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/export"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
)

const domain = "bots.example.com"

var t0 = time.UnixMilli(1_800_000_000_000).UTC()

func open(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fill gives a store a bit of everything, through the store's own writes.
func fill(t *testing.T, db *sqlite.DB) {
	t.Helper()
	ctx := context.Background()
	var ch []store.Change
	for i, c := range []string{"alice@x.example", "bob@x.example", "carol@y.example"} {
		it := roster.Item{Entity: "helpdesk", Contact: c, Sub: []string{roster.SubBoth, roster.SubNone, roster.SubTo}[i], Updated: t0.Add(time.Duration(i) * time.Second)}
		chg := store.Change{Item: it, Audit: &roster.Event{At: it.Updated, Entity: "helpdesk", Contact: c, Kind: "subscribe", Action: "accept", Actor: c, Interface: "stream"}}
		if c == "bob@x.example" {
			chg.Item.PendingIn, chg.Item.PendingSince = true, t0
			chg.Queue = &roster.Request{Entity: "helpdesk", Contact: c, Rule: "default", SubscribeBack: true, Created: t0}
		}
		ch = append(ch, chg)
	}
	ch = append(ch, store.Change{Item: roster.Item{Entity: "", Contact: "admin@x.example", Sub: roster.SubFrom, Approved: true, Updated: t0}})
	if _, err := db.Commit(ctx, store.Batch{Changes: ch}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EditList(ctx, "deny", "*@spam.example", true, &roster.Event{At: t0, Kind: "deny list", Action: "add", Actor: "root", Interface: "cli"}); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("secret"))
	tk, err := db.CreateToken(ctx, h[:], []string{"helpdesk"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeToken(ctx, tk.ID); err != nil {
		t.Fatal(err)
	}
	hi := sha256.Sum256([]byte("invite"))
	inv, err := db.CreateInvite(ctx, store.Invite{Hash: hi[:], Entity: "helpdesk", Creator: "root", Created: t0, Expires: t0.Add(time.Hour), MaxUses: 2, SubscribeBack: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Commit(ctx, store.Batch{InviteUses: []int64{inv.ID}, Placements: []store.PlacementChange{{Placement: store.Placement{
		Entity: "helpdesk", Contact: "alice@x.example", Method: store.PlaceBySubscription, State: store.PlaceAccepted, Source: "group:sales",
		Detail: "the user accepted", Attempts: 1, Sent: t0, Created: t0, Updated: t0.Add(time.Minute)}}}}); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, db *sqlite.DB) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := export.Write(context.Background(), db, domain, &b); err != nil {
		t.Fatal(err)
	}
	// The header's time differs between two exports.
	lines := strings.SplitN(b.String(), "\n", 2)
	return lines[1]
}

func opener(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

// What is exported from one store and imported into another exports the
// same; the ids admins and bots use are kept, and the next ones follow.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	a := open(t)
	fill(t, a)
	var b bytes.Buffer
	c, err := export.Write(ctx, a, domain, &b)
	if err != nil {
		t.Fatal(err)
	}
	if c != (export.Counts{Items: 4, Requests: 1, Lists: 1, Events: 4, Tokens: 1, Invites: 1, Placements: 1}) {
		t.Errorf("counts %+v", c)
	}
	z := open(t)
	got, err := export.Read(ctx, opener(b.String()), z, domain)
	if err != nil || got != c {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if da, dz := dump(t, a), dump(t, z); da != dz {
		t.Errorf("the copy exports otherwise:\n%s\nwant\n%s", dz, da)
	}
	h := sha256.Sum256([]byte("secret"))
	if tk, err := z.TokenByHash(ctx, h[:]); err != nil || tk.Revoked.IsZero() {
		t.Errorf("the token in the copy: %+v, %v (want it found, revoked)", tk, err)
	}
	hi := sha256.Sum256([]byte("invite"))
	if inv, err := z.InviteByHash(ctx, hi[:]); err != nil || inv.Uses != 1 || inv.MaxUses != 2 || !inv.SubscribeBack || !inv.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("the invite in the copy: %+v, %v", inv, err)
	}
	if ps, err := z.Placements(ctx); err != nil || len(ps) != 1 || ps[0].State != store.PlaceAccepted || ps[0].Source != "group:sales" || !ps[0].Sent.Equal(t0) {
		t.Errorf("the placements in the copy: %+v, %v", ps, err)
	}
	if err := z.Check(ctx); err != nil {
		t.Errorf("the copy's Check: %v", err)
	}
	// Into a store that holds something: refused, nothing added.
	if _, err := export.Read(ctx, opener(b.String()), z, domain); err != export.ErrNotEmpty {
		t.Errorf("into a full store: %v", err)
	}
}

// A bad file is refused with its line and what is wrong, and nothing is
// written.
func TestReadRefuses(t *testing.T) {
	ctx := context.Background()
	a := open(t)
	fill(t, a)
	var b bytes.Buffer
	if _, err := export.Write(ctx, a, domain, &b); err != nil {
		t.Fatal(err)
	}
	good := strings.Split(strings.TrimSpace(b.String()), "\n")
	join := func(ls []string) string { return strings.Join(ls, "\n") + "\n" }
	with := func(i int, l string) string {
		c := append([]string(nil), good...)
		c[i] = l
		return join(c)
	}
	find := func(prefix string) int {
		for i, l := range good {
			if strings.HasPrefix(l, prefix) {
				return i
			}
		}
		t.Fatalf("no line %s", prefix)
		return 0
	}
	item, req, lst := find(`{"type":"item","entity":"helpdesk","contact":"alice`), find(`{"type":"request"`), find(`{"type":"list"`)
	pl := find(`{"type":"placement"`)
	for name, tc := range map[string]struct{ file, want string }{
		"empty":          {"", "an empty file"},
		"not ours":       {`{"type":"something"}` + "\n", "line 1: not a rostergate export"},
		"another domain": {strings.Replace(b.String(), `"domain":"`+domain, `"domain":"other.example`, 1), `the export is of "other.example"`},
		"cut short":      {join(good[:len(good)-1]), "without its end record"},
		"counts":         {join(append(append([]string(nil), good[:item]...), good[item+1:]...)), "its end record says"},
		"unknown field":  {with(item, strings.Replace(good[item], `"type":"item"`, `"type":"item","colour":"red"`, 1)), `unknown field "colour"`},
		"bad sub":        {with(item, strings.Replace(good[item], `"subscription":"both"`, `"subscription":"maybe"`, 1)), `subscription "maybe" is not none, to, from or both`},
		"bad contact":    {with(item, strings.Replace(good[item], `"contact":"alice@x.example"`, `"contact":"alice@x.example/phone"`, 1)), "is not a normalised bare JID"},
		"request alone":  {with(req, strings.Replace(good[req], `"contact":"bob@x.example"`, `"contact":"nobody@x.example"`, 1)), "no roster item"},
		"out of order":   {join(append([]string{good[0], good[lst]}, good[1:]...)), "line 3: item record after the list records"},
		"not JSON":       {with(item, "{"), "not a JSON object"},
		"bad method":     {with(pl, strings.Replace(good[pl], `"method":"subscription"`, `"method":"pigeon"`, 1)), `placement: method "pigeon" is not privilege or subscription`},
		"bad state":      {with(pl, strings.Replace(good[pl], `"state":"accepted"`, `"state":"maybe"`, 1)), `placement: state "maybe" is not placed`},
		"after the end":  {join(append(append([]string(nil), good...), good[item])), "a record after the end record"},
	} {
		t.Run(name, func(t *testing.T) {
			z := open(t)
			_, err := export.Read(ctx, opener(tc.file), z, domain)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var n int
			_ = z.Items(ctx, store.Filter{AllEntities: true}, func(roster.Item) error { n++; return nil })
			if n != 0 {
				t.Errorf("%d items written from a bad file", n)
			}
		})
	}
}
