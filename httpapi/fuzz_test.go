package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// FuzzDecode: whatever the body, decoding and checking a request never
// panics, refuses with a 400 or 422, and what it accepts is a message a
// stanza can carry.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"to":"ann@example.com","body":"hi"}`,
		`{"to":"ann@example.com/pc","body":"hi","type":"normal","thread":"t","id":"x"}`,
		`{"to":"ann@@example.com","body":"hi"}`,
		`{"to":"ann@example.com","body":"\u0000"}`,
		`{"show":"away","status":"x"}`,
		`{"jid":"ann@example.com"}`,
		`{"to":"a","body":"b"} {}`,
		`[1,2]`, `null`, `{"to":null}`, ``, `{"to":"` + strings.Repeat("a", 2000) + `@x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m MessageRequest
		if err := decodeJSON(body, &m); err != nil {
			wantRefusal(t, err, http.StatusBadRequest)
		} else if out, err := m.check(); err != nil {
			wantRefusal(t, err, http.StatusUnprocessableEntity)
		} else {
			if _, err := jid.Parse(out.To); err != nil || out.Body == "" || !utf8.ValidString(out.Body) {
				t.Errorf("accepted %+v", out)
			}
			if out.Type != "chat" && out.Type != "normal" && out.Type != "headline" {
				t.Errorf("accepted type %q", out.Type)
			}
		}
		var p PresenceRequest
		if err := decodeJSON(body, &p); err == nil {
			if err := p.check(); err != nil {
				wantRefusal(t, err, http.StatusUnprocessableEntity)
			}
		}
	})
}

func wantRefusal(t *testing.T, err error, status int) {
	t.Helper()
	var br *badRequest
	if !errors.As(err, &br) || br.status != status || br.msg == "" {
		t.Errorf("refusal %v: want a %d with a reason", err, status)
	}
}
