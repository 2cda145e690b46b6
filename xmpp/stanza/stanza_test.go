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
