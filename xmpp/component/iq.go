package component

import (
	"bytes"
	"encoding/base64"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/xmpp/stanza"
)

// iqKey is what an IQ is routed by: its type and its payload's name.
type iqKey struct {
	typ       string // get or set
	ns, local string // the payload's namespace and name
}

// iqTo is an IQ's addressee as the handlers see it.
type iqTo struct {
	domain bool          // the component domain itself, not an entity
	entity engine.Entity // the entity, when not the domain
}

// iqHandler answers one IQ; el.To is already the normalised addressee.
type iqHandler func(out *bytes.Buffer, el *stanza.Element, to iqTo)

// iqTable is the IQ routing table: a new IQ the domain or the entities
// answer is one row here and its handler. Anything not in it gets
// service-unavailable (RFC 6120 §8.4).
func (c *Component) iqTable() map[iqKey]iqHandler {
	return map[iqKey]iqHandler{
		{"get", stanza.NSPing, "ping"}:        c.iqPing,
		{"get", stanza.NSVersion, "query"}:    c.iqVersion,
		{"get", stanza.NSDiscoInfo, "query"}:  c.iqDiscoInfo,
		{"get", stanza.NSDiscoItems, "query"}: c.iqDiscoItems,
		{"get", stanza.NSVCard, "vCard"}:      c.iqVCard,
		{"set", stanza.NSCommands, "command"}: c.iqCommand,
		{"get", stanza.NSCommands, "command"}: c.iqCommandGet,
	}
}

// handleIQ checks an IQ's addressing and routes it by the table. Results
// and errors are never answered.
func (c *Component) handleIQ(out *bytes.Buffer, el *stanza.Element) {
	if el.Type == "result" || el.Type == "error" {
		c.iqAnswer(el)
		return
	}
	to, canReply, err := el.Address(c.domain)
	if err != nil {
		c.log.Warn("iq dropped", "reason", err)
		if canReply {
			el.To = c.domain
			stanza.IQError(out, el, "modify", "jid-malformed")
		}
		return
	}
	el.To = to.To // the reply comes from the normalised address
	if el.Type != "get" && el.Type != "set" {
		stanza.IQError(out, el, "modify", "bad-request")
		return
	}
	if el.Payload == nil {
		stanza.IQError(out, el, "modify", "bad-request")
		return
	}
	ent, known := c.eng.Entity(to.Entity)
	isDomain := to.Entity == "" && to.Resource == ""
	if !isDomain && (!known || (to.Resource != "" && to.Resource != c.eng.Resource())) {
		// No such entity, or no such resource of it (RFC 6120 §10.5.3.1, §10.5.4).
		stanza.IQError(out, el, "cancel", "service-unavailable")
		return
	}
	h, ok := c.iqs[iqKey{el.Type, el.Payload.XMLName.Space, el.Payload.XMLName.Local}]
	if !ok {
		stanza.IQError(out, el, "cancel", "service-unavailable")
		return
	}
	h(out, el, iqTo{domain: isDomain, entity: ent})
}

// iqCommandGet refuses a XEP-0050 command sent as a get: commands are
// executed with set (XEP-0050 §3).
func (c *Component) iqCommandGet(out *bytes.Buffer, el *stanza.Element, to iqTo) {
	if !to.domain {
		stanza.IQError(out, el, "cancel", "service-unavailable")
		return
	}
	stanza.IQError(out, el, "modify", "bad-request")
}

// iqVCard answers XEP-0054 vCard requests: an entity's name, nickname and
// avatar.
// The domain itself has a vCard only when it is an entity.
func (c *Component) iqVCard(out *bytes.Buffer, el *stanza.Element, to iqTo) {
	ent := to.entity
	if to.domain {
		var ok bool
		if ent, ok = c.eng.Entity(""); !ok {
			stanza.IQError(out, el, "cancel", "item-not-found")
			return
		}
	}
	var s bytes.Buffer
	s.WriteString("<vCard xmlns='" + stanza.NSVCard + "'>")
	if ent.Name != "" {
		s.WriteString("<FN>")
		stanza.Esc(&s, ent.Name)
		s.WriteString("</FN>")
	}
	if ent.Nick != "" {
		s.WriteString("<NICKNAME>")
		stanza.Esc(&s, ent.Nick)
		s.WriteString("</NICKNAME>")
	}
	if len(ent.Avatar) > 0 {
		s.WriteString("<PHOTO><TYPE>")
		stanza.Esc(&s, ent.AvatarType)
		s.WriteString("</TYPE><BINVAL>")
		s.WriteString(base64.StdEncoding.EncodeToString(ent.Avatar))
		s.WriteString("</BINVAL></PHOTO>")
	}
	s.WriteString("</vCard>")
	stanza.IQResult(out, el, s.String())
}

// iqPing answers XEP-0199 pings.
func (c *Component) iqPing(out *bytes.Buffer, el *stanza.Element, _ iqTo) {
	stanza.IQResult(out, el, "")
}

// iqVersion answers XEP-0092 software version.
func (c *Component) iqVersion(out *bytes.Buffer, el *stanza.Element, _ iqTo) {
	var s bytes.Buffer
	s.WriteString("<query xmlns='" + stanza.NSVersion + "'><name>rostergate</name><version>")
	stanza.Esc(&s, c.opts.Version)
	s.WriteString("</version></query>")
	stanza.IQResult(out, el, s.String())
}

// iqCommand hands an admin's XEP-0050 command to the admin worker; ad-hoc
// commands live at the domain only.
func (c *Component) iqCommand(out *bytes.Buffer, el *stanza.Element, to iqTo) {
	if !to.domain {
		stanza.IQError(out, el, "cancel", "service-unavailable")
		return
	}
	if !c.eng.IsAdmin(el.From) {
		c.log.Warn("ad-hoc command from a non-admin refused", "from", el.From, "node", el.Payload.Node)
		stanza.IQErrorText(out, el, "auth", "forbidden", c.notAdminText())
		return
	}
	c.toAdminWorker(out, el)
}

// iqDiscoInfo answers XEP-0030 disco#info: the domain is a component with
// ad-hoc commands, each entity a bot; a command's node is shown to admins
// only (XEP-0050 §2.3).
func (c *Component) iqDiscoInfo(out *bytes.Buffer, el *stanza.Element, to iqTo) {
	node := el.Payload.Node
	capsNode := !to.domain && node == stanza.CapsNode+"#"+stanza.CapsVer("client", "bot", to.entity.Name, stanza.EntityFeatures())
	if node != "" && !capsNode {
		payload, ok := c.admin.DiscoInfo(el.Payload.Node)
		if !to.domain || !ok || !c.eng.IsAdmin(el.From) {
			stanza.IQError(out, el, "cancel", "item-not-found")
			return
		}
		stanza.IQResult(out, el, payload)
		return
	}
	var s bytes.Buffer
	s.WriteString("<query xmlns='" + stanza.NSDiscoInfo + "'")
	if capsNode {
		// Asked by the capabilities in its presence (XEP-0115 §6.2).
		s.WriteString(" node='")
		stanza.Esc(&s, node)
		s.WriteString("'")
	}
	s.WriteString(">")
	var features []string
	if to.domain {
		s.WriteString("<identity category='component' type='generic' name='rostergate'/>")
		features = []string{stanza.NSDiscoInfo, stanza.NSDiscoItems, stanza.NSVersion, stanza.NSPing, stanza.NSCommands}
	} else {
		s.WriteString("<identity category='client' type='bot' name='")
		stanza.Esc(&s, to.entity.Name)
		s.WriteString("'/>")
		features = stanza.EntityFeatures()
	}
	for _, f := range features {
		s.WriteString("<feature var='" + f + "'/>")
	}
	s.WriteString("</query>")
	stanza.IQResult(out, el, s.String())
}

// iqDiscoItems answers XEP-0030 disco#items: the domain lists its entities,
// and its commands node lists the ad-hoc commands to admins (empty for
// anyone else, XEP-0050 §2.2).
func (c *Component) iqDiscoItems(out *bytes.Buffer, el *stanza.Element, to iqTo) {
	switch el.Payload.Node {
	case stanza.NSCommands:
		if to.domain && c.eng.IsAdmin(el.From) {
			stanza.IQResult(out, el, c.admin.DiscoItems())
		} else {
			stanza.IQResult(out, el, "<query xmlns='"+stanza.NSDiscoItems+"' node='"+stanza.NSCommands+"'/>")
		}
		return
	case "":
	default:
		stanza.IQError(out, el, "cancel", "item-not-found")
		return
	}
	var s bytes.Buffer
	s.WriteString("<query xmlns='" + stanza.NSDiscoItems + "'>")
	if to.domain {
		for _, e := range c.eng.Entities() {
			if e.Local == "" {
				continue
			}
			s.WriteString("<item jid='")
			stanza.Esc(&s, roster.EntityJID(c.domain, e.Local))
			s.WriteString("' name='")
			stanza.Esc(&s, e.Name)
			s.WriteString("'/>")
		}
	}
	s.WriteString("</query>")
	stanza.IQResult(out, el, s.String())
}
