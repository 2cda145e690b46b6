package stanza

import (
	"bytes"
	"encoding/xml"
	"testing"
)

// esc writes exactly what xml.EscapeText writes, through its fast path or not.
func FuzzEsc(f *testing.F) {
	for _, s := range []string{"", "alice@example.com/r", "a&b", "<x>", `'"`, "tab\there", "nl\n", "cr\r", "\x00\x01",
		"del\x7f", "ünïcode", "bad\xff\xfe", "\uFFFE", "\U0001F600", "x\u2028y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got, want bytes.Buffer
		Esc(&got, s)
		if err := xml.EscapeText(&want, []byte(s)); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("esc(%q) = %q, xml.EscapeText = %q", s, got.String(), want.String())
		}
	})
}

// A subscribe's XEP-0379 token is read; anything else about preauth is
// either ignored (another namespace, another type) or marked malformed.
func TestNextPreauth(t *testing.T) {
	for _, tc := range []struct{ name, inner, typ, want string }{
		{"token", `<preauth xmlns='urn:xmpp:pars:0' token='abc'/>`, "subscribe", "abc"},
		{"none", `<status>hi</status>`, "subscribe", ""},
		{"another namespace", `<preauth xmlns='urn:example' token='abc'/>`, "subscribe", ""},
		{"not a subscribe", `<preauth xmlns='urn:xmpp:pars:0' token='abc'/>`, "subscribed", ""},
		{"no token", `<preauth xmlns='urn:xmpp:pars:0'/>`, "subscribe", BadPreauth},
		{"two", `<preauth xmlns='urn:xmpp:pars:0' token='a'/><preauth xmlns='urn:xmpp:pars:0' token='b'/>`, "subscribe", BadPreauth},
		{"escaped", `<preauth xmlns='urn:xmpp:pars:0' token='a&amp;b'/>`, "subscribe", "a&b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>` +
				`<presence from='alice@example.com' to='gated@bots.example.com' type='` + tc.typ + `'>` + tc.inner + `</presence>`
			el, err := Next(xml.NewDecoder(bytes.NewReader([]byte(doc))), nil)
			if err != nil {
				t.Fatal(err)
			}
			if el.Name != "presence" || el.Type != tc.typ || el.Preauth != tc.want {
				t.Errorf("Next = %+v, want Preauth %q", el, tc.want)
			}
		})
	}
}

// A message's XEP-0356 advertisement is read in either namespace; another
// namespace is no advertisement.
func TestNextPrivilege(t *testing.T) {
	for _, tc := range []struct {
		name, inner string
		ns, roster  string // "" ns: no advertisement
	}{
		{"v2", `<privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/></privilege>`, "urn:xmpp:privilege:2", "both"},
		{"v1, ejabberd's", `<privilege xmlns='urn:xmpp:privilege:1'><perm type='none' access='message'/><perm type='get' access='roster'/></privilege>`, "urn:xmpp:privilege:1", "get"},
		{"no roster", `<privilege xmlns='urn:xmpp:privilege:2'><perm access='message' type='outgoing'/></privilege>`, "urn:xmpp:privilege:2", ""},
		{"the first of two", `<privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='get'/><perm access='roster' type='both'/></privilege>`, "urn:xmpp:privilege:2", "get"},
		{"another namespace", `<privilege xmlns='urn:example'><perm access='roster' type='both'/></privilege>`, "", ""},
		{"a body", `<body>hi</body>`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>` +
				`<message from='example.com' to='bots.example.com'>` + tc.inner + `</message>`
			el, err := Next(xml.NewDecoder(bytes.NewReader([]byte(doc))), nil)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.ns == "" && el.Privilege != nil:
				t.Errorf("Privilege = %+v, want none", el.Privilege)
			case tc.ns != "" && (el.Privilege == nil || el.Privilege.NS != tc.ns || el.Privilege.Perms["roster"] != tc.roster):
				t.Errorf("Privilege = %+v, want %s roster=%q", el.Privilege, tc.ns, tc.roster)
			}
		})
	}
}
