package stanza

import (
	"bytes"
	"testing"
)

// XEP-0115 §5.2, the simple generation example.
func TestCapsVer(t *testing.T) {
	got := CapsVer("client", "pc", "Exodus 0.9.1", []string{
		"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/muc",
		"http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#items",
	})
	if want := "QgayPKawpkPSDYmwT/WM94uAlu0="; got != want {
		t.Errorf("CapsVer = %s, want %s (XEP-0115 §5.2)", got, want)
	}
}

func TestPresenceWith(t *testing.T) {
	var b bytes.Buffer
	PresenceWith(&b, "a@b/r", "c@d", "i1", "", "away", "x<y", "<x xmlns='vcard-temp:x:update'><photo/></x>")
	if want := "<presence from='a@b/r' to='c@d' id='i1'><show>away</show><status>x&lt;y</status><x xmlns='vcard-temp:x:update'><photo/></x></presence>"; b.String() != want {
		t.Errorf("PresenceWith:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	PresenceWith(&b, "a@b/r", "c@d", "i1", "", "", "", "")
	if want := "<presence from='a@b/r' to='c@d' id='i1'/>"; b.String() != want {
		t.Errorf("PresenceWith without extras: %s", b.String())
	}
}

// A type is escaped like every attribute: no caller's value can end it.
func TestTypeEscaped(t *testing.T) {
	var b bytes.Buffer
	Message(&b, "a@b", "c@d", "1", "x'y", "hi")
	Presence(&b, "a@b", "c@d", "2", "x'y", "", "")
	if bytes.Contains(b.Bytes(), []byte("x'y")) || !bytes.Contains(b.Bytes(), []byte("x&#39;y")) {
		t.Errorf("a type with a quote: %s", b.String())
	}
}
