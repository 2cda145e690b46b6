// Package export moves what a rostergate store holds to a file and back:
// the roster items with their RFC 6121 states, the held requests (with
// their ids, which admins use), the allow and deny lists, the audit log
// (with its ids and times), the bots' API tokens and the invites (their
// hashes), and the placements of entities on users' rosters. It is
// how a deployment moves between stores (SQLite to PostgreSQL, or a new
// machine), and a way out to other tools.
//
// The format is JSON Lines, one record an object, described in
// docs/export.md: a header, then items, requests, lists, events, tokens,
// invites and placements in that order, then an end record with the counts (a file cut
// short is refused). Reading checks the whole file before it writes
// anything, then loads it in transactions of up to 5,000 records into a
// store that must be empty.
package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/roster"
	"rostergate/store"
)

// Format and Version name the format in the header.
const (
	Format  = "rostergate-export"
	Version = 1
)

// Counts are how many records of each kind a file holds.
type Counts struct {
	Items    int `json:"items"`
	Requests int `json:"requests"`
	Lists    int `json:"lists"`
	Events   int `json:"events"`
	Tokens   int `json:"tokens"`
	Invites  int `json:"invites"`
	// Placements: a file from before them has no count, read as 0.
	Placements int `json:"placements"`
}

func (c Counts) String() string {
	return fmt.Sprintf("%d roster items, %d held requests, %d list entries, %d audit events, %d tokens, %d invites, %d placements",
		c.Items, c.Requests, c.Lists, c.Events, c.Tokens, c.Invites, c.Placements)
}

// The records, as they are written.
type (
	header struct {
		Type     string    `json:"type"` // Format
		Version  int       `json:"version"`
		Domain   string    `json:"domain"`
		Exported time.Time `json:"exported"`
	}
	item struct {
		Type         string     `json:"type"` // "item"
		Entity       string     `json:"entity"`
		Contact      string     `json:"contact"`
		Subscription string     `json:"subscription"`
		PendingOut   bool       `json:"pending_out"`
		PendingIn    bool       `json:"pending_in"`
		Approved     bool       `json:"approved"`
		PendingSince *time.Time `json:"pending_since,omitempty"`
		Updated      time.Time  `json:"updated"`
	}
	request struct {
		Type          string    `json:"type"` // "request"
		ID            int64     `json:"id"`
		Entity        string    `json:"entity"`
		Contact       string    `json:"contact"`
		Rule          string    `json:"rule"`
		SubscribeBack bool      `json:"subscribe_back"`
		Created       time.Time `json:"created"`
	}
	list struct {
		Type    string `json:"type"` // "list"
		List    string `json:"list"`
		Pattern string `json:"pattern"`
	}
	event struct {
		Type    string    `json:"type"` // "event"
		ID      int64     `json:"id"`
		At      time.Time `json:"at"`
		Entity  string    `json:"entity"`
		Contact string    `json:"contact"`
		Kind    string    `json:"kind"`
		Action  string    `json:"action"`
		Rule    string    `json:"rule"`
		From    string    `json:"from"`
		To      string    `json:"to"`
		Actor   string    `json:"actor"`
		Via     string    `json:"via"`
		Detail  string    `json:"detail"`
	}
	token struct {
		Type     string     `json:"type"` // "token"
		ID       int64      `json:"id"`
		Hash     string     `json:"hash"` // base64 of the SHA-256 of the secret
		Entities []string   `json:"entities"`
		Admin    bool       `json:"admin"`
		Created  time.Time  `json:"created"`
		LastUsed *time.Time `json:"last_used,omitempty"`
		Revoked  *time.Time `json:"revoked,omitempty"`
	}
	invite struct {
		Type          string     `json:"type"` // "invite"
		ID            int64      `json:"id"`
		Hash          string     `json:"hash"` // base64 of the SHA-256 of the token
		Entity        string     `json:"entity"`
		Creator       string     `json:"creator"`
		Created       time.Time  `json:"created"`
		Expires       *time.Time `json:"expires,omitempty"`
		MaxUses       int        `json:"max_uses"`
		Uses          int        `json:"uses"`
		SubscribeBack bool       `json:"subscribe_back"`
		Revoked       *time.Time `json:"revoked,omitempty"`
	}
	placement struct {
		Type     string     `json:"type"` // "placement"
		Entity   string     `json:"entity"`
		Contact  string     `json:"contact"`
		Method   string     `json:"method"`
		State    string     `json:"state"`
		Source   string     `json:"source"`
		Detail   string     `json:"detail"`
		Attempts int        `json:"attempts"`
		Sent     *time.Time `json:"sent,omitempty"`
		Created  time.Time  `json:"created"`
		Updated  time.Time  `json:"updated"`
	}
	end struct {
		Type string `json:"type"` // "end"
		Counts
	}
)

// Write writes what s holds to w, and returns the counts. For an exact
// copy nothing may change s meanwhile (stop rostergate first); a live
// export may catch a batch half in one record kind and half in the next.
func Write(ctx context.Context, s store.Store, domain string, w io.Writer) (Counts, error) {
	var c Counts
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	put := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return nil
	}
	if err := put(header{Format, Version, domain, time.Now().UTC()}); err != nil {
		return c, err
	}
	err := s.Items(ctx, store.Filter{AllEntities: true}, func(it roster.Item) error {
		c.Items++
		sub := it.Sub
		if sub == "" {
			sub = roster.SubNone
		}
		return put(item{"item", it.Entity, it.Contact, sub, it.PendingOut, it.PendingIn, it.Approved, optTime(it.PendingSince), it.Updated.UTC()})
	})
	if err != nil {
		return c, fmt.Errorf("export: roster items: %w", err)
	}
	reqs, err := s.Requests(ctx)
	if err != nil {
		return c, fmt.Errorf("export: held requests: %w", err)
	}
	for _, q := range reqs {
		c.Requests++
		if err := put(request{"request", q.ID, q.Entity, q.Contact, q.Rule, q.SubscribeBack, q.Created.UTC()}); err != nil {
			return c, err
		}
	}
	allow, deny, err := s.Lists(ctx)
	if err != nil {
		return c, fmt.Errorf("export: lists: %w", err)
	}
	for _, l := range []struct {
		name     string
		patterns []string
	}{{"allow", allow}, {"deny", deny}} {
		for _, p := range l.patterns {
			c.Lists++
			if err := put(list{"list", l.name, p}); err != nil {
				return c, err
			}
		}
	}
	q := store.AuditQuery{Limit: 10_000}
	for {
		evs, err := s.AuditPage(ctx, q)
		if err != nil {
			return c, fmt.Errorf("export: audit log: %w", err)
		}
		for _, e := range evs {
			c.Events++
			if err := put(event{"event", e.ID, e.At.UTC(), e.Entity, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail}); err != nil {
				return c, err
			}
		}
		if len(evs) < q.Limit {
			break
		}
		q.After = evs[len(evs)-1].ID
	}
	toks, err := s.Tokens(ctx)
	if err != nil {
		return c, fmt.Errorf("export: tokens: %w", err)
	}
	for _, t := range toks {
		c.Tokens++
		ents := t.Entities
		if ents == nil {
			ents = []string{}
		}
		if err := put(token{"token", t.ID, base64.StdEncoding.EncodeToString(t.Hash), ents, t.Admin, t.Created.UTC(), optTime(t.LastUsed), optTime(t.Revoked)}); err != nil {
			return c, err
		}
	}
	invs, err := s.Invites(ctx)
	if err != nil {
		return c, fmt.Errorf("export: invites: %w", err)
	}
	for _, inv := range invs {
		c.Invites++
		if err := put(invite{"invite", inv.ID, base64.StdEncoding.EncodeToString(inv.Hash), inv.Entity, inv.Creator, inv.Created.UTC(),
			optTime(inv.Expires), inv.MaxUses, inv.Uses, inv.SubscribeBack, optTime(inv.Revoked)}); err != nil {
			return c, err
		}
	}
	pls, err := s.Placements(ctx)
	if err != nil {
		return c, fmt.Errorf("export: placements: %w", err)
	}
	for _, p := range pls {
		c.Placements++
		if err := put(placement{"placement", p.Entity, p.Contact, p.Method, p.State, p.Source, p.Detail, p.Attempts, optTime(p.Sent),
			p.Created.UTC(), p.Updated.UTC()}); err != nil {
			return c, err
		}
	}
	if err := put(end{"end", c}); err != nil {
		return c, err
	}
	if err := bw.Flush(); err != nil {
		return c, fmt.Errorf("export: %w", err)
	}
	return c, nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// chunk is how many records one transaction of Read loads.
const chunk = 5000

// ErrNotEmpty is returned by Read when the store holds data already.
var ErrNotEmpty = errors.New("export: the store holds data already; import needs an empty one")

// Read loads a file into s, which must be empty. open opens the file; it
// is read twice: once to check every record (nothing is written unless the
// whole file is good), once to load it. The domain must be the file's.
// Should the load fail half way (a full disk), the store holds a part:
// start again from an empty store.
func Read(ctx context.Context, open func() (io.ReadCloser, error), s store.Store, domain string) (Counts, error) {
	if err := checkEmpty(ctx, s); err != nil {
		return Counts{}, err
	}
	c, err := scan(open, domain, nil)
	if err != nil {
		return c, err
	}
	var recs store.ImportRecords
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		if err := s.Import(ctx, recs); err != nil {
			return fmt.Errorf("export: loading: %w", err)
		}
		recs, n = store.ImportRecords{}, 0
		return nil
	}
	_, err = scan(open, domain, func(r any) error {
		switch r := r.(type) {
		case roster.Item:
			recs.Items = append(recs.Items, r)
		case roster.Request:
			recs.Requests = append(recs.Requests, r)
		case store.ListEntry:
			recs.Lists = append(recs.Lists, r)
		case roster.Event:
			recs.Events = append(recs.Events, r)
		case store.Token:
			recs.Tokens = append(recs.Tokens, r)
		case store.Invite:
			recs.Invites = append(recs.Invites, r)
		case store.Placement:
			recs.Placements = append(recs.Placements, r)
		}
		if n++; n == chunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return c, err
}

// checkEmpty refuses a store that holds anything Read would load.
func checkEmpty(ctx context.Context, s store.Store) error {
	errStop := errors.New("stop")
	err := s.Items(ctx, store.Filter{AllEntities: true, Limit: 1}, func(roster.Item) error { return errStop })
	if errors.Is(err, errStop) {
		return ErrNotEmpty
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	reqs, err := s.Requests(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	allow, deny, err := s.Lists(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	evs, err := s.AuditPage(ctx, store.AuditQuery{Limit: 1})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	toks, err := s.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	invs, err := s.Invites(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	pls, err := s.Placements(ctx)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if len(reqs)+len(allow)+len(deny)+len(evs)+len(toks)+len(invs)+len(pls) > 0 {
		return ErrNotEmpty
	}
	return nil
}

// maxLine bounds one record (an audit event's detail, a roster item).
const maxLine = 1 << 20

// order is the order record kinds come in.
var order = map[string]int{"item": 1, "request": 2, "list": 3, "event": 4, "token": 5, "invite": 6, "placement": 7, "end": 8}

// scan reads a file, checks every record and hands each to fn (nil: check
// only). It returns the counts of the end record.
func scan(open func() (io.ReadCloser, error), domain string, fn func(any) error) (Counts, error) {
	f, err := open()
	if err != nil {
		return Counts{}, fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var (
		got, want Counts
		line      int
		last      int
		ended     bool
		seen      = map[[2]string]bool{}
	)
	fail := func(format string, args ...any) (Counts, error) {
		return got, fmt.Errorf("export: line %d: %s", line, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if ended {
			return fail("a record after the end record")
		}
		var t struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &t); err != nil {
			return fail("not a JSON object: %v", err)
		}
		if line == 1 {
			var h header
			if err := strictDecode(b, &h); err != nil || h.Type != Format {
				return fail("not a rostergate export (the first line is its header, type %q)", Format)
			}
			if h.Version != Version {
				return fail("format version %d; this rostergate reads version %d", h.Version, Version)
			}
			if h.Domain != domain {
				return fail("the export is of %q, the config's component domain is %q", h.Domain, domain)
			}
			continue
		}
		k, ok := order[t.Type]
		if !ok {
			return fail("unknown record type %q", t.Type)
		}
		if k < last {
			return fail("%s record after the %s records (the order is item, request, list, event, token, invite, placement, end)", t.Type, kindName(last))
		}
		last = k
		var rec any
		switch t.Type {
		case "item":
			var r item
			if err := strictDecode(b, &r); err != nil {
				return fail("item: %v", err)
			}
			if err := checkKey(domain, r.Entity, r.Contact); err != nil {
				return fail("item: %v", err)
			}
			switch r.Subscription {
			case roster.SubNone, roster.SubTo, roster.SubFrom, roster.SubBoth:
			default:
				return fail("item: subscription %q is not none, to, from or both", r.Subscription)
			}
			if r.Updated.IsZero() {
				return fail("item: no updated time")
			}
			key := [2]string{r.Entity, r.Contact}
			if seen[key] {
				return fail("item (%q, %q) a second time", r.Entity, r.Contact)
			}
			seen[key] = true
			it := roster.Item{Entity: r.Entity, Contact: r.Contact, Sub: r.Subscription, PendingOut: r.PendingOut, PendingIn: r.PendingIn, Approved: r.Approved, Updated: r.Updated}
			if r.PendingSince != nil {
				it.PendingSince = *r.PendingSince
			}
			got.Items++
			rec = it
		case "request":
			var r request
			if err := strictDecode(b, &r); err != nil {
				return fail("request: %v", err)
			}
			if r.ID <= 0 {
				return fail("request: id %d is not a request id", r.ID)
			}
			if !seen[[2]string{r.Entity, r.Contact}] {
				return fail("request %d: no roster item (%q, %q) before it", r.ID, r.Entity, r.Contact)
			}
			got.Requests++
			rec = roster.Request{ID: r.ID, Entity: r.Entity, Contact: r.Contact, Rule: r.Rule, SubscribeBack: r.SubscribeBack, Created: r.Created}
		case "list":
			var r list
			if err := strictDecode(b, &r); err != nil {
				return fail("list: %v", err)
			}
			if r.List != "allow" && r.List != "deny" {
				return fail("list: %q is neither allow nor deny", r.List)
			}
			if r.Pattern == "" {
				return fail("list: an empty pattern")
			}
			got.Lists++
			rec = store.ListEntry{List: r.List, Pattern: r.Pattern}
		case "event":
			var r event
			if err := strictDecode(b, &r); err != nil {
				return fail("event: %v", err)
			}
			if r.ID <= 0 || r.At.IsZero() {
				return fail("event: an id above 0 and a time are needed")
			}
			got.Events++
			rec = roster.Event{ID: r.ID, At: r.At, Entity: r.Entity, Contact: r.Contact, Kind: r.Kind, Action: r.Action, Rule: r.Rule,
				From: r.From, To: r.To, Actor: r.Actor, Interface: r.Via, Detail: r.Detail}
		case "token":
			var r token
			if err := strictDecode(b, &r); err != nil {
				return fail("token: %v", err)
			}
			h, err := base64.StdEncoding.DecodeString(r.Hash)
			if err != nil || len(h) != 32 {
				return fail("token %d: hash is not the base64 of 32 bytes", r.ID)
			}
			if r.ID <= 0 {
				return fail("token: id %d is not a token id", r.ID)
			}
			tk := store.Token{ID: r.ID, Hash: h, Entities: r.Entities, Admin: r.Admin, Created: r.Created}
			if r.LastUsed != nil {
				tk.LastUsed = *r.LastUsed
			}
			if r.Revoked != nil {
				tk.Revoked = *r.Revoked
			}
			got.Tokens++
			rec = tk
		case "invite":
			var r invite
			if err := strictDecode(b, &r); err != nil {
				return fail("invite: %v", err)
			}
			h, err := base64.StdEncoding.DecodeString(r.Hash)
			if err != nil || len(h) != 32 {
				return fail("invite %d: hash is not the base64 of 32 bytes", r.ID)
			}
			if r.ID <= 0 {
				return fail("invite: id %d is not an invite id", r.ID)
			}
			if r.MaxUses < 1 || r.Uses < 0 {
				return fail("invite %d: max_uses %d and uses %d: want max_uses 1 or more, uses 0 or more", r.ID, r.MaxUses, r.Uses)
			}
			inv := store.Invite{ID: r.ID, Hash: h, Entity: r.Entity, Creator: r.Creator, Created: r.Created, MaxUses: r.MaxUses, Uses: r.Uses,
				SubscribeBack: r.SubscribeBack}
			if r.Expires != nil {
				inv.Expires = *r.Expires
			}
			if r.Revoked != nil {
				inv.Revoked = *r.Revoked
			}
			got.Invites++
			rec = inv
		case "placement":
			var r placement
			if err := strictDecode(b, &r); err != nil {
				return fail("placement: %v", err)
			}
			if err := checkKey(domain, r.Entity, r.Contact); err != nil {
				return fail("placement: %v", err)
			}
			switch {
			case r.Method != store.PlaceByPrivilege && r.Method != store.PlaceBySubscription:
				return fail("placement: method %q is not privilege or subscription", r.Method)
			case !slices.Contains([]string{store.PlacePlaced, store.PlaceWaiting, store.PlaceAccepted, store.PlaceFailed, store.PlaceDeclined}, r.State):
				return fail("placement: state %q is not placed, waiting, accepted, failed or declined", r.State)
			case r.Attempts < 0 || r.Created.IsZero() || r.Updated.IsZero():
				return fail("placement: attempts %d, created %s, updated %s: want attempts 0 or more and both times", r.Attempts, r.Created, r.Updated)
			}
			key := [2]string{"placement " + r.Entity, r.Contact}
			if seen[key] {
				return fail("placement (%q, %q) a second time", r.Entity, r.Contact)
			}
			seen[key] = true
			p := store.Placement{Entity: r.Entity, Contact: r.Contact, Method: r.Method, State: r.State, Source: r.Source, Detail: r.Detail,
				Attempts: r.Attempts, Created: r.Created, Updated: r.Updated}
			if r.Sent != nil {
				p.Sent = *r.Sent
			}
			got.Placements++
			rec = p
		case "end":
			var r end
			if err := strictDecode(b, &r); err != nil {
				return fail("end: %v", err)
			}
			want, ended = r.Counts, true
			continue
		}
		if fn != nil {
			if err := fn(rec); err != nil {
				return got, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return got, fmt.Errorf("export: line %d: %w", line+1, err)
	}
	if line == 0 {
		return got, errors.New("export: an empty file")
	}
	if !ended {
		return got, fmt.Errorf("export: the file ends at line %d without its end record: cut short?", line)
	}
	if got != want {
		return got, fmt.Errorf("export: the file holds %s; its end record says %s", got, want)
	}
	return got, nil
}

func kindName(k int) string {
	for n, v := range order {
		if v == k {
			return n
		}
	}
	return "?"
}

// strictDecode decodes one object, refusing unknown fields.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkKey checks an item's entity (a localpart at domain, "" the domain
// itself) and contact (a bare JID).
func checkKey(domain, entity, contact string) error {
	if entity != "" {
		local, err := roster.ParseEntity(domain, entity)
		if err != nil {
			return fmt.Errorf("entity %q: %s", entity, roster.UserText(err))
		}
		if local != entity {
			return fmt.Errorf("entity %q is not a normalised localpart (%q)", entity, local)
		}
	}
	j, err := jid.Parse(contact)
	if err != nil || j.Resourcepart() != "" || j.String() != contact {
		return fmt.Errorf("contact %q is not a normalised bare JID", contact)
	}
	return nil
}
