package component

import (
	"bytes"
	"sync/atomic"
)

// Stats are what the transport has counted since the start, and whether
// the stream is up; read them with Stats.
type Stats struct {
	// Up says a stream is up: handshake done and the engine attached.
	Up bool
	// Reconnects counts the times the stream dropped, or a connection
	// failed, and the transport tried again.
	Reconnects uint64
	// In counts the stanzas received, Out those written, by kind.
	In, Out StanzaCounts
}

// StanzaCounts count stanzas by kind.
type StanzaCounts struct{ Presence, Message, IQ uint64 }

// Stats returns what the transport has counted.
func (c *Component) Stats() Stats {
	return Stats{Up: c.up.Load(), Reconnects: c.reconnects.Load(), In: c.in.load(), Out: c.out.load()}
}

// stanzaCounter counts stanzas by kind, atomically: the reader and the
// writers count without a lock.
type stanzaCounter struct{ presence, message, iq atomic.Uint64 }

// add counts a stanza named name; others are not counted.
func (s *stanzaCounter) add(name string) {
	switch name {
	case "presence":
		s.presence.Add(1)
	case "message":
		s.message.Add(1)
	case "iq":
		s.iq.Add(1)
	}
}

func (s *stanzaCounter) load() StanzaCounts {
	return StanzaCounts{Presence: s.presence.Load(), Message: s.message.Load(), IQ: s.iq.Load()}
}

// addWritten counts the stanzas in p, what one Write sends: whole stanzas
// as rostergate's writers (package xmpp/stanza) write them, whose
// character data and attribute values are escaped, so that every '<' and
// '>' is markup. It counts the elements at the top level by name, skipping
// the rest with bytes.IndexByte; a stream's end or a stream error is no
// stanza, a whitespace keepalive holds none.
func (s *stanzaCounter) addWritten(p []byte) {
	depth := 0
	for {
		i := bytes.IndexByte(p, '<')
		if i < 0 {
			return
		}
		p = p[i+1:]
		j := bytes.IndexByte(p, '>')
		if j <= 0 {
			return
		}
		tag := p[:j]
		p = p[j+1:]
		switch tag[0] {
		case '/':
			depth = max(depth-1, 0)
		case '?', '!':
		default:
			if depth == 0 {
				name := tag
				if k := bytes.IndexAny(tag, " \t\r\n/"); k >= 0 {
					name = tag[:k]
				}
				// string(name) compared, not kept: no allocation.
				switch string(name) {
				case "presence":
					s.presence.Add(1)
				case "message":
					s.message.Add(1)
				case "iq":
					s.iq.Add(1)
				}
			}
			if tag[len(tag)-1] != '/' {
				depth++
			}
		}
	}
}
