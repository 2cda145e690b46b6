package engine

import (
	"testing"

	"rostergate/policy"
	"rostergate/roster"
)

// The notices every admin gets, word for word.
func TestNotices(t *testing.T) {
	r := roster.Request{ID: 12, Entity: "helpdesk", Contact: "alice@localhost", Rule: "rule 2"}
	rules := []policy.Rule{{Contact: "*@localhost", Action: policy.Accept}, {Domain: "example.com", Action: policy.Review}}
	tests := []struct{ name, got, want string }{
		{"queued", QueuedNotice("bots.localhost", r, "helpdesk@bots.localhost", HeldReason(r.Rule, rules), ""),
			"#12 alice@localhost asks to subscribe to helpdesk@bots.localhost (held for review by rule 2: domain=\"example.com\" -> review).\n" +
				`Reply "approve 12" or "reject 12", or use xmpp:bots.localhost?command;node=pending`},
		{"queued by default", QueuedNotice("bots.localhost", roster.Request{ID: 4, Contact: "carol@x", Rule: "default"}, "helpdesk@bots.localhost", HeldReason("default", rules), "https://rg.example.com/inbox"),
			"#4 carol@x asks to subscribe to helpdesk@bots.localhost (no rule matched; held for review).\n" +
				`Reply "approve 4" or "reject 4", or use xmpp:bots.localhost?command;node=pending, or the web inbox: https://rg.example.com/inbox?id=4`},
		{"a rule no longer there", HeldReason("rule 9", rules), "held for review by rule 9"},
		{"queued, subscribe back, no rule", QueuedNotice("bots.localhost", roster.Request{ID: 3, Contact: "bob@x", SubscribeBack: true}, "bots.localhost", "", ""),
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
