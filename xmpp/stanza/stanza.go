// Package stanza reads and writes the stanzas of a XEP-0114 component
// stream (namespace jabber:component:accept): it parses each top-level
// element into an Element with its addressing (RFC 6120 §8.1) and what
// rostergate needs of its payload, and writes presence (RFC 6121 §4),
// message, IQ results and stanza errors (RFC 6120 §8.3) with one escaper.
//
// It writes by hand into a bytes.Buffer rather than through an XML encoder:
// a reply costs a few appends (see docs/benchmarks.md).
package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

const (
	NSAccept     = "jabber:component:accept"
	NSCommands   = "http://jabber.org/protocol/commands"
	NSStreams    = "http://etherx.jabber.org/streams"
	NSStanzas    = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSPing       = "urn:xmpp:ping"
	NSVersion    = "jabber:iq:version"
)

// StreamHeader is what the decoder is fed before the bytes that follow the
// handshake; it declares the namespaces the server's header declared.
const StreamHeader = `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>`

// ErrStreamClosed is the server closing the stream with </stream:stream>.
var ErrStreamClosed = errors.New("stanza: server closed the stream")

// Element is a top-level stanza as read from the stream: its name and
// addressing attributes, for IQs the first child, for messages the body.
// An element outside jabber:component:accept is named "{namespace}local",
// so that nothing takes it for a stanza.
type Element struct {
	Name    string // presence, message or iq
	From    string
	To      string
	ID      string
	Type    string
	Payload *Payload // first child of an IQ
	Raw     []byte   // an IQ's children as received
	Body    string   // a message's body
	Thread  string   // a message's thread
	Show    string   // an available presence's show
	Status  string   // an available or unavailable presence's status
	// Privilege is a message's XEP-0356 advertisement of the permissions
	// the server grants the component, nil if it carries none.
	Privilege *Privilege
	// Preauth is the token of a subscribe's <preauth
	// xmlns='urn:xmpp:pars:0'/> (XEP-0379), "" if it carries none.
	Preauth string
}

// Address is a stanza's parsed addressing, as sent to a JID at the
// component's domain: the sender's bare JID and the local JID addressed.
type Address struct {
	Contact  string // the sender's normalised bare JID
	Entity   string // the normalised localpart addressed ("" = the domain itself)
	Resource string // the resource addressed, if any
	To       string // the normalised full "to", for replies
}

// Address parses el's from and to; to must be at domain (a domainpart).
// It returns an error naming what is wrong, and whether a reply can be
// addressed (from is usable: RFC 6120 §8.3 errors go back to it).
func (el *Element) Address(domain string) (Address, bool, error) {
	if el.From == "" {
		return Address{}, false, errors.New("no from")
	}
	from, err := jid.Parse(el.From)
	if err != nil {
		return Address{}, false, fmt.Errorf("bad from %q: %w", el.From, err)
	}
	a := Address{Contact: from.Bare().String()}
	if el.To == "" {
		return a, true, errors.New("no to")
	}
	to, err := jid.Parse(el.To)
	if err != nil {
		return a, true, fmt.Errorf("bad to %q: %w", el.To, err)
	}
	if to.Domainpart() != domain {
		return a, true, fmt.Errorf("to %q is not at %s", el.To, domain)
	}
	a.Entity, a.Resource, a.To = to.Localpart(), to.Resourcepart(), to.String()
	return a, true, nil
}

// Retained is about how many bytes el keeps while it waits to be handled.
func (el *Element) Retained() int {
	return len(el.Raw) + len(el.Preauth) + len(el.Body) + len(el.Thread) + len(el.Status) + len(el.Show) + len(el.From) + len(el.To) + len(el.ID) + len(el.Type)
}

// Payload is the first child of an IQ: what the IQ is about (its
// namespace and name) and, for XEP-0030 and XEP-0050, its node.
type Payload struct {
	XMLName xml.Name
	Node    string `xml:"node,attr"`
}

type iqBody struct {
	Inner    []byte    `xml:",innerxml"`
	Children []Payload `xml:",any"`
}

type messageBody struct {
	Body   string        `xml:"jabber:component:accept body"`
	Thread string        `xml:"jabber:component:accept thread"`
	Priv1  *privilegeXML `xml:"urn:xmpp:privilege:1 privilege"`
	Priv2  *privilegeXML `xml:"urn:xmpp:privilege:2 privilege"`
}

type privilegeXML struct {
	Perms []struct {
		Access string `xml:"access,attr"`
		Type   string `xml:"type,attr"`
	} `xml:"perm"`
}

// Privilege is a XEP-0356 advertisement: the namespace it came in
// (urn:xmpp:privilege:1 or :2) and each permission's type by its access
// (roster, message, presence, iq).
type Privilege struct {
	NS    string
	Perms map[string]string
}

func (p *privilegeXML) privilege(ns string) *Privilege {
	out := &Privilege{NS: ns, Perms: map[string]string{}}
	for _, perm := range p.Perms {
		if _, dup := out.Perms[perm.Access]; !dup && len(out.Perms) < 16 {
			out.Perms[perm.Access] = perm.Type
		}
	}
	return out
}

// BadPreauth is Element.Preauth for a subscribe whose preauth elements
// name no single token: several, or one without a token. No invite's
// token has a space.
const BadPreauth = "(malformed preauth)"

// NSPars is the namespace of XEP-0379's pre-authenticated subscription.
const NSPars = "urn:xmpp:pars:0"

type subscribeBody struct {
	Preauth []struct {
		Token string `xml:"token,attr"`
	} `xml:"urn:xmpp:pars:0 preauth"`
}

type presenceBody struct {
	Show   string `xml:"jabber:component:accept show"`
	Status string `xml:"jabber:component:accept status"`
}

// Next reads the next stanza. budget, if not nil, is called before each
// token between stanzas and before each stanza: the reader under d uses it
// to bound how many bytes one may take. It returns a *StreamError
// when the server sends a stream error, and ErrStreamClosed when it closes
// the stream.
func Next(d *xml.Decoder, budget func()) (*Element, error) {
	for {
		if budget != nil {
			budget()
		}
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == NSStreams && t.Name.Local == "stream" {
				continue // our own prefix
			}
			if t.Name.Space == NSStreams && t.Name.Local == "error" {
				var se stream.Error
				if err := d.DecodeElement(&se, &t); err != nil {
					return nil, fmt.Errorf("stanza: reading stream error: %w", err)
				}
				return nil, fmt.Errorf("stanza: %w", &StreamError{Err: se})
			}
			el := &Element{Name: t.Name.Local}
			if t.Name.Space != NSAccept {
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
					return nil, fmt.Errorf("stanza: reading iq: %w", err)
				}
				if len(body.Children) > 0 {
					el.Payload = &body.Children[0]
				}
				el.Raw = body.Inner
			} else if el.Name == "message" {
				var body messageBody
				if err := d.DecodeElement(&body, &t); err != nil {
					return nil, fmt.Errorf("stanza: reading message: %w", err)
				}
				el.Body, el.Thread = body.Body, body.Thread
				switch {
				case body.Priv2 != nil:
					el.Privilege = body.Priv2.privilege("urn:xmpp:privilege:2")
				case body.Priv1 != nil:
					el.Privilege = body.Priv1.privilege("urn:xmpp:privilege:1")
				}
			} else if el.Name == "presence" && (el.Type == "" || el.Type == "unavailable") {
				var body presenceBody
				if err := d.DecodeElement(&body, &t); err != nil {
					return nil, fmt.Errorf("stanza: reading presence: %w", err)
				}
				el.Show, el.Status = body.Show, body.Status
			} else if el.Name == "presence" && el.Type == "subscribe" {
				var body subscribeBody
				if err := d.DecodeElement(&body, &t); err != nil {
					return nil, fmt.Errorf("stanza: reading presence: %w", err)
				}
				if len(body.Preauth) > 0 {
					// More than one is no token at all: which would be meant?
					if len(body.Preauth) == 1 && body.Preauth[0].Token != "" {
						el.Preauth = body.Preauth[0].Token
					} else {
						el.Preauth = BadPreauth
					}
				}
			} else if err := d.Skip(); err != nil {
				return nil, fmt.Errorf("stanza: reading %s: %w", el.Name, err)
			}
			return el, nil
		case xml.EndElement:
			return nil, ErrStreamClosed
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

// Esc escapes s for an attribute value or character data.
//
// Most values (JIDs, ids, statuses) need no escaping: they are written as
// they are, and only the others go through xml.EscapeText, whose output is
// the same for these (it changes only the five specials, tab, newline,
// carriage return and what is not valid XML character data).
func Esc(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '&' || c == '<' || c == '>' || c == '\'' || c == '"' {
			_ = xml.EscapeText(b, []byte(s))
			return
		}
	}
	b.WriteString(s)
}

// Presence appends a presence stanza to b.
func Presence(b *bytes.Buffer, from, to, id, typ, show, status string) {
	PresenceWith(b, from, to, id, typ, show, status, "")
}

// PresenceWith is Presence with extra child elements (raw XML) after show
// and status.
func PresenceWith(b *bytes.Buffer, from, to, id, typ, show, status, extra string) {
	b.WriteString("<presence from='")
	Esc(b, from)
	b.WriteString("' to='")
	Esc(b, to)
	b.WriteString("' id='")
	Esc(b, id)
	if typ != "" {
		b.WriteString("' type='")
		Esc(b, typ)
	}
	if show == "" && status == "" && extra == "" {
		b.WriteString("'/>")
		return
	}
	b.WriteString("'>")
	if show != "" {
		b.WriteString("<show>")
		Esc(b, show)
		b.WriteString("</show>")
	}
	if status != "" {
		b.WriteString("<status>")
		Esc(b, status)
		b.WriteString("</status>")
	}
	b.WriteString(extra)
	b.WriteString("</presence>")
}

// IQResult appends an IQ result (inner may be empty) answering el.
func IQResult(b *bytes.Buffer, el *Element, inner string) {
	b.WriteString("<iq type='result' from='")
	Esc(b, el.To)
	b.WriteString("' to='")
	Esc(b, el.From)
	b.WriteString("' id='")
	Esc(b, el.ID)
	if inner == "" {
		b.WriteString("'/>")
		return
	}
	b.WriteString("'>")
	b.WriteString(inner)
	b.WriteString("</iq>")
}

// IQError appends an IQ error answering el (RFC 6120 §8.3).
func IQError(b *bytes.Buffer, el *Element, typ, condition string) {
	IQErrorText(b, el, typ, condition, "")
}

// IQErrorText is IQError with a text saying why ("" writes none).
func IQErrorText(b *bytes.Buffer, el *Element, typ, condition, text string) {
	var e bytes.Buffer
	e.WriteString("<error type='" + typ + "'><" + condition + " xmlns='" + NSStanzas + "'/>")
	writeErrorText(&e, text)
	e.WriteString("</error>")
	IQErrorXML(b, el, e.String())
}

// IQErrorXML appends an IQ error answering el whose <error/> element (with
// an application-specific condition, say) is errorXML, written as it is.
func IQErrorXML(b *bytes.Buffer, el *Element, errorXML string) {
	b.WriteString("<iq type='error' from='")
	Esc(b, el.To)
	b.WriteString("' to='")
	Esc(b, el.From)
	b.WriteString("' id='")
	Esc(b, el.ID)
	b.WriteString("'>")
	b.WriteString(errorXML)
	b.WriteString("</iq>")
}

// Ping appends a XEP-0199 ping from from to to.
func Ping(b *bytes.Buffer, from, to, id string) {
	b.WriteString("<iq type='get' from='")
	Esc(b, from)
	b.WriteString("' to='")
	Esc(b, to)
	b.WriteString("' id='")
	Esc(b, id)
	b.WriteString("'><ping xmlns='" + NSPing + "'/></iq>")
}

// Message appends a message stanza with a body to b.
func Message(b *bytes.Buffer, from, to, id, typ, body string) {
	MessageThread(b, from, to, id, typ, body, "")
}

// MessageThread is Message with a thread ("" writes none).
func MessageThread(b *bytes.Buffer, from, to, id, typ, body, thread string) {
	b.WriteString("<message from='")
	Esc(b, from)
	b.WriteString("' to='")
	Esc(b, to)
	b.WriteString("' id='")
	Esc(b, id)
	b.WriteString("' type='")
	Esc(b, typ)
	b.WriteString("'><body>")
	Esc(b, body)
	b.WriteString("</body>")
	if thread != "" {
		b.WriteString("<thread>")
		Esc(b, thread)
		b.WriteString("</thread>")
	}
	b.WriteString("</message>")
}

// PresenceError appends a presence error answering el, from from.
func PresenceError(b *bytes.Buffer, from string, el *Element, typ, condition string) {
	Error(b, "presence", from, el, typ, condition)
}

// Error appends a stanza error of kind name (presence or message)
// answering el, from from (RFC 6120 §8.3).
func Error(b *bytes.Buffer, name, from string, el *Element, typ, condition string) {
	ErrorText(b, name, from, el, typ, condition, "")
}

// ErrorText is Error with a text saying why, for the person who reads it
// (RFC 6120 §8.3.2: <text/> after the condition); "" writes none.
func ErrorText(b *bytes.Buffer, name, from string, el *Element, typ, condition, text string) {
	b.WriteString("<" + name + " type='error' from='")
	Esc(b, from)
	b.WriteString("' to='")
	Esc(b, el.From)
	if el.ID != "" {
		b.WriteString("' id='")
		Esc(b, el.ID)
	}
	b.WriteString("'><error type='")
	Esc(b, typ)
	b.WriteString("'><")
	b.WriteString(condition)
	b.WriteString(" xmlns='" + NSStanzas + "'/>")
	writeErrorText(b, text)
	b.WriteString("</error></" + name + ">")
}

// writeErrorText writes an error's <text/>, in English, if any.
func writeErrorText(b *bytes.Buffer, text string) {
	if text == "" {
		return
	}
	b.WriteString("<text xmlns='" + NSStanzas + "' xml:lang='en'>")
	Esc(b, text)
	b.WriteString("</text>")
}
