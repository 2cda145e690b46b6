package component

import (
	"sort"
	"strings"
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
	entity, known := c.entities[a.entity]
	isDomain := a.entity == "" && a.resource == ""
	if !isDomain && (!known || (a.resource != "" && a.resource != c.opts.Resource)) {
		// No such entity, or no such resource of it (RFC 6120 §10.5.3.1, §10.5.4).
		iqError(&b.out, el, "cancel", "service-unavailable")
		return
	}
	ns, local := el.Payload.XMLName.Space, el.Payload.XMLName.Local
	switch {
	case el.Type == "get" && ns == nsPing && local == "ping":
		iqReply(&b.out, el, "")
	case el.Type == "get" && ns == nsVersion && local == "query":
		var s strings.Builder
		s.WriteString("<query xmlns='" + nsVersion + "'><name>rostergate</name><version>")
		esc(&s, c.opts.Version)
		s.WriteString("</version></query>")
		iqReply(&b.out, el, s.String())
	case el.Type == "get" && ns == nsDiscInfo && local == "query":
		if el.Payload.Node != "" {
			iqError(&b.out, el, "cancel", "item-not-found")
			return
		}
		var s strings.Builder
		s.WriteString("<query xmlns='" + nsDiscInfo + "'>")
		if isDomain {
			s.WriteString("<identity category='component' type='generic' name='rostergate'/>")
		} else {
			s.WriteString("<identity category='client' type='bot' name='")
			esc(&s, entity.Name)
			s.WriteString("'/>")
		}
		for _, f := range []string{nsDiscInfo, nsDiscItem, nsVersion, nsPing} {
			s.WriteString("<feature var='" + f + "'/>")
		}
		s.WriteString("</query>")
		iqReply(&b.out, el, s.String())
	case el.Type == "get" && ns == nsDiscItem && local == "query":
		if el.Payload.Node != "" {
			iqError(&b.out, el, "cancel", "item-not-found")
			return
		}
		var s strings.Builder
		s.WriteString("<query xmlns='" + nsDiscItem + "'>")
		if isDomain {
			locals := make([]string, 0, len(c.entities))
			for l := range c.entities {
				if l != "" {
					locals = append(locals, l)
				}
			}
			sort.Strings(locals)
			for _, l := range locals {
				s.WriteString("<item jid='")
				esc(&s, c.entityJID(l))
				s.WriteString("' name='")
				esc(&s, c.entities[l].Name)
				s.WriteString("'/>")
			}
		}
		s.WriteString("</query>")
		iqReply(&b.out, el, s.String())
	default:
		iqError(&b.out, el, "cancel", "service-unavailable")
	}
}
