package directory

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSource answers from a map, counts what it is asked, fails while err
// is set, and blocks while block is open.
type fakeSource struct {
	mu     sync.Mutex
	member map[string]bool // key(jid, group)
	err    error
	asked  int
	block  chan struct{} // nil: answer at once
	delay  time.Duration // how long each answer takes
}

func (f *fakeSource) Member(ctx context.Context, j, group string) (bool, error) {
	f.mu.Lock()
	f.asked++
	block, err, m, delay := f.block, f.err, f.member[key(j, group)], f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return m, err
}

func (f *fakeSource) Members(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeSource) Close() error                                      { return nil }

func (f *fakeSource) set(fn func(f *fakeSource)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withFake returns a Directory configured for LDAP whose source is src.
func withFake(t *testing.T, c Config, src *fakeSource, clk *clock) *Directory {
	t.Helper()
	if c.URL == "" {
		c.URL = "ldap://127.0.0.1:1"
	}
	d, err := New(c, Options{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.src = src
	d.mu.Unlock()
	return d
}

func newClock() *clock { return &clock{t: time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)} }

func TestCache(t *testing.T) {
	clk := newClock()
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}}
	d := withFake(t, Config{CacheTTL: time.Minute}, src, clk)
	ctx := t.Context()

	r := d.Lookup(ctx, "alice@example.com", "Staff")
	if r.Err != nil || !r.Member || r.Cached || r.Source != SourceLDAP || !r.At.Equal(clk.now()) {
		t.Fatalf("first lookup: %+v", r)
	}
	r = d.Lookup(ctx, "bob@example.com", "staff")
	if r.Err != nil || r.Member || r.Cached {
		t.Fatalf("a non-member: %+v", r)
	}
	clk.add(30 * time.Second)
	// Both answers, "member" and "not a member", come from the cache now,
	// with the time they were asked.
	for _, tc := range []struct {
		jid  string
		want bool
	}{{"alice@example.com", true}, {"bob@example.com", false}} {
		r := d.Lookup(ctx, tc.jid, "staff")
		if r.Err != nil || r.Member != tc.want || !r.Cached || clk.now().Sub(r.At) != 30*time.Second {
			t.Errorf("%s again: %+v", tc.jid, r)
		}
	}
	if n := src.count(); n != 2 {
		t.Errorf("the source was asked %d times, want 2", n)
	}
	if c, ok := d.Cached("alice@example.com", "staff"); !ok || !c.Member || !c.Cached {
		t.Errorf("Cached = %+v, %v", c, ok)
	}
	if _, ok := d.Cached("carol@example.com", "staff"); ok {
		t.Error("Cached answered for a contact never looked up")
	}
	// After the TTL, the source is asked again.
	clk.add(31 * time.Second)
	if _, ok := d.Cached("alice@example.com", "staff"); ok {
		t.Error("Cached answered after the TTL")
	}
	if r := d.Lookup(ctx, "alice@example.com", "staff"); r.Cached || !r.Member || src.count() != 3 {
		t.Errorf("after the TTL: %+v, source asked %d times", r, src.count())
	}
	s := d.Stats()
	want := Stats{Source: SourceLDAP, Member: 4, NotMember: 2, CacheHits: 3, Up: true}
	if s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

// A failure is never an answer: not cached, and for RetryAfter the source
// is not asked again; then it is, and an answer ends the outage.
func TestFailure(t *testing.T) {
	clk := newClock()
	down := errors.New("connection refused")
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}, err: down}
	d := withFake(t, Config{CacheTTL: time.Minute, RetryAfter: 10 * time.Second}, src, clk)
	ctx := t.Context()

	r := d.Lookup(ctx, "alice@example.com", "staff")
	if !errors.Is(r.Err, down) || r.Member || r.Cached {
		t.Fatalf("a failing source: %+v", r)
	}
	if d.Stats().Up {
		t.Error("up after a failure")
	}
	src.set(func(f *fakeSource) { f.err = nil })
	clk.add(5 * time.Second)
	r = d.Lookup(ctx, "alice@example.com", "staff")
	if r.Err == nil || !errors.Is(r.Err, down) || !strings.Contains(r.Err.Error(), "not asked again until 10:00:10") || src.count() != 1 {
		t.Errorf("within retry_after: %+v (source asked %d times)", r, src.count())
	}
	if _, ok := d.Cached("alice@example.com", "staff"); ok {
		t.Error("a failure was cached")
	}
	clk.add(5 * time.Second)
	r = d.Lookup(ctx, "alice@example.com", "staff")
	if r.Err != nil || !r.Member || src.count() != 2 {
		t.Errorf("after retry_after: %+v (source asked %d times)", r, src.count())
	}
	if s := d.Stats(); !s.Up || s.Errors != 2 || s.Member != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A source that does not answer: the lookup gives up after the timeout,
// the source is given time (RetryAfter), and the answer that comes late
// fills the cache.
func TestTimeout(t *testing.T) {
	clk := newClock()
	block := make(chan struct{})
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}, block: block}
	d := withFake(t, Config{Timeout: 50 * time.Millisecond}, src, clk)
	r := d.Lookup(t.Context(), "alice@example.com", "staff")
	if !errors.Is(r.Err, context.DeadlineExceeded) || r.Member {
		t.Fatalf("a silent source: %+v", r)
	}
	// The source's own lookup ends by its deadline too: a failure.
	d.mu.Lock()
	c := d.flight[key("alice@example.com", "staff")]
	d.mu.Unlock()
	if c != nil {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the lookup at the source did not end by its deadline")
		}
	}
	if d.Stats().Up {
		t.Error("the directory is up after its lookup timed out")
	}
	close(block)
}

// Callers asking the same question at once share one lookup.
func TestOneLookupForMany(t *testing.T) {
	clk := newClock()
	block := make(chan struct{})
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}, block: block}
	d := withFake(t, Config{Timeout: time.Minute}, src, clk)
	var wg sync.WaitGroup
	res := make([]Result, 5)
	for i := range res {
		wg.Go(func() { res[i] = d.Lookup(t.Context(), "alice@example.com", "staff") })
	}
	// All five wait on the one lookup before it is let go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		n, waiters := len(d.flight), 0
		for _, c := range d.flight {
			waiters += c.waiters
		}
		d.mu.Unlock()
		if waiters == len(res) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups in flight, %d callers waiting on them, source asked %d times", n, waiters, src.count())
		}
		time.Sleep(time.Millisecond)
	}
	close(block)
	wg.Wait()
	for i, r := range res {
		if r.Err != nil || !r.Member {
			t.Errorf("caller %d: %+v", i, r)
		}
	}
	if n := src.count(); n != 1 {
		t.Errorf("the source was asked %d times, want once", n)
	}
}

func TestLookupAll(t *testing.T) {
	clk := newClock()
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true, key("bob@example.com", "sales"): true}}
	d := withFake(t, Config{}, src, clk)
	qs := []Query{{"alice@example.com", "staff"}, {"alice@example.com", "sales"}, {"bob@example.com", "sales"}, {"bob@example.com", "staff"}}
	got := d.LookupAll(t.Context(), qs)
	for i, want := range []bool{true, false, true, false} {
		if got[i].Err != nil || got[i].Member != want {
			t.Errorf("%v: %+v, want member %v", qs[i], got[i], want)
		}
	}
}

// A reload keeps the cache when the LDAP settings stay, and drops it when
// they change; a new groups file is in force at once.
func TestConfigure(t *testing.T) {
	clk := newClock()
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}}
	c := Config{URL: "ldap://127.0.0.1:1", Base: "dc=example,dc=com"}
	d := withFake(t, c, src, clk)
	d.Lookup(t.Context(), "alice@example.com", "staff")
	c.CacheTTL = time.Hour
	if err := d.Configure(c); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Cached("alice@example.com", "staff"); !ok {
		t.Error("the cache was dropped by a reload that changed no LDAP setting")
	}
	c.Base = "ou=people,dc=example,dc=com"
	if err := d.Configure(c); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Cached("alice@example.com", "staff"); ok {
		t.Error("the cache was kept by a reload that changed the base")
	}
	if err := d.Configure(Config{File: "groups.toml", Groups: map[string][]string{"staff": {"bob@example.com"}}}); err != nil {
		t.Fatal(err)
	}
	if r := d.Lookup(t.Context(), "bob@example.com", "STAFF"); r.Err != nil || !r.Member || r.Source != SourceFile || r.Cached {
		t.Errorf("from the file: %+v", r)
	}
	if err := d.Configure(Config{URL: "http://x"}); err == nil {
		t.Error("a bad config was put in force")
	}
	if r := d.Lookup(t.Context(), "bob@example.com", "staff"); !r.Member {
		t.Errorf("after a refused reload: %+v", r)
	}
	if err := d.Configure(Config{}); err != nil {
		t.Fatal(err)
	}
	if r := d.Lookup(t.Context(), "bob@example.com", "staff"); !errors.Is(r.Err, ErrNoDirectory) {
		t.Errorf("without a directory: %+v", r)
	}
	if s := d.Stats(); s.Source != "" {
		t.Errorf("stats without a directory: %+v", s)
	}
}

func TestFileSource(t *testing.T) {
	groups, err := ParseGroups([]byte(`
# who is who
staff = ["Alice@Example.COM", "bob@example.com"]
Sales = ["carol@example.com"]
empty = []
`), "groups.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"staff": {"alice@example.com", "bob@example.com"}, "sales": {"carol@example.com"}, "empty": {}}
	if !reflect.DeepEqual(groups, want) {
		t.Fatalf("groups %q, want %q", groups, want)
	}
	d, err := New(Config{File: "groups.toml", Groups: groups}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		jid, group string
		want       bool
	}{
		{"alice@example.com", "staff", true},
		{"alice@example.com", "Staff", true},
		{"carol@example.com", "sales", true},
		{"carol@example.com", "staff", false},
		{"alice@example.com", "nobody", false},
	} {
		r := d.Lookup(t.Context(), tc.jid, tc.group)
		if r.Err != nil || r.Member != tc.want || r.Source != SourceFile || r.Cached {
			t.Errorf("%s in %s: %+v, want member %v", tc.jid, tc.group, r, tc.want)
		}
	}
	m, err := d.Members(t.Context(), "STAFF")
	if err != nil || !reflect.DeepEqual(m, []string{"alice@example.com", "bob@example.com"}) {
		t.Errorf("members of staff: %q, %v", m, err)
	}
	if m, err := d.Members(t.Context(), "nobody"); err != nil || len(m) != 0 {
		t.Errorf("members of a group that does not exist: %q, %v", m, err)
	}
}

func TestParseGroupsErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"syntax", "staff = [", "directory: g.toml: line 1: "},
		{"not a list", `staff = "alice@example.com"`, `directory: g.toml: group "staff": want a list of JIDs, like staff = ["alice@example.com"]`},
		{"a table", "[staff]\nalice = 1", `directory: g.toml: group "staff": want a list of JIDs`},
		{"not a string", `staff = [1]`, `directory: g.toml: group "staff": 1 is not a string`},
		{"not a JID", `staff = ["a@b@c"]`, `directory: g.toml: group "staff": "a@b@c" is not a JID`},
		{"full JID", `staff = ["alice@example.com/phone"]`, `directory: g.toml: group "staff": "alice@example.com/phone" is not a bare JID`},
		{"domain", `staff = ["example.com"]`, `directory: g.toml: group "staff": "example.com" is a domain, not a user's JID`},
		{"duplicate member", `staff = ["alice@example.com", "ALICE@example.com"]`, `directory: g.toml: group "staff": "ALICE@example.com" is "alice@example.com" again`},
		{"duplicate group", "staff = []\nStaff = []", `directory: g.toml: group "Staff" is group "staff" again (names are compared without case)`},
		{"spaces", `" staff" = []`, `directory: g.toml: directory: group name " staff" has spaces around it`},
		{"empty name", `"" = []`, `directory: g.toml: directory: a group's name is empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGroups([]byte(tc.text), "g.toml")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string // "" = valid
	}{
		{"none", Config{}, ""},
		{"ldap defaults", Config{URL: "ldap://127.0.0.1:389", Base: "dc=example,dc=com"}, ""},
		{"ldaps", Config{URL: "ldaps://ldap.example.com"}, ""},
		{"memberOf", Config{URL: "ldap://x", GroupFilter: "(&(mail={jid})(memberOf=cn={group},ou=groups,dc=example,dc=com))"}, ""},
		{"both sources", Config{URL: "ldap://x", File: "g.toml"}, "directory: LDAP and a groups file: configure one source, not both"},
		{"http", Config{URL: "http://x"}, `directory: "http://x" is not an ldap:// or ldaps:// URL`},
		{"no host", Config{URL: "ldap://"}, `directory: "ldap://" has no host`},
		{"a DN in the URL", Config{URL: "ldap://x/dc=example,dc=com"}, `directory: "ldap://x/dc=example,dc=com" has more than a host and a port`},
		{"user filter without jid", Config{URL: "ldap://x", UserFilter: "(mail=alice)"}, `directory: filter "(mail=alice)" lacks {jid}`},
		{"unknown placeholder", Config{URL: "ldap://x", UserFilter: "(mail={mail})"}, `directory: filter "(mail={mail})": unknown placeholder {mail} (want {jid})`},
		{"bad filter", Config{URL: "ldap://x", UserFilter: "mail={jid}"}, `directory: filter "mail={jid}": `},
		{"group filter without group", Config{URL: "ldap://x", GroupFilter: "(member={dn})"}, `directory: filter "(member={dn})" lacks {group}`},
		{"group filter without contact", Config{URL: "ldap://x", GroupFilter: "(cn={group})"}, `directory: filter "(cn={group})" has neither {dn} nor {jid}`},
		{"negative", Config{Timeout: -time.Second}, "directory: a duration is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// Values put in a filter are escaped (RFC 4515): a JID or a group name
// cannot change the filter.
func TestExpand(t *testing.T) {
	got := expand(DefaultGroupFilter, "st*ff)(cn=*", "cn=a\\,b,dc=x", "{dn}@x")
	want := `(&(objectClass=groupOfNames)(cn=st\2aff\29\28cn=\2a)(member=cn=a\5c,b,dc=x))`
	if got != want {
		t.Errorf("expand:\n got %s\nwant %s", got, want)
	}
	if got := expand("(mail={jid})", "", "", "{group}*@x"); got != `(mail={group}\2a@x)` {
		t.Errorf("a JID holding a placeholder: %s", got)
	}
	if a := attrOf(DefaultUserFilter, "{jid}"); a != "mail" {
		t.Errorf("the JID's attribute: %q", a)
	}
}

// A burst of lookups of a healthy but not instant source: those that wait
// too long for one of the lookup slots go unanswered, but the source is
// not taken for down, and the next lookup is asked and answered.
func TestBurstIsNoOutage(t *testing.T) {
	clk := newClock()
	src := &fakeSource{member: map[string]bool{key("alice@example.com", "staff"): true}, delay: 50 * time.Millisecond}
	d := withFake(t, Config{Timeout: 300 * time.Millisecond}, src, clk)
	qs := make([]Query, 200)
	for i := range qs {
		qs[i] = Query{JID: fmt.Sprintf("u%d@example.com", i), Group: "staff"}
	}
	res := d.LookupAll(t.Context(), qs)
	answered := 0
	for _, r := range res {
		if r.Err == nil {
			answered++
		}
	}
	if answered == 0 {
		t.Fatal("no lookup of the burst was answered")
	}
	if !d.Stats().Up {
		t.Errorf("the source was taken for down after a burst (%d of %d answered)", answered, len(qs))
	}
	if r := d.Lookup(t.Context(), "alice@example.com", "staff"); r.Err != nil || !r.Member {
		t.Errorf("after the burst: %+v", r)
	}
}
