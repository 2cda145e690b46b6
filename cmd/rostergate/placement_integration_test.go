package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/internal/xmpptest"
)

// TestIntegrationPlacement: [[entity]] place_in puts crm on the rosters of
// a user listed by JID and of the members of a groups file's group, as a
// both contact; a member added to the file (and a reload) is placed, one
// taken out loses it. On Prosody with mod_privilege granting roster=both
// the users' items are written through the server (XEP-0356); where the
// permission is withheld (Prosody granting roster=get only, ejabberd's
// mod_privilege granting nothing) and on ejabberd 23.01, whose privileged
// roster set fails, the entity asks and pre-approves, and each user
// accepts once.
func TestIntegrationPlacement(t *testing.T) {
	only := os.Getenv(xmpptest.ServersEnv)
	const ejabberdFails = ", but its roster set failed: component: roster set for alice@localhost refused: " +
		"internal-server-error (Module failed to handle the query)"
	for _, tc := range []struct {
		name, kind, privilege string
		granted               bool   // the server grants roster set
		privileged            bool   // the items are written through the server
		grant                 string // in the log and status
		status                string // after the grant in status: why the method in force is
	}{
		{"prosody", xmpptest.KindProsody, "both", true, true, "localhost granted roster=both (urn:xmpp:privilege:2)", ""},
		{"ejabberd", xmpptest.KindEjabberd, "both", true, false, "localhost granted roster=both (urn:xmpp:privilege:1)", ejabberdFails},
		{"prosody-withheld", xmpptest.KindProsody, "get", false, false, "localhost granted roster=get, not set (urn:xmpp:privilege:2)", ""},
		{"ejabberd-withheld", xmpptest.KindEjabberd, "none", false, false, "no privilege advertised (XEP-0356)", ""},
		// Openfire has no XEP-0356: it runs where $OPENFIRE_HOME is set.
		{"openfire", xmpptest.KindOpenfire, "", false, false, "no privilege advertised (XEP-0356)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if only != "" && !slices.Contains(strings.Split(only, ","), tc.kind) {
				t.Skipf("skipping: %s=%s", xmpptest.ServersEnv, only)
			}
			srv := xmpptest.ServerWith(t, tc.kind, xmpptest.Config{RosterPrivilege: tc.privilege})
			testPlacement(t, srv, tc.granted, tc.privileged, tc.grant, tc.status)
		})
	}
}

func testPlacement(t *testing.T, srv *xmpptest.Server, granted, privileged bool, grant, why string) {
	users := map[string]*xmpptest.Client{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		users[u] = srv.NewUser(t, u)
	}
	dir := t.TempDir()
	groups := filepath.Join(dir, "groups.toml")
	writeGroups := func(members ...string) {
		t.Helper()
		var q []string
		for _, m := range members {
			q = append(q, fmt.Sprintf("%q", m+"@localhost"))
		}
		if err := os.WriteFile(groups, []byte("sales = ["+strings.Join(q, ", ")+"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// nobody has no account: the server cannot place crm on a roster
	// that does not exist, and the others are placed all the same.
	writeGroups("bob", "carol", "nobody")
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(`[component]
domain = %q
server = %q
secret = %q
[storage]
path = "rg.db"
[[entity]]
local = "crm"
name = "CRM"
place_in = ["group:sales", "alice@localhost"]
[directory]
groups_file = "groups.toml"
[placement]
interval = "1s"
[policy]
default = "reject"
`, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, "check", "-config", cfg); err != nil ||
		!strings.Contains(out, "\nplaced in  crm@"+srv.ComponentDomain+": group:sales, alice@localhost (reconciled every 1s; ") {
		t.Errorf("check: %v\n%s", err, out)
	}
	hup := make(chan os.Signal, 1)
	d := startRun(t, cfg, hup)
	d.waitLog(t, "presence resync sent")
	method := "subscription fallback"
	if granted {
		method = "privileged roster"
	}
	d.waitLog(t, "placing entities in users' rosters: method=\""+method+"\" grant=\""+grant+"\"")
	if !privileged {
		method = "subscription fallback"
	}

	crm := "crm@" + srv.ComponentDomain
	ctx, cancel := context.WithTimeout(context.Background(), 6*waitFor)
	defer cancel()
	// placed waits until c holds crm as both: written by the server, or
	// asked for, which c accepts once (subscribed, and its own subscribe,
	// as clients send on accepting; the pre-approval answers it).
	placed := func(c *xmpptest.Client) {
		t.Helper()
		if !privileged {
			if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.From == crm && p.Type == "subscribe" }); err != nil {
				t.Fatalf("%s was not asked: %v\n%s", c.JID, err, d.log.String())
			}
			for _, typ := range []string{"subscribed", "subscribe"} {
				if err := c.SendPresence(crm, typ); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.From == crm && p.Type == "subscribed" }); err != nil {
				t.Fatalf("%s's own request was not accepted at once: %v\n%s", c.JID, err, d.log.String())
			}
		}
		it, err := c.WaitRosterItem(ctx, crm, func(it xmpptest.RosterItem) bool { return it.Subscription == "both" && it.Ask == "" })
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.JID, err, d.log.String())
		}
		if privileged && it.Name != "CRM" {
			t.Errorf("%s's item is named %q, want CRM", c.JID, it.Name)
		}
		// And crm's presence reaches the user: the entity knows it is a
		// subscriber.
		if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool {
			return strings.HasPrefix(p.From, crm+"/") && p.Type == ""
		}); err != nil {
			t.Errorf("%s did not get crm's presence: %v", c.JID, err)
		}
	}
	placed(users["alice"])
	placed(users["bob"])
	placed(users["carol"])

	// rostergate's own state is both, and status says what each user got.
	state := "accepted"
	if privileged {
		state = "placed"
	}
	without := "" // a user status must not list
	waitStatus := func(want ...[]string) string {
		t.Helper()
		deadline := time.Now().Add(3 * waitFor)
		for {
			out, _, err := runCmd(t, "status", "-config", cfg)
			ok := err == nil && (without == "" || !strings.Contains(out, without))
			for _, w := range want {
				ok = ok && regexpLine(out, w...)
			}
			if ok {
				return out
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never said %q: %v\n%s\n%s", want, err, out, d.log.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// What the server says of nobody: Prosody service-unavailable to the
	// roster set (then nothing to the subscribe).
	row := func(user, source, state string) []string {
		m := " subscription "
		if privileged {
			m = " privilege "
		}
		return []string{crm + " ", " " + user + " ", " " + source + " ", m, " " + state + " "}
	}
	out := waitStatus([]string{"placement  " + method + ": " + grant + why + " (stream of "}, row("alice@localhost", "alice@localhost", state),
		row("bob@localhost", "group:sales", state), row("carol@localhost", "group:sales", state),
		[]string{crm + " ", " nobody@localhost ", " group:sales ", " subscription ", " waiting "})
	t.Logf("status:\n%s", out)
	rosterOut, _, err := runCmd(t, "roster", "-config", cfg, "-entity", "crm")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if !regexpLine(rosterOut, u+"@localhost", "both") {
			t.Errorf("rostergate's roster of crm has no both item for %s:\n%s", u, rosterOut)
		}
	}
	if regexpLine(rosterOut, "dave@localhost", "") {
		t.Errorf("dave, in no source, is on crm's roster:\n%s", rosterOut)
	}

	// dave joins sales: after the reload he is placed; carol leaves: the
	// entity is taken off her roster.
	writeGroups("bob", "dave", "nobody")
	d.reload(t)
	placed(users["dave"])
	carol := users["carol"]
	if privileged {
		if err := waitRosterGone(ctx, carol, crm); err != nil {
			t.Errorf("carol left sales, crm stays on her roster: %v\n%s", err, d.log.String())
		}
	} else if _, err := carol.WaitRosterItem(ctx, crm, func(it xmpptest.RosterItem) bool { return it.Subscription == "none" }); err != nil {
		t.Errorf("carol left sales, crm's subscriptions stay: %v\n%s", err, d.log.String())
	}
	// The server writes first, then rostergate records it: wait for both.
	without = " carol@localhost "
	waitStatus(row("dave@localhost", "group:sales", state))
	audit, _, err := runCmd(t, "audit", "-config", cfg, "-format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	via := "fallback"
	if privileged {
		via = "privilege"
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if !regexpLine(audit, ","+u+"@localhost,", ",place,", ",rostergate,", ","+via+",") {
			t.Errorf("no placement of %s by rostergate through %s in the audit log:\n%s", u, via, audit)
		}
	}
	if !regexpLine(audit, ",carol@localhost,", ",unplace,") {
		t.Errorf("carol's removal is not in the audit log:\n%s", audit)
	}
}

// regexpLine reports whether some line of out holds each of words.
func regexpLine(out string, words ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// waitRosterGone waits until c's roster has no item for jid.
func waitRosterGone(ctx context.Context, c *xmpptest.Client, jid string) error {
	for {
		r, err := c.Roster(ctx)
		if err != nil {
			return err
		}
		if _, ok := r[jid]; !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still holds %s: %w", c.JID, jid, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
