package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/limits"
	"rostergate/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err from the current errors")

func noEnv(string) string { return "" }

func TestGood(t *testing.T) {
	c, err := Load("testdata/good.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Component.Domain != "bots.example.com" {
		t.Errorf("domain = %q, want it normalised to bots.example.com", c.Component.Domain)
	}
	if c.Component.Keepalive.Duration != 30*time.Second {
		t.Errorf("keepalive = %s", c.Component.Keepalive)
	}
	if c.Component.Resource != "rostergate" {
		t.Errorf("resource default = %q", c.Component.Resource)
	}
	if want := filepath.Join("testdata", "state", "rg.db"); c.Storage.Path != want {
		t.Errorf("storage path = %q, want %q (relative to the config file)", c.Storage.Path, want)
	}
	if len(c.Entities) != 2 || c.Entities[0].Localpart() != "helpdesk" || c.Entities[1].Localpart() != "" {
		t.Errorf("entities = %+v", c.Entities)
	}
	if _, ok := c.Entity(""); !ok {
		t.Error("the domain itself is not an entity")
	}
	p := c.Compiled()
	if p.Default() != "reject" || p.UnknownEntity() != "drop" || len(p.Rules()) != 4 {
		t.Errorf("policy = %v %v %v", p.Default(), p.UnknownEntity(), p.Rules())
	}
	if c.Component.SecretSource != "secret" {
		t.Errorf("secret source = %q", c.Component.SecretSource)
	}
	if want := []string{"admin@example.com", "ops@partner.example"}; !reflect.DeepEqual(c.Admin.JIDs, want) {
		t.Errorf("admin jids = %q, want %q (normalised)", c.Admin.JIDs, want)
	}
	if c.Policy.ReviewTTL.Duration != 72*time.Hour || c.Policy.ReviewTTLText != "72h" {
		t.Errorf("review_ttl = %s (%q)", c.Policy.ReviewTTL, c.Policy.ReviewTTLText)
	}
	if want := []string{"example.com", "partner.example"}; !reflect.DeepEqual(c.Policy.LocalDomains, want) || !reflect.DeepEqual(p.LocalDomains(), want) {
		t.Errorf("local domains = %q, policy's %q, want %q (normalised)", c.Policy.LocalDomains, p.LocalDomains(), want)
	}
	yes, no := true, false
	wantRules := []policy.Rule{
		{Contact: "*@example.com", Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true},
		{Domain: "partner.example", Action: policy.Review},
		{Regex: `^[a-z]+@example\.com$`, LocalContact: &yes, Action: policy.Accept, Message: "Welcome aboard"},
		{LocalContact: &no, Entity: "helpdesk", Action: policy.Reject, Message: "Local users only"},
	}
	if got := p.Rules(); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("rules:\n got %v\nwant %v", got, wantRules)
	}
	wantLimits := Limits{
		ContactRateText: "5/1m", ContactRate: limits.Rate{N: 5, Per: time.Minute},
		DomainRateText: "100/1h", DomainRate: limits.Rate{N: 100, Per: time.Hour},
		MaxPendingPerDomain: 50, MaxPending: 1000, Action: "reject", MaxStanzaBytes: 64 << 10,
	}
	if c.Limits != wantLimits {
		t.Errorf("limits = %+v, want %+v", c.Limits, wantLimits)
	}
	for _, tc := range []struct {
		contact, entity string
		want            policy.Decision
	}{
		{"bob@example.com", "", policy.Decision{Action: policy.Accept, Rule: 3, Reason: "rule 3", Message: "Welcome aboard"}},
		{"eve@jabber.org", "helpdesk", policy.Decision{Action: policy.Reject, Rule: 4, Reason: "rule 4", Message: "Local users only"}},
		{"ann@partner.example", "helpdesk", policy.Decision{Action: policy.Review, Rule: 2, Reason: "rule 2", Message: DefaultReviewMessage}},
	} {
		if got := p.Decide(policy.Request{Contact: tc.contact, Entity: tc.entity, KnownEntity: true}); got != tc.want {
			t.Errorf("Decide(%s -> %q) = %+v, want %+v", tc.contact, tc.entity, got, tc.want)
		}
	}
}

// The example shipped at the top of the repository must stay valid.
func TestExample(t *testing.T) {
	c, err := Load("../component.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entities) == 0 || len(c.Policy.Rules) == 0 {
		t.Errorf("example has no entities or rules: %+v", c)
	}
}

// Every commented example key in component.toml is valid too.
func TestExampleUncommented(t *testing.T) {
	b, err := os.ReadFile("../component.toml")
	if err != nil {
		t.Fatal(err)
	}
	example := regexp.MustCompile(`(?m)^# (\[\[?[a-z.]+\]\]?|[a-z_]+ = )`)
	src := example.ReplaceAll(b, []byte("$1"))
	if n := len(example.FindAll(b, -1)); n < 15 {
		t.Fatalf("only %d commented examples found", n)
	}
	c, err := Parse(src, "../component.toml", noEnv)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	if len(c.Admin.JIDs) == 0 || c.Policy.ReviewTTL.Duration == 0 || len(c.Policy.LocalDomains) == 0 ||
		c.Limits.ContactRate.IsZero() || c.Limits.DomainRate.IsZero() || c.Limits.MaxPending == 0 || c.Limits.MaxPendingPerDomain == 0 ||
		c.Log.Level == "" {
		t.Errorf("an example is missing: %+v %+v %+v %+v", c.Admin, c.Policy, c.Limits, c.Log)
	}
	rules := c.Compiled().Rules()
	last := rules[len(rules)-1]
	if last.Regex == "" || last.LocalContact == nil || last.Message == "" {
		t.Errorf("the example rule lacks regex, local_contact or message: %v", last)
	}
	if g := rules[len(rules)-2]; g.Group != "staff" || len(c.Directory.Groups["staff"]) == 0 || c.Directory.Timeout.Duration == 0 ||
		c.Directory.CacheTTL.Duration == 0 || c.Directory.RetryAfter.Duration == 0 {
		t.Errorf("the example's group rule or [directory] is missing: %v %+v", g, c.Directory)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n"), "min.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Path != "rostergate.db" || c.Component.Keepalive.Duration != time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	if c.Compiled().Default() != "review" || c.Compiled().UnknownEntity() != "drop" {
		t.Errorf("policy defaults: %v %v", c.Compiled().Default(), c.Compiled().UnknownEntity())
	}
	if c.Admin.JIDs != nil || c.Policy.ReviewTTL.Duration != 0 {
		t.Errorf("admin %q, review_ttl %s: want none, never", c.Admin.JIDs, c.Policy.ReviewTTL)
	}
	if want := []string{"example"}; !reflect.DeepEqual(c.Policy.LocalDomains, want) {
		t.Errorf("local domains = %q, want %q (the parent of b.example)", c.Policy.LocalDomains, want)
	}
	if want := (Limits{Action: "drop", MaxStanzaBytes: 64 << 10}); c.Limits != want || !c.Limits.ContactRate.IsZero() || !c.Limits.DomainRate.IsZero() {
		t.Errorf("limits = %+v, want %+v (unlimited, no caps, drop)", c.Limits, want)
	}
}

func TestLocalDomains(t *testing.T) {
	tests := []struct {
		name, domain, body string
		want               []string
	}{
		{name: "parent of the component domain", domain: "bots.example.com", want: []string{"example.com"}},
		{name: "parent normalised", domain: "Bots.Example.COM.", want: []string{"example.com"}},
		{name: "single-label parent", domain: "bots.localhost", want: []string{"localhost"}},
		{name: "deeper domain: its parent only", domain: "a.bots.example.com", want: []string{"bots.example.com"}},
		{name: "no dot: none", domain: "localhost"},
		{name: "IP address: none", domain: "127.0.0.1"},
		{name: "set", domain: "bots.example.com", body: "local_domains = ['Example.ORG', 'bücher.example', 'XN--BCHER-KVA.example.net']",
			want: []string{"example.org", "bücher.example", "bücher.example.net"}},
		{name: "set empty: none", domain: "bots.example.com", body: "local_domains = []", want: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("[component]\ndomain='"+tc.domain+"'\nserver='h:1'\nsecret='x'\n[policy]\n"+tc.body+"\n"), "c.toml", noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Policy.LocalDomains, tc.want) {
				t.Errorf("local domains = %#v, want %#v", c.Policy.LocalDomains, tc.want)
			}
			if got := c.Compiled().LocalDomains(); len(got) != len(tc.want) {
				t.Errorf("policy's local domains = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReviewTTL(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"never by default", "", 0},
		{"zero", "0s", 0},
		{"hours", "72h", 72 * time.Hour},
		{"compound", "1h30m", 90 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n[policy]\nreview_ttl='"+tc.in+"'\n"), "c.toml", noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if c.Policy.ReviewTTL.Duration != tc.want {
				t.Errorf("review_ttl %q = %s, want %s", tc.in, c.Policy.ReviewTTL, tc.want)
			}
		})
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("secret.txt", "from-file\n", 0o600)
	write("open.txt", "from-file\n", 0o644)
	write("empty.txt", "\n", 0o600)
	head := "[component]\ndomain='b.example'\nserver='h:1'\n"
	tests := []struct {
		name, body, env, want, wantErr string
	}{
		{name: "inline", body: "secret='inline'", want: "inline"},
		{name: "file", body: "secret_file='secret.txt'", want: "from-file"},
		{name: "env overrides inline", body: "secret='inline'", env: "from-env", want: "from-env"},
		{name: "env overrides file", body: "secret_file='secret.txt'", env: "from-env", want: "from-env"},
		{name: "env alone", body: "", env: "from-env", want: "from-env"},
		{name: "world-readable file", body: "secret_file='open.txt'", wantErr: "open.txt is readable by everyone (mode 0644): chmod 600 it"},
		{name: "empty file", body: "secret_file='empty.txt'", wantErr: "empty.txt is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string {
				if k == SecretEnv {
					return tc.env
				}
				return ""
			}
			c, err := Parse([]byte(head+tc.body+"\n"), filepath.Join(dir, "c.toml"), env)
			if tc.wantErr != "" {
				if err == nil || !strings.HasSuffix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want suffix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Component.Secret != tc.want {
				t.Errorf("secret = %q, want %q", c.Component.Secret, tc.want)
			}
			if strings.Contains(c.Component.SecretSource, tc.want) {
				t.Errorf("secret source %q reveals the secret", c.Component.SecretSource)
			}
		})
	}
}

// Each testdata/bad/NAME.toml fails with exactly the error in NAME.err.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			_, err := Load(f, noEnv)
			if err == nil {
				t.Fatal("loaded without error")
			}
			golden := strings.TrimSuffix(f, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", rerr)
			}
			if got := err.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("error:\n got %s\nwant %s", got, strings.TrimSpace(string(want)))
			}
		})
	}
}

// [log] level and format: either may be left out (level "": none set;
// format: text), and they are lower-cased.
func TestLog(t *testing.T) {
	const head = "[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n"
	tests := []struct {
		name, text string
		want       Log
		wantErr    string
	}{
		{"none", "", Log{Format: "text"}, ""},
		{"empty table", "[log]\n", Log{Format: "text"}, ""},
		{"level", "[log]\nlevel = 'debug'\n", Log{Level: "debug", Format: "text"}, ""},
		{"trace", "[log]\nlevel = 'trace'\n", Log{Level: "trace", Format: "text"}, ""},
		{"upper case", "[log]\nlevel = 'WARN'\nformat = 'JSON'\n", Log{Level: "warn", Format: "json"}, ""},
		{"format", "[log]\nformat = 'json'\n", Log{Format: "json"}, ""},
		{"empty format", "[log]\nformat = ''\n", Log{}, `[log] format: unknown value "" (want text or json)`},
		{"bad level", "[log]\nlevel = 'verbose'\n", Log{}, `[log] level: unknown value "verbose" (want trace, debug, info, warn or error)`},
		{"off is no level", "[log]\nlevel = 'off'\n", Log{}, `[log] level: unknown value "off"`},
		{"bad format", "[log]\nformat = 'logfmt'\n", Log{}, `[log] format: unknown value "logfmt" (want text or json)`},
		{"unknown key", "[log]\nfile = 'x.log'\n", Log{}, `unknown key "log.file"`},
		{"not a string", "[log]\nlevel = 2\n", Log{}, "log.level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(head+tc.text), "log.toml", noEnv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Log != tc.want {
				t.Errorf("[log] = %+v, want %+v", c.Log, tc.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.toml", noEnv)
	if err == nil || !strings.Contains(err.Error(), "config: open testdata/nope.toml") {
		t.Fatalf("err = %v", err)
	}
}

// A rule's domain is normalised as contacts' domains are, so an IDNA
// A-label matches the contact's domain.
func TestRuleDomainNormalised(t *testing.T) {
	c, err := Parse([]byte("[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n[[policy.rule]]\ndomain='XN--BCHER-KVA.Example'\naction='accept'\n"), "c.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Compiled().Decide(policyRequest("a@bücher.example"))
	if d.Rule != 1 {
		t.Errorf("rule domain %q did not match a@bücher.example: %+v", c.Compiled().Rules()[0].Domain, d)
	}
}

func policyRequest(contact string) policy.Request {
	return policy.Request{Contact: contact, Entity: "x", KnownEntity: true}
}

// A webhook's secret comes from a file nobody else may read, holding a
// Standard Webhooks secret; the [http] defaults are those documented.
func TestWebhookSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	good := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	write("good.whsec", good+"\n", 0o600)
	write("open.whsec", good+"\n", 0o644)
	write("bad.whsec", "whsec_not base64!\n", 0o600)
	write("short.whsec", "whsec_c2hvcnQ=\n", 0o600)
	cfg := func(file string) string {
		return "[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n[[entity]]\nlocal='bot'\nwebhook='https://hooks.example/in'\nwebhook_secret_file='" + file + "'\n"
	}
	c, err := Parse([]byte(cfg("good.whsec")), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Entities[0]
	if e.WebhookSecret != good || e.WebhookMaxAge.Duration != 24*time.Hour || e.SendTo != "subscribers" {
		t.Errorf("entity = %+v", e)
	}
	if h := c.HTTP; h.Listen != "" || h.EventRetention.Duration != 7*24*time.Hour || h.MaxEvents != 100_000 || h.MaxBody != 64<<10 || h.Rate.String() != "100/1s" ||
		h.WebURL != "" || h.LoginTTL.Duration != 5*time.Minute || h.SessionIdle.Duration != 30*time.Minute || h.SessionMax.Duration != 12*time.Hour {
		t.Errorf("[http] defaults = %+v", h)
	}
	if !c.Settings().Entities[0].Webhook {
		t.Error("Settings: the entity has no webhook")
	}
	for file, want := range map[string]string{
		"open.whsec":  "is readable by everyone",
		"bad.whsec":   "not whsec_ followed by standard base64",
		"short.whsec": "shorter than 24",
		"none.whsec":  "no such file",
	} {
		_, err := Parse([]byte(cfg(file)), filepath.Join(dir, "c.toml"), noEnv)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "webhook_secret_file") {
			t.Errorf("%s: %v, want an error saying %q", file, err, want)
		}
	}
}

// review_message: a default text, another, or none; default_message goes
// with the default's answer, and not with drop.
func TestPolicyMessages(t *testing.T) {
	base := "[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n[[entity]]\nlocal='helpdesk'\n[policy]\n"
	for _, tc := range []struct {
		name, body string
		want       string // the message of a review by default
		err        string
	}{
		{"unset", "", DefaultReviewMessage, ""},
		{"set", "review_message = 'Hold on.'", "Hold on.", ""},
		{"off", "review_message = ''", "", ""},
		{"default_message wins", "default_message = 'We will see.'", "We will see.", ""},
		{"default_message with drop", "default = 'drop'\ndefault_message = 'x'", "", "default_message: drop sends nothing"},
		{"a character XML forbids", "review_message = \"a\\u0001b\"", "", "review_message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tc.body+"\n"), "c.toml", noEnv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			d := c.Compiled().Decide(policy.Request{Contact: "ann@x.example", Entity: "helpdesk", KnownEntity: true})
			if d.Action != policy.Review || d.Message != tc.want {
				t.Errorf("decision %+v, want review with %q", d, tc.want)
			}
		})
	}
}

// [storage]: SQLite by default; PostgreSQL's DSN from dsn, dsn_file or the
// environment (which wins), never printed with its password.
func TestStorage(t *testing.T) {
	dir := t.TempDir()
	base := "[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n"
	c, err := Parse([]byte(base), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil || c.Storage.Driver != DriverSQLite || c.Storage.Path != filepath.Join(dir, "rostergate.db") {
		t.Fatalf("default: %+v, %v", c.Storage, err)
	}
	pg := base + "[storage]\ndriver='postgres'\ndsn='postgres://rg:pw@db.example:5432/rg?sslmode=require'\n"
	c, err = Parse([]byte(pg), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil || c.Storage.DSNSource != "dsn" || c.Storage.Redacted() != "postgres://rg:xxxxx@db.example:5432/rg?sslmode=require" {
		t.Fatalf("postgres: %+v, %v (redacted %q)", c.Storage, err, c.Storage.Redacted())
	}
	env := func(k string) string {
		if k == DSNEnv {
			return "host=db2.example user=rg password=pw"
		}
		return ""
	}
	c, err = Parse([]byte(pg), filepath.Join(dir, "c.toml"), env)
	if err != nil || c.Storage.DSN != "host=db2.example user=rg password=pw" || c.Storage.DSNSource != "environment variable "+DSNEnv ||
		strings.Contains(c.Storage.Redacted(), "pw") {
		t.Fatalf("from the environment: %+v, %v", c.Storage, err)
	}
	f := filepath.Join(dir, "dsn")
	if err := os.WriteFile(f, []byte("postgres://rg@db.example/rg\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Parse([]byte(base+"[storage]\ndriver='postgres'\ndsn_file='dsn'\n"), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil || c.Storage.DSN != "postgres://rg@db.example/rg" || c.Storage.DSNSource != "dsn_file "+f {
		t.Fatalf("dsn_file: %+v, %v", c.Storage, err)
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte(base+"[storage]\ndriver='postgres'\ndsn_file='dsn'\n"), filepath.Join(dir, "c.toml"), noEnv); err == nil || !strings.Contains(err.Error(), "readable by everyone") {
		t.Errorf("a dsn_file everyone may read: %v", err)
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const head = "[component]\ndomain='bots.example.com'\nserver='h:1'\nsecret='x'\n[[entity]]\nlocal='helpdesk'\n"
	groups := write("groups.toml", "Staff = ['Alice@Example.COM']\n", 0o644)
	write("ldap.pw", "pw\n", 0o600)

	c, err := Parse([]byte(head+"[directory]\ngroups_file='groups.toml'\n[[policy.rule]]\ngroup='STAFF'\naction='accept'\n"), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	dc := c.Settings().Directory
	if dc.File != groups || !reflect.DeepEqual(dc.Groups, map[string][]string{"staff": {"alice@example.com"}}) || dc.URL != "" {
		t.Errorf("groups file: %+v", dc)
	}
	if got := c.Compiled().Rules()[0].Group; got != "staff" {
		t.Errorf("the rule's group: %q", got)
	}
	if want := "groups_file " + groups + " (1 group)"; c.Directory.Source() != want {
		t.Errorf("source %q, want %q", c.Directory.Source(), want)
	}

	c, err = Parse([]byte(head+`[directory]
ldap_url = "ldaps://ldap.example.com"
bind_dn = "cn=rostergate,dc=example,dc=com"
bind_password_file = "ldap.pw"
base = "ou=people,dc=example,dc=com"
group_filter = "(&(mail={jid})(memberOf=cn={group},ou=groups,dc=example,dc=com))"
timeout = "500ms"
cache_ttl = "1m"
retry_after = "10s"
[[policy.rule]]
group = "anything"
local_contact = true
action = "accept"
`), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	dc = c.Settings().Directory
	if dc.URL != "ldaps://ldap.example.com" || dc.BindPassword != "pw" || dc.Base != "ou=people,dc=example,dc=com" || dc.UserFilter != "" ||
		dc.Timeout != 500*time.Millisecond || dc.CacheTTL != time.Minute || dc.RetryAfter != 10*time.Second || dc.Groups != nil {
		t.Errorf("ldap: %+v", dc)
	}
	if err := dc.Validate(); err != nil {
		t.Errorf("the directory's own check: %v", err)
	}
	if s := c.Directory.Source(); s != `ldap ldaps://ldap.example.com (base "ou=people,dc=example,dc=com", bound as cn=rostergate,dc=example,dc=com)` {
		t.Errorf("source %q", s)
	}

	// The password file is a secret: not readable by everyone.
	write("open.pw", "pw\n", 0o644)
	_, err = Parse([]byte(head+"[directory]\nldap_url='ldap://x'\nbase='dc=x'\nbind_dn='cn=x'\nbind_password_file='open.pw'\n"), filepath.Join(dir, "c.toml"), noEnv)
	if err == nil || !strings.Contains(err.Error(), "[directory] bind_password_file: ") || !strings.Contains(err.Error(), "readable by everyone") {
		t.Errorf("a world-readable password file: %v", err)
	}

	// Without [directory]: none.
	c, err = Parse([]byte(head), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil || c.Settings().Directory.Enabled() || c.Directory.Source() != "" {
		t.Errorf("without [directory]: %v %+v", err, c.Settings().Directory)
	}
}

// TestPlaceIn: place_in entries are normalised (JIDs, group names) and
// reach the runtime settings with [placement]'s pacing.
func TestPlaceIn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "groups.toml"), []byte(`Sales = ["carol@example.com"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`[component]
domain = "bots.example.com"
server = "h:1"
secret = "x"
[directory]
groups_file = "groups.toml"
[placement]
interval = "30s"
[[entity]]
local = "crm"
place_in = ["group:SALES", "Alice@Example.COM"]
`), filepath.Join(dir, "c.toml"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Settings()
	if got := s.Entities[0].PlaceIn; !slices.Equal(got, []string{"group:sales", "alice@example.com"}) {
		t.Errorf("PlaceIn = %q", got)
	}
	if s.Placement.Interval != 30*time.Second || s.Placement.ResendAfter != 0 {
		t.Errorf("Placement = %+v", s.Placement)
	}
}
