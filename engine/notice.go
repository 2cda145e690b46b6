package engine

import (
	"fmt"
	"strings"

	"rostergate/roster"
)

// QueuedNotice is the message sent to every admin when a request is queued
// for review.
func QueuedNotice(domain string, r roster.Request, entityJID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s asks to subscribe to %s", r.ID, r.Contact, entityJID)
	if r.Rule != "" {
		fmt.Fprintf(&b, " (held for review by %s)", r.Rule)
	}
	b.WriteString(".")
	if r.SubscribeBack {
		b.WriteString(" Approving also subscribes back.")
	}
	fmt.Fprintf(&b, "\nReply \"approve %d\" or \"reject %d\", or use xmpp:%s?command;node=pending", r.ID, r.ID, domain)
	return b.String()
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
