package policy_test

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"sync"
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
			wantErr: `policy: rule 1: no matcher: set contact, regex, domain, local_contact, entity or group`,
		},
		{
			name:    "subscribe_back without accept",
			cfg:     policy.Config{Rules: []policy.Rule{ok, ok, ok, {Domain: "evil.com", Action: policy.Reject, SubscribeBack: true}}},
			wantErr: `policy: rule 4: subscribe_back needs action "accept" or "review", not "reject"`,
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
		{
			name:    "bad regex",
			cfg:     policy.Config{Rules: []policy.Rule{ok, {Regex: "(", Action: policy.Reject}}},
			wantErr: "policy: rule 2: bad regex \"(\": error parsing regexp: missing closing ): `(`",
		},
		{
			name:    "bad regex with valid contact",
			cfg:     policy.Config{Rules: []policy.Rule{{Contact: "*@localhost", Regex: `a{2,1}`, Action: policy.Reject}}},
			wantErr: "policy: rule 1: bad regex \"a{2,1}\": error parsing regexp: invalid repeat count: `{2,1}`",
		},
		{
			name:    "message with drop",
			cfg:     policy.Config{Rules: []policy.Rule{ok, ok, {Domain: "spam.example", Action: policy.Drop, Message: "go away"}}},
			wantErr: `policy: rule 3: message cannot be sent with action "drop"`,
		},
		{
			name:    "message with a control character",
			cfg:     policy.Config{Rules: []policy.Rule{{Entity: "helpdesk", Action: policy.Accept, Message: "hi\x00"}}},
			wantErr: `policy: rule 1: message contains the control character U+0000`,
		},
		{
			name:    "message not UTF-8",
			cfg:     policy.Config{Rules: []policy.Rule{{Entity: "helpdesk", Action: policy.Review, Message: "caf\xe9"}}},
			wantErr: `policy: rule 1: message is not valid UTF-8`,
		},
		{
			name:    "local_contact without local domains",
			cfg:     policy.Config{Rules: []policy.Rule{{LocalContact: ptr(true), Action: policy.Accept}}},
			wantErr: `policy: rule 1: local_contact needs local domains`,
		},
		{
			name:    "local_contact false without local domains",
			cfg:     policy.Config{Rules: []policy.Rule{ok, {Entity: "helpdesk", LocalContact: ptr(false), Action: policy.Review}}},
			wantErr: `policy: rule 2: local_contact needs local domains`,
		},
		{
			name:    "local domain with at",
			cfg:     policy.Config{LocalDomains: []string{"example.com", "a@example.com"}},
			wantErr: `policy: local domain "a@example.com" is not a domain`,
		},
		{
			name:    "group with spaces around it",
			cfg:     policy.Config{Rules: []policy.Rule{ok, {Group: "staff ", Action: policy.Accept}}},
			wantErr: `policy: rule 2: group "staff " has spaces around it`,
		},
		{
			name:    "group with a control character",
			cfg:     policy.Config{Rules: []policy.Rule{{Group: "st\naff", Action: policy.Accept}}},
			wantErr: `policy: rule 1: group "st\naff" holds a control character`,
		},
		{
			name:    "empty local domain",
			cfg:     policy.Config{LocalDomains: []string{""}},
			wantErr: `policy: local domain "" is not a domain`,
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

func ptr[T any](v T) *T { return &v }

func TestBadRegexWrapsSyntaxError(t *testing.T) {
	_, err := policy.Compile(policy.Config{Rules: []policy.Rule{{Regex: "(", Action: policy.Reject}}})
	var serr *syntax.Error
	if !errors.As(err, &serr) || serr.Code != syntax.ErrMissingParen {
		t.Fatalf("Compile error %v does not wrap the regexp error", err)
	}
}

func TestCompileMatchers(t *testing.T) {
	local := []string{"localhost"}
	tests := []struct {
		name string
		rule policy.Rule
	}{
		{"regex alone", policy.Rule{Regex: `^[a-z]+@localhost$`, Action: policy.Accept}},
		{"local_contact true alone", policy.Rule{LocalContact: ptr(true), Action: policy.Accept}},
		{"local_contact false alone", policy.Rule{LocalContact: ptr(false), Action: policy.Review}},
		{"message with accept", policy.Rule{Entity: "helpdesk", Action: policy.Accept, Message: "Welcome"}},
		{"message with reject", policy.Rule{Entity: "helpdesk", Action: policy.Reject, Message: "Not here"}},
		{"message with review", policy.Rule{Entity: "helpdesk", Action: policy.Review, Message: "An admin will look\n\tat it"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Compile(policy.Config{LocalDomains: local, Rules: []policy.Rule{tc.rule}})
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Rules(); !reflect.DeepEqual(got, []policy.Rule{tc.rule}) {
				t.Fatalf("Rules() = %v, want %v", got, tc.rule)
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	p, err := policy.Compile(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Default() != policy.Review || p.UnknownEntity() != policy.Drop || len(p.Rules()) != 0 {
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

// LocalContact is a pointer: neither the caller's variable nor what Rules
// returns may reach into the policy.
func TestLocalContactIsCopied(t *testing.T) {
	local := true
	p, err := policy.Compile(policy.Config{LocalDomains: []string{"LocalHost", "localhost"}, Rules: []policy.Rule{{LocalContact: &local, Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	req := policy.Request{Contact: "alice@localhost", KnownEntity: true}
	local = false
	if d := p.Decide(req); d.Rule != 1 {
		t.Fatalf("after changing the caller's bool: %+v", d)
	}
	*p.Rules()[0].LocalContact = false
	if d := p.Decide(req); d.Rule != 1 {
		t.Fatalf("after changing the bool Rules returned: %+v", d)
	}
	if got := p.LocalDomains(); !reflect.DeepEqual(got, []string{"localhost"}) {
		t.Fatalf("LocalDomains() = %q, want lower-cased and deduplicated", got)
	}
	p.LocalDomains()[0] = "evil.example"
	if got := p.LocalDomains(); got[0] != "localhost" {
		t.Fatal("LocalDomains() returned the policy's own slice")
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
		{"regex", policy.Rule{Regex: `^[a-z]+@example\.com$`, Action: policy.Accept},
			`regex="^[a-z]+@example\\.com$" -> accept`},
		{"local contact", policy.Rule{LocalContact: ptr(true), Action: policy.Accept, SubscribeBack: true, Message: "Welcome aboard"},
			`local_contact=true -> accept, subscribe_back, message="Welcome aboard"`},
		{"federated contact", policy.Rule{Entity: "helpdesk", LocalContact: ptr(false), Action: policy.Review, Message: "Held for \"review\""},
			`entity="helpdesk" local_contact=false -> review, message="Held for \"review\""`},
		{"every field", policy.Rule{Contact: "a*", Domain: "b", Entity: "c", Regex: "d", LocalContact: ptr(false), Action: policy.Reject, Message: "no"},
			`contact="a*" domain="b" entity="c" regex="d" local_contact=false -> reject, message="no"`},
		{"group", policy.Rule{Group: "staff", LocalContact: ptr(true), Action: policy.Accept},
			`group="staff" local_contact=true -> accept`},
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
		// RFC 6121 §8.5.1: "If the user account identified by the 'to'
		// attribute does not exist, [...] For a presence stanza of type
		// "subscribe", "subscribed", "unsubscribe", or "unsubscribed", the
		// server MUST silently ignore the stanza."
		{"implicit drop for unknown entity", policy.Request{Contact: "a@b", Entity: "helpdesk"}, policy.Decision{Action: policy.Drop, Reason: "unknown_entity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}
}

func TestDecideNewMatchers(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		Default:       policy.Reject,
		UnknownEntity: policy.Reject,
		LocalDomains:  []string{"LocalHost", "example.com"},
		Rules: []policy.Rule{
			{Regex: `^bot-[0-9]+@`, Action: policy.Drop},                                                             // 1
			{Regex: `^[a-z]+@localhost$`, LocalContact: ptr(true), Action: policy.Accept, Message: "Welcome aboard"}, // 2
			{Entity: "helpdesk", LocalContact: ptr(true), Action: policy.Accept, SubscribeBack: true},                // 3
			{Entity: "helpdesk", LocalContact: ptr(false), Action: policy.Review, Message: "An admin will decide"},   // 4
			{Regex: `(?i)^VIP\.`, Action: policy.Accept},                                                             // 5
			{Regex: `partner`, Action: policy.Reject, Message: "Use the partner portal"},                             // 6: unanchored
			{LocalContact: ptr(false), Domain: "example.org", Action: policy.Review},                                 // 7
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rule := func(n int, a policy.Action, back bool, msg string) policy.Decision {
		return policy.Decision{Action: a, SubscribeBack: back, Rule: n, Reason: fmt.Sprintf("rule %d", n), Message: msg}
	}
	def := policy.Decision{Action: policy.Reject, Reason: "default"}
	tests := []struct {
		name string
		req  policy.Request
		want policy.Decision
	}{
		{"regex alone", policy.Request{Contact: "bot-42@anywhere.example", Entity: "helpdesk", KnownEntity: true}, rule(1, policy.Drop, false, "")},
		{"regex and local_contact, message", policy.Request{Contact: "alice@localhost", Entity: "sales", KnownEntity: true}, rule(2, policy.Accept, false, "Welcome aboard")},
		{"regex sees the lower-cased JID", policy.Request{Contact: "Alice@LocalHost", Entity: "sales", KnownEntity: true}, rule(2, policy.Accept, false, "Welcome aboard")},
		{"regex fails, local_contact rule for entity", policy.Request{Contact: "alice2@localhost", Entity: "helpdesk", KnownEntity: true}, rule(3, policy.Accept, true, "")},
		{"second local domain", policy.Request{Contact: "bob@example.com", Entity: "helpdesk", KnownEntity: true}, rule(3, policy.Accept, true, "")},
		{"local domain is exact, not suffix", policy.Request{Contact: "bob@sub.example.com", Entity: "helpdesk", KnownEntity: true}, rule(4, policy.Review, false, "An admin will decide")},
		{"federated contact", policy.Request{Contact: "carol@jabber.org", Entity: "helpdesk", KnownEntity: true}, rule(4, policy.Review, false, "An admin will decide")},
		{"server JID of a local domain is local", policy.Request{Contact: "localhost", Entity: "helpdesk", KnownEntity: true}, rule(3, policy.Accept, true, "")},
		{"case-insensitive regex flag", policy.Request{Contact: "vip.dave@jabber.org", Entity: "sales", KnownEntity: true}, rule(5, policy.Accept, false, "")},
		{"unanchored regex", policy.Request{Contact: "x@partner.example", Entity: "sales", KnownEntity: true}, rule(6, policy.Reject, false, "Use the partner portal")},
		{"local_contact=false and domain", policy.Request{Contact: "erin@example.org", Entity: "sales", KnownEntity: true}, rule(7, policy.Review, false, "")},
		{"local contact misses local_contact=false", policy.Request{Contact: "frank@example.com", Entity: "sales", KnownEntity: true}, def},
		{"default has no message", policy.Request{Contact: "grace@jabber.org", Entity: "sales", KnownEntity: true}, def},
		{"unknown entity has no message", policy.Request{Contact: "alice@localhost", Entity: "nobody"},
			policy.Decision{Action: policy.Reject, Reason: "unknown_entity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}
}

// A group rule matches a member only; a contact whose membership is
// unknown (the directory could not say) or who is not a member falls
// through to the next rule, and Trace says which groups were consulted.
func TestDecideGroups(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		Default:      policy.Review,
		LocalDomains: []string{"example.com"},
		Rules: []policy.Rule{
			{Domain: "spam.example", Action: policy.Drop},                                         // 1
			{Group: "Staff", LocalContact: ptr(true), Action: policy.Accept, SubscribeBack: true}, // 2
			{Group: "sales", Entity: "helpdesk", Action: policy.Accept},                           // 3
			{Entity: "helpdesk", Domain: "partner.example", Action: policy.Reject},                // 4
			{Group: "staff", Action: policy.Review, Message: "Staff from elsewhere"},              // 5
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasGroups() {
		t.Error("HasGroups = false")
	}
	if got := p.Rules()[1].Group; got != "staff" {
		t.Errorf("the group is compiled as %q, want it lower-cased", got)
	}
	m := policy.Member
	rule := func(n int, a policy.Action, back bool, msg string) policy.Decision {
		return policy.Decision{Action: a, SubscribeBack: back, Rule: n, Reason: fmt.Sprintf("rule %d", n), Message: msg}
	}
	def := policy.Decision{Action: policy.Review, Reason: "default"}
	type check = policy.GroupCheck
	tests := []struct {
		name       string
		req        policy.Request
		wantGroups []string
		want       policy.Decision
		checks     []check
	}{
		{"staff, local", policy.Request{Contact: "alice@example.com", Entity: "sales", KnownEntity: true, Groups: map[string]policy.Membership{"staff": m}},
			[]string{"staff"}, rule(2, policy.Accept, true, ""), []check{{2, "staff", m}}},
		{"not a member", policy.Request{Contact: "bob@example.com", Entity: "sales", KnownEntity: true, Groups: map[string]policy.Membership{"staff": policy.NotMember}},
			[]string{"staff"}, def, []check{{2, "staff", policy.NotMember}, {5, "staff", policy.NotMember}}},
		{"unknown: the directory could not say", policy.Request{Contact: "alice@example.com", Entity: "sales", KnownEntity: true},
			[]string{"staff"}, def, []check{{2, "staff", policy.Unknown}, {5, "staff", policy.Unknown}}},
		{"two groups, the second matches", policy.Request{Contact: "carol@example.com", Entity: "helpdesk", KnownEntity: true,
			Groups: map[string]policy.Membership{"staff": policy.NotMember, "sales": m}},
			[]string{"staff", "sales"}, rule(3, policy.Accept, false, ""), []check{{2, "staff", policy.NotMember}, {3, "sales", m}}},
		{"a rule without a group decides first", policy.Request{Contact: "dave@partner.example", Entity: "helpdesk", KnownEntity: true,
			Groups: map[string]policy.Membership{"staff": m}},
			[]string{"sales"}, rule(4, policy.Reject, false, ""), []check{{3, "sales", policy.Unknown}}},
		{"staff, federated", policy.Request{Contact: "erin@elsewhere.example", Entity: "sales", KnownEntity: true, Groups: map[string]policy.Membership{"staff": m}},
			[]string{"staff"}, rule(5, policy.Review, false, "Staff from elsewhere"), []check{{5, "staff", m}}},
		{"no group consulted", policy.Request{Contact: "x@spam.example", Entity: "sales", KnownEntity: true},
			nil, rule(1, policy.Drop, false, ""), nil},
		{"unknown entity", policy.Request{Contact: "alice@example.com", Entity: "nobody"},
			nil, policy.Decision{Action: policy.Drop, Reason: "unknown_entity"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.GroupsFor(tc.req); !reflect.DeepEqual(got, tc.wantGroups) {
				t.Errorf("GroupsFor = %q, want %q", got, tc.wantGroups)
			}
			d, checks := p.Trace(tc.req)
			if d != tc.want || !reflect.DeepEqual(checks, tc.checks) {
				t.Errorf("Trace = %+v %+v, want %+v %+v", d, checks, tc.want, tc.checks)
			}
			if got := p.Decide(tc.req); got != d {
				t.Errorf("Decide = %+v, Trace's %+v", got, d)
			}
		})
	}
	// The lists come first: no group is consulted.
	q, err := p.WithLists([]string{"alice@example.com"}, []string{"bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"alice@example.com", "bob@example.com"} {
		if g := q.GroupsFor(policy.Request{Contact: c, Entity: "sales", KnownEntity: true}); g != nil {
			t.Errorf("GroupsFor(%s) on a list = %q", c, g)
		}
	}
	if noGroups, _ := policy.Compile(policy.Config{Rules: []policy.Rule{{Entity: "x", Action: policy.Accept}}}); noGroups.HasGroups() {
		t.Error("HasGroups without a group rule")
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
		is                      error
	}{
		{name: "glob", in: "*@spam.example", want: "*@spam.example"},
		{name: "bare JID", in: "mallory@example.com", want: "mallory@example.com"},
		{name: "domain", in: "example.org", want: "example.org"},
		{name: "trimmed and lower-cased", in: "  Mallory@Example.COM\t", want: "mallory@example.com"},
		{name: "domain glob", in: "*.spam.example", want: "*.spam.example"},
		{name: "class", in: "[a-c]*@example.org", want: "[a-c]*@example.org"},
		{name: "syntax error", in: "[", wantErr: `policy: bad pattern "[": syntax error in pattern`, is: path.ErrBadPattern},
		{name: "trailing backslash", in: `x@y\`, wantErr: `policy: bad pattern "x@y\\": syntax error in pattern`, is: path.ErrBadPattern},
		{name: "empty", in: "", wantErr: `policy: empty pattern`},
		{name: "blank", in: " \t ", wantErr: `policy: empty pattern`},
		{name: "resource", in: "a@b/phone", wantErr: `policy: bad pattern "a@b/phone": a bare JID has no resource`},
		{name: "inner space", in: "a b@c", wantErr: `policy: bad pattern "a b@c": a JID has no spaces`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ValidatePattern(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ValidatePattern(%q) = %q, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Fatalf("errors.Is(%v, %v) = false", err, tc.is)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ValidatePattern(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			if again, err := policy.ValidatePattern(got); err != nil || again != got {
				t.Fatalf("not idempotent: ValidatePattern(%q) = %q, %v", got, again, err)
			}
		})
	}
}

func TestWithLists(t *testing.T) {
	base, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Drop,
		Rules: []policy.Rule{
			{Contact: "*@localhost", Action: policy.Accept, SubscribeBack: true, Message: "Hi"}, // 1
			{Domain: "spam.example", Action: policy.Review},                                     // 2
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := base.WithLists(
		[]string{"Example.ORG", "boss@spam.example", "*.friends.example"},
		[]string{"*@spam.example", "mallory@localhost", "example.org", " Eve@* "},
	)
	if err != nil {
		t.Fatal(err)
	}
	deny := func(pat string) policy.Decision {
		return policy.Decision{Action: policy.Reject, Reason: fmt.Sprintf("deny list %q", pat)}
	}
	allow := func(pat string) policy.Decision {
		return policy.Decision{Action: policy.Accept, Reason: fmt.Sprintf("allow list %q", pat)}
	}
	tests := []struct {
		name string
		req  policy.Request
		want policy.Decision
	}{
		{"deny glob", policy.Request{Contact: "eve2@spam.example", Entity: "helpdesk", KnownEntity: true}, deny("*@spam.example")},
		{"deny beats allow", policy.Request{Contact: "boss@spam.example", Entity: "helpdesk", KnownEntity: true}, deny("*@spam.example")},
		{"deny beats a rule", policy.Request{Contact: "mallory@localhost", Entity: "helpdesk", KnownEntity: true}, deny("mallory@localhost")},
		{"deny domain beats allow domain", policy.Request{Contact: "x@example.org", Entity: "helpdesk", KnownEntity: true}, deny("example.org")},
		{"deny pattern normalised", policy.Request{Contact: "EVE@jabber.org", Entity: "helpdesk", KnownEntity: true}, deny("eve@*")},
		{"allow beats a rule, no subscribe_back, no message", policy.Request{Contact: "a@b.friends.example", Entity: "helpdesk", KnownEntity: true}, allow("*.friends.example")},
		{"domain pattern is exact", policy.Request{Contact: "a@friends.example", Entity: "helpdesk", KnownEntity: true}, policy.Decision{Action: policy.Review, Reason: "default"}},
		{"JID glob does not match the server JID", policy.Request{Contact: "spam.example", Entity: "helpdesk", KnownEntity: true}, policy.Decision{Action: policy.Review, Rule: 2, Reason: "rule 2"}},
		{"domain pattern matches the server JID", policy.Request{Contact: "example.org", Entity: "helpdesk", KnownEntity: true}, deny("example.org")},
		{"no list match: rules", policy.Request{Contact: "alice@localhost", Entity: "helpdesk", KnownEntity: true},
			policy.Decision{Action: policy.Accept, SubscribeBack: true, Rule: 1, Reason: "rule 1", Message: "Hi"}},
		{"no list match: default", policy.Request{Contact: "carol@jabber.org", Entity: "helpdesk", KnownEntity: true}, policy.Decision{Action: policy.Review, Reason: "default"}},
		// unknown_entity = "drop": the JID does not exist (RFC 6121
		// §8.5.1), and even a denied contact is not answered for it.
		{"unknown entity (drop) before the deny list", policy.Request{Contact: "mallory@localhost", Entity: "nobody"}, policy.Decision{Action: policy.Drop, Reason: "unknown_entity"}},
		{"unknown entity before the allow list", policy.Request{Contact: "a@b.friends.example", Entity: "nobody"}, policy.Decision{Action: policy.Drop, Reason: "unknown_entity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Decide(tc.req); got != tc.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", tc.req, got, tc.want)
			}
		})
	}

	t.Run("receiver unchanged", func(t *testing.T) {
		d := base.Decide(policy.Request{Contact: "mallory@localhost", Entity: "helpdesk", KnownEntity: true})
		if d.Rule != 1 {
			t.Fatalf("the receiver consults lists: %+v", d)
		}
		if a, dn := base.Lists(); a != nil || dn != nil {
			t.Fatalf("base.Lists() = %q, %q", a, dn)
		}
	})
	t.Run("Lists normalised copies", func(t *testing.T) {
		a, dn := p.Lists()
		if want := []string{"example.org", "boss@spam.example", "*.friends.example"}; !reflect.DeepEqual(a, want) {
			t.Errorf("allow = %q, want %q", a, want)
		}
		if want := []string{"*@spam.example", "mallory@localhost", "example.org", "eve@*"}; !reflect.DeepEqual(dn, want) {
			t.Errorf("deny = %q, want %q", dn, want)
		}
		a[0], dn[0] = "x", "y"
		if a2, d2 := p.Lists(); a2[0] != "example.org" || d2[0] != "*@spam.example" {
			t.Error("Lists() returned the policy's own slices")
		}
	})
	t.Run("lists replace lists", func(t *testing.T) {
		q, err := p.WithLists(nil, []string{"carol@jabber.org"})
		if err != nil {
			t.Fatal(err)
		}
		if d := q.Decide(policy.Request{Contact: "mallory@localhost", Entity: "helpdesk", KnownEntity: true}); d.Rule != 1 {
			t.Errorf("old deny list still applies: %+v", d)
		}
		if d := q.Decide(policy.Request{Contact: "carol@jabber.org", Entity: "helpdesk", KnownEntity: true}); d.Reason != `deny list "carol@jabber.org"` {
			t.Errorf("new deny list does not apply: %+v", d)
		}
	})
	t.Run("caller's slices not kept", func(t *testing.T) {
		in := []string{"x@y"}
		q, err := base.WithLists(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		in[0] = "*"
		if d := q.Decide(policy.Request{Contact: "z@w", Entity: "helpdesk", KnownEntity: true}); d.Action != policy.Review {
			t.Errorf("the policy follows the caller's slice: %+v", d)
		}
	})
}

func TestWithListsErrors(t *testing.T) {
	base, err := policy.Compile(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		allow, deny []string
		wantErr     string
	}{
		{"bad allow pattern", []string{"ok@example.org", "["}, nil, `policy: allow list: bad pattern "[": syntax error in pattern`},
		{"empty deny pattern", nil, []string{"a@b", " "}, `policy: deny list: empty pattern`},
		{"resource in deny", nil, []string{"a@b/c"}, `policy: deny list: bad pattern "a@b/c": a bare JID has no resource`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := base.WithLists(tc.allow, tc.deny)
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("WithLists = %v, %v; want error %q", p, err, tc.wantErr)
			}
		})
	}
}

func TestRuleText(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		UnknownEntity: policy.Reject,
		LocalDomains:  []string{"localhost"},
		Rules: []policy.Rule{
			{Domain: "spam.example", Action: policy.Drop},
			{Contact: "*@localhost", Action: policy.Accept, SubscribeBack: true},
			{LocalContact: ptr(false), Regex: `^x`, Action: policy.Review, Message: "Wait"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err = p.WithLists([]string{"example.org"}, []string{"*@spam.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  policy.Request
		want string
	}{
		{"rule", policy.Request{Contact: "alice@localhost", Entity: "helpdesk", KnownEntity: true}, `rule 2: contact="*@localhost" -> accept, subscribe_back`},
		{"rule with new fields", policy.Request{Contact: "xavier@jabber.org", Entity: "helpdesk", KnownEntity: true}, `rule 3: regex="^x" local_contact=false -> review, message="Wait"`},
		{"server JID rule", policy.Request{Contact: "spam.example", Entity: "helpdesk", KnownEntity: true}, `rule 1: domain="spam.example" -> drop`},
		{"default", policy.Request{Contact: "carol@jabber.org", Entity: "helpdesk", KnownEntity: true}, `default: review`},
		{"unknown entity", policy.Request{Contact: "alice@localhost", Entity: "nobody"}, `unknown_entity: reject`},
		{"deny list", policy.Request{Contact: "eve@spam.example", Entity: "helpdesk", KnownEntity: true}, `deny list "*@spam.example"`},
		{"allow list", policy.Request{Contact: "bob@example.org", Entity: "helpdesk", KnownEntity: true}, `allow list "example.org"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.req)
			if got := p.RuleText(d); got != tc.want {
				t.Fatalf("RuleText(%+v) = %s, want %s", d, got, tc.want)
			}
		})
	}
	t.Run("rule out of range falls back to the reason", func(t *testing.T) {
		if got := p.RuleText(policy.Decision{Action: policy.Accept, Rule: 9, Reason: "rule 9"}); got != "rule 9" {
			t.Fatalf("RuleText = %q", got)
		}
	})
}

func TestDecideConcurrent(t *testing.T) {
	p, err := policy.Compile(policy.Config{
		LocalDomains: []string{"localhost"},
		Rules: []policy.Rule{
			{Contact: "*@localhost", Action: policy.Accept},
			{Regex: `^a`, LocalContact: ptr(false), Action: policy.Reject, Message: "no"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				_ = p.Decide(policy.Request{Contact: "a@localhost", KnownEntity: true})
				_ = p.Decide(policy.Request{Contact: "a@jabber.org", KnownEntity: true})
				_ = p.Rules()
				// Replacing the lists, as list edits at runtime do, leaves p alone.
				q, err := p.WithLists([]string{fmt.Sprintf("u%d@x", i)}, []string{fmt.Sprintf("v%d@x", j)})
				if err != nil {
					t.Error(err)
					return
				}
				_ = q.RuleText(q.Decide(policy.Request{Contact: "v1@x", KnownEntity: true}))
				_, _ = q.Lists()
			}
		})
	}
	wg.Wait()
	if a, d := p.Lists(); a != nil || d != nil {
		t.Fatalf("p changed: %q %q", a, d)
	}
}

func FuzzCompile(f *testing.F) {
	f.Add("*@localhost", "", "helpdesk", "", uint8(0), "accept", true, "", "", "alice@localhost", "helpdesk", true)
	f.Add("[a", "x@y", "", "", uint8(0), "alow", false, "", "", "localhost", "", false)
	f.Add("", "EXAMPLE.com", "Sales", "", uint8(0), "reject", false, "", "", "Bob@Example.COM", "sales", true)
	f.Add("\\", "", "", "", uint8(0), "", true, "", "", "", "", true)
	f.Add("", "", "", "^[a-z]+@localhost$", uint8(1), "accept", false, "Welcome aboard", "LocalHost", "alice@localhost", "x", true)
	f.Add("", "", "", "(", uint8(2), "review", false, "", "localhost", "bob@jabber.org", "x", true)
	f.Add("", "", "", "", uint8(2), "drop", false, "bye", "", "bob@jabber.org", "x", true)
	f.Add("", "", "", "", uint8(1), "review", false, "\x00", "a@b", "", "", true)
	f.Fuzz(func(t *testing.T, contact, domain, entity, regex string, local uint8, action string, back bool, message, localDomain, reqContact, reqEntity string, known bool) {
		var lc *bool // local%3: 0 = nil, 1 = true, 2 = false
		if local%3 != 0 {
			lc = ptr(local%3 == 1)
		}
		r := policy.Rule{Contact: contact, Domain: domain, Entity: entity, Regex: regex, LocalContact: lc, Action: policy.Action(action), SubscribeBack: back, Message: message}
		var lds []string
		if localDomain != "" {
			lds = []string{localDomain}
		}
		p, err := policy.Compile(policy.Config{Default: policy.Action(action), LocalDomains: lds, Rules: []policy.Rule{r, r}})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("error %q lacks the policy: prefix", err)
			}
			return
		}
		if message != "" && r.Action == policy.Drop {
			t.Fatalf("compiled a message with drop: %v", r)
		}
		for _, cr := range p.Rules() {
			if _, err := path.Match(cr.Contact, ""); err != nil {
				t.Fatalf("compiled rule %v has a bad pattern: %v", cr, err)
			}
			if _, err := regexp.Compile(cr.Regex); err != nil {
				t.Fatalf("compiled rule %v has a bad regex: %v", cr, err)
			}
			if (cr.LocalContact == nil) != (lc == nil) || (lc != nil && *cr.LocalContact != *lc) {
				t.Fatalf("compiled rule %v lost local_contact %v", cr, lc)
			}
			_ = cr.String()
		}
		req := policy.Request{Contact: reqContact, Entity: reqEntity, KnownEntity: known}
		d := p.Decide(req)
		if _, err := policy.ParseAction(string(d.Action)); err != nil {
			t.Fatalf("Decide returned invalid action: %+v", d)
		}
		switch {
		case d.Rule == 1 && d.Reason == "rule 1" && d.Action == r.Action && d.SubscribeBack == back && d.Message == message:
		case d.Rule == 0 && d.Reason == "default" && known && !d.SubscribeBack && d.Message == "":
		case d.Rule == 0 && d.Reason == "unknown_entity" && !known && !d.SubscribeBack && d.Message == "":
		default:
			t.Fatalf("inconsistent decision %+v for rule %v, known=%v", d, r, known)
		}
		if p.RuleText(d) == "" {
			t.Fatalf("RuleText(%+v) is empty", d)
		}
		// The same strings as list patterns: valid ones are accepted by
		// WithLists and a deny hit comes before the rules.
		pat, err := policy.ValidatePattern(contact)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("error %q lacks the policy: prefix", err)
			}
			return
		}
		q, err := p.WithLists([]string{pat}, []string{pat})
		if err != nil {
			t.Fatalf("WithLists rejects the validated pattern %q: %v", pat, err)
		}
		qd := q.Decide(req)
		switch {
		case qd.Reason == "deny list "+strconv.Quote(pat):
			// The deny list applies to any entity, known or not.
			if qd.Action != policy.Reject || qd.Rule != 0 || qd.SubscribeBack || qd.Message != "" {
				t.Fatalf("deny decision %+v", qd)
			}
		case !known:
			if qd != d {
				t.Fatalf("the allow list changed an unknown entity's decision: %+v, want %+v", qd, d)
			}
		default:
			if qd != d {
				t.Fatalf("a list that does not match changed the decision: %+v, want %+v", qd, d)
			}
		}
		if p.Decide(req) != d {
			t.Fatal("WithLists changed the receiver")
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
	// alice@localhost -> nobody: drop (subscribe_back=false, unknown_entity)
}

// A rule that does not accept, whose group the directory could not check,
// keeps any later rule or the default from accepting: the request is held
// instead. Known memberships, and unknown ones of accepting rules, change
// nothing.
func TestUnknownGroupNeverOpensAnAccept(t *testing.T) {
	p, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Reject, Rules: []policy.Rule{
		{Group: "blocked", Action: policy.Reject},
		{Group: "staff", Action: policy.Accept, SubscribeBack: true},
		{Domain: "corp.example", Action: policy.Accept},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		groups map[string]policy.Membership
		want   policy.Action
		reason string
	}{
		{"directory down", nil, policy.Review, policy.ReasonUnsure + "1"},
		{"not blocked, staff unknown", map[string]policy.Membership{"blocked": policy.NotMember}, policy.Accept, "rule 3"},
		{"blocked", map[string]policy.Membership{"blocked": policy.Member}, policy.Reject, "rule 1"},
		{"blocked unknown, staff member", map[string]policy.Membership{"staff": policy.Member}, policy.Review, policy.ReasonUnsure + "1"},
		{"not blocked, staff", map[string]policy.Membership{"blocked": policy.NotMember, "staff": policy.Member}, policy.Accept, "rule 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(policy.Request{Contact: "mallory@corp.example", Entity: "helpdesk", KnownEntity: true, Groups: tc.groups})
			if d.Action != tc.want || d.Reason != tc.reason {
				t.Errorf("Decide = %+v, want %s by %q", d, tc.want, tc.reason)
			}
			if d.Action == policy.Review && !strings.Contains(p.RuleText(d), "could not say whether rule 1") {
				t.Errorf("held: message %q, rule text %q", d.Message, p.RuleText(d))
			}
		})
	}
	// The default behind a group rule that rejects: the same.
	q, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Reject, Rules: []policy.Rule{{Group: "blocked", Action: policy.Drop}}})
	if err != nil {
		t.Fatal(err)
	}
	if d := q.Decide(policy.Request{Contact: "x@y.example", Entity: "e", KnownEntity: true}); d.Action != policy.Review {
		t.Errorf("default accept behind an unknown drop rule: %+v", d)
	}
}
