package component

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/admin"
	"rostergate/policy"
	"rostergate/storage"
	"rostergate/subscription"
)

// adminOps is what the admin interfaces (ad-hoc commands, chat commands, the
// command line) act on.
type adminOps struct{ c *Component }

var _ admin.Ops = adminOps{}

func (o adminOps) Domain() string { return o.c.domain.String() }

func (o adminOps) Entities() []string {
	l := o.c.live.Load()
	out := make([]string, 0, len(l.entities))
	for e := range l.entities {
		out = append(out, e)
	}
	slices.Sort(out)
	return out
}

func (o adminOps) Pending(ctx context.Context) ([]storage.Request, error) {
	return o.c.opts.Store.Requests(ctx)
}

func (o adminOps) Decide(ctx context.Context, ids []int64, approve bool, actor, iface string) []admin.Outcome {
	return o.c.decideHeld(ctx, ids, approve, actor, iface)
}

func (o adminOps) Explain(contact, entity string) (admin.Explanation, error) {
	return o.c.explain(contact, entity)
}

// maxRosterLines bounds what an admin interface lists of one roster.
const maxRosterLines = 1000

func (o adminOps) Roster(ctx context.Context, entity string) ([]storage.Item, error) {
	local, err := o.c.entityLocal(entity)
	if err != nil {
		return nil, err
	}
	var items []storage.Item
	err = o.c.opts.Store.Items(ctx, storage.Filter{Entity: local, Limit: maxRosterLines}, func(it storage.Item) error {
		items = append(items, it)
		return nil
	})
	return items, err
}

func (o adminOps) Lists(ctx context.Context) (allow, deny []string, err error) {
	return o.c.opts.Store.Lists(ctx)
}

func (o adminOps) EditList(ctx context.Context, list string, add bool, pattern, actor, iface string) error {
	return o.c.editList(ctx, list, add, pattern, actor, iface)
}

// entityLocal accepts an entity as a localpart or a JID at the domain and
// returns its normalised localpart.
func (c *Component) entityLocal(entity string) (string, error) {
	entity = strings.TrimSpace(entity)
	if strings.Contains(entity, "@") || entity == c.domain.String() {
		j, err := jid.Parse(entity)
		if err != nil {
			return "", fmt.Errorf("%q is not a JID: %w", entity, err)
		}
		if j.Domainpart() != c.domain.Domainpart() {
			return "", fmt.Errorf("%q is not at %s", entity, c.domain)
		}
		return j.Localpart(), nil
	}
	if entity == "" {
		return "", nil
	}
	j, err := jid.New(entity, c.domain.Domainpart(), "")
	if err != nil {
		return "", fmt.Errorf("%q is not a valid entity name: %w", entity, err)
	}
	return j.Localpart(), nil
}

// Explain says how a request from contact to entity would be decided now,
// by the policy and lists in force (limits aside).
func (c *Component) Explain(contact, entity string) (admin.Explanation, error) {
	return c.explain(contact, entity)
}

// explain says how a request from contact to entity would be decided now.
func (c *Component) explain(contact, entity string) (admin.Explanation, error) {
	cj, err := jid.Parse(strings.TrimSpace(contact))
	if err != nil {
		return admin.Explanation{}, fmt.Errorf("%q is not a JID: %w", contact, err)
	}
	local, err := c.entityLocal(entity)
	if err != nil {
		return admin.Explanation{}, err
	}
	l := c.live.Load()
	_, known := l.entities[local]
	d := l.policy.Decide(policy.Request{Contact: cj.Bare().String(), Entity: local, KnownEntity: known})
	return admin.Explanation{
		Contact:       cj.Bare().String(),
		Entity:        c.entityJID(local),
		Action:        string(d.Action),
		SubscribeBack: d.SubscribeBack,
		Rule:          l.policy.RuleText(d),
		Message:       d.Message,
	}, nil
}

// editList changes the allow or deny list and puts it in force at once.
func (c *Component) editList(ctx context.Context, list string, add bool, pattern, actor, iface string) error {
	if list != "allow" && list != "deny" {
		return fmt.Errorf("unknown list %q (want allow or deny)", list)
	}
	p, err := policy.ValidatePattern(pattern)
	if err != nil {
		return err
	}
	verb := "remove"
	if add {
		verb = "add"
	}
	c.lock()
	defer c.mu.Unlock()
	ev := &storage.Event{Kind: list + " list", Action: verb, Actor: actor, Interface: iface, Detail: p}
	changed, err := c.opts.Store.EditList(ctx, list, p, add, ev)
	if err != nil {
		return fmt.Errorf("storing the %s list: %w", list, err)
	}
	if changed {
		c.log.Info("list edited", "list", list, "op", verb, "pattern", p, "actor", actor, "interface", iface)
	}
	return c.reloadLists(ctx)
}

// decideHeld approves or rejects held requests by id, through the state
// machine: approving sends subscribed (and subscribe, if the rule asked to
// subscribe back) and the entity's presence; rejecting sends unsubscribed.
// Every admin is told.
func (c *Component) decideHeld(ctx context.Context, ids []int64, approve bool, actor, iface string) []admin.Outcome {
	out := make([]admin.Outcome, len(ids))
	c.lock()
	defer c.mu.Unlock()
	if !c.usableLocked() {
		for i, id := range ids {
			out[i] = admin.Outcome{ID: id, Err: ErrNotConnected}
		}
		return out
	}
	b := newBatch()
	seen := map[int64]bool{}
	var decided []int
	for i, id := range ids {
		out[i].ID = id
		if seen[id] {
			out[i].Err = fmt.Errorf("request #%d is named twice: %w", id, storage.ErrNotFound)
			continue
		}
		seen[id] = true
		req, err := c.opts.Store.Request(ctx, id)
		if err != nil {
			out[i].Err = err
			continue
		}
		before, err := c.lookup(ctx, b, req.Entity, req.Contact)
		if err != nil {
			out[i].Err = err
			continue
		}
		cur, err := machineItem(before)
		if err != nil {
			out[i].Err = err
			continue
		}
		if !cur.State.PendingIn() {
			// The contact withdrew the request meanwhile: clear the stale entry.
			b.changes = append(b.changes, storage.Change{Item: storage.Item{Entity: req.Entity, Contact: req.Contact}, Dequeue: true})
			c.countHeld(req.Contact, -1)
			out[i].Err = fmt.Errorf("request #%d was withdrawn: %w", id, storage.ErrNotFound)
			continue
		}
		ev := &storage.Event{Rule: req.Rule, Actor: actor, Interface: iface, Detail: "request #" + strconv.FormatInt(id, 10)}
		var r subscription.Result
		if approve {
			ev.Kind, ev.Action = "approve", string(policy.Accept)
			r = subscription.Accept(cur)
			if req.SubscribeBack {
				back := subscription.Outbound(r.Item, subscription.Subscribe)
				r.Item, r.Send = back.Item, append(r.Send, back.Send...)
			}
		} else {
			ev.Kind, ev.Action = "reject", string(policy.Reject)
			r = subscription.Reject(cur)
		}
		c.record(b, before, r.Item, r.Send, ev, nil, "")
		c.log.Info("held request decided", "id", id, "entity", c.entityJID(req.Entity), "contact", req.Contact,
			"action", ev.Action, "actor", actor, "interface", iface)
		out[i].Request = req
		decided = append(decided, i)
	}
	for _, i := range decided {
		r := out[i].Request
		c.tellAdmins(b, admin.DecidedNotice(r, c.entityJID(r.Entity), approve, actor, iface), actor)
	}
	if err := c.commit(ctx, b); err != nil && !errors.Is(err, errReplyKept) {
		for _, i := range decided {
			out[i].Err = err
		}
		c.recount(ctx)
	}
	return out
}

// tellAdmins adds a chat message from the domain to every admin but the
// one who acted (who gets the command's own answer).
func (c *Component) tellAdmins(b *batch, body, except string) {
	for _, a := range c.live.Load().adminList() {
		if a != except {
			message(&b.out, c.domain.String(), a, c.newID(), "chat", body)
		}
	}
}

// countPending counts the held requests from the store, for the caps; c.mu
// is held.
func (c *Component) countPending(ctx context.Context) error {
	reqs, err := c.opts.Store.Requests(ctx)
	if err != nil {
		return err
	}
	c.pendingTotal = len(reqs)
	clear(c.pendingDomain)
	for _, r := range reqs {
		c.pendingDomain[domainOf(r.Contact)]++
	}
	return nil
}

// countHeld adds delta to the counts of held requests; c.mu is held.
func (c *Component) countHeld(contact string, delta int) {
	c.pendingTotal += delta
	d := domainOf(contact)
	if n := c.pendingDomain[d] + delta; n > 0 {
		c.pendingDomain[d] = n
	} else {
		delete(c.pendingDomain, d)
	}
}

// recount counts the held requests again after a failed commit, whose
// changes to the counts did not happen; c.mu is held.
func (c *Component) recount(ctx context.Context) {
	if err := c.countPending(ctx); err != nil {
		c.log.Error("counting held requests", "err", err)
	}
}

// domainOf returns the domain of a bare JID.
func domainOf(bare string) string {
	if i := strings.LastIndexByte(bare, '@'); i >= 0 {
		return bare[i+1:]
	}
	return bare
}

// overRate reports which rate limit, if any, the contact's request exceeds.
func (c *Component) overRate(l *live, contact string, now time.Time) string {
	if !l.contacts.Allow(contact, now) {
		return "contact_rate"
	}
	if !l.domains.Allow(domainOf(contact), now) {
		return "domain_rate"
	}
	return ""
}

// overPendingCap reports which cap on held requests one more from contact
// would exceed; c.mu is held.
func (c *Component) overPendingCap(l *live, contact string) string {
	if l.Limits.MaxPending > 0 && c.pendingTotal >= l.Limits.MaxPending {
		return "max_pending"
	}
	if l.Limits.MaxPendingPerDomain > 0 && c.pendingDomain[domainOf(contact)] >= l.Limits.MaxPendingPerDomain {
		return "max_pending_per_domain"
	}
	return ""
}

// LimitHits returns how many requests went over each limit since start.
func (c *Component) LimitHits() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.limitHits)
}

// adminQueue bounds the admin commands waiting for the admin worker.
const adminQueue = 64

// handleMessage takes chat commands sent to the domain. Admins' go to the
// admin worker; anyone else's are refused with forbidden.
func (c *Component) handleMessage(b *batch, el *element) {
	if el.Type == "error" || el.Type == "groupchat" || el.Type == "headline" || strings.TrimSpace(el.Body) == "" {
		return // errors are never answered; chat states and the like need nothing
	}
	to, err := jid.Parse(el.To)
	if err != nil || to.Localpart() != "" || to.Domainpart() != c.domain.Domainpart() {
		c.log.Debug("message ignored", "from", el.From, "to", el.To, "type", el.Type)
		return
	}
	el.To = to.String() // answers come from the normalised address
	if _, err := jid.Parse(el.From); err != nil || el.From == "" {
		c.log.Warn("message dropped", "reason", "bad from", "from", el.From)
		return
	}
	if !c.live.Load().isAdmin(el.From) {
		c.log.Warn("chat command from a non-admin refused", "from", el.From)
		messageError(&b.out, el.To, el, "auth", "forbidden")
		return
	}
	c.toAdminWorker(b, el)
}

// toAdminWorker hands an admin's stanza to the worker, which runs outside
// the state lock (the commands themselves take it).
func (c *Component) toAdminWorker(b *batch, el *element) {
	select {
	case c.adminQ <- el:
	default:
		c.log.Warn("admin commands arrive faster than they are carried out; refused", "from", el.From)
		if el.Name == "iq" {
			iqError(&b.out, el, "wait", "resource-constraint")
		} else {
			messageError(&b.out, el.To, el, "wait", "resource-constraint")
		}
	}
}

// adminWorker carries out admins' ad-hoc and chat commands, one at a time.
func (c *Component) adminWorker(ctx context.Context, q <-chan *element) {
	for {
		select {
		case <-ctx.Done():
			return
		case el := <-q:
			c.runAdmin(ctx, el)
		}
	}
}

func (c *Component) runAdmin(ctx context.Context, el *element) {
	// Wait for the batches decided so far, the command's own included, to
	// land: the command sees their state, and its reply follows theirs.
	if !c.usable() {
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
			b.WriteString("<iq type='error' from='")
			esc(&b, el.To)
			b.WriteString("' to='")
			esc(&b, el.From)
			b.WriteString("' id='")
			esc(&b, el.ID)
			b.WriteString("'>")
			b.WriteString(aerr.XML())
			b.WriteString("</iq>")
		} else {
			iqReply(&b, el, payload)
		}
	} else {
		reply := c.admin.Chat(ctx, actor, el.Body)
		message(&b, c.domain.String(), el.From, c.newID(), "chat", reply)
	}
	if err := c.send(b.Bytes()); err != nil {
		c.log.Warn("admin reply not sent", "to", el.From, "err", err)
	}
}

// send writes stanzas that report no state change.
func (c *Component) send(p []byte) error {
	c.mu.Lock()
	w, ok := c.w, c.usableLocked()
	c.mu.Unlock()
	if !ok {
		return ErrNotConnected
	}
	return w.write(p)
}

// messageError appends a message error answering el (RFC 6120 §8.3).
func messageError(b *bytes.Buffer, from string, el *element, typ, condition string) {
	stanzaError(b, "message", from, el, typ, condition)
}

// housekeepingTick is how often the command line's queued actions are
// looked for: what an admin asks for there goes out within a second.
const housekeepingTick = 250 * time.Millisecond

// housekeeping carries out the command line's queued actions and rejects
// held requests older than the review TTL, while the stream is up.
func (c *Component) housekeeping(ctx context.Context) {
	t := time.NewTicker(housekeepingTick)
	defer t.Stop()
	lastExpiry := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.runActions(ctx)
			if ttl := c.live.Load().ReviewTTL; ttl > 0 && now.Sub(lastExpiry) >= min(ttl/4, time.Minute) {
				lastExpiry = now
				c.expire(ctx, now, ttl)
			}
		}
	}
}

// runActions carries out what the command line queued, as chat commands
// from the command line's actor, and records what came of each.
func (c *Component) runActions(ctx context.Context) {
	actions, err := c.opts.Store.WaitingActions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("reading the command line's actions", "err", err)
		}
		return
	}
	for _, a := range actions {
		if !c.usable() {
			return // the rest wait for the next stream
		}
		result := c.admin.Run(ctx, a.Actor, "cli", a.Verb+" "+a.Args)
		// Recorded even if the stream is closing now: it was carried out.
		if err := c.opts.Store.FinishAction(context.WithoutCancel(ctx), a.ID, result); err != nil {
			c.log.Error("recording a command line action", "id", a.ID, "err", err)
			return
		}
		c.log.Info("command line action carried out", "id", a.ID, "actor", a.Actor, "verb", a.Verb, "args", a.Args)
	}
}

// expire rejects the held requests older than ttl.
func (c *Component) expire(ctx context.Context, now time.Time, ttl time.Duration) {
	reqs, err := c.opts.Store.Requests(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("reading held requests", "err", err)
		}
		return
	}
	var ids []int64
	for _, r := range reqs {
		if now.Sub(r.Created) >= ttl {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	for _, o := range c.decideHeld(ctx, ids, false, "rostergate", "review_ttl") {
		if o.Err != nil && !errors.Is(o.Err, storage.ErrNotFound) {
			c.log.Error("expiring a held request", "id", o.ID, "err", o.Err)
		} else if o.Err == nil {
			c.log.Info("held request expired", "id", o.ID, "entity", c.entityJID(o.Request.Entity), "contact", o.Request.Contact, "ttl", ttl)
		}
	}
}
