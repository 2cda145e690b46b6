package adminui

import (
	"context"
	"errors"
	"fmt"
	"rostergate/roster"
	"rostergate/store"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ChatCommand is a parsed chat command line.
type ChatCommand struct {
	Verb string   // lower case, e.g. "approve"
	IDs  []int64  // approve, reject: the request ids, in order, without duplicates
	Args []string // explain: contact, entity; roster: entity; allow, deny, unallow, undeny: pattern; invite: entity
	// invite's options: how long it works (0: no end), how many requests
	// it accepts, whether the entity subscribes back.
	TTL  time.Duration
	Uses int
	Back bool
}

// Defaults of the chat command invite, as of the command line's.
const (
	defaultInviteTTL  = 72 * time.Hour
	defaultInviteUses = 1
)

// Limits on chat commands and replies.
const (
	maxChatIDs   = 100 // ids in one approve or reject
	maxChatLines = 100 // requests listed by pending
)

type chatVerb struct {
	usage string // "approve ID…"
	what  string // for help
	args  int    // the number of Args; -1: ids (one or more); -2: anything (ignored)
}

var chatVerbs = map[string]chatVerb{
	"help":    {"help", "this list", -2},
	"pending": {"pending", "the requests waiting for review, oldest first", 0},
	"approve": {"approve ID…", "approve requests (ids as 12 or #12)", -1},
	"reject":  {"reject ID…", "reject requests", -1},
	"explain": {"explain CONTACT ENTITY", "what the policy does when CONTACT adds ENTITY, and why", 2},
	"roster":  {"roster ENTITY", "the roster items ENTITY holds", 1},
	"lists":   {"lists", "the allow and deny lists", 0},
	"allow":   {"allow PATTERN", "add PATTERN to the allow list", 1},
	"unallow": {"unallow PATTERN", "remove PATTERN from the allow list", 1},
	"deny":    {"deny PATTERN", "add PATTERN to the deny list", 1},
	"undeny":  {"undeny PATTERN", "remove PATTERN from the deny list", 1},
	"login":   {"login", "a link that logs you in to the web page (it works once, within minutes)", 0},
	"invite": {"invite ENTITY [uses=N] [ttl=72h] [back]", "an invite link (XEP-0379): whoever opens it in their client is accepted by ENTITY, " +
		"N times (1), within ttl (72h; 0: no end), subscribed back with back", -3},
	"invites":  {"invites", "the invites and their state", 0},
	"uninvite": {"uninvite ID…", "revoke invites", -1},
}

// helpOrder is the order verbs appear in help.
var helpOrder = []string{"pending", "approve", "reject", "explain", "roster", "lists", "allow", "unallow", "deny", "undeny",
	"invite", "invites", "uninvite", "login", "help"}

// quoteShort quotes s for an error message, cut to 40 characters.
func quoteShort(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		r := []rune(s)
		s = string(r[:40]) + "…"
	}
	return strconv.Quote(s)
}

// parseID parses "12" or "#12" as a positive request id.
func parseID(s string) (int64, bool) {
	s = strings.TrimPrefix(s, "#")
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// ParseChat parses a chat command line: a verb (any case) and its
// arguments, separated by any whitespace; ids may also be separated by
// commas. An empty body is "help". The error is a one-line message for the
// admin naming what is wrong and the usage.
func ParseChat(body string) (ChatCommand, error) {
	fields := strings.Fields(body)
	if len(fields) == 0 {
		return ChatCommand{Verb: "help"}, nil
	}
	verb := strings.ToLower(fields[0])
	args := fields[1:]
	v, ok := chatVerbs[verb]
	if !ok {
		return ChatCommand{}, fmt.Errorf("unknown command %s; send \"help\" for the list", quoteShort(fields[0]))
	}
	cmd := ChatCommand{Verb: verb}
	switch v.args {
	case -2:
		return cmd, nil
	case -3:
		return parseInvite(cmd, args, v.usage)
	case -1:
		seen := make(map[int64]bool)
		for _, a := range args {
			for _, tok := range strings.Split(a, ",") {
				if tok == "" {
					continue
				}
				id, ok := parseID(tok)
				if !ok {
					return ChatCommand{}, fmt.Errorf("%s: %s is not %s id (usage: %s)", verb, quoteShort(tok), idKind(verb), v.usage)
				}
				if !seen[id] {
					seen[id] = true
					cmd.IDs = append(cmd.IDs, id)
				}
			}
		}
		if len(cmd.IDs) == 0 {
			return ChatCommand{}, fmt.Errorf("%s: no %s id given (usage: %s)", verb, idKind(verb)[strings.IndexByte(idKind(verb), ' ')+1:], v.usage)
		}
		if len(cmd.IDs) > maxChatIDs {
			return ChatCommand{}, fmt.Errorf("%s: too many ids, at most %d at once (usage: %s)", verb, maxChatIDs, v.usage)
		}
		return cmd, nil
	}
	switch {
	case len(args) > v.args && v.args == 0:
		return ChatCommand{}, fmt.Errorf("%s: unexpected argument %s (usage: %s)", verb, quoteShort(args[0]), v.usage)
	case len(args) > v.args:
		return ChatCommand{}, fmt.Errorf("%s: too many arguments, expected %d (usage: %s)", verb, v.args, v.usage)
	case len(args) < v.args:
		return ChatCommand{}, fmt.Errorf("%s: missing %s (usage: %s)", verb, strings.ToLower(strings.Join(strings.Fields(v.usage)[1+len(args):], " and ")), v.usage)
	}
	if len(args) > 0 {
		cmd.Args = args
	}
	return cmd, nil
}

// idKind names what the ids of verb are: "a request" or "an invite".
func idKind(verb string) string {
	if verb == "uninvite" {
		return "an invite"
	}
	return "a request"
}

// parseInvite reads invite's arguments: the entity, then uses=N, ttl=D and
// back in any order.
func parseInvite(cmd ChatCommand, args []string, usage string) (ChatCommand, error) {
	if len(args) == 0 {
		return ChatCommand{}, fmt.Errorf("invite: missing entity (usage: %s)", usage)
	}
	cmd.Args = args[:1]
	cmd.TTL, cmd.Uses = defaultInviteTTL, defaultInviteUses
	seen := map[string]bool{}
	for _, a := range args[1:] {
		key, val, hasVal := strings.Cut(strings.ToLower(a), "=")
		if seen[key] {
			return ChatCommand{}, fmt.Errorf("invite: %s given twice (usage: %s)", quoteShort(key), usage)
		}
		seen[key] = true
		var err error
		switch {
		case key == "back" && !hasVal:
			cmd.Back = true
		case key == "uses" && hasVal:
			if cmd.Uses, err = strconv.Atoi(val); err != nil || cmd.Uses < 1 {
				return ChatCommand{}, fmt.Errorf("invite: uses=%s is not a count of 1 or more (usage: %s)", quoteShort(val), usage)
			}
		case key == "ttl" && hasVal:
			if cmd.TTL, err = time.ParseDuration(val); err != nil || cmd.TTL < 0 {
				return ChatCommand{}, fmt.Errorf("invite: ttl=%s is not a duration such as 24h or 30m (usage: %s)", quoteShort(val), usage)
			}
		default:
			return ChatCommand{}, fmt.Errorf("invite: unexpected argument %s (usage: %s)", quoteShort(a), usage)
		}
	}
	return cmd, nil
}

// Chat handles the body of a chat message from an admin (actor, a bare
// JID) and returns the reply body (plain text, may be multi-line).
func (h *Handler) Chat(ctx context.Context, actor, body string) string {
	who := roster.Actor{JID: actor, Via: roster.ViaChat}
	cmd, err := ParseChat(body)
	if err != nil {
		return err.Error()
	}
	domain := h.ops.Domain()
	switch cmd.Verb {
	case "help":
		return h.help()
	case "login":
		msg, err := h.ops.LoginMessage(ctx, actor)
		if err != nil {
			return "login: " + roster.UserText(err)
		}
		return msg
	case "pending":
		reqs, err := h.ops.Pending(ctx)
		if err != nil {
			return "pending: " + err.Error()
		}
		if len(reqs) == 0 {
			return "No pending requests."
		}
		now := h.now()
		var lines []string
		for i, r := range reqs {
			if i == maxChatLines {
				lines = append(lines, fmt.Sprintf("… and %d more", len(reqs)-i))
				break
			}
			lines = append(lines, fmt.Sprintf("#%d %s → %s %s", r.ID, r.Contact, roster.EntityJID(domain, r.Entity), requestDetail(now, r)))
		}
		lines = append(lines, `Answer with "approve ID…" or "reject ID…".`)
		return strings.Join(lines, "\n")
	case "approve", "reject":
		lines, _ := h.decideLines(ctx, cmd.IDs, cmd.Verb == "approve", who)
		return strings.Join(lines, "\n")
	case "explain":
		ex, err := h.ops.Explain(ctx, cmd.Args[0], cmd.Args[1])
		if err != nil {
			return "explain: " + roster.UserText(err)
		}
		lines := []string{explainSummary(ex)}
		if ex.Note != "" {
			lines = append([]string{"Note: " + ex.Note + "."}, lines...)
		}
		lines = append(lines, ex.Groups...)
		if !ex.KnownEntity {
			lines = append(lines, ex.Entity+" is not an [[entity]]: unknown_entity applies.")
		}
		if ex.Message != "" {
			lines = append(lines, "Message to the requester: "+ex.Message)
		}
		return strings.Join(lines, "\n")
	case "roster":
		local, err := roster.ParseEntity(domain, cmd.Args[0])
		if err != nil {
			return "roster: " + roster.UserText(err)
		}
		j := roster.EntityJID(domain, local)
		items, err := h.ops.Roster(ctx, j, maxRosterLines)
		if err != nil {
			return "roster: " + roster.UserText(err)
		}
		if len(items) == 0 {
			if !slices.Contains(h.ops.Entities(), local) {
				return "roster: " + j + " is not an entity (no [[entity]] with local = \"" + local + "\")."
			}
			return j + " has no roster items."
		}
		lines := []string{fmt.Sprintf("%s has %d roster %s:", j, len(items), plural(len(items), "item", "items"))}
		for _, it := range items {
			lines = append(lines, rosterLine(it))
		}
		return strings.Join(lines, "\n")
	case "lists":
		allow, deny, err := h.ops.Lists(ctx)
		if err != nil {
			return "lists: " + err.Error()
		}
		return listText("allow", allow) + "\n" + listText("deny", deny)
	case "allow", "deny", "unallow", "undeny":
		list, add := strings.TrimPrefix(cmd.Verb, "un"), !strings.HasPrefix(cmd.Verb, "un")
		p := cmd.Args[0]
		changed, err := h.ops.EditList(ctx, who, list, add, p)
		if err != nil {
			return cmd.Verb + ": " + err.Error()
		}
		return ListEditLine(list, p, add, changed)
	case "invite":
		msg, err := h.ops.InviteMessage(ctx, who, cmd.Args[0], cmd.TTL, cmd.Uses, cmd.Back)
		if err != nil {
			return "invite: " + roster.UserText(err)
		}
		return msg
	case "invites":
		invs, err := h.ops.Invites(ctx)
		if err != nil {
			return "invites: " + err.Error()
		}
		return invitesText(domain, invs, h.now())
	case "uninvite":
		var lines []string
		for _, id := range cmd.IDs {
			changed, err := h.ops.RevokeInvite(ctx, who, id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				lines = append(lines, fmt.Sprintf("#%d: no such invite", id))
			case err != nil:
				lines = append(lines, fmt.Sprintf("#%d: %s", id, roster.UserText(err)))
			case !changed:
				lines = append(lines, fmt.Sprintf("#%d was revoked already", id))
			default:
				lines = append(lines, fmt.Sprintf("#%d revoked: a request that carries it now goes through the policy", id))
			}
		}
		return strings.Join(lines, "\n")
	}
	return h.help() // not reached: ParseChat knows only the verbs above
}

// invitesText lists invites for a chat reply, the newest last.
func invitesText(domain string, invs []store.Invite, now time.Time) string {
	if len(invs) == 0 {
		return "No invites."
	}
	var lines []string
	if len(invs) > maxChatLines {
		lines = append(lines, fmt.Sprintf("(the newest %d of %d)", maxChatLines, len(invs)))
		invs = invs[len(invs)-maxChatLines:]
	}
	for _, inv := range invs {
		state := inv.Unusable(now, 0)
		if state == "" {
			state = "usable"
		}
		end := "no end"
		if !inv.Expires.IsZero() {
			end = "until " + inv.Expires.UTC().Format("2006-01-02 15:04 UTC")
		}
		back := ""
		if inv.SubscribeBack {
			back = ", subscribes back"
		}
		lines = append(lines, fmt.Sprintf("#%d %s by %s: %d/%d used, %s%s — %s", inv.ID, roster.EntityJID(domain, inv.Entity), inv.Creator,
			inv.Uses, inv.MaxUses, end, back, state))
	}
	return strings.Join(lines, "\n")
}

func (h *Handler) help() string {
	lines := []string{"Commands (verbs in any case; ids as 12 or #12):"}
	for _, verb := range helpOrder {
		v := chatVerbs[verb]
		lines = append(lines, "  "+v.usage+" — "+v.what)
	}
	lines = append(lines, "Clients with ad-hoc commands: xmpp:"+h.ops.Domain()+"?command")
	return strings.Join(lines, "\n")
}

// listText is "allow list (2):\n  a\n  b", or "allow list: empty".
func listText(name string, patterns []string) string {
	if len(patterns) == 0 {
		return name + " list: empty"
	}
	return fmt.Sprintf("%s list (%d):\n  %s", name, len(patterns), strings.Join(patterns, "\n  "))
}

// ListEditLine says what came of a list edit: `Added "*@x" to the deny
// list.`, or that it changed nothing.
func ListEditLine(list, pattern string, add, changed bool) string {
	p := strconv.Quote(pattern)
	switch {
	case !changed && add:
		return fmt.Sprintf("%s was already on the %s list.", p, list)
	case !changed:
		return fmt.Sprintf("%s was not on the %s list.", p, list)
	case add:
		return fmt.Sprintf("Added %s to the %s list.", p, list)
	default:
		return fmt.Sprintf("Removed %s from the %s list.", p, list)
	}
}
