package component

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/placement"
	"rostergate/xmpp/stanza"
)

// rosterIQTimeout bounds the wait for the server's answer to a privileged
// roster set.
const rosterIQTimeout = 10 * time.Second

// privileged takes a XEP-0356 advertisement (a message from a server
// domain to the component's domain) and records it for the stream's
// placements. It reports whether el was one.
func (c *Component) privileged(el *stanza.Element) bool {
	if el.Privilege == nil {
		return false
	}
	from, err := jid.Parse(el.From)
	if err != nil || from.Localpart() != "" || from.Resourcepart() != "" || from.Domainpart() == c.domain {
		c.log.Warn("privilege advertisement from other than a server ignored", "from", el.From)
		return true
	}
	g := placement.Grant{NS: el.Privilege.NS, Roster: el.Privilege.Perms["roster"], From: from.String()}
	c.mu.Lock()
	pl, adv := c.placer, c.advertised
	c.mu.Unlock()
	c.log.Info("server advertised privileges (XEP-0356)", "from", g.From, "ns", g.NS, "roster", g.Roster,
		"message", el.Privilege.Perms["message"], "presence", el.Privilege.Perms["presence"])
	if pl != nil {
		pl.SetGrant(g)
		adv.close()
	}
	return true
}

// once closes a channel once.
type once struct {
	ch   chan struct{}
	done bool
}

func (o *once) close() {
	if o != nil && !o.done {
		o.done = true
		close(o.ch)
	}
}

// iqReply is a server's answer to an IQ the component sent.
type iqReply struct {
	typ string
	raw []byte // the children: the error for an error
}

// iqAnswer hands a result or error IQ to whoever waits for it; others
// are dropped.
func (c *Component) iqAnswer(el *stanza.Element) {
	c.mu.Lock()
	ch, ok := c.pending[el.ID]
	if ok {
		delete(c.pending, el.ID)
	}
	c.mu.Unlock()
	if ok {
		ch <- iqReply{typ: el.Type, raw: el.Raw}
	}
}

// rosterSetter writes users' roster items through the server with the
// stream's privilege (XEP-0356 §4.3): an IQ set from the component's
// domain to the user's bare JID.
type rosterSetter struct{ c *Component }

// SetRosterItem implements placement.Server.
func (r rosterSetter) SetRosterItem(ctx context.Context, user string, it placement.RosterItem) error {
	c := r.c
	id := c.eng.NewID()
	var b bytes.Buffer
	b.WriteString("<iq type='set' id='")
	stanza.Esc(&b, id)
	b.WriteString("' from='")
	stanza.Esc(&b, c.domain)
	b.WriteString("' to='")
	stanza.Esc(&b, user)
	b.WriteString("'><query xmlns='jabber:iq:roster'><item jid='")
	stanza.Esc(&b, it.JID)
	b.WriteString("' subscription='")
	stanza.Esc(&b, it.Subscription)
	if it.Name != "" {
		b.WriteString("' name='")
		stanza.Esc(&b, it.Name)
	}
	b.WriteString("'/></query></iq>")

	ch := make(chan iqReply, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.eng.Send(b.Bytes()); err != nil {
		return fmt.Errorf("component: roster set for %s: %w", user, err)
	}
	t := time.NewTimer(rosterIQTimeout)
	defer t.Stop()
	select {
	case rep := <-ch:
		if rep.typ == "result" {
			return nil
		}
		return fmt.Errorf("component: roster set for %s refused: %w", user, errorCondition(rep.raw))
	case <-t.C:
		return fmt.Errorf("component: roster set for %s: no answer within %s", user, rosterIQTimeout)
	case <-ctx.Done():
		return fmt.Errorf("component: roster set for %s: %w", user, ctx.Err())
	}
}

// errorCondition reads a stanza error's condition and text from an IQ's
// children.
func errorCondition(raw []byte) *placement.RefusedError {
	d := xml.NewDecoder(bytes.NewReader(raw))
	var e struct {
		Inner []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return &placement.RefusedError{Condition: "undefined-condition", Text: "an error without a condition"}
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "error" {
			if ok {
				_ = d.Skip()
			}
			continue
		}
		if err := d.DecodeElement(&e, &se); err != nil {
			return &placement.RefusedError{Condition: "undefined-condition", Text: "an unreadable error"}
		}
		cond, text := "", ""
		for _, in := range e.Inner {
			if in.XMLName.Local == "text" {
				text = strings.TrimSpace(in.Text)
			} else if cond == "" {
				cond = in.XMLName.Local
			}
		}
		if cond == "" {
			cond = "undefined-condition"
		}
		return &placement.RefusedError{Condition: cond, Text: text}
	}
}
