package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/internal/ldaptest"
	"rostergate/internal/xmpptest"
)

// Group rules against a real OpenLDAP, on Prosody and ejabberd: a staff
// user's request is accepted by the group rule, a non-member's held; with
// slapd stopped mid-run a staff user's new request is held, not accepted,
// and the failure is logged and counted; once slapd is back, staff users
// are accepted again.
func TestIntegrationDirectory(t *testing.T) { xmpptest.EachServer(t, testIntegrationDirectory) }

func testIntegrationDirectory(t *testing.T, srv *xmpptest.Server) {
	ldap := ldaptest.Start(t)
	var staff []string
	for _, u := range []string{"alice", "bob", "dave", "erin"} {
		staff = append(staff, ldap.AddUser(t, u, u+"@localhost"))
	}
	ldap.AddUser(t, "carol", "carol@localhost")
	ldap.AddGroup(t, "staff", staff...)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ldap.pw"), []byte(ldaptest.BindPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(`[component]
domain = %q
server = %q
secret = %q
[storage]
path = "rg.db"
[[entity]]
local = "helpdesk"
[admin]
jids = ["admin@localhost"]
[http]
listen = "127.0.0.1:0"
[directory]
ldap_url = %q
bind_dn = %q
bind_password_file = "ldap.pw"
base = %q
group_base = %q
retry_after = "200ms"
[policy]
default = "review"
[[policy.rule]]
group = "staff"
action = "accept"
`, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret, ldap.URL, ldaptest.BindDN, ldaptest.People, ldaptest.Groups)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	m := apiURL.FindStringSubmatch(d.log.String())
	if m == nil {
		t.Fatalf("no API address in the log:\n%s", d.log.String())
	}
	base := m[1]

	domain := srv.ComponentDomain
	helpdesk := "helpdesk@" + domain
	admin := srv.NewUser(t, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitFor)
	defer cancel()
	subscribed := func(c *xmpptest.Client) {
		t.Helper()
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.From == helpdesk && p.Type == "subscribed" }); err != nil {
			t.Fatalf("%s, in staff, was not accepted: %v\n%s", c.JID, err, d.log.String())
		}
	}
	heldNotAccepted := func(c *xmpptest.Client, contact string) {
		t.Helper()
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, admin, contact, helpdesk)
		for _, s := range c.Stanzas() {
			if strings.Contains(s, "type='subscribed'") || strings.Contains(s, `type="subscribed"`) {
				t.Errorf("%s was accepted: %s", contact, s)
			}
		}
	}
	// explain asks the running instance, by chat, and returns its answer.
	explain := func(contact string) string {
		t.Helper()
		if err := admin.SendMessage(domain, "explain "+contact+" helpdesk"); err != nil {
			t.Fatal(err)
		}
		r, err := admin.WaitMessage(ctx, func(m xmpptest.Message) bool {
			return m.From == domain && strings.HasPrefix(m.Body, contact+" → ")
		})
		if err != nil {
			t.Fatalf("no answer to explain %s: %v", contact, err)
		}
		return r.Body
	}

	// The directory up: staff accepted, others held.
	subscribed(srv.NewUser(t, "alice"))
	heldNotAccepted(srv.NewUser(t, "carol"), "carol@localhost")
	d.waitLog(t, `contact=alice@localhost action=accept rule="rule 1" subscribe_back=false groups="rule 1 staff=member(ldap)"`)
	if got := explain("alice@localhost"); !strings.Contains(got, "\nrule 1 group staff: alice@localhost is a member (ldap, cached ") {
		t.Errorf("explain alice:\n%s", got)
	}
	out, _, err := runCmd(t, "explain", "-config", cfg, "-from", "carol@localhost", "-to", "helpdesk")
	if err != nil || !strings.Contains(out, "  rule 1 group staff: carol@localhost is not a member (ldap, looked up now); rule does not match\n") ||
		!strings.Contains(out, "decided by: default: review") {
		t.Errorf("rostergate explain carol: %v\n%s", err, out)
	}

	// slapd stopped: bob, in staff, is held, not accepted.
	ldap.Stop(t)
	heldNotAccepted(srv.NewUser(t, "bob"), "bob@localhost")
	d.waitLog(t, "rostergate.directory: directory unavailable: group rules do not match until it answers: source=ldap")
	d.waitLog(t, "rostergate.engine: group rule does not match: directory unavailable: rule=1 group=staff entity="+helpdesk+" contact=bob@localhost")
	s := waitMetric(t, base, "rostergate_directory_up", 0)
	if s[`rostergate_directory_lookups_total{result="error"}`] < 1 || s[`rostergate_directory_lookups_total{result="member"}`] < 1 {
		t.Errorf("metrics while slapd is down: %v", s)
	}
	if got := explain("erin@localhost"); !strings.Contains(got, ": review (default") || !strings.Contains(got, "\nrule 1 group staff: directory unavailable: ") ||
		!strings.Contains(got, "; rule does not match") {
		t.Errorf("explain erin while slapd is down:\n%s", got)
	}
	out, _, err = runCmd(t, "explain", "-config", cfg, "-from", "erin@localhost", "-to", "helpdesk")
	if err != nil || !strings.Contains(out, "rule 1 group staff: directory unavailable: directory: ldap: connecting to "+ldap.URL) {
		t.Errorf("rostergate explain erin while slapd is down: %v\n%s", err, out)
	}

	// slapd back: once retry_after has passed, the instance asks it
	// again, and staff users are accepted.
	ldap.Start(t)
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(explain("erin@localhost"), "\nrule 1 group staff: erin@localhost is a member (ldap, looked up now)") {
		if time.Now().After(deadline) {
			t.Fatalf("the instance did not find slapd again within %s:\n%s", waitFor, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.waitLog(t, "rostergate.directory: directory reachable again: source=ldap")
	subscribed(srv.NewUser(t, "dave"))
	waitMetric(t, base, "rostergate_directory_up", 1)
}

// A groups file, re-read on reload (SIGHUP): a member is accepted, a
// non-member held; added to the file and reloaded, a new user is accepted;
// a file made bad is refused and the groups in force kept.
func TestIntegrationGroupsFileReload(t *testing.T) {
	xmpptest.EachServer(t, testIntegrationGroupsFileReload)
}

func testIntegrationGroupsFileReload(t *testing.T, srv *xmpptest.Server) {
	dir := t.TempDir()
	groups := filepath.Join(dir, "groups.toml")
	writeGroups := func(text string) {
		t.Helper()
		if err := os.WriteFile(groups, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeGroups(`staff = ["alice@localhost"]` + "\n")
	cfg := filepath.Join(dir, "component.toml")
	text := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) +
		"default = \"review\"\n[[policy.rule]]\ngroup = \"Staff\"\naction = \"accept\"\n[directory]\ngroups_file = \"groups.toml\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	helpdesk := "helpdesk@" + srv.ComponentDomain
	admin := srv.NewUser(t, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	accepted := func(c *xmpptest.Client) {
		t.Helper()
		if err := c.SendPresence(helpdesk, "subscribe"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitPresence(ctx, func(p xmpptest.Presence) bool { return p.From == helpdesk && p.Type == "subscribed" }); err != nil {
			t.Fatalf("%s was not accepted: %v\n%s", c.JID, err, d.log.String())
		}
	}
	accepted(srv.NewUser(t, "alice"))
	bob := srv.NewUser(t, "bob")
	if err := bob.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, admin, "bob@localhost", helpdesk)

	writeGroups(`staff = ["alice@localhost", "carol@localhost", "frank@localhost"]` + "\n")
	d.reload(t)
	d.waitLog(t, "reload done")
	accepted(srv.NewUser(t, "carol"))

	writeGroups(`staff = ["alice@localhost", "dave@localhost/phone"]` + "\n")
	d.reload(t)
	d.waitLog(t, "reload refused")
	if !strings.Contains(d.log.String(), `"dave@localhost/phone\" is not a bare JID`) {
		t.Errorf("the refusal does not say why:\n%s", d.log.String())
	}
	// The groups in force are kept.
	accepted(srv.NewUser(t, "frank"))
}
