package directory

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"rostergate/internal/ldaptest"
)

// ldapTree starts a slapd with alice and bob in staff, carol in sales,
// and dave in no group.
func ldapTree(t *testing.T) *ldaptest.Server {
	t.Helper()
	s := ldaptest.Start(t)
	alice := s.AddUser(t, "alice", "alice@example.com")
	bob := s.AddUser(t, "bob", "Bob@Example.com")
	carol := s.AddUser(t, "carol", "carol@example.com")
	s.AddUser(t, "dave", "dave@example.com")
	s.AddGroup(t, "staff", alice, bob)
	s.AddGroup(t, "sales", carol)
	return s
}

func ldapConfig(s *ldaptest.Server) Config {
	return Config{URL: s.URL, BindDN: ldaptest.BindDN, BindPassword: ldaptest.BindPassword,
		Base: ldaptest.People, GroupBase: ldaptest.Groups, Timeout: 5 * time.Second}
}

// The defaults against OpenLDAP's groupOfNames: the contact's entry by its
// mail, the group by its cn with that entry among its members.
func TestLDAP(t *testing.T) {
	s := ldapTree(t)
	d, err := New(ldapConfig(s), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	for _, tc := range []struct {
		name, jid, group string
		want             bool
	}{
		{"member", "alice@example.com", "staff", true},
		{"mail in another case", "bob@example.com", "staff", true},
		{"group name in another case", "alice@example.com", "STAFF", true},
		{"another group's member", "carol@example.com", "staff", false},
		{"in no group", "dave@example.com", "staff", false},
		{"no entry", "eve@example.com", "staff", false},
		{"no such group", "alice@example.com", "nobody", false},
		// Escaped: "*" would otherwise match every entry's mail.
		{"a JID that is a filter", "*", "staff", false},
		{"a group name that is a filter", "alice@example.com", "*", false},
		{"a group name that closes the filter", "alice@example.com", "x)(cn=staff", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.Lookup(ctx, tc.jid, tc.group)
			if r.Err != nil || r.Member != tc.want || r.Source != SourceLDAP {
				t.Errorf("%s in %s: %+v, want member %v", tc.jid, tc.group, r, tc.want)
			}
		})
	}
	if r := d.Lookup(ctx, "carol@example.com", "sales"); !r.Member || r.Cached {
		t.Errorf("carol in sales: %+v, want it asked", r)
	}
	if r := d.Lookup(ctx, "carol@example.com", "Sales"); !r.Member || !r.Cached {
		t.Errorf("carol in sales again: %+v, want the cached answer", r)
	}
	m, err := d.Members(ctx, "staff")
	if want := []string{"alice@example.com", "bob@example.com"}; err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("members of staff: %q, %v; want %q", m, err, want)
	}
	if m, err := d.Members(ctx, "nobody"); err != nil || len(m) != 0 {
		t.Errorf("members of no group: %q, %v", m, err)
	}
}

// The memberOf overlay's way: one search, for the contact's entry with the
// group in its memberOf; and the members listed from the users' entries.
func TestLDAPMemberOf(t *testing.T) {
	s := ldapTree(t)
	c := ldapConfig(s)
	c.GroupBase = ldaptest.People
	c.GroupFilter = "(&(mail={jid})(memberOf=cn={group}," + ldaptest.Groups + "))"
	d, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		jid, group string
		want       bool
	}{
		{"alice@example.com", "staff", true},
		{"bob@example.com", "staff", true},
		{"carol@example.com", "staff", false},
		{"carol@example.com", "sales", true},
		{"eve@example.com", "staff", false},
	} {
		if r := d.Lookup(t.Context(), tc.jid, tc.group); r.Err != nil || r.Member != tc.want {
			t.Errorf("%s in %s: %+v, want member %v", tc.jid, tc.group, r, tc.want)
		}
	}
	m, err := d.Members(t.Context(), "staff")
	if want := []string{"alice@example.com", "bob@example.com"}; err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("members of staff: %q, %v; want %q", m, err, want)
	}
}

// What cannot be answered is an error, never "not a member": a wrong
// password, a base that does not exist, two entries with the contact's
// mail (which alone leaves the directory up for the other contacts).
func TestLDAPErrors(t *testing.T) {
	s := ldapTree(t)
	s.AddUser(t, "alice2", "alice@example.com")
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		jid  string
		want string
	}{
		{"wrong password", func(c *Config) { c.BindPassword = "wrong" }, "bob@example.com", "Invalid Credentials"},
		{"no such base", func(c *Config) { c.Base = "ou=nobody," + ldaptest.Base }, "bob@example.com", "No Such Object"},
		{"two entries", func(*Config) {}, "alice@example.com", "several entries match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ldapConfig(s)
			tc.edit(&c)
			d, err := New(c, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			r := d.Lookup(ctx, tc.jid, "staff")
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) || r.Member {
				t.Errorf("%+v, want an error with %q", r, tc.want)
			}
			if _, ok := d.Cached(tc.jid, "staff"); ok {
				t.Error("the failure was cached")
			}
			// Two entries for one contact are the data's fault, not the
			// server's: the others are still asked.
			if up := d.Stats().Up; up != (tc.name == "two entries") {
				t.Errorf("the directory up after %s: %v", tc.name, up)
			}
		})
	}
}

// The directory goes away mid-run (stopped, killed, hung) and comes back:
// while it is away nothing it has not answered before is answered, cached
// answers are kept for their TTL, and once it is back (and retry_after
// has passed) it answers again on a new connection.
func TestLDAPGoesAway(t *testing.T) {
	s := ldapTree(t)
	clk := newClock()
	c := ldapConfig(s)
	c.Timeout, c.RetryAfter, c.CacheTTL = 500*time.Millisecond, time.Second, time.Minute
	d, err := New(c, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	for _, away := range []struct {
		name       string
		go_, back_ func(testing.TB)
	}{
		{"stopped", s.Stop, s.Start},
		{"killed", s.Kill, s.Start},
		{"hung", s.Pause, s.Resume},
	} {
		t.Run(away.name, func(t *testing.T) {
			if r := d.Lookup(ctx, "alice@example.com", "staff"); r.Err != nil || !r.Member {
				t.Fatalf("alice before: %+v", r)
			}
			away.go_(t)
			r := d.Lookup(ctx, "bob@example.com", "staff")
			if r.Err == nil || r.Member {
				t.Fatalf("bob while the directory is %s: %+v", away.name, r)
			}
			// Within retry_after the directory is not asked: the error
			// comes at once, and says so.
			if r := d.Lookup(ctx, "carol@example.com", "sales"); r.Err == nil || !strings.Contains(r.Err.Error(), "not asked again until") {
				t.Errorf("within retry_after: %+v", r)
			}
			if r := d.Lookup(ctx, "alice@example.com", "staff"); r.Err != nil || !r.Member || !r.Cached {
				t.Errorf("alice, cached before: %+v", r)
			}
			away.back_(t)
			clk.add(c.RetryAfter)
			if r := d.Lookup(ctx, "bob@example.com", "staff"); r.Err != nil || !r.Member || r.Cached {
				t.Errorf("bob once the directory is back: %+v", r)
			}
			if !d.Stats().Up {
				t.Error("not up once the directory answered again")
			}
			clk.add(c.CacheTTL) // bob is asked again next time
		})
	}
	// A change in the directory shows once the cached answer is stale.
	if r := d.Lookup(ctx, "alice@example.com", "staff"); r.Err != nil || !r.Member || r.Cached {
		t.Fatalf("alice: %+v", r)
	}
	s.RemoveMember(t, "staff", ldaptest.UserDN("alice"))
	if r := d.Lookup(ctx, "alice@example.com", "staff"); !r.Member || !r.Cached {
		t.Errorf("alice removed, within the TTL: %+v", r)
	}
	clk.add(c.CacheTTL)
	if r := d.Lookup(ctx, "alice@example.com", "staff"); r.Err != nil || r.Member || r.Cached {
		t.Errorf("alice removed, after the TTL: %+v", r)
	}
}
