package engine

import (
	"fmt"
	"strconv"
	"strings"

	"rostergate/policy"
	"rostergate/roster"
)

// QueuedNotice is the message sent to every admin when a request is queued
// for review; why is why it was held (see HeldReason), "" for nothing.
func QueuedNotice(domain string, r roster.Request, entityJID, why string) string {
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
	return b.String()
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
