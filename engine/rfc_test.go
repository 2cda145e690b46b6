package engine

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/engine/enginetest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// The engine's side of RFC 6121: what goes on the wire for each cell, as a
// raw component would see it. The state machine's cells themselves are
// tested in package subscription; these tests quote the RFC where the
// engine adds to them (addressing, ids, probes, unknown types and JIDs).

const (
	entityBare = "helpdesk@bots.localhost"
	entityFull = "helpdesk@bots.localhost/rostergate"
)

// sent is one stanza the engine wrote.
type sent struct {
	Name, From, To, ID, Type string
	Show, Status, Body       string
	Cond                     string // the defined condition of an error
}

func (s sent) String() string {
	t := s.Type
	if t == "" {
		t = "available"
	}
	out := fmt.Sprintf("%s %s %s>%s", s.Name, t, s.From, s.To)
	if s.Cond != "" {
		out += " " + s.Cond
	}
	return out
}

// written parses what w holds, in order, failing the test on anything that
// is not well-formed.
func written(t *testing.T, w *enginetest.Wire) []sent {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader("<r>" + w.String() + "</r>"))
	var out []sent
	var cur *sent
	depth := 0
	var text strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("the engine wrote what does not parse: %v\n%s", err, w.String())
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			depth++
			text.Reset()
			if depth == 2 {
				out = append(out, sent{Name: tk.Name.Local})
				cur = &out[len(out)-1]
				for _, a := range tk.Attr {
					switch a.Name.Local {
					case "from":
						cur.From = a.Value
					case "to":
						cur.To = a.Value
					case "id":
						cur.ID = a.Value
					case "type":
						cur.Type = a.Value
					}
				}
			} else if depth == 4 && tk.Name.Space == stanza.NSStanzas && tk.Name.Local != "text" {
				cur.Cond = tk.Name.Local
			}
		case xml.CharData:
			text.Write(tk)
		case xml.EndElement:
			if depth == 3 {
				switch tk.Name.Local {
				case "show":
					cur.Show = text.String()
				case "status":
					cur.Status = text.String()
				case "body":
					cur.Body = text.String()
				}
			}
			depth--
		}
	}
}

// summary is written(w) as strings, for comparing with a want list.
func summary(t *testing.T, w *enginetest.Wire) []string {
	t.Helper()
	var out []string
	for _, s := range written(t, w) {
		out = append(out, s.String())
	}
	return out
}

func wantSent(t *testing.T, w *enginetest.Wire, rfc string, want ...string) {
	t.Helper()
	if got := summary(t, w); !slices.Equal(got, want) {
		t.Errorf("sent:\n  %s\nwant:\n  %s\nRFC 6121: %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "), rfc)
	}
}

func presence(typ, from, to, id string) *stanza.Element {
	return &stanza.Element{Name: "presence", Type: typ, From: from, To: to, ID: id}
}

func handle(t *testing.T, e *Engine, els ...*stanza.Element) {
	t.Helper()
	if err := e.Handle(context.Background(), els, noIQ{t}); err != nil {
		t.Fatal(err)
	}
}

func act(t *testing.T, e *Engine, contact string, kinds ...subscription.Kind) {
	t.Helper()
	if err := e.Act(context.Background(), roster.Actor{JID: "test", Via: roster.ViaCLI}, "helpdesk", contact, kinds...); err != nil {
		t.Fatal(err)
	}
}

// reach brings helpdesk's item of contact to state s through stanzas and
// acts, as a contact and an entity would: contacts at good.example are
// accepted, others held for review (reviewAll).
func reach(t *testing.T, e *Engine, contact string, s subscription.State) {
	t.Helper()
	in := func(typ string) { handle(t, e, presence(typ, contact+"/res", entityBare, "x")) }
	switch s {
	case subscription.None:
	case subscription.NoneOut:
		act(t, e, contact, subscription.Subscribe)
	case subscription.NoneIn:
		in("subscribe")
	case subscription.NoneOutIn:
		act(t, e, contact, subscription.Subscribe)
		in("subscribe")
	case subscription.To:
		act(t, e, contact, subscription.Subscribe)
		in("subscribed")
	case subscription.ToIn:
		act(t, e, contact, subscription.Subscribe)
		in("subscribed")
		in("subscribe")
	case subscription.From:
		in("subscribe")
		act(t, e, contact, subscription.Subscribed)
	case subscription.FromOut:
		in("subscribe")
		act(t, e, contact, subscription.Subscribed, subscription.Subscribe)
	case subscription.Both:
		in("subscribe")
		act(t, e, contact, subscription.Subscribed, subscription.Subscribe)
		in("subscribed")
	}
	if got := state(t, e.store.(*sqlite.DB), contact); got != s {
		t.Fatalf("reaching %s for %s: got %s", s.Abbr(), contact, got.Abbr())
	}
}

// state is helpdesk's stored state for contact; no item is None.
func state(t *testing.T, db *sqlite.DB, contact string) subscription.State {
	t.Helper()
	it, err := db.Get(context.Background(), "helpdesk", contact)
	if errors.Is(err, store.ErrNotFound) {
		return subscription.None
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := subscription.Compose(it.Sub, it.PendingOut, it.PendingIn)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var allStates = []subscription.State{
	subscription.None, subscription.NoneOut, subscription.NoneIn, subscription.NoneOutIn,
	subscription.To, subscription.ToIn, subscription.From, subscription.FromOut, subscription.Both,
}

func contactFor(s subscription.State) string {
	return strings.ToLower(strings.NewReplacer("+", "").Replace(s.Abbr())) + "@other.example"
}

// Table 7 on the wire: a contact's unsubscribe, in each state. Where the
// state changes, the entity's resource goes unavailable for the contact (if
// it had From) and the contact gets unsubscribed with a fresh id; a held
// request is withdrawn (its row gone, the counts down, a later approval
// finds nothing). Where it does not change, nothing is sent.
func TestContactUnsubscribes(t *testing.T) {
	const rfc = `A.3.2: "if the stanza results in a subscription state change from the user's perspective then the user's server MUST change the state, [...] and SHOULD auto-reply by sending a presence stanza of type "unsubscribed" to the contact on behalf of the user. Otherwise the user's server MUST NOT change the state"`
	want := map[subscription.State]subscription.State{
		subscription.None: subscription.None, subscription.NoneOut: subscription.NoneOut,
		subscription.NoneIn: subscription.None, subscription.NoneOutIn: subscription.NoneOut,
		subscription.To: subscription.To, subscription.ToIn: subscription.To,
		subscription.From: subscription.None, subscription.FromOut: subscription.NoneOut, subscription.Both: subscription.To,
	}
	for _, s := range allStates {
		t.Run(s.Abbr(), func(t *testing.T) {
			e, db, w := newTestEngine(t, Settings{})
			c := contactFor(s)
			reach(t, e, c, s)
			reqs := held(t, db)
			w.Reset()
			handle(t, e, presence("unsubscribe", c+"/res", entityBare, "u1"))
			if got := state(t, db, c); got != want[s] {
				t.Errorf("%s → %s, want %s\nRFC 6121: %s", s.Abbr(), got.Abbr(), want[s].Abbr(), rfc)
			}
			var wantOut []string
			if s.HasFrom() {
				wantOut = append(wantOut, "presence unavailable "+entityFull+">"+c)
			}
			if want[s] != s {
				wantOut = append(wantOut, "presence unsubscribed "+entityBare+">"+c)
			}
			wantSent(t, w, rfc, wantOut...)
			for _, p := range written(t, w) {
				if p.ID == "" {
					t.Errorf("%s carries no id", p)
				}
			}
			if !s.PendingIn() {
				return
			}
			if len(reqs) != 1 || len(held(t, db)) != 0 || e.Held() != 0 {
				t.Fatalf("held before %d, after %d (counted %d): the withdrawn request must go", len(reqs), len(held(t, db)), e.Held())
			}
			out := e.DecideHeld(context.Background(), []int64{reqs[0].ID}, true, roster.Actor{JID: "admin@localhost", Via: roster.ViaChat})
			if !errors.Is(out[0].Err, store.ErrNotFound) {
				t.Errorf("approving the withdrawn request: %v, want not found", out[0].Err)
			}
		})
	}
}

// A Spark user declines the entity's request with unsubscribe (seed,
// scenario 1): nothing changes, and the contact's later subscribed still
// completes the request.
func TestSparkDeclineKeepsTheRequest(t *testing.T) {
	e, db, w := newTestEngine(t, Settings{})
	const c = "spark@other.example"
	reach(t, e, c, subscription.NoneOut)
	w.Reset()
	handle(t, e, presence("unsubscribe", c+"/Spark", entityBare, "d1"))
	wantSent(t, w, `Table 7: "None + Pending Out" | S.N. | no state change`)
	if got := state(t, db, c); got != subscription.NoneOut {
		t.Fatalf("after the decline: %s, want N+O", got.Abbr())
	}
	handle(t, e, presence("subscribed", c+"/Spark", entityBare, "d2"))
	if got := state(t, db, c); got != subscription.To {
		t.Errorf("subscribed after the decline: %s, want T (Table 8: \"None + Pending Out\" | MUST | \"To\")", got.Abbr())
	}
}

// §8.5.3.2.2: subscribed, unsubscribe and unsubscribed sent to a full JID
// that is not the entity's available resource are ignored; subscribe is
// handled as sent to the bare JID; the entity's own resource is the entity.
func TestFullJIDAddressing(t *testing.T) {
	const rfc = `§8.5.3.2.2: "If no available resource or connected resource exactly matches the full JID, [...] For a presence stanza of type "subscribe", the server MUST follow the guidelines provided under Section 3.1.3. For a presence stanza of type "subscribed", "unsubscribe", or "unsubscribed", the server MUST ignore the stanza."`
	for _, tc := range []struct {
		typ  string
		from subscription.State
		to   subscription.State // when sent to the entity or its own resource
	}{
		{"subscribed", subscription.NoneOut, subscription.To},
		{"unsubscribe", subscription.From, subscription.None},
		{"unsubscribed", subscription.To, subscription.None},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			e, db, w := newTestEngine(t, Settings{})
			c := contactFor(tc.from)
			reach(t, e, c, tc.from)
			w.Reset()
			handle(t, e, presence(tc.typ, c, entityBare+"/phone", "f1"))
			if got := state(t, db, c); got != tc.from || w.String() != "" {
				t.Errorf("%s to another resource: %s → %s, sent %q\nRFC 6121: %s", tc.typ, tc.from.Abbr(), got.Abbr(), w.String(), rfc)
			}
			handle(t, e, presence(tc.typ, c, entityFull, "f2"))
			if got := state(t, db, c); got != tc.to {
				t.Errorf("%s to the entity's own resource: %s → %s, want %s\nRFC 6121: %s", tc.typ, tc.from.Abbr(), got.Abbr(), tc.to.Abbr(),
					`§8.5.3.1: "If an available resource or connected resource exactly matches the full JID, [...] For a presence stanza of type "subscribe", "subscribed", "unsubscribe", or "unsubscribed", the server MUST follow the guidelines provided under Section 3."`)
			}
		})
	}
	t.Run("subscribe", func(t *testing.T) {
		e, db, _ := newTestEngine(t, Settings{})
		handle(t, e, presence("subscribe", "ann@other.example", entityBare+"/phone", "s1"))
		if got := state(t, db, "ann@other.example"); got != subscription.NoneIn || len(held(t, db)) != 1 {
			t.Errorf("subscribe to a full JID: %s, %d held; want N+I, held\nRFC 6121: %s", got.Abbr(), len(held(t, db)), rfc)
		}
	})
	t.Run("own resource while offline", func(t *testing.T) {
		e, db, w := newTestEngine(t, Settings{})
		c := contactFor(subscription.To)
		reach(t, e, c, subscription.To)
		if _, err := e.GoOffline(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		w.Reset()
		handle(t, e, presence("unsubscribed", c, entityFull, "f3"))
		if got := state(t, db, c); got != subscription.To || w.String() != "" {
			t.Errorf("unsubscribed to a resource that is not available: %s, sent %q\nRFC 6121: %s", got.Abbr(), w.String(), rfc)
		}
	})
}

// §4.3.2: probe replies, by state and addressing; §4.3.2.1: unsubscribed
// and unavailable replies mirror the probe's id.
func TestProbeReplies(t *testing.T) {
	const (
		rule1  = `§4.3.2 rule 1: "the contact's server SHOULD return a presence stanza of type "unsubscribed" in response to the presence probe [...] Here the 'from' address MUST be the bare JID of the contact"`
		rule3  = `§4.3.2 rule 3: "if the contact has no available resources, then the server SHOULD reply to the presence probe by sending to the user a presence stanza of type "unavailable" [...] Here the 'from' address is the bare JID because there is no available resource associated with the contact."`
		rule4  = `§4.3.2 rule 4: "if the contact has at least one available resource, then the server MUST reply to the presence probe by sending to the user the full XML of the last presence stanza [...] Here the 'from' addresses are the full JIDs of each available resource."`
		full   = `§4.3.2: "If there is a resource matching the full JID and the probing entity has authorization via a presence subscription to see the contact's presence, then the server MUST return an available presence notification, which SHOULD communicate only the fact that the resource is available (not detailed information such as the <show/>, <status/>, <priority/>, or presence extensions)."`
		mirror = `§4.3.2.1: "if the contact currently has no available resources, the probing entity is not authorized (via presence subscription) to see the contact's presence, or an error occurs in relation to the probe, then the contact's server SHOULD mirror the 'id' of the user's presence probe when replying to the probing entity."`
	)
	settings := Settings{Entities: []Entity{{Local: "helpdesk", Show: "away", Status: "Ask me anything"}}}
	e, _, w := newTestEngine(t, settings)
	sub, stranger := contactFor(subscription.Both), contactFor(subscription.To)
	reach(t, e, sub, subscription.Both)
	reach(t, e, stranger, subscription.To)

	probeOf := func(from, to, id string) sent {
		t.Helper()
		w.Reset()
		handle(t, e, presence("probe", from, to, id))
		got := written(t, w)
		if len(got) != 1 {
			t.Fatalf("probe from %s to %s: %d replies %v, want 1", from, to, len(got), got)
		}
		return got[0]
	}
	check := func(what string, got sent, want sent, rfc string) {
		t.Helper()
		if got.Name != "presence" || got.From != want.From || got.To != want.To || got.Type != want.Type ||
			got.Show != want.Show || got.Status != want.Status || (want.ID != "" && got.ID != want.ID) || (want.ID == "" && got.ID == "") {
			t.Errorf("%s: got %+v, want %+v\nRFC 6121: %s", what, got, want, rfc)
		}
	}
	check("a stranger's probe", probeOf(stranger, entityBare, "p1"),
		sent{From: entityBare, To: stranger, Type: "unsubscribed", ID: "p1"}, rule1+" "+mirror)
	check("a stranger's probe of the full JID", probeOf(stranger, entityFull, "p2"),
		sent{From: entityBare, To: stranger, Type: "unsubscribed", ID: "p2"}, `§4.3.2: "Rules #1 and #2 for a bare JID probe apply equally to the case of a full JID probe." `+mirror)
	got := probeOf(sub+"/res", entityBare, "p3")
	check("a subscriber's probe", got, sent{From: entityFull, To: sub, Show: "away", Status: "Ask me anything"}, rule4)
	if got.ID == "p3" {
		t.Errorf("available presence mirrors the probe's id: %s", mirror)
	}
	check("a subscriber's probe of the entity's resource", probeOf(sub, entityFull, "p4"),
		sent{From: entityFull, To: sub}, full)
	check("a subscriber's probe of another resource", probeOf(sub, entityBare+"/phone", "p5"),
		sent{From: entityBare + "/phone", To: sub, Type: "unavailable", ID: "p5"}, `§4.3.2: "the server MUST NOT return presence information about any resource except the resource specified by the 'to' address of the probe." `+mirror)

	// The entity is no longer configured, but holds its items.
	settings.Entities = []Entity{{Local: "other"}}
	settings.Policy = reviewAll(t)
	if err := e.Reload(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	check("a subscriber's probe of an entity no longer configured", probeOf(sub, entityBare, "p6"),
		sent{From: entityBare, To: sub, Type: "unavailable", ID: "p6"}, rule3+" "+mirror)
	// The RFC does not say what a full-JID probe gets when no resource
	// matches; rostergate answers as for the bare JID (rule 3).
	check("its full JID", probeOf(sub, entityFull, "p7"),
		sent{From: entityBare, To: sub, Type: "unavailable", ID: "p7"}, rule3+" "+mirror)
	settings.Entities = []Entity{{Local: "helpdesk"}}
	if err := e.Reload(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	// Going offline.
	if _, err := e.GoOffline(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	check("a subscriber's probe while rostergate goes offline", probeOf(sub, entityBare, "p8"),
		sent{From: entityBare, To: sub, Type: "unavailable", ID: "p8"}, rule3+" "+mirror)
	check("a probe without an id", probeOf(stranger, entityBare, ""),
		sent{From: entityBare, To: stranger, Type: "unsubscribed"}, rule1)
}

// GoOffline: each subscriber learns that the entity's resource went away,
// from that resource.
func TestGoOfflineFromTheResource(t *testing.T) {
	e, _, w := newTestEngine(t, Settings{})
	c := contactFor(subscription.From)
	reach(t, e, c, subscription.From)
	w.Reset()
	if _, err := e.GoOffline(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	wantSent(t, w, `§4.5.2: "If an available resource becomes unavailable for any reason (either gracefully or ungracefully), the user's server MUST broadcast unavailable presence to all contacts that are in the user's roster with a subscription type of "from" or "both"."`,
		"presence unavailable "+entityFull+">"+c)
}

// §4.7.1: a presence type RFC 6121 does not define gets bad-request, from
// the JID it was sent to, with its id; nothing is stored.
func TestUnknownPresenceType(t *testing.T) {
	e, db, w := newTestEngine(t, Settings{})
	handle(t, e, presence("subscribe-me", "ann@other.example/res", entityBare, "b1"))
	got := written(t, w)
	const rfc = `§4.7.1: "If the value of the 'type' attribute is not one of the foregoing values, the recipient or an intermediate router SHOULD return a stanza error of <bad-request/>." (RFC 6120 §8.3.3.1 for the error)`
	if len(got) != 1 || got[0].Type != "error" || got[0].Cond != "bad-request" || got[0].ID != "b1" ||
		got[0].From != entityBare || got[0].To != "ann@other.example/res" {
		t.Errorf("answer to an unknown type: %v\nRFC 6121: %s", got, rfc)
	}
	if s := state(t, db, "ann@other.example"); s != subscription.None || len(held(t, db)) != 0 {
		t.Errorf("an unknown type changed the state: %s", s.Abbr())
	}
	w.Reset()
	handle(t, e,
		presence("error", "ann@other.example", entityBare, "b2"),
		presence("", "ann@other.example", entityBare, "b3"),
		presence("unavailable", "ann@other.example", entityBare, "b4"))
	if w.String() != "" {
		t.Errorf("error, available or unavailable presence answered: %s (RFC 6120 §8.3.1: an error is never answered)", w.String())
	}
}

// §8.5.1: a JID at the domain that is no entity is an account that does not
// exist. By default (unknown_entity unset: drop) its subscription stanzas
// are ignored and a probe gets unsubscribed; an admin may choose reject.
func TestUnknownEntityDoesNotExist(t *testing.T) {
	const (
		ignore = `§8.5.1: "If the user account identified by the 'to' attribute does not exist, [...] For a presence stanza of type "subscribe", "subscribed", "unsubscribe", or "unsubscribed", the server MUST silently ignore the stanza."`
		probe  = `§8.5.1: "For a presence stanza of type "probe", the server MUST either (a) silently ignore the stanza or (b) return a presence stanza of type "unsubscribed"."`
		nobody = "nobody@bots.localhost"
	)
	p, err := policy.Compile(policy.Config{Default: policy.Accept})
	if err != nil {
		t.Fatal(err)
	}
	e, db, w := newTestEngine(t, Settings{Policy: p})
	for _, typ := range []string{"subscribe", "subscribed", "unsubscribe", "unsubscribed"} {
		handle(t, e, presence(typ, "ann@other.example", nobody, "n-"+typ))
	}
	if w.String() != "" {
		t.Errorf("subscription stanzas to a JID that is no entity answered: %s\nRFC 6121: %s", w.String(), ignore)
	}
	if it, err := db.Get(context.Background(), "nobody", "ann@other.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stored for a JID that is no entity: %+v %v", it, err)
	}
	handle(t, e, presence("probe", "ann@other.example", nobody, "n-probe"))
	got := written(t, w)
	if len(got) != 1 || got[0].Type != "unsubscribed" || got[0].From != nobody || got[0].ID != "n-probe" {
		t.Errorf("probe of a JID that is no entity: %v\nRFC 6121: %s", got, probe)
	}

	p, err = policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Reject})
	if err != nil {
		t.Fatal(err)
	}
	e, _, w = newTestEngine(t, Settings{Policy: p})
	handle(t, e, presence("subscribe", "ann@other.example", nobody, "r1"))
	wantSent(t, w, `§3.2.1 (unknown_entity = "reject": the admin's choice)`, "presence unsubscribed "+nobody+">ann@other.example")
}

// routedTo is Tables 2 and 3: the state after the entity's subscribe or
// unsubscribe, from each state.
var routedTo = map[subscription.Kind]map[subscription.State]subscription.State{
	subscription.Subscribe: {
		subscription.None: subscription.NoneOut, subscription.NoneOut: subscription.NoneOut,
		subscription.NoneIn: subscription.NoneOutIn, subscription.NoneOutIn: subscription.NoneOutIn,
		subscription.To: subscription.To, subscription.ToIn: subscription.ToIn,
		subscription.From: subscription.FromOut, subscription.FromOut: subscription.FromOut, subscription.Both: subscription.Both,
	},
	subscription.Unsubscribe: {
		subscription.None: subscription.None, subscription.NoneOut: subscription.None,
		subscription.NoneIn: subscription.NoneIn, subscription.NoneOutIn: subscription.NoneIn,
		subscription.To: subscription.None, subscription.ToIn: subscription.NoneIn,
		subscription.From: subscription.From, subscription.FromOut: subscription.From, subscription.Both: subscription.From,
	},
}

// Tables 2 and 3: an entity's subscribe and unsubscribe are routed in every
// state, changed or not; subscribed and unsubscribed only where they change
// something (Tables 4 and 5: M.N. and S.N.).
func TestOutboundRouted(t *testing.T) {
	for _, s := range allStates {
		for _, k := range []subscription.Kind{subscription.Subscribe, subscription.Unsubscribe} {
			t.Run(k.String()+" in "+s.Abbr(), func(t *testing.T) {
				e, db, w := newTestEngine(t, Settings{})
				c := contactFor(s)
				reach(t, e, c, s)
				w.Reset()
				act(t, e, c, k)
				wantSent(t, w, `Tables 2 and 3: ROUTE? MUST in every row`, "presence "+k.String()+" "+entityBare+">"+c)
				if want := routedTo[k][s]; state(t, db, c) != want {
					t.Errorf("state %s, want %s (Tables 2 and 3)", state(t, db, c).Abbr(), want.Abbr())
				}
			})
		}
	}
}

// §3.1.2 and §4.2: on every (re)connect, presence to each contact with
// From, a probe to each with To, and the entity's unanswered requests
// again; T+I and F+O included.
func TestResync(t *testing.T) {
	e, _, w := newTestEngine(t, Settings{})
	for _, s := range allStates {
		reach(t, e, contactFor(s), s)
	}
	w.Reset()
	if err := e.Resync(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range allStates { // contactFor sorts as allStates does not: compare as sets
		c := contactFor(s)
		if s.HasFrom() {
			want = append(want, "presence available "+entityFull+">"+c)
		}
		if s.HasTo() {
			want = append(want, "presence probe "+entityBare+">"+c)
		}
		if s.PendingOut() {
			want = append(want, "presence subscribe "+entityBare+">"+c)
		}
	}
	got := summary(t, w)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("resync sent:\n  %s\nwant:\n  %s\nRFC 6121 §3.1.2: %q", strings.Join(got, "\n  "), strings.Join(want, "\n  "),
			"the user's server SHOULD resend the subscription request to the contact based on an implementation-specific algorithm (e.g., whenever a new resource becomes available for the user [...])")
	}
}

// Held requests: a duplicate subscribe keeps the one row and tells the
// admins once; an admin's reject and a TTL expiry send unsubscribed.
func TestHeldRequests(t *testing.T) {
	ctx := context.Background()
	e, db, w := newTestEngine(t, Settings{Admins: []string{"admin@localhost"}, ReviewTTL: time.Hour})
	handle(t, e, subscribe("ann@other.example/a"), subscribe("ann@other.example/b"))
	handle(t, e, subscribe("ann@other.example/c"))
	if n := len(held(t, db)); n != 1 || e.Held() != 1 {
		t.Errorf("a duplicate subscribe while held: %d rows, %d counted; want 1 (Table 6: \"None + Pending In\" | S.N. | no state change)", n, e.Held())
	}
	notices := 0
	for _, s := range written(t, w) {
		if s.Name == "message" && s.To == "admin@localhost" {
			notices++
		}
		if s.Name == "presence" {
			t.Errorf("a held request answered: %s", s)
		}
	}
	if notices != 1 {
		t.Errorf("admin notices: %d, want 1", notices)
	}

	w.Reset()
	reqs := held(t, db)
	out := e.DecideHeld(ctx, []int64{reqs[0].ID}, false, roster.Actor{JID: "admin@localhost", Via: roster.ViaChat})
	if out[0].Err != nil {
		t.Fatal(out[0].Err)
	}
	wantSent(t, w, `Table 5: "None + Pending In" | MUST | "None"`, "presence unsubscribed "+entityBare+">ann@other.example")

	handle(t, e, subscribe("bea@other.example"))
	reqs = held(t, db)
	w.Reset()
	e.Expire(ctx, reqs[0].Created.Add(time.Hour))
	var presences []string
	for _, s := range written(t, w) {
		if s.Name == "presence" {
			presences = append(presences, s.String())
		}
	}
	if !slices.Equal(presences, []string{"presence unsubscribed " + entityBare + ">bea@other.example"}) {
		t.Errorf("TTL expiry sent %q, want unsubscribed (Table 5)", presences)
	}
}

// Pre-approval beyond None (§3.4): in N+O and T an inbound subscribe is
// approved at once; a probe does not cancel it, an outbound unsubscribed
// does.
func TestPreApproval(t *testing.T) {
	const rfc = `§3.4.2: "If the contact is in the user's roster with a state of "To", "None", or "None + Pending Out", the user's server MUST note the subscription pre-approval"; Table 6 [1]: "the server MAY auto-reply with "subscribed" and change the state to "From""`
	for _, tc := range []struct{ from, to subscription.State }{
		{subscription.None, subscription.From},
		{subscription.NoneOut, subscription.FromOut},
		{subscription.To, subscription.Both},
	} {
		t.Run(tc.from.Abbr(), func(t *testing.T) {
			e, db, w := newTestEngine(t, Settings{})
			c := contactFor(tc.from)
			reach(t, e, c, tc.from)
			act(t, e, c, subscription.Subscribed)
			handle(t, e, presence("probe", c, entityBare, "pp"))
			w.Reset()
			handle(t, e, subscribe(c))
			if got := state(t, db, c); got != tc.to || len(held(t, db)) != 0 {
				t.Errorf("pre-approved subscribe in %s: %s, %d held; want %s\nRFC 6121: %s", tc.from.Abbr(), got.Abbr(), len(held(t, db)), tc.to.Abbr(), rfc)
			}
			wantSent(t, w, rfc, "presence subscribed "+entityBare+">"+c, "presence available "+entityFull+">"+c)
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		e, db, _ := newTestEngine(t, Settings{})
		c := contactFor(subscription.To)
		reach(t, e, c, subscription.To)
		act(t, e, c, subscription.Subscribed, subscription.Unsubscribed)
		handle(t, e, subscribe(c))
		if got := state(t, db, c); got != subscription.ToIn {
			t.Errorf("subscribe after the pre-approval was cancelled: %s, want T+I (Table 5 [1])", got.Abbr())
		}
	})
}

// §2.5.2: removing a contact sends unsubscribe only if the entity has (or
// asked for) the contact's presence, unsubscribed only if the contact has
// (or asked for) the entity's; nothing for a contact the entity holds
// nothing for.
func TestRemove(t *testing.T) {
	const rfc = `§2.5.2: "If the user has a presence subscription to the contact, then the user's server MUST send a presence stanza of type "unsubscribe" [...] If the contact has a presence subscription to the user, then the user's server MUST send a presence stanza of type "unsubscribed""`
	want := map[subscription.State][]string{
		subscription.None:      nil,
		subscription.NoneOut:   {"unsubscribe"},
		subscription.NoneIn:    {"unsubscribed"},
		subscription.NoneOutIn: {"unsubscribe", "unsubscribed"},
		subscription.To:        {"unsubscribe"},
		subscription.ToIn:      {"unsubscribe", "unsubscribed"},
		subscription.From:      {"unavailable", "unsubscribed"},
		subscription.FromOut:   {"unsubscribe", "unavailable", "unsubscribed"},
		subscription.Both:      {"unsubscribe", "unavailable", "unsubscribed"},
	}
	for _, s := range allStates {
		t.Run(s.Abbr(), func(t *testing.T) {
			e, db, w := newTestEngine(t, Settings{})
			c := contactFor(s)
			reach(t, e, c, s)
			w.Reset()
			err := e.Remove(context.Background(), roster.Actor{JID: "test", Via: roster.ViaCLI}, "helpdesk", c)
			if s == subscription.None {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("removing a contact not on the roster: %v, want not found", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range written(t, w) {
				got = append(got, p.Type)
			}
			if !slices.Equal(got, want[s]) {
				t.Errorf("sent %q, want %q\nRFC 6121: %s", got, want[s], rfc)
			}
			if st := state(t, db, c); st != subscription.None || len(held(t, db)) != 0 {
				t.Errorf("after the removal: %s, %d held; want nothing", st.Abbr(), len(held(t, db)))
			}
		})
	}
	t.Run("pre-approved", func(t *testing.T) {
		e, db, w := newTestEngine(t, Settings{})
		act(t, e, "pre@other.example", subscription.Subscribed)
		w.Reset()
		if err := e.Remove(context.Background(), roster.Actor{JID: "test", Via: roster.ViaCLI}, "helpdesk", "pre@other.example"); err != nil {
			t.Fatal(err)
		}
		if w.String() != "" {
			t.Errorf("removing a pre-approval sent %s (Table 5: \"None\" | S.N.)", w.String())
		}
		if _, err := db.Get(context.Background(), "helpdesk", "pre@other.example"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the pre-approval is still stored: %v", err)
		}
	})
}

// An entity no longer configured still holds its items but has no
// resource: a contact's unsubscribe is answered without an unavailable
// from a resource it does not have (§3.3.3: "from each of the contact's
// available resources"), and a resync probes and asks nobody for it,
// though it tells its subscribers it is unavailable.
func TestRemovedEntity(t *testing.T) {
	e, _, w := newTestEngine(t, Settings{})
	b, o := contactFor(subscription.Both), contactFor(subscription.NoneOut)
	reach(t, e, b, subscription.Both)
	reach(t, e, o, subscription.NoneOut)
	if err := e.Reload(context.Background(), Settings{Entities: []Entity{{Local: "other"}}, Policy: reviewAll(t)}); err != nil {
		t.Fatal(err)
	}
	w.Reset()
	if err := e.Resync(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	wantSent(t, w, `§4.3.2 rule 3, for the subscriber; no probe or subscribe on behalf of an entity with no session`,
		"presence unavailable "+entityBare+">"+b)
	w.Reset()
	handle(t, e, presence("unsubscribe", b, entityBare, "r1"))
	wantSent(t, w, `Table 7 [1]: "Server SHOULD auto-reply with "unsubscribed"", and no resource to go unavailable`,
		"presence unsubscribed "+entityBare+">"+b)
}
