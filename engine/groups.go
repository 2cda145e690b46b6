package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"rostergate/directory"
	"rostergate/policy"
)

// Group rules and the directory.
//
// A directory lookup is a network round trip (LDAP), and decisions are
// made under the state lock, one batch at a time: a lookup there would
// hold every entity's decisions, and the admins' acts, for as long as the
// directory takes. So the groups a batch's requests may need are looked up
// before the batch is decided, outside the lock (resolveGroups): all at
// once, concurrently, within one [directory] timeout for the whole batch,
// answers from the cache at once. Meanwhile the batch before is committed
// and written as usual. The decisions then read what was learnt; what could
// not be learnt in time (or at all) is Unknown to the policy, and the
// group rule does not match: a slow or broken directory never makes an
// accept, it costs each batch at most the timeout, and after a failure
// (directory.Config.RetryAfter) not even that.
//
// A group needed but not looked up beforehand (a reload put a new rule in
// force in between) is taken from the cache, or is Unknown: never looked
// up under the lock.

// errNotLookedUp is what a decision learns of a group it needed but that
// was not looked up before the batch (nor cached).
var errNotLookedUp = errors.New("engine: the group was not looked up before the decision (the policy changed meanwhile)")

// batchGroups are the memberships a batch's decisions need: contact →
// group → what the directory said.
type batchGroups map[string]map[string]directory.Result

// resolveGroups looks up, before the batch of els is decided, whether each
// contact asking to subscribe belongs to the groups the decision may
// consult. It does not take the state lock.
func (e *Engine) resolveGroups(ctx context.Context, els []in) batchGroups {
	l := e.live.Load()
	if !l.policy.HasGroups() {
		return nil
	}
	var qs []directory.Query
	seen := map[directory.Query]bool{}
	for i := range els {
		x := &els[i]
		if x.el.Name != "presence" || x.el.Type != "subscribe" {
			continue
		}
		a, _, err := e.address(x)
		if err != nil {
			continue
		}
		_, known := l.entities[a.Entity]
		for _, g := range l.policy.GroupsFor(policy.Request{Contact: a.Contact, Entity: a.Entity, KnownEntity: known}) {
			q := directory.Query{JID: a.Contact, Group: g}
			if !seen[q] {
				seen[q] = true
				qs = append(qs, q)
			}
		}
	}
	if len(qs) == 0 {
		return nil
	}
	res := e.dir.LookupAll(ctx, qs)
	out := batchGroups{}
	for i, q := range qs {
		if out[q.JID] == nil {
			out[q.JID] = map[string]directory.Result{}
		}
		out[q.JID][q.Group] = res[i]
	}
	return out
}

// groupsOf returns what is known of req's contact and the groups deciding
// req may consult: from bg (looked up before the batch), else the cache.
func (e *Engine) groupsOf(l *live, bg batchGroups, req policy.Request) map[string]directory.Result {
	if !l.policy.HasGroups() {
		return nil
	}
	gs := l.policy.GroupsFor(req)
	if len(gs) == 0 {
		return nil
	}
	out := make(map[string]directory.Result, len(gs))
	for _, g := range gs {
		r, ok := bg[req.Contact][g]
		if !ok {
			if r, ok = e.dir.Cached(req.Contact, g); !ok {
				r = directory.Result{Err: errNotLookedUp}
			}
		}
		out[g] = r
	}
	return out
}

// memberships is what the policy takes of the directory's answers.
func memberships(rs map[string]directory.Result) map[string]policy.Membership {
	if rs == nil {
		return nil
	}
	m := make(map[string]policy.Membership, len(rs))
	for g, r := range rs {
		switch {
		case r.Err != nil:
			m[g] = policy.Unknown
		case r.Member:
			m[g] = policy.Member
		default:
			m[g] = policy.NotMember
		}
	}
	return m
}

// groupLine says what a group check of a decision found, as explain shows
// it: `rule 2 group staff: alice@example.com is a member (ldap, cached 12s
// ago)`, or `rule 2 group staff: directory unavailable: …; rule does not
// match`.
func groupLine(c policy.GroupCheck, contact string, r directory.Result, now time.Time) string {
	head := fmt.Sprintf("rule %d group %s: ", c.Rule, c.Group)
	if r.Err != nil {
		return head + "directory unavailable: " + r.Err.Error() + "; rule does not match"
	}
	if !r.Member {
		return head + contact + " is not a member (" + resultSource(r, now) + "); rule does not match"
	}
	return head + contact + " is a member (" + resultSource(r, now) + ")"
}

// resultSource says where an answer came from: `ldap, cached 12s ago`,
// `ldap, looked up now`, `groups file`.
func resultSource(r directory.Result, now time.Time) string {
	switch {
	case r.Source == directory.SourceFile:
		return "groups file"
	case r.Cached:
		return fmt.Sprintf("%s, cached %s ago", r.Source, max(0, now.Sub(r.At)).Round(time.Second))
	}
	return r.Source + ", looked up now"
}

// groupLog is the decision log's short form of its group checks:
// `rule 2 staff=member(ldap,cached) rule 5 staff=unavailable`.
func groupLog(checks []policy.GroupCheck, rs map[string]directory.Result) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		r := rs[c.Group]
		what := "unavailable"
		switch {
		case r.Err != nil:
		case r.Member:
			what = "member"
		default:
			what = "not_member"
		}
		if r.Err == nil {
			src := r.Source
			if r.Cached {
				src += ",cached"
			}
			what += "(" + src + ")"
		}
		parts = append(parts, fmt.Sprintf("rule %d %s=%s", c.Rule, c.Group, what))
	}
	return strings.Join(parts, " ")
}

// Directory returns the directory group rules look groups up in.
func (e *Engine) Directory() *directory.Directory { return e.dir }
