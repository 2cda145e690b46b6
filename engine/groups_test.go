package engine

import (
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/directory"
	"rostergate/engine/enginetest"
	"rostergate/internal/ldaptest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store/sqlite"
	"rostergate/subscription"
	"rostergate/xmpp/stanza"
)

// groupEngine returns an Engine with entities helpdesk and sales, the
// rules given (default review) and the directory dc, logging to the
// returned lines.
func groupEngine(t *testing.T, dc directory.Config, rules ...policy.Rule) (*Engine, *sqlite.DB, *logLines) {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := policy.Compile(policy.Config{Default: policy.Review, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	log := hclog.New(&hclog.LoggerOptions{Name: "rostergate", Output: logs, Level: hclog.Debug})
	dir, err := directory.New(dc, directory.Options{Logger: log.Named("directory")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	s := Settings{Policy: p, Entities: []Entity{{Local: "helpdesk"}, {Local: "sales"}}, Directory: dc}
	e, err := New(t.Context(), Options{Domain: "bots.localhost", Store: db, Settings: s, Logger: log.Named("engine"), Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Attach(t.Context(), &enginetest.Wire{}); err != nil {
		t.Fatal(err)
	}
	return e, db, logs
}

// logLines keeps what is logged.
type logLines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func subscribeTo(from, entity string) *stanza.Element {
	return &stanza.Element{Name: "presence", Type: "subscribe", From: from, To: entity + "@bots.localhost"}
}

// heldFrom lists the contacts whose requests are held.
func heldFrom(t *testing.T, db *sqlite.DB) []string {
	t.Helper()
	var out []string
	for _, r := range held(t, db) {
		out = append(out, r.Contact)
	}
	slices.Sort(out)
	return out
}

// Group rules against a groups file: a member is accepted, a non-member
// falls through to the default; explain and the log say why; a reload puts
// a new file in force.
func TestGroupRulesFile(t *testing.T) {
	groups := map[string][]string{"staff": {"alice@localhost"}}
	dc := directory.Config{File: "groups.toml", Groups: groups}
	e, db, logs := groupEngine(t, dc, policy.Rule{Group: "staff", Action: policy.Accept})
	handle(t, e, subscribeTo("alice@localhost/phone", "helpdesk"), subscribeTo("bob@localhost", "helpdesk"))
	if s := state(t, db, "alice@localhost"); s != subscription.From {
		t.Errorf("alice, in staff: %s, want accepted (From)", s.Abbr())
	}
	if h := heldFrom(t, db); !slices.Equal(h, []string{"bob@localhost"}) {
		t.Errorf("held: %q, want bob's request", h)
	}
	for _, want := range []string{
		`decision: entity=helpdesk@bots.localhost contact=alice@localhost action=accept rule="rule 1" subscribe_back=false groups="rule 1 staff=member(file)"`,
		`decision: entity=helpdesk@bots.localhost contact=bob@localhost action=review rule=default subscribe_back=false groups="rule 1 staff=not_member(file)"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs)
		}
	}
	for _, tc := range []struct{ contact, action, line string }{
		{"alice@localhost", "accept", "rule 1 group staff: alice@localhost is a member (groups file)"},
		{"bob@localhost", "review", "rule 1 group staff: bob@localhost is not a member (groups file); rule does not match"},
	} {
		ex, err := e.Explain(t.Context(), tc.contact, "helpdesk")
		if err != nil || ex.Action != tc.action || !slices.Equal(ex.Groups, []string{tc.line}) {
			t.Errorf("explain %s: %+v, %v; want %s and %q", tc.contact, ex, err, tc.action, tc.line)
		}
	}
	s := e.Stats().Directory
	if s.Source != directory.SourceFile || s.Member != 2 || s.NotMember != 2 || s.Errors != 0 || !s.Up {
		t.Errorf("stats: %+v", s)
	}

	// A reload with carol in staff: in force at once.
	dc.Groups = map[string][]string{"staff": {"alice@localhost", "carol@localhost"}}
	l := e.live.Load().Settings
	l.Directory = dc
	if err := e.Reload(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	handle(t, e, subscribeTo("carol@localhost", "sales"))
	if s := state(t, db, "carol@localhost"); s != subscription.None {
		t.Errorf("carol's item with helpdesk: %s", s.Abbr())
	}
	it, err := db.Get(t.Context(), "sales", "carol@localhost")
	if err != nil || it.Sub != roster.SubFrom {
		t.Errorf("carol, added to staff by a reload: %+v, %v; want accepted", it, err)
	}
}

// The directory hangs mid-run: a member's request is held, not accepted,
// and the other requests of the batch are decided, all within the
// directory's timeout; once it is back, members are accepted again.
func TestGroupRulesDirectoryHangs(t *testing.T) {
	s := ldaptest.Start(t)
	staff := []string{s.AddUser(t, "alice", "alice@localhost"), s.AddUser(t, "bob", "bob@localhost"),
		s.AddUser(t, "dave", "dave@localhost"), s.AddUser(t, "erin", "erin@localhost")}
	s.AddUser(t, "carol", "carol@localhost")
	s.AddGroup(t, "staff", staff...)
	dc := directory.Config{URL: s.URL, BindDN: ldaptest.BindDN, BindPassword: ldaptest.BindPassword, Base: ldaptest.Base,
		Timeout: 300 * time.Millisecond, RetryAfter: 10 * time.Millisecond}
	e, db, logs := groupEngine(t, dc,
		policy.Rule{Group: "staff", Entity: "helpdesk", Action: policy.Accept},
		policy.Rule{Domain: "good.example", Action: policy.Accept})

	handle(t, e, subscribeTo("alice@localhost", "helpdesk"), subscribeTo("carol@localhost", "helpdesk"))
	if st := state(t, db, "alice@localhost"); st != subscription.From {
		t.Fatalf("alice, in staff, before: %s", st.Abbr())
	}
	if h := heldFrom(t, db); !slices.Equal(h, []string{"carol@localhost"}) {
		t.Fatalf("held before: %q", h)
	}

	s.Pause(t)
	handle(t, e, subscribeTo("bob@localhost", "helpdesk"), subscribeTo("x@good.example", "sales"))
	if st := state(t, db, "bob@localhost"); st != subscription.NoneIn {
		t.Errorf("bob, in staff, while the directory hangs: %s, want held (None+PendingIn)", st.Abbr())
	}
	if it, err := db.Get(t.Context(), "sales", "x@good.example"); err != nil || it.Sub != roster.SubFrom {
		t.Errorf("another entity's request in the same batch: %+v, %v; want accepted", it, err)
	}
	if !strings.Contains(logs.String(), `[WARN]  rostergate.engine: group rule does not match: directory unavailable: rule=1 group=staff entity=helpdesk@bots.localhost contact=bob@localhost`) ||
		!strings.Contains(logs.String(), `[WARN]  rostergate.directory: directory unavailable: group rules do not match until it answers: source=ldap`) {
		t.Errorf("the log does not tell:\n%s", logs)
	}
	if st := e.Stats().Directory; st.Errors == 0 || st.Up {
		t.Errorf("stats while the directory hangs: %+v", st)
	}
	ex, err := e.Explain(t.Context(), "erin@localhost", "helpdesk")
	if err != nil || ex.Action != "review" || len(ex.Groups) != 1 || !strings.HasPrefix(ex.Groups[0], "rule 1 group staff: directory unavailable: ") ||
		!strings.HasSuffix(ex.Groups[0], "; rule does not match") {
		t.Errorf("explain while the directory hangs: %+v, %v", ex, err)
	}

	s.Resume(t)
	// Once retry_after has passed, the directory is asked again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ex, err := e.Explain(t.Context(), "erin@localhost", "helpdesk")
		if err == nil && ex.Action == "accept" {
			if want := "rule 1 group staff: erin@localhost is a member (ldap, looked up now)"; !slices.Equal(ex.Groups, []string{want}) {
				t.Errorf("explain once the directory is back: %q, want %q", ex.Groups, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directory did not answer again within 10s: %+v, %v", ex, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	handle(t, e, subscribeTo("dave@localhost", "helpdesk"))
	if st := state(t, db, "dave@localhost"); st != subscription.From {
		t.Errorf("dave, in staff, once the directory is back: %s", st.Abbr())
	}
	if ex, err := e.Explain(t.Context(), "dave@localhost", "helpdesk"); err != nil || len(ex.Groups) != 1 ||
		!strings.HasPrefix(ex.Groups[0], "rule 1 group staff: dave@localhost is a member (ldap, cached ") {
		t.Errorf("explain dave: %+v, %v", ex, err)
	}
	if !e.Stats().Directory.Up {
		t.Error("the directory is not up once it answered")
	}
	if !strings.Contains(logs.String(), "rostergate.directory: directory reachable again: source=ldap") {
		t.Errorf("the log does not say the directory is back:\n%s", logs)
	}
}

// A request that needs no group, or one whose group the cache knows, does
// not wait for the directory: with the directory hung, a batch of them is
// decided without asking it (which would have failed, after its timeout).
func TestGroupRulesNoLookupNeeded(t *testing.T) {
	s := ldaptest.Start(t)
	s.AddGroup(t, "staff", s.AddUser(t, "alice", "alice@localhost"))
	dc := directory.Config{URL: s.URL, BindDN: ldaptest.BindDN, BindPassword: ldaptest.BindPassword, Base: ldaptest.Base,
		Timeout: 5 * time.Second, CacheTTL: time.Hour}
	e, db, _ := groupEngine(t, dc,
		policy.Rule{Domain: "good.example", Action: policy.Accept},
		policy.Rule{Group: "staff", Action: policy.Accept})
	handle(t, e, subscribeTo("alice@localhost", "helpdesk"))
	before := e.Stats().Directory
	s.Pause(t)
	handle(t, e, subscribeTo("alice@localhost", "sales"), subscribeTo("x@good.example", "helpdesk"))
	after := e.Stats().Directory
	if after.Errors != before.Errors || after.CacheHits != before.CacheHits+1 {
		t.Errorf("stats before %+v, after %+v: want one cache hit, no error", before, after)
	}
	if it, err := db.Get(t.Context(), "sales", "alice@localhost"); err != nil || it.Sub != roster.SubFrom {
		t.Errorf("alice to sales, from the cache: %+v, %v", it, err)
	}
}
