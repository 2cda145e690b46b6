package component

import (
	"bytes"
	"sort"
)

// handleIQ answers XEP-0030 disco#info and disco#items, XEP-0199 ping and
// XEP-0092 version; any other get or set gets service-unavailable
// (RFC 6120 §8.4). Results and errors are never answered.
func (c *Component) handleIQ(b *batch, el *element) {
	if el.Type == "result" || el.Type == "error" {
		return
	}
	a, canReply, err := c.parseAddress(el)
	if err != nil {
		c.log.Warn("iq dropped", "reason", err)
		if canReply {
			el.To = c.domain.String()
			iqError(&b.out, el, "modify", "jid-malformed")
		}
		return
	}
	el.To = a.to // reply from the normalised address
	if el.Type != "get" && el.Type != "set" {
		iqError(&b.out, el, "modify", "bad-request")
		return
	}
	if el.Payload == nil {
		iqError(&b.out, el, "modify", "bad-request")
		return
	}
	l := c.live.Load()
	entity, known := l.entities[a.entity]
	isDomain := a.entity == "" && a.resource == ""
	if !isDomain && (!known || (a.resource != "" && a.resource != c.opts.Resource)) {
		// No such entity, or no such resource of it (RFC 6120 §10.5.3.1, §10.5.4).
		iqError(&b.out, el, "cancel", "service-unavailable")
		return
	}
	ns, local := el.Payload.XMLName.Space, el.Payload.XMLName.Local
	if isDomain && ns == nsCommands && local == "command" {
		if el.Type != "set" {
			iqError(&b.out, el, "modify", "bad-request")
			return
		}
		if !l.isAdmin(el.From) {
			c.log.Warn("ad-hoc command from a non-admin refused", "from", el.From, "node", el.Payload.Node)
			iqError(&b.out, el, "auth", "forbidden")
			return
		}
		c.toAdminWorker(b, el)
		return
	}
	switch {
	case el.Type == "get" && ns == nsPing && local == "ping":
		iqReply(&b.out, el, "")
	case el.Type == "get" && ns == nsVersion && local == "query":
		var s bytes.Buffer
		s.WriteString("<query xmlns='" + nsVersion + "'><name>rostergate</name><version>")
		esc(&s, c.opts.Version)
		s.WriteString("</version></query>")
		iqReply(&b.out, el, s.String())
	case el.Type == "get" && ns == nsDiscInfo && local == "query" && el.Payload.Node != "":
		// A command's node: shown to admins only (XEP-0050 §2.3).
		payload, ok := c.admin.DiscoInfo(el.Payload.Node)
		if !isDomain || !ok || !l.isAdmin(el.From) {
			iqError(&b.out, el, "cancel", "item-not-found")
			return
		}
		iqReply(&b.out, el, payload)
	case el.Type == "get" && ns == nsDiscItem && local == "query" && el.Payload.Node == nsCommands:
		// The command list (XEP-0050 §2.2): empty for anyone but an admin.
		if isDomain && l.isAdmin(el.From) {
			iqReply(&b.out, el, c.admin.DiscoItems())
		} else {
			iqReply(&b.out, el, "<query xmlns='"+nsDiscItem+"' node='"+nsCommands+"'/>")
		}
	case el.Type == "get" && ns == nsDiscInfo && local == "query":
		var s bytes.Buffer
		s.WriteString("<query xmlns='" + nsDiscInfo + "'>")
		features := []string{nsDiscInfo, nsDiscItem, nsVersion, nsPing}
		if isDomain {
			s.WriteString("<identity category='component' type='generic' name='rostergate'/>")
			features = append(features, nsCommands)
		} else {
			s.WriteString("<identity category='client' type='bot' name='")
			esc(&s, entity.Name)
			s.WriteString("'/>")
		}
		for _, f := range features {
			s.WriteString("<feature var='" + f + "'/>")
		}
		s.WriteString("</query>")
		iqReply(&b.out, el, s.String())
	case el.Type == "get" && ns == nsDiscItem && local == "query":
		if el.Payload.Node != "" {
			iqError(&b.out, el, "cancel", "item-not-found")
			return
		}
		var s bytes.Buffer
		s.WriteString("<query xmlns='" + nsDiscItem + "'>")
		if isDomain {
			locals := make([]string, 0, len(l.entities))
			for e := range l.entities {
				if e != "" {
					locals = append(locals, e)
				}
			}
			sort.Strings(locals)
			for _, e := range locals {
				s.WriteString("<item jid='")
				esc(&s, c.entityJID(e))
				s.WriteString("' name='")
				esc(&s, l.entities[e].Name)
				s.WriteString("'/>")
			}
		}
		s.WriteString("</query>")
		iqReply(&b.out, el, s.String())
	default:
		iqError(&b.out, el, "cancel", "service-unavailable")
	}
}
