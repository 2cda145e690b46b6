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
