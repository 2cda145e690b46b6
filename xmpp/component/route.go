package component

import (
	"bytes"
	"context"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/xmpp/stanza"
)

// router answers, in stream order and within the engine's batch, the
// stanzas that are not presence: IQs by the routing table, messages as
// admins' chat commands.
type router struct{ c *Component }

func (r router) Stanza(out *bytes.Buffer, el *stanza.Element) {
	switch el.Name {
	case "iq":
		r.c.handleIQ(out, el)
	case "message":
		r.c.handleMessage(out, el)
	}
}

// adminQueue bounds the admin commands waiting for the admin worker.
const adminQueue = 64

// handleMessage takes chat commands sent to the domain. Admins' go to the
// admin worker; anyone else's are refused with forbidden.
func (c *Component) handleMessage(out *bytes.Buffer, el *stanza.Element) {
	if c.privileged(el) {
		return
	}
	if el.Type == "error" || el.Type == "groupchat" || el.Type == "headline" || strings.TrimSpace(el.Body) == "" {
		return // errors are never answered; chat states and the like need nothing
	}
	to, err := jid.Parse(el.To)
	if err != nil || to.Localpart() != "" || to.Domainpart() != c.domain {
		c.log.Debug("message ignored", "from", el.From, "to", el.To, "type", el.Type)
		return
	}
	el.To = to.String() // answers come from the normalised address
	if _, err := jid.Parse(el.From); err != nil || el.From == "" {
		c.log.Warn("message dropped", "reason", "bad from", "from", el.From)
		return
	}
	if !c.eng.IsAdmin(el.From) {
		c.log.Warn("chat command from a non-admin refused", "from", el.From)
		stanza.ErrorText(out, "message", el.To, el, "auth", "forbidden", c.notAdminText())
		return
	}
	c.toAdminWorker(out, el)
}

// notAdminText tells a non-admin why their command is refused.
func (c *Component) notAdminText() string {
	return "Only the admins of " + c.domain + " can use its commands ([admin] jids in the rostergate configuration)."
}

// toAdminWorker hands an admin's stanza to the worker, which runs outside
// the engine's lock (the commands themselves take it).
func (c *Component) toAdminWorker(out *bytes.Buffer, el *stanza.Element) {
	c.mu.Lock()
	q := c.adminQ
	c.mu.Unlock()
	select {
	case q <- el:
	default:
		c.log.Warn("admin commands arrive faster than they are carried out; refused", "from", el.From)
		if el.Name == "iq" {
			stanza.IQError(out, el, "wait", "resource-constraint")
		} else {
			stanza.Error(out, "message", el.To, el, "wait", "resource-constraint")
		}
	}
}

// adminWorker carries out admins' ad-hoc and chat commands, one at a time.
func (c *Component) adminWorker(ctx context.Context, q <-chan *stanza.Element) {
	for {
		select {
		case <-ctx.Done():
			return
		case el := <-q:
			c.runAdmin(ctx, el)
		}
	}
}

func (c *Component) runAdmin(ctx context.Context, el *stanza.Element) {
	// Wait for the batches decided so far, the command's own included, to
	// land: the command sees their state, and its reply follows theirs.
	if !c.eng.Sync() {
		c.log.Warn("admin command not carried out: the stream it came on is gone", "from", el.From)
		return
	}
	actor := el.From
	if j, err := jid.Parse(el.From); err == nil {
		actor = j.Bare().String()
	}
	var b bytes.Buffer
	if el.Name == "iq" {
		payload, aerr := c.admin.Execute(ctx, actor, el.Raw)
		if aerr != nil {
			stanza.IQErrorXML(&b, el, aerr.XML())
		} else {
			stanza.IQResult(&b, el, payload)
		}
	} else {
		reply := c.admin.Chat(ctx, actor, el.Body)
		stanza.Message(&b, c.domain, el.From, c.eng.NewID(), "chat", reply)
	}
	if err := c.eng.Send(b.Bytes()); err != nil {
		c.log.Warn("admin reply not sent", "to", el.From, "err", err)
	}
}

// housekeepingTick is how often the command line's queued acts are looked
// for: what an admin asks for there goes out within a second.
const housekeepingTick = 250 * time.Millisecond

// housekeeping lets the service carry out the command line's queued acts
// and expire held requests, while the stream is up.
func (c *Component) housekeeping(ctx context.Context) {
	t := time.NewTicker(housekeepingTick)
	defer t.Stop()
	// At once too: acts queued while no instance was connected (or while
	// another was taking over) go out as the stream comes up.
	c.svc.Housekeep(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.svc.Housekeep(ctx, now)
		}
	}
}
