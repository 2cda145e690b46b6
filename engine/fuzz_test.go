package engine

import (
	"testing"

	"mellium.im/xmpp/jid"

	"rostergate/xmpp/stanza"
)

const fuzzDomain = "bots.localhost"

// FuzzJID: parseAddress on any from and to. When it succeeds (or can reply),
// the contact is a normalised bare JID that parses to itself; the entity is
// "" or a normalised localpart; the normalised "to" parses to itself, at
// the domain; and parsing the normalised addresses again gives the same.
func FuzzJID(f *testing.F) {
	e := &Engine{domain: jid.MustParse(fuzzDomain)}
	f.Fuzz(func(t *testing.T, from, to string) {
		a, canReply, err := e.parseAddress(&stanza.Element{From: from, To: to})
		if canReply {
			j, perr := jid.Parse(a.contact)
			if perr != nil {
				t.Fatalf("contact %q (from %q) does not parse: %v", a.contact, from, perr)
			}
			if j.String() != a.contact || j.Resourcepart() != "" {
				t.Fatalf("contact %q (from %q) is not a normalised bare JID: it parses to %q", a.contact, from, j.String())
			}
		} else if a != (address{}) {
			t.Fatalf("no reply possible, yet an address: %+v", a)
		}
		if err != nil {
			return
		}
		if a.entity != "" {
			e, err := jid.New(a.entity, fuzzDomain, "")
			if err != nil {
				t.Fatalf("entity %q (to %q) is not a localpart: %v", a.entity, to, err)
			}
			if e.Localpart() != a.entity {
				t.Fatalf("entity %q (to %q) is not normalised: %q", a.entity, to, e.Localpart())
			}
		}
		j, perr := jid.Parse(a.to)
		if perr != nil {
			t.Fatalf("to %q (from %q) does not parse: %v", a.to, to, perr)
		}
		if j.String() != a.to || j.Domainpart() != fuzzDomain || j.Localpart() != a.entity || j.Resourcepart() != a.resource {
			t.Fatalf("to %q (from %q) parses to %q: %q %q %q; address %+v", a.to, to, j.String(), j.Localpart(), j.Domainpart(), j.Resourcepart(), a)
		}
		b, _, err := e.parseAddress(&stanza.Element{From: a.contact, To: a.to})
		if err != nil || b != a {
			t.Fatalf("the normalised addresses parse to %+v, %v; want %+v", b, err, a)
		}
	})
}
