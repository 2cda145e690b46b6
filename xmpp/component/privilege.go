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
	to, terr := jid.Parse(el.To)
	// Only the server the component is attached under grants privileges:
	// a domain of which the component's is a subdomain (example.com for
	// bots.example.com). Another server (over s2s) or component could
	// otherwise grant what the server never gave, or take it back.
	if err != nil || terr != nil || from.Localpart() != "" || from.Resourcepart() != "" ||
		!strings.HasSuffix(c.domain, "."+from.Domainpart()) || !strings.EqualFold(to.String(), c.domain) {
		c.log.Warn("privilege advertisement ignored: not from the server the component's domain is under", "from", el.From, "to", el.To)
		return true
	}
	g := placement.Grant{NS: el.Privilege.NS, Roster: el.Privilege.Perms["roster"], From: from.String()}
	c.mu.Lock()
	pl, adv := c.placer, c.advertised
	c.mu.Unlock()
	if adv != nil && adv.done {
		// One per stream, right after the handshake: a later one is no
		// server's.
		c.log.Warn("second privilege advertisement on the stream ignored", "from", el.From)
		return true
	}
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

// pendingIQ is an IQ the component sent and waits for an answer to: only
// an answer from the JID it went to counts.
type pendingIQ struct {
	to string // the bare JID the IQ went to, as written
	ch chan iqReply
}

// iqAnswer hands a result or error IQ to whoever waits for it, if it comes
// from the JID the request went to; others are dropped (ids can be
// guessed: a forged result must not count as the server's).
func (c *Component) iqAnswer(el *stanza.Element) {
	c.mu.Lock()
	p, ok := c.pending[el.ID]
	if ok && !sameBare(el.From, p.to) {
		c.mu.Unlock()
		c.log.Warn("IQ answer from other than the JID asked ignored", "id", el.ID, "from", el.From, "asked", p.to)
		return
	}
	if ok {
		delete(c.pending, el.ID)
	}
	c.mu.Unlock()
	if ok {
		p.ch <- iqReply{typ: el.Type, raw: el.Raw}
	}
}

// sameBare reports whether a and b are the same bare JID (a may be full).
func sameBare(a, b string) bool {
	ja, err := jid.Parse(a)
	if err != nil {
		return false
	}
	jb, err := jid.Parse(b)
	return err == nil && ja.Bare().Equal(jb.Bare())
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
	c.pending[id] = pendingIQ{to: user, ch: ch}
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
