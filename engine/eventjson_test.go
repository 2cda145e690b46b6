package engine

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// What the events' writers write, encoding/json reads back as it was, for
// any text (bytes that are not UTF-8 become U+FFFD, as encoding/json makes
// them).
func TestEventJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\\back`, "new\nline\r\ttab", "\x00\x01\x1f\x7f", "<b>&amp;</b>",
		"é ü 中文 🙂", "\u2028\u2029", "bad \xff\xfe utf8", strings.Repeat("x", 3000)} {
		check := func(v jsonEvent, into any) {
			t.Helper()
			out := v.appendJSON(nil)
			if !json.Valid(out) {
				t.Fatalf("%T %q: not JSON: %s", v, s, out)
			}
			if err := json.Unmarshal(out, into); err != nil {
				t.Fatal(err)
			}
			// What encoding/json itself would read from its own encoding.
			want := reflect.New(reflect.TypeOf(v)).Interface()
			std, _ := json.Marshal(v)
			if err := json.Unmarshal(std, want); err != nil {
				t.Fatal(err)
			}
			if got := reflect.ValueOf(into).Elem().Interface(); !reflect.DeepEqual(got, reflect.ValueOf(want).Elem().Interface()) {
				t.Errorf("%T %q: read back %+v, want %+v", v, s, got, want)
			}
			if !utf8.Valid(out) {
				t.Errorf("%T %q: not UTF-8", v, s)
			}
		}
		check(MessageEvent{From: s, Type: "chat", Body: s, Thread: s, ID: s}, &MessageEvent{})
		check(PresenceEvent{From: s, Type: "available", Show: s, Status: s}, &PresenceEvent{})
		check(SubscriptionEvent{JID: s, Subscription: "both", PendingIn: true, Change: s, By: s}, &SubscriptionEvent{})
		check(RequestEvent{JID: s, State: "held", Rule: s}, &RequestEvent{})
	}
}
