package policy_test

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"
	"testing"

	"rostergate/policy"
)

func TestParseAction(t *testing.T) {
	tests := []struct {
		name, in string
		want     policy.Action
		wantErr  string
	}{
		{name: "accept", in: "accept", want: policy.Accept},
		{name: "reject", in: "reject", want: policy.Reject},
		{name: "review", in: "review", want: policy.Review},
		{name: "drop", in: "drop", want: policy.Drop},
		{name: "typo", in: "alow", wantErr: `policy: unknown action "alow" (want accept, reject, review or drop)`},
		{name: "upper case", in: "Accept", wantErr: `policy: unknown action "Accept" (want accept, reject, review or drop)`},
		{name: "empty", in: "", wantErr: `policy: unknown action "" (want accept, reject, review or drop)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseAction(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ParseAction(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseAction(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	ok := policy.Rule{Entity: "helpdesk", Action: policy.Accept}
	tests := []struct {
		name    string
		cfg     policy.Config
		wantErr string
		is      error
	}{
		{
			name:    "unknown action",
			cfg:     policy.Config{Rules: []policy.Rule{ok, ok, {Entity: "x", Action: "alow"}}},
			wantErr: `policy: rule 3: unknown action "alow" (want accept, reject, review or drop)`,
		},
		{
			name:    "bad contact pattern",
			cfg:     policy.Config{Rules: []policy.Rule{ok, {Contact: "[a", Action: policy.Reject}}},
			wantErr: `policy: rule 2: bad contact pattern "[a": syntax error in pattern`,
			is:      path.ErrBadPattern,
		},
		{
			name:    "bad pattern after a mismatching prefix",
			cfg:     policy.Config{Rules: []policy.Rule{{Contact: "x*@loc[", Action: policy.Reject}}},
			wantErr: `policy: rule 1: bad contact pattern "x*@loc[": syntax error in pattern`,
			is:      path.ErrBadPattern,
		},
		{
			name:    "no matcher",
			cfg:     policy.Config{Rules: []policy.Rule{{Action: policy.Accept}}},
			wantErr: `policy: rule 1: no matcher: set contact, domain or entity`,
		},
		{
			name:    "subscribe_back without accept",
			cfg:     policy.Config{Rules: []policy.Rule{ok, ok, ok, {Domain: "evil.com", Action: policy.Reject, SubscribeBack: true}}},
			wantErr: `policy: rule 4: subscribe_back needs action "accept", not "reject"`,
		},
		{
			name:    "action missing",
			cfg:     policy.Config{Rules: []policy.Rule{ok, ok, ok, ok, {Entity: "sales"}}},
			wantErr: `policy: rule 5: action is missing`,
		},
		{
			name:    "bad default",
			cfg:     policy.Config{Default: "alow"},
			wantErr: `policy: default: unknown action "alow" (want accept, reject, review or drop)`,
		},
		{
			name:    "bad unknown_entity",
			cfg:     policy.Config{UnknownEntity: "Reject"},
			wantErr: `policy: unknown_entity: unknown action "Reject" (want accept, reject, review or drop)`,
		},
		{
			name:    "domain with at",
			cfg:     policy.Config{Rules: []policy.Rule{ok, {Domain: "x@y", Action: policy.Reject}}},
			wantErr: `policy: rule 2: domain "x@y" is not a domain (use contact for patterns)`,
		},
		{
			name:    "domain with slash",
			cfg:     policy.Config{Rules: []policy.Rule{{Domain: "x/y", Action: policy.Reject}}},
			wantErr: `policy: rule 1: domain "x/y" is not a domain (use contact for patterns)`,
		},
		{
			name:    "domain with star",
			cfg:     policy.Config{Rules: []policy.Rule{{Domain: "*.example.com", Action: policy.Reject}}},
			wantErr: `policy: rule 1: domain "*.example.com" is not a domain (use contact for patterns)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Compile(tc.cfg)
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want error %q", p.Rules(), tc.wantErr)
			}
			if err.Error() != tc.wantErr {
				t.Fatalf("Compile error = %q, want %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	p, err := policy.Compile(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Default() != policy.Review || p.UnknownEntity() != policy.Reject || len(p.Rules()) != 0 {
		t.Fatalf("empty config: default %q, unknown_entity %q, %d rules", p.Default(), p.UnknownEntity(), len(p.Rules()))
	}
	p, err = policy.Compile(policy.Config{Default: policy.Drop, UnknownEntity: policy.Review})
	if err != nil {
		t.Fatal(err)
	}
	if p.Default() != policy.Drop || p.UnknownEntity() != policy.Review {
		t.Fatalf("got default %q, unknown_entity %q", p.Default(), p.UnknownEntity())
	}
}

func TestRulesIsCopy(t *testing.T) {
	in := []policy.Rule{{Contact: "*@Example.COM", Entity: "HelpDesk", Action: policy.Accept}}
	p, err := policy.Compile(policy.Config{Rules: in})
	if err != nil {
		t.Fatal(err)
	}
	in[0].Action = policy.Drop // the caller's slice must not affect the policy
	got := p.Rules()
	want := []policy.Rule{{Contact: "*@example.com", Entity: "helpdesk", Action: policy.Accept}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Rules() = %v, want %v", got, want)
	}
	got[0].Action = policy.Drop
	if p.Rules()[0].Action != policy.Accept {
		t.Fatal("Rules() returned the policy's own slice")
	}
}

func TestRuleString(t *testing.T) {
	tests := []struct {
		name string
		rule policy.Rule
		want string
	}{
		{"contact and entity", policy.Rule{Contact: "*@localhost", Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true},
			`contact="*@localhost" entity="helpdesk" -> accept, subscribe_back`},
		{"domain", policy.Rule{Domain: "evil.com", Action: policy.Drop}, `domain="evil.com" -> drop`},
		{"all matchers", policy.Rule{Contact: "a*", Domain: "b", Entity: "c", Action: policy.Review},
			`contact="a*" domain="b" entity="c" -> review`},
		{"no matcher", policy.Rule{Action: policy.Reject}, `any -> reject`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rule.String(); got != tc.want {
				t.Fatalf("String() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Drop,
		Rules: []policy.Rule{
			{Domain: "Evil.COM", Action: policy.Drop},                                            // 1
			{Contact: "boss@localhost", Action: policy.Accept, SubscribeBack: true},              // 2
			{Contact: "*@LocalHost", Entity: "HelpDesk", Action: policy.Accept},                  // 3
			{Contact: "*@localhost", Action: policy.Reject},                                      // 4: shadowed by 3 for helpdesk
			{Contact: "localhost", Action: policy.Accept},                                        // 5: the server JID only
			{Domain: "example.org", Entity: "sales", Action: policy.Accept, SubscribeBack: true}, // 6
			{Contact: "*@*.example.net", Domain: "a.example.net", Action: policy.Reject},         // 7: both must match
			{Entity: "", Contact: "?@example.net", Action: policy.Accept},                        // 8
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(n int, a policy.Action, back bool) policy.Decision {
		return policy.Decision{Action: a, SubscribeBack: back, Rule: n, Reason: fmt.Sprintf("rule %d", n)}
	}
	def := policy.Decision{Action: policy.Review, Reason: "default"}
	tests := []struct {
		name string
		req  policy.Request
		want policy.Decision
	}{
		{"domain rule", policy.Request{Contact: "mallory@evil.com", Entity: "helpdesk", KnownEntity: true}, rule(1, policy.Drop, false)},
		{"domain is exact, not suffix", policy.Request{Contact: "mallory@sub.evil.com", Entity: "helpdesk", KnownEntity: true}, def},
		{"first match wins over later rules", policy.Request{Contact: "boss@localhost", Entity: "helpdesk", KnownEntity: true}, rule(2, policy.Accept, true)},
		{"entity-specific rule", policy.Request{Contact: "alice@localhost", Entity: "helpdesk", KnownEntity: true}, rule(3, policy.Accept, false)},
		{"later rule for other entity", policy.Request{Contact: "alice@localhost", Entity: "sales", KnownEntity: true}, rule(4, policy.Reject, false)},
		{"component domain itself as entity", policy.Request{Contact: "alice@localhost", Entity: "", KnownEntity: true}, rule(4, policy.Reject, false)},
		{"glob does not match longer domain", policy.Request{Contact: "alice@evil.localhost.com", Entity: "helpdesk", KnownEntity: true}, def},
		{"server JID matches bare pattern only", policy.Request{Contact: "localhost", Entity: "helpdesk", KnownEntity: true}, rule(5, policy.Accept, false)},
		{"case-insensitive contact", policy.Request{Contact: "Alice@LOCALHOST", Entity: "HELPDESK", KnownEntity: true}, rule(3, policy.Accept, false)},
		{"case-insensitive domain", policy.Request{Contact: "m@EVIL.com", Entity: "x", KnownEntity: true}, rule(1, policy.Drop, false)},
		{"subscribe_back propagates", policy.Request{Contact: "bob@example.org", Entity: "Sales", KnownEntity: true}, rule(6, policy.Accept, true)},
		{"domain rule needs entity too", policy.Request{Contact: "bob@example.org", Entity: "helpdesk", KnownEntity: true}, def},
		{"contact and domain both match", policy.Request{Contact: "x@a.example.net", Entity: "sales", KnownEntity: true}, rule(7, policy.Reject, false)},
		{"contact matches, domain does not", policy.Request{Contact: "x@b.example.net", Entity: "sales", KnownEntity: true}, def},
		{"question mark glob", policy.Request{Contact: "q@example.net", Entity: "sales", KnownEntity: true}, rule(8, policy.Accept, false)},
		{"default fallback", policy.Request{Contact: "carol@jabber.org", Entity: "helpdesk", KnownEntity: true}, def},
		{"unknown entity ignores rules", policy.Request{Contact: "boss@localhost", Entity: "nobody", KnownEntity: false},
			policy.Decision{Action: policy.Drop, Reason: "unknown_entity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}
}

func TestDecideDefaults(t *testing.T) {
	p, err := policy.Compile(policy.Config{Rules: []policy.Rule{{Entity: "helpdesk", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  policy.Request
		want policy.Decision
	}{
		{"implicit review default", policy.Request{Contact: "a@b", Entity: "sales", KnownEntity: true}, policy.Decision{Action: policy.Review, Reason: "default"}},
		{"implicit reject for unknown entity", policy.Request{Contact: "a@b", Entity: "helpdesk"}, policy.Decision{Action: policy.Reject, Reason: "unknown_entity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}
}

func TestDecideConcurrent(t *testing.T) {
	p, err := policy.Compile(policy.Config{Rules: []policy.Rule{{Contact: "*@localhost", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				_ = p.Decide(policy.Request{Contact: "a@localhost", KnownEntity: true})
				_ = p.Rules()
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func FuzzCompile(f *testing.F) {
	f.Add("*@localhost", "", "helpdesk", "accept", true, "alice@localhost", "helpdesk", true)
	f.Add("[a", "x@y", "", "alow", false, "localhost", "", false)
	f.Add("", "EXAMPLE.com", "Sales", "reject", false, "Bob@Example.COM", "sales", true)
	f.Add("\\", "", "", "", true, "", "", true)
	f.Fuzz(func(t *testing.T, contact, domain, entity, action string, back bool, reqContact, reqEntity string, known bool) {
		r := policy.Rule{Contact: contact, Domain: domain, Entity: entity, Action: policy.Action(action), SubscribeBack: back}
		p, err := policy.Compile(policy.Config{Default: policy.Action(action), Rules: []policy.Rule{r, r}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("error %q lacks the policy: prefix", err)
			}
			return
		}
		for _, cr := range p.Rules() {
			if _, err := path.Match(cr.Contact, ""); err != nil {
				t.Fatalf("compiled rule %v has a bad pattern: %v", cr, err)
			}
			_ = cr.String()
		}
		d := p.Decide(policy.Request{Contact: reqContact, Entity: reqEntity, KnownEntity: known})
		if _, err := policy.ParseAction(string(d.Action)); err != nil {
			t.Fatalf("Decide returned invalid action: %+v", d)
		}
		switch {
		case d.Rule == 1 && d.Reason == "rule 1" && d.Action == r.Action && d.SubscribeBack == back:
		case d.Rule == 0 && d.Reason == "default" && known && !d.SubscribeBack:
		case d.Rule == 0 && d.Reason == "unknown_entity" && !known && !d.SubscribeBack:
		default:
			t.Fatalf("inconsistent decision %+v for rule %v, known=%v", d, r, known)
		}
	})
}

func Example() {
	p, err := policy.Compile(policy.Config{
		Default: policy.Review,
		Rules: []policy.Rule{
			{Domain: "spam.example", Action: policy.Drop},
			{Contact: "*@localhost", Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range p.Rules() {
		fmt.Println(r)
	}
	for _, req := range []policy.Request{
		{Contact: "alice@localhost", Entity: "helpdesk", KnownEntity: true},
		{Contact: "eve@spam.example", Entity: "helpdesk", KnownEntity: true},
		{Contact: "bob@elsewhere.org", Entity: "helpdesk", KnownEntity: true},
		{Contact: "alice@localhost", Entity: "nobody", KnownEntity: false},
	} {
		d := p.Decide(req)
		fmt.Printf("%s -> %s: %s (subscribe_back=%v, %s)\n", req.Contact, req.Entity, d.Action, d.SubscribeBack, d.Reason)
	}
	// Output:
	// domain="spam.example" -> drop
	// contact="*@localhost" entity="helpdesk" -> accept, subscribe_back
	// alice@localhost -> helpdesk: accept (subscribe_back=true, rule 2)
	// eve@spam.example -> helpdesk: drop (subscribe_back=false, rule 1)
	// bob@elsewhere.org -> helpdesk: review (subscribe_back=false, default)
	// alice@localhost -> nobody: reject (subscribe_back=false, unknown_entity)
}
