package component

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"

	"mellium.im/xmpp/stream"
)

const (
	nsAccept   = "jabber:component:accept"
	nsCommands = "http://jabber.org/protocol/commands"
	nsStreams  = "http://etherx.jabber.org/streams"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsDiscInfo = "http://jabber.org/protocol/disco#info"
	nsDiscItem = "http://jabber.org/protocol/disco#items"
	nsPing     = "urn:xmpp:ping"
	nsVersion  = "jabber:iq:version"
)

// streamHeader is what the decoder is fed before the bytes that follow the
// handshake; it declares the namespaces the server's header declared.
const streamHeader = `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>`

// errStreamClosed is the server closing the stream with </stream:stream>.
var errStreamClosed = errors.New("component: server closed the stream")

// element is a top-level stanza as read from the stream: its name and
// addressing attributes, and for IQs the first child.
type element struct {
	Name    string // presence, message or iq
	From    string
	To      string
	ID      string
	Type    string
	Payload *payload // first child of an IQ
	Raw     []byte   // an IQ's children as received
	Body    string   // a message's body

	big bool // holds one of readLoop's tokens for big stanzas

	// The parsed addressing, once address has been called.
	parsed   bool
	addr     address
	canReply bool
	addrErr  error
}

// retained is about how many bytes el keeps while it waits to be handled.
func (el *element) retained() int {
	return len(el.Raw) + len(el.Body) + len(el.From) + len(el.To) + len(el.ID) + len(el.Type)
}

type payload struct {
	XMLName xml.Name
	Node    string `xml:"node,attr"`
}

type iqBody struct {
	Inner    []byte    `xml:",innerxml"`
	Children []payload `xml:",any"`
}

type messageBody struct {
	Body string `xml:"body"`
}

// nextLimited reads the next stanza, each stanza and each token between
// stanzas bounded by pr's budget (pr may be nil). It returns a *StreamError
// when the server sends a stream error, and errStreamClosed when it closes
// the stream.
func nextLimited(d *xml.Decoder, pr *prefixReader) (*element, error) {
	for {
		if pr != nil {
			pr.budget()
		}
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == nsStreams && t.Name.Local == "stream" {
				continue // our own prefix
			}
			if t.Name.Space == nsStreams && t.Name.Local == "error" {
				var se stream.Error
				if err := d.DecodeElement(&se, &t); err != nil {
					return nil, fmt.Errorf("component: reading stream error: %w", err)
				}
				return nil, fmt.Errorf("component: %w", &StreamError{Err: se})
			}
			el := &element{Name: t.Name.Local}
			if t.Name.Space != nsAccept {
				// Not a stanza of this stream (RFC 6120 §4.8.2): named with its
				// namespace, so that nothing handles it as one.
				el.Name = "{" + t.Name.Space + "}" + t.Name.Local
			}
			for _, a := range t.Attr {
				if a.Name.Space != "" {
					continue
				}
				switch a.Name.Local {
				case "from":
					el.From = a.Value
				case "to":
					el.To = a.Value
				case "id":
					el.ID = a.Value
				case "type":
					el.Type = a.Value
				}
			}
			if el.Name == "iq" {
				var body iqBody
				if err := d.DecodeElement(&body, &t); err != nil {
					return nil, fmt.Errorf("component: reading iq: %w", err)
				}
				if len(body.Children) > 0 {
					el.Payload = &body.Children[0]
				}
				el.Raw = body.Inner
			} else if el.Name == "message" {
				var body messageBody
				if err := d.DecodeElement(&body, &t); err != nil {
					return nil, fmt.Errorf("component: reading message: %w", err)
				}
				el.Body = body.Body
			} else if err := d.Skip(); err != nil {
				return nil, fmt.Errorf("component: reading %s: %w", el.Name, err)
			}
			return el, nil
		case xml.EndElement:
			return nil, errStreamClosed
		}
	}
}

// StreamError is a stream error the server sent (RFC 6120 §4.9), reported by
// its condition name.
type StreamError struct {
	Err stream.Error
}

func (e *StreamError) Error() string {
	msg := "stream error from server: " + e.Err.Err
	for _, t := range e.Err.Text {
		if t.Value != "" {
			msg += " (" + t.Value + ")"
			break
		}
	}
	return msg
}

// Condition returns the defined condition, e.g. "not-authorized".
func (e *StreamError) Condition() string { return e.Err.Err }

// esc escapes s for an attribute value or character data.
//
// Most values (JIDs, ids, statuses) need no escaping: they are written as
// they are, and only the others go through xml.EscapeText, whose output is
// the same for these (it changes only the five specials, tab, newline,
// carriage return and what is not valid XML character data).
func esc(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '&' || c == '<' || c == '>' || c == '\'' || c == '"' {
			_ = xml.EscapeText(b, []byte(s))
			return
		}
	}
	b.WriteString(s)
}

// presence appends a presence stanza to b.
func presence(b *bytes.Buffer, from, to, id, typ, show, status string) {
	b.WriteString("<presence from='")
	esc(b, from)
	b.WriteString("' to='")
	esc(b, to)
	b.WriteString("' id='")
	esc(b, id)
	if typ != "" {
		b.WriteString("' type='")
		b.WriteString(typ)
	}
	if show == "" && status == "" {
		b.WriteString("'/>")
		return
	}
	b.WriteString("'>")
	if show != "" {
		b.WriteString("<show>")
		esc(b, show)
		b.WriteString("</show>")
	}
	if status != "" {
		b.WriteString("<status>")
		esc(b, status)
		b.WriteString("</status>")
	}
	b.WriteString("</presence>")
}

// iqReply appends an IQ result (inner may be empty) answering el.
func iqReply(b *bytes.Buffer, el *element, inner string) {
	b.WriteString("<iq type='result' from='")
	esc(b, el.To)
	b.WriteString("' to='")
	esc(b, el.From)
	b.WriteString("' id='")
	esc(b, el.ID)
	if inner == "" {
		b.WriteString("'/>")
		return
	}
	b.WriteString("'>")
	b.WriteString(inner)
	b.WriteString("</iq>")
}

// iqError appends an IQ error answering el (RFC 6120 §8.3).
func iqError(b *bytes.Buffer, el *element, typ, condition string) {
	b.WriteString("<iq type='error' from='")
	esc(b, el.To)
	b.WriteString("' to='")
	esc(b, el.From)
	b.WriteString("' id='")
	esc(b, el.ID)
	b.WriteString("'><error type='")
	b.WriteString(typ)
	b.WriteString("'><")
	b.WriteString(condition)
	b.WriteString(" xmlns='" + nsStanzas + "'/></error></iq>")
}

// message appends a message stanza with a body to b.
func message(b *bytes.Buffer, from, to, id, typ, body string) {
	b.WriteString("<message from='")
	esc(b, from)
	b.WriteString("' to='")
	esc(b, to)
	b.WriteString("' id='")
	esc(b, id)
	b.WriteString("' type='")
	b.WriteString(typ)
	b.WriteString("'><body>")
	esc(b, body)
	b.WriteString("</body></message>")
}

// presenceError appends a presence error answering el, from from.
func presenceError(b *bytes.Buffer, from string, el *element, typ, condition string) {
	stanzaError(b, "presence", from, el, typ, condition)
}

// stanzaError appends a stanza error of kind name (presence or message)
// answering el, from from (RFC 6120 §8.3).
func stanzaError(b *bytes.Buffer, name, from string, el *element, typ, condition string) {
	b.WriteString("<" + name + " type='error' from='")
	esc(b, from)
	b.WriteString("' to='")
	esc(b, el.From)
	if el.ID != "" {
		b.WriteString("' id='")
		esc(b, el.ID)
	}
	b.WriteString("'><error type='")
	b.WriteString(typ)
	b.WriteString("'><")
	b.WriteString(condition)
	b.WriteString(" xmlns='" + nsStanzas + "'/></error></" + name + ">")
}
