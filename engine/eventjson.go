package engine

import (
	"strconv"
	"unicode/utf8"
)

// The events' JSON is written by hand, not by encoding/json: one is made
// per decision for an entity with a bot, and reflection cost a tenth of
// the decision rate. TestEventJSON checks that encoding/json reads back
// what these write.

// jsonEvent is an event's data, written as a JSON object.
type jsonEvent interface{ appendJSON([]byte) []byte }

func (m MessageEvent) appendJSON(b []byte) []byte {
	b = jsonField(b, '{', "from", m.From)
	b = jsonField(b, ',', "type", m.Type)
	b = jsonField(b, ',', "body", m.Body)
	b = jsonField(b, ',', "thread", m.Thread)
	b = jsonField(b, ',', "id", m.ID)
	return append(b, '}')
}

func (p PresenceEvent) appendJSON(b []byte) []byte {
	b = jsonField(b, '{', "from", p.From)
	b = jsonField(b, ',', "type", p.Type)
	b = jsonField(b, ',', "show", p.Show)
	b = jsonField(b, ',', "status", p.Status)
	return append(b, '}')
}

func (s SubscriptionEvent) appendJSON(b []byte) []byte {
	b = jsonField(b, '{', "jid", s.JID)
	b = jsonField(b, ',', "subscription", s.Subscription)
	b = append(b, `,"pending_in":`...)
	b = strconv.AppendBool(b, s.PendingIn)
	b = append(b, `,"pending_out":`...)
	b = strconv.AppendBool(b, s.PendingOut)
	b = jsonField(b, ',', "change", s.Change)
	b = jsonField(b, ',', "by", s.By)
	return append(b, '}')
}

func (r RequestEvent) appendJSON(b []byte) []byte {
	b = jsonField(b, '{', "jid", r.JID)
	b = jsonField(b, ',', "state", r.State)
	b = jsonField(b, ',', "rule", r.Rule)
	return append(b, '}')
}

// jsonField appends sep, the key (which needs no escaping) and the value.
func jsonField(b []byte, sep byte, key, v string) []byte {
	b = append(b, sep, '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return jsonString(b, v)
}

const hexDigits = "0123456789abcdef"

// jsonString appends s as a JSON string: quotes, backslashes and control
// characters escaped, bytes that are not UTF-8 replaced by U+FFFD. Runs of
// bytes that need nothing are copied whole.
func jsonString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' && c != 0x7f {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		b = append(b, s[start:i]...)
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default: // a byte that is not UTF-8
			b = append(b, `\ufffd`...)
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
