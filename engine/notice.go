package engine

import (
	"bytes"
	"fmt"
	"rostergate/xmpp/stanza"
	"strconv"
	"strings"

	"rostergate/policy"
	"rostergate/roster"
)

// QueuedNotice is the message sent to every admin when a request is queued
// for review; why is why it was held (see HeldReason), "" for nothing;
// inbox is the web page's inbox, "" if there is none.
func QueuedNotice(domain string, r roster.Request, entityJID, why, inbox string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s asks to subscribe to %s", r.ID, r.Contact, entityJID)
	if why != "" {
		fmt.Fprintf(&b, " (%s)", why)
	}
	b.WriteString(".")
	if r.SubscribeBack {
		b.WriteString(" Approving also subscribes back.")
	}
	fmt.Fprintf(&b, "\nReply \"approve %d\" or \"reject %d\", or use xmpp:%s?command;node=pending", r.ID, r.ID, domain)
	if inbox != "" {
		fmt.Fprintf(&b, ", or the web inbox: %s?id=%d", inbox, r.ID)
	}
	return b.String()
}

// TellAdmin sends an admin a chat message from the component domain: what
// reports no state change (a login link, say). It fails unless to is an
// admin, and while no stream is up.
func (e *Engine) TellAdmin(to, body string) error {
	if !e.IsAdmin(to) {
		return fmt.Errorf("engine: %s is not an admin", to)
	}
	var b bytes.Buffer
	stanza.Message(&b, e.domain, to, e.NewID(), "chat", body)
	return e.Send(b.Bytes())
}

// HeldReason says why a request was held, for admins: "no rule matched;
// held for review" for the default, "held for review by rule 2:
// domain=\"example.com\" -> review" for a rule (rules are numbered from 1, in
// the order of the config), the reason as stored otherwise.
func HeldReason(rule string, rules []policy.Rule) string {
	switch {
	case rule == "":
		return ""
	case rule == "default":
		return "no rule matched; held for review"
	case strings.HasPrefix(rule, policy.ReasonUnsure):
		n, _ := strconv.Atoi(strings.TrimPrefix(rule, policy.ReasonUnsure))
		if n >= 1 && n <= len(rules) {
			return fmt.Sprintf("held for review: the directory could not say whether rule %d applies (%s), and what comes after it would accept", n, rules[n-1])
		}
	}
	if n, ok := strings.CutPrefix(rule, "rule "); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= len(rules) {
			return fmt.Sprintf("held for review by rule %d: %s", i, rules[i-1])
		}
	}
	return "held for review by " + rule
}

// DecidedNotice is the message sent to every admin when a request is decided,
// e.g. "#12 alice@localhost → helpdesk@bots.localhost: approved by
// admin@localhost (adhoc)".
func DecidedNotice(r roster.Request, entityJID string, approve bool, actor roster.Actor) string {
	verb := "rejected"
	if approve {
		verb = "approved"
	}
	return fmt.Sprintf("#%d %s → %s: %s by %s", r.ID, r.Contact, entityJID, verb, actor)
}

// HeldWhy is HeldReason under the policy in force.
func (e *Engine) HeldWhy(rule string) string { return HeldReason(rule, e.live.Load().Policy.Rules()) }

// SetInbox sets the web page's inbox (a URL), which the notices of held
// requests link to; "" for none.
func (e *Engine) SetInbox(url string) { e.inbox.Store(&url) }

// Inbox returns what SetInbox set ("" if nothing).
func (e *Engine) Inbox() string {
	if p := e.inbox.Load(); p != nil {
		return *p
	}
	return ""
}
