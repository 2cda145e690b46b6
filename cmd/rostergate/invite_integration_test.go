package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"rostergate/internal/xmpptest"
)

// inviteURI finds an invite's link and its token in text.
var inviteURI = regexp.MustCompile(`xmpp:[^\s?]+\?roster;preauth=(rgi_[A-Za-z0-9_-]+)`)

// subscribeWith sends a subscribe to entity carrying an invite's token, as
// a client does that opened the invite's link (XEP-0379 §3).
func subscribeWith(t *testing.T, c *xmpptest.Client, entity, token string) {
	t.Helper()
	if err := c.SendRaw(fmt.Sprintf(`<presence to='%s' type='subscribe' id='pars-%s'><preauth xmlns='urn:xmpp:pars:0' token='%s'/></presence>`,
		entity, c.Bare[:strings.IndexByte(c.Bare, '@')], token)); err != nil {
		t.Fatal(err)
	}
}

// waitAccepted waits for c to get entity's "subscribed", and with back its
// "subscribe" too.
func waitAccepted(t *testing.T, c *xmpptest.Client, entity string, back bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribed" && strings.HasPrefix(p.From, entity) }); err != nil {
		t.Fatalf("%s with an invite was not accepted by %s: %v", c.Bare, entity, err)
	}
	if back {
		if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.Type == "subscribe" && strings.HasPrefix(p.From, entity) }); err != nil {
			t.Fatalf("%s: %s did not subscribe back: %v", c.Bare, entity, err)
		}
	}
}

// Invites on a real server: the server routes the subscribe with its
// <preauth/> to rostergate, which accepts it although the policy holds
// every request; the invite's uses, revocation and chat command work; the
// audit names the invite and its creator.
func TestIntegrationInvites(t *testing.T) { xmpptest.EachServer(t, testIntegrationInvites) }

func testIntegrationInvites(t *testing.T, srv *xmpptest.Server) {
	d := startDaemon(t, srv, "review")
	admin := srv.NewUser(t, "admin")
	helpdesk := "helpdesk@" + srv.ComponentDomain

	out, errOut, err := runCmd(t, "invite", "create", "-config", d.cfg, "-entity", "helpdesk", "-subscribe-back")
	if err != nil {
		t.Fatalf("invite create: %v\n%s", err, errOut)
	}
	m := inviteURI.FindStringSubmatch(out)
	if m == nil || !strings.HasPrefix(out, "xmpp:"+helpdesk+"?roster;preauth=") {
		t.Fatalf("invite create printed %q", out)
	}
	if !strings.Contains(errOut, "invite 1 to "+helpdesk+": 1 use, until ") || !strings.Contains(errOut, "subscribes back") {
		t.Errorf("invite create said %q", errOut)
	}
	cliToken := m[1]

	alice := srv.NewUser(t, "alice")
	subscribeWith(t, alice, helpdesk, cliToken)
	waitAccepted(t, alice, helpdesk, true)

	// Its one use is spent: the next request with it is held, as any.
	bob := srv.NewUser(t, "bob")
	subscribeWith(t, bob, helpdesk, cliToken)
	waitHeld(t, admin, "bob@"+srv.Domain, helpdesk)
	if got := d.log.String(); !strings.Contains(got, "why=\"the invite is used up\"") {
		t.Errorf("the used-up invite was not logged:\n%s", got)
	}

	// The chat command: two uses.
	reply := chatReply(t, admin, srv.ComponentDomain, "invite helpdesk uses=2")
	m = inviteURI.FindStringSubmatch(reply)
	if m == nil || !strings.Contains(reply, "Invite #2 to "+helpdesk+" (2 uses, until ") {
		t.Fatalf("the chat command invite answered %q", reply)
	}
	chatToken := m[1]
	carol := srv.NewUser(t, "carol")
	subscribeWith(t, carol, helpdesk, chatToken)
	waitAccepted(t, carol, helpdesk, false)

	// Revoked from the command line: it accepts no one more.
	if out, errOut, err := runCmd(t, "invite", "revoke", "-config", d.cfg, "2"); err != nil || !strings.Contains(out, "invite 2 revoked") {
		t.Fatalf("invite revoke: %q %q %v", out, errOut, err)
	}
	dave := srv.NewUser(t, "dave")
	subscribeWith(t, dave, helpdesk, chatToken)
	waitHeld(t, admin, "dave@"+srv.Domain, helpdesk)
	// A made-up token is no invite.
	erin := srv.NewUser(t, "erin")
	subscribeWith(t, erin, helpdesk, "rgi_madeup")
	waitHeld(t, admin, "erin@"+srv.Domain, helpdesk)

	out, _, err = runCmd(t, "invite", "list", "-config", d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^1 +` + regexp.QuoteMeta(helpdesk) + ` +cli:\S+ +.* 1/1 .* yes +used up$`),
		regexp.MustCompile(`(?m)^2 +` + regexp.QuoteMeta(helpdesk) + ` +admin@` + regexp.QuoteMeta(srv.Domain) + ` +.* 1/2 .* no +revoked `),
	} {
		if !want.MatchString(out) {
			t.Errorf("invite list does not match %s:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, "audit", "-config", d.cfg, "-format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{",invite,create,invite 1,", ",invite 1 by cli:", ",invite 2 by admin@" + srv.Domain, ",invite,revoke,invite 2,"} {
		if !strings.Contains(out, want) {
			t.Errorf("the audit has no %q:\n%s", want, out)
		}
	}
}
