package stanza

import (
	"testing"

	"mellium.im/xmpp/jid"
)

const fuzzDomain = "bots.localhost"

// FuzzJID: Address on any from and to. When it succeeds (or can reply),
// the contact is a normalised bare JID that parses to itself; the entity is
// "" or a normalised localpart; the normalised "to" parses to itself, at
// the domain; and parsing the normalised addresses again gives the same.
func FuzzJID(f *testing.F) {
	f.Fuzz(func(t *testing.T, from, to string) {
		a, canReply, err := (&Element{From: from, To: to}).Address(fuzzDomain)
		if canReply {
			j, perr := jid.Parse(a.Contact)
			if perr != nil {
				t.Fatalf("contact %q (from %q) does not parse: %v", a.Contact, from, perr)
			}
			if j.String() != a.Contact || j.Resourcepart() != "" {
				t.Fatalf("contact %q (from %q) is not a normalised bare JID: it parses to %q", a.Contact, from, j.String())
			}
		} else if a != (Address{}) {
			t.Fatalf("no reply possible, yet an address: %+v", a)
		}
		if err != nil {
			return
		}
		if a.Entity != "" {
			e, err := jid.New(a.Entity, fuzzDomain, "")
			if err != nil {
				t.Fatalf("entity %q (to %q) is not a localpart: %v", a.Entity, to, err)
			}
			if e.Localpart() != a.Entity {
				t.Fatalf("entity %q (to %q) is not normalised: %q", a.Entity, to, e.Localpart())
			}
		}
		j, perr := jid.Parse(a.To)
		if perr != nil {
			t.Fatalf("to %q (from %q) does not parse: %v", a.To, to, perr)
		}
		if j.String() != a.To || j.Domainpart() != fuzzDomain || j.Localpart() != a.Entity || j.Resourcepart() != a.Resource {
			t.Fatalf("to %q (from %q) parses to %q: %q %q %q; address %+v", a.To, to, j.String(), j.Localpart(), j.Domainpart(), j.Resourcepart(), a)
		}
		b, _, err := (&Element{From: a.Contact, To: a.To}).Address(fuzzDomain)
		if err != nil || b != a {
			t.Fatalf("the normalised addresses parse to %+v, %v; want %+v", b, err, a)
		}
	})
}
