package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/directory"
	"rostergate/policy"
	"rostergate/roster"
)

// Explain says how a request from contact to entity (a localpart or a JID
// at the domain) would be decided now, by the policy and lists in force
// (limits aside), with the groups its group rules consult looked up in the
// directory (its cache first).
func (e *Engine) Explain(ctx context.Context, contact, entity string) (roster.Explanation, error) {
	return explain(ctx, e.live.Load(), e.dir, e.domain, contact, entity)
}

// Explain says how a request from contact to entity would be decided by s
// with the allow and deny lists given, as a running Engine with the same
// settings and lists would: the command line asks it of the config. Group
// rules' groups are looked up in s.Directory afresh.
func Explain(ctx context.Context, s Settings, allow, deny []string, domain, contact, entity string) (roster.Explanation, error) {
	l, err := newLive(s, allow, deny, nil)
	if err != nil {
		return roster.Explanation{}, err
	}
	dir, err := directory.New(s.Directory, directory.Options{})
	if err != nil {
		return roster.Explanation{}, fmt.Errorf("engine: %w", err)
	}
	defer dir.Close()
	return explain(ctx, l, dir, domain, contact, entity)
}

func explain(ctx context.Context, l *live, dir *directory.Directory, domain, contact, entity string) (roster.Explanation, error) {
	contact = strings.TrimSpace(contact)
	note := ""
	if !strings.ContainsAny(contact, "@./") && contact != "" {
		// "carol": a user's name, not a server called carol. Completed
		// with the (first) local domain, and said so; without one, refused.
		ld := l.policy.LocalDomains()
		if len(ld) == 0 {
			return roster.Explanation{}, &roster.InputError{Pkg: "engine",
				Msg: fmt.Sprintf("contact %q has no domain: write it as %s@example.com (no [policy] local_domains to complete it with)", contact, contact)}
		}
		note = fmt.Sprintf("%q has no domain: read as %s@%s (the first of [policy] local_domains)", contact, contact, ld[0])
		contact += "@" + ld[0]
	}
	cj, err := jid.Parse(contact)
	if err != nil {
		return roster.Explanation{}, &roster.InputError{Pkg: "engine", Msg: fmt.Sprintf("contact %q is not a JID", contact), Err: err}
	}
	local, err := roster.ParseEntity(domain, entity)
	if err != nil {
		return roster.Explanation{}, err
	}
	_, known := l.entities[local]
	req := policy.Request{Contact: cj.Bare().String(), Entity: local, KnownEntity: known}
	var lines []string
	var rs map[string]directory.Result
	if gs := l.policy.GroupsFor(req); len(gs) > 0 {
		qs := make([]directory.Query, len(gs))
		for i, g := range gs {
			qs[i] = directory.Query{JID: req.Contact, Group: g}
		}
		rs = map[string]directory.Result{}
		for i, r := range dir.LookupAll(ctx, qs) {
			rs[gs[i]] = r
		}
		req.Groups = memberships(rs)
	}
	d, checks := l.policy.Trace(req)
	now := time.Now()
	for _, c := range checks {
		lines = append(lines, groupLine(c, req.Contact, rs[c.Group], now))
	}
	return roster.Explanation{
		Groups:        lines,
		Contact:       cj.Bare().String(),
		Entity:        roster.EntityJID(domain, local),
		Action:        string(d.Action),
		SubscribeBack: d.SubscribeBack,
		Rule:          l.policy.RuleText(d),
		Message:       d.Message,
		KnownEntity:   known,
		Note:          note,
	}, nil
}

// EditList adds pattern to, or removes it from, the list "allow" or "deny"
// and puts the lists in force at once. It reports whether the list changed;
// its errors name what is wrong (a bad pattern, an unknown list).
func (e *Engine) EditList(ctx context.Context, list string, add bool, pattern string, actor roster.Actor) (bool, error) {
	p, err := CheckListEdit(list, pattern)
	if err != nil {
		return false, err
	}
	verb := "remove"
	if add {
		verb = "add"
	}
	e.lock()
	defer e.mu.Unlock()
	ev := &roster.Event{Kind: list + " list", Action: verb, Actor: actor.JID, Interface: actor.Via, Detail: p}
	changed, err := e.store.EditList(ctx, list, p, add, ev)
	if err != nil {
		return false, fmt.Errorf("engine: storing the %s list: %w", list, err)
	}
	if changed {
		e.log.Info("list edited", "list", list, "op", verb, "pattern", p, "actor", actor.JID, "interface", actor.Via)
	}
	return changed, e.reloadLists(ctx)
}

// CheckListEdit checks an edit of the list "allow" or "deny" and returns
// the pattern normalised: what EditList refuses, refused before it is
// queued for the running instance.
func CheckListEdit(list, pattern string) (string, error) {
	if list != "allow" && list != "deny" {
		return "", fmt.Errorf("engine: unknown list %q (want allow or deny)", list)
	}
	return policy.ValidatePattern(pattern)
}
