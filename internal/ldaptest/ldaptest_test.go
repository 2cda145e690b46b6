package ldaptest

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// bound connects to s as rostergate's service account.
func bound(t *testing.T, s *Server) (*ldap.Conn, error) {
	t.Helper()
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
	if err != nil {
		return nil, err
	}
	c.SetTimeout(2 * time.Second)
	if err := c.Bind(BindDN, BindPassword); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func search(c *ldap.Conn, filter string) ([]string, error) {
	res, err := c.Search(ldap.NewSearchRequest(Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 5, false, filter, []string{"1.1"}, nil))
	if err != nil {
		return nil, err
	}
	var dns []string
	for _, e := range res.Entries {
		dns = append(dns, e.DN)
	}
	return dns, nil
}

func TestTree(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.URL, "ldap://127.0.0.1:") {
		t.Errorf("URL %q is not on loopback", s.URL)
	}
	alice := s.AddUser(t, "alice", "alice@example.com")
	bob := s.AddUser(t, "bob", "bob@example.com")
	s.AddGroup(t, "staff", alice)
	s.AddMember(t, "staff", bob)
	c, err := bound(t, s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dns, err := search(c, "(&(objectClass=groupOfNames)(cn=staff)(member="+ldap.EscapeFilter(bob)+"))")
	if err != nil || len(dns) != 1 || dns[0] != GroupDN("staff") {
		t.Errorf("bob's group: %q, %v", dns, err)
	}
	s.RemoveMember(t, "staff", bob)
	if dns, err := search(c, "(&(cn=staff)(member="+ldap.EscapeFilter(bob)+"))"); err != nil || len(dns) != 0 {
		t.Errorf("after bob was removed: %q, %v", dns, err)
	}
	// Anonymous clients read nothing.
	anon, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if dns, err := search(anon, "(mail=*)"); len(dns) != 0 {
		t.Errorf("an anonymous search found %q (%v)", dns, err)
	}
	if err := anon.Bind(BindDN, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("a wrong password: %v", err)
	}
}

// The directory goes away and comes back, keeping its tree: stopped,
// killed, paused.
func TestAway(t *testing.T) {
	s := Start(t)
	s.AddUser(t, "alice", "alice@example.com")
	up := func(what string) {
		t.Helper()
		c, err := bound(t, s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer c.Close()
		if dns, err := search(c, "(mail=alice@example.com)"); err != nil || len(dns) != 1 {
			t.Errorf("%s: %q, %v", what, dns, err)
		}
	}
	down := func(what string) {
		t.Helper()
		if c, err := bound(t, s); err == nil {
			_, err = search(c, "(mail=alice@example.com)")
			c.Close()
			if err == nil {
				t.Errorf("%s: the directory answered", what)
			}
		}
	}
	up("at first")
	s.Stop(t)
	down("stopped")
	s.Start(t)
	up("started again")
	s.Kill(t)
	down("killed")
	s.Start(t)
	up("started after the kill")
	s.Pause(t)
	down("paused")
	s.Resume(t)
	up("resumed")
}
