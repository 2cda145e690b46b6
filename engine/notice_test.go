package engine

import (
	"testing"

	"rostergate/roster"
)

// The notices every admin gets, word for word.
func TestNotices(t *testing.T) {
	r := roster.Request{ID: 12, Entity: "helpdesk", Contact: "alice@localhost", Rule: "rule 2"}
	tests := []struct{ name, got, want string }{
		{"queued", QueuedNotice("bots.localhost", r, "helpdesk@bots.localhost"),
			"#12 alice@localhost asks to subscribe to helpdesk@bots.localhost (held for review by rule 2).\n" +
				`Reply "approve 12" or "reject 12", or use xmpp:bots.localhost?command;node=pending`},
		{"queued, subscribe back, no rule", QueuedNotice("bots.localhost", roster.Request{ID: 3, Contact: "bob@x", SubscribeBack: true}, "bots.localhost"),
			"#3 bob@x asks to subscribe to bots.localhost. Approving also subscribes back.\n" +
				`Reply "approve 3" or "reject 3", or use xmpp:bots.localhost?command;node=pending`},
		{"approved", DecidedNotice(r, "helpdesk@bots.localhost", true, roster.Actor{JID: "admin@localhost", Via: roster.ViaAdhoc}),
			"#12 alice@localhost → helpdesk@bots.localhost: approved by admin@localhost (adhoc)"},
		{"rejected", DecidedNotice(r, "helpdesk@bots.localhost", false, roster.Actor{JID: "root@localhost", Via: roster.ViaChat}),
			"#12 alice@localhost → helpdesk@bots.localhost: rejected by root@localhost (chat)"},
		{"no iface", DecidedNotice(r, "helpdesk@bots.localhost", false, roster.Actor{JID: "root@localhost"}),
			"#12 alice@localhost → helpdesk@bots.localhost: rejected by root@localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", tt.got, tt.want)
			}
		})
	}
}
