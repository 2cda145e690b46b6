// Package policy decides XMPP subscription requests (RFC 6121 §3.1) for rostergate: ordered rules, first match wins, then a default.
//
// Before the rules, a policy may consult an allow list and a deny list of
// contact patterns (see WithLists), which are kept elsewhere and edited at
// runtime.
//
// A rule may ask whether the contact belongs to a group (Rule.Group). The
// policy does not look groups up: the caller asks GroupsFor which groups a
// request's decision may consult, looks them up (in a directory), and
// passes what it learnt in Request.Groups. A group it could not learn
// about (Unknown) does not match: the rule falls through.
//
// The package is a pure rule engine: it does no I/O, reads no clock and knows
// nothing about XML. A compiled *Policy is immutable and safe for concurrent use.
package policy

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Action is what rostergate does with a subscription request.
type Action string

// The actions a rule, the default or unknown_entity may take.
const (
	Accept Action = "accept"
	Reject Action = "reject"
	Review Action = "review" // hold the request for an admin to decide
	Drop   Action = "drop"   // send nothing, store nothing
)

// errUnknownAction is the unprefixed form, so that Compile can name the
// offending rule while ParseAction still reads "policy: unknown action ...".
type errUnknownAction string

func (e errUnknownAction) Error() string {
	return fmt.Sprintf("unknown action %q (want accept, reject, review or drop)", string(e))
}

func parseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case Accept, Reject, Review, Drop:
		return a, nil
	}
	return "", errUnknownAction(s)
}

// ParseAction returns the Action named s. Only the exact lower-case names are accepted.
func ParseAction(s string) (Action, error) {
	a, err := parseAction(s)
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	return a, nil
}

// Rule is one entry of the ordered rule list. A rule matches a request when
// every matcher that is set matches; at least one matcher must be set.
// The matchers are Contact, Domain, Entity, Regex, LocalContact and Group.
type Rule struct {
	Contact string // glob over the contact's bare JID, e.g. "*@example.com" ("" = any); path.Match syntax, case-insensitive
	Domain  string // exact contact domain, case-insensitive ("" = any)
	Entity  string // entity localpart, e.g. "helpdesk" ("" = all entities); case-insensitive
	// Regex is an RE2 regular expression (regexp syntax) searched in the
	// contact's normalised, lower-case bare JID ("" = any). It is not
	// anchored: write ^ and $ to match the whole JID, and lower-case letters
	// (or (?i)) since the JID it sees is lower-case.
	Regex string
	// LocalContact, when set, matches contacts whose domain is (true) or is
	// not (false, a federated contact) one of Config.LocalDomains. nil = any.
	LocalContact *bool
	// Group, when set, matches contacts that belong to the group of that
	// name, as Request.Groups tells (Member); case-insensitive. Unknown
	// membership (the directory could not say) does not match.
	Group         string
	Action        Action
	SubscribeBack bool // only with Accept: the entity asks for the contact's presence in return
	// Message is sent to the requester with the decision ("" = none). Not
	// allowed with Drop, which sends nothing.
	Message string
}

// String returns a compact one-line form, e.g.
// `contact="*@localhost" entity="helpdesk" -> accept, subscribe_back` or
// `regex="^[a-z]+@localhost$" local_contact=true -> review, message="Welcome aboard"`.
func (r Rule) String() string {
	var b strings.Builder
	for _, m := range [...]struct{ k, v string }{{"contact", r.Contact}, {"domain", r.Domain}, {"entity", r.Entity}, {"regex", r.Regex}, {"group", r.Group}} {
		if m.v != "" {
			fmt.Fprintf(&b, "%s=%q ", m.k, m.v)
		}
	}
	if r.LocalContact != nil {
		fmt.Fprintf(&b, "local_contact=%t ", *r.LocalContact)
	}
	if b.Len() == 0 {
		b.WriteString("any ")
	}
	fmt.Fprintf(&b, "-> %s", r.Action)
	if r.SubscribeBack {
		b.WriteString(", subscribe_back")
	}
	if r.Message != "" {
		fmt.Fprintf(&b, ", message=%q", r.Message)
	}
	return b.String()
}

// Config is the uncompiled policy, as read from configuration.
type Config struct {
	Default       Action // applies when no rule matches; "" means Review
	UnknownEntity Action // applies to requests for JIDs at the domain that are not configured entities; "" means Drop: such a JID is an account that does not exist, whose subscription stanzas RFC 6121 §8.5.1 says to ignore. Rules are not consulted for unknown entities.
	Rules         []Rule
	// LocalDomains are the domains whose users are local (normalised; they
	// are lower-cased again here). A rule with LocalContact set needs at
	// least one.
	LocalDomains []string
	// DefaultMessage is sent to the requester with the default's decision
	// ("" = none; not with Drop).
	DefaultMessage string
	// ReviewMessage is sent to the requester when a request is held for
	// review and what held it has no message of its own ("" = none).
	ReviewMessage string
}

// Policy is a compiled Config, possibly with allow and deny lists (see
// WithLists). It is immutable and safe for concurrent use.
type Policy struct {
	rules        []compiledRule // normalised: matchers lower-cased, patterns validated
	def          Action
	unknown      Action
	localDomains []string        // lower-case, in the order given, without duplicates
	local        map[string]bool // the same, as a set; never written after Compile
	allow, deny  []string        // normalised patterns, see ValidatePattern
	defMessage   string          // Config.DefaultMessage
	reviewMsg    string          // Config.ReviewMessage
}

// compiledRule is a Rule with what Compile derived from it. Its Rule holds
// no pointer shared with the caller.
type compiledRule struct {
	Rule
	re    *regexp.Regexp // nil when Regex is ""
	local int8           // 0: any contact; 1: local contacts only; -1: federated only
}

// Compile validates c and returns the compiled policy. Errors name the
// offending rule by its 1-based index.
func Compile(c Config) (*Policy, error) {
	p := &Policy{def: Review, unknown: Drop, rules: make([]compiledRule, 0, len(c.Rules)), local: map[string]bool{}}
	if c.Default != "" {
		a, err := parseAction(string(c.Default))
		if err != nil {
			return nil, fmt.Errorf("policy: default: %w", err)
		}
		p.def = a
	}
	if c.UnknownEntity != "" {
		a, err := parseAction(string(c.UnknownEntity))
		if err != nil {
			return nil, fmt.Errorf("policy: unknown_entity: %w", err)
		}
		p.unknown = a
	}
	if c.DefaultMessage != "" && p.def == Drop {
		return nil, errors.New("policy: default_message: drop sends nothing, so it takes no message")
	}
	for name, m := range map[string]string{"default_message": c.DefaultMessage, "review_message": c.ReviewMessage} {
		if err := checkMessage(m); err != nil {
			return nil, fmt.Errorf("policy: %s: %w", name, err)
		}
	}
	p.defMessage, p.reviewMsg = c.DefaultMessage, c.ReviewMessage
	for _, d := range c.LocalDomains {
		ld := strings.ToLower(d)
		if ld == "" || strings.ContainsAny(ld, "@/*") {
			return nil, fmt.Errorf("policy: local domain %q is not a domain", d)
		}
		if !p.local[ld] {
			p.local[ld] = true
			p.localDomains = append(p.localDomains, ld)
		}
	}
	for i, r := range c.Rules {
		r, err := compileRule(r, len(p.local) > 0)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d: %w", i+1, err)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func compileRule(r Rule, haveLocal bool) (compiledRule, error) {
	if r.Action == "" {
		return compiledRule{}, errors.New("action is missing")
	}
	if _, err := parseAction(string(r.Action)); err != nil {
		return compiledRule{}, err
	}
	if r.SubscribeBack && r.Action != Accept && r.Action != Review {
		return compiledRule{}, fmt.Errorf("subscribe_back needs action %q or %q, not %q", Accept, Review, r.Action)
	}
	if r.Message != "" && r.Action == Drop {
		return compiledRule{}, fmt.Errorf("message cannot be sent with action %q", Drop)
	}
	if err := checkMessage(r.Message); err != nil {
		return compiledRule{}, err
	}
	if r.Contact == "" && r.Domain == "" && r.Entity == "" && r.Regex == "" && r.LocalContact == nil && r.Group == "" {
		return compiledRule{}, errors.New("no matcher: set contact, regex, domain, local_contact, entity or group")
	}
	if err := checkGroup(r.Group); err != nil {
		return compiledRule{}, err
	}
	if strings.ContainsAny(r.Domain, "@/*") {
		return compiledRule{}, fmt.Errorf("domain %q is not a domain (use contact for patterns)", r.Domain)
	}
	contact := strings.ToLower(r.Contact)
	if _, err := path.Match(contact, ""); err != nil {
		return compiledRule{}, fmt.Errorf("bad contact pattern %q: %w", r.Contact, err)
	}
	cr := compiledRule{}
	if r.Regex != "" {
		re, err := regexp.Compile(r.Regex)
		if err != nil {
			return compiledRule{}, fmt.Errorf("bad regex %q: %w", r.Regex, err)
		}
		cr.re = re
	}
	if r.LocalContact != nil {
		if !haveLocal {
			return compiledRule{}, errors.New("local_contact needs local domains")
		}
		lc := *r.LocalContact
		r.LocalContact = &lc // not the caller's variable
		cr.local = -1
		if lc {
			cr.local = 1
		}
	}
	r.Contact = contact
	r.Domain = strings.ToLower(r.Domain)
	r.Entity = strings.ToLower(r.Entity)
	r.Group = strings.ToLower(r.Group)
	cr.Rule = r
	return cr, nil
}

// checkGroup checks a rule's group name ("" is none): at most 256 bytes,
// no control characters, no spaces around it.
func checkGroup(g string) error {
	switch {
	case g == "":
	case len(g) > 256:
		return fmt.Errorf("group %.20q… is longer than 256 bytes", g)
	case !utf8.ValidString(g):
		return fmt.Errorf("group %q is not UTF-8", g)
	case strings.TrimSpace(g) != g:
		return fmt.Errorf("group %q has spaces around it", g)
	case strings.IndexFunc(g, unicode.IsControl) >= 0:
		return fmt.Errorf("group %q holds a control character", g)
	}
	return nil
}

// checkMessage rejects text that cannot be sent to a contact: invalid
// UTF-8, and control characters other than tab, newline and carriage return.
func checkMessage(m string) error {
	if !utf8.ValidString(m) {
		return errors.New("message is not valid UTF-8")
	}
	for _, c := range m {
		switch {
		case c == '\t' || c == '\n' || c == '\r':
		case unicode.IsControl(c) || c == 0xFFFE || c == 0xFFFF:
			return fmt.Errorf("message contains the control character %U", c)
		}
	}
	return nil
}

// Rules returns a copy of the compiled rules (matchers lower-cased), for
// printing. Changing them does not change the policy.
func (p *Policy) Rules() []Rule {
	if len(p.rules) == 0 {
		return nil
	}
	out := make([]Rule, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.Rule
		if r.LocalContact != nil {
			lc := *r.LocalContact
			out[i].LocalContact = &lc
		}
	}
	return out
}

// LocalDomains returns a copy of the local domains (lower-case, without duplicates).
func (p *Policy) LocalDomains() []string { return append([]string(nil), p.localDomains...) }

// Default returns the action taken when no rule matches.
func (p *Policy) Default() Action { return p.def }

// UnknownEntity returns the action taken for requests to unconfigured entities.
func (p *Policy) UnknownEntity() Action { return p.unknown }

// Request is a subscription request as seen by the policy.
type Request struct {
	Contact     string // normalised bare JID of the requester, e.g. "alice@localhost"
	Entity      string // localpart of the entity asked, e.g. "helpdesk" ("" = the component domain itself)
	KnownEntity bool
	// Groups says whether the contact belongs to each group GroupsFor
	// named, by lower-case group name; a group not in it is Unknown.
	Groups map[string]Membership
}

// Membership is what is known of a contact and a group.
type Membership int8

// The values of Membership. Only Member matches a rule's group.
const (
	Unknown   Membership = iota // not looked up, or the directory could not say
	Member                      // the contact belongs to the group
	NotMember                   // the contact does not belong to it
)

func (m Membership) String() string {
	switch m {
	case Member:
		return "member"
	case NotMember:
		return "not a member"
	}
	return "unknown"
}

// GroupCheck is a rule's group matcher consulted by a decision: the rule's
// other matchers matched, and whether it matched came down to Membership.
type GroupCheck struct {
	Rule       int    // 1-based
	Group      string // lower-case
	Membership Membership
}

// Decision is the outcome of Decide.
type Decision struct {
	Action        Action
	SubscribeBack bool
	Rule          int    // 1-based index of the matching rule; 0 when a list, the default or unknown_entity decided
	Reason        string // "rule 2", "default", "unknown_entity", `deny list "*@spam.example"`, `allow list "example.org"`: stable, used in logs and the audit table
	Message       string // the message for the requester: the rule's or the default's, or for review the review message
}

// Decide returns the decision for r: the deny list (Reject) first, for any
// entity; then unknown_entity for unknown entities (neither the allow list
// nor rules are consulted), else the allow list (Accept), else the first
// matching rule, else the default. With review, SubscribeBack says whether
// approving the request should also ask for the contact's presence.
func (p *Policy) Decide(r Request) Decision {
	d, _ := p.Trace(r)
	return d
}

// Trace decides r as Decide does, and returns with the decision the group
// matchers it consulted, in rule order: those of the rules whose other
// matchers matched, up to the rule that decided.
func (p *Policy) Trace(r Request) (Decision, []GroupCheck) {
	var checks []GroupCheck
	d := p.decide(r, &checks)
	if d.Action == Review && d.Message == "" {
		d.Message = p.reviewMsg
	}
	return d, checks
}

// GroupsFor returns the groups (lower-case, each once, in rule order) that
// deciding r may consult: those of the rules whose other matchers match r,
// before the first rule without a group that matches it. None when a list
// or unknown_entity decides r before the rules.
func (p *Policy) GroupsFor(r Request) []string {
	var groups []string
	probe := r
	probe.Groups = nil // every group Unknown: each group rule falls through
	var checks []GroupCheck
	p.decide(probe, &checks)
	for _, c := range checks {
		if !slices.Contains(groups, c.Group) {
			groups = append(groups, c.Group)
		}
	}
	return groups
}

// HasGroups reports whether a rule has a group matcher.
func (p *Policy) HasGroups() bool {
	for i := range p.rules {
		if p.rules[i].Group != "" {
			return true
		}
	}
	return false
}

func (p *Policy) decide(r Request, checks *[]GroupCheck) Decision {
	contact := strings.ToLower(r.Contact)
	entity := strings.ToLower(r.Entity)
	domain := contact[strings.LastIndexByte(contact, '@')+1:]
	if !r.KnownEntity && p.unknown == Drop {
		// Such a JID does not exist (RFC 6121 §8.5.1): not even the deny
		// list answers for it.
		return Decision{Action: Drop, Reason: "unknown_entity"}
	}
	if pat, ok := firstMatch(p.deny, contact, domain); ok {
		return Decision{Action: Reject, Reason: "deny list " + strconv.Quote(pat)}
	}
	if !r.KnownEntity {
		return Decision{Action: p.unknown, Reason: "unknown_entity"}
	}
	if pat, ok := firstMatch(p.allow, contact, domain); ok {
		return Decision{Action: Accept, Reason: "allow list " + strconv.Quote(pat)}
	}
	local := p.local[domain]
	// unsure is the first rule passed over because its group could not be
	// checked while it does not accept: had it matched, the request would
	// not have been accepted, so nothing after it may accept either.
	unsure := 0
	failSafe := func(d Decision) Decision {
		if d.Action != Accept || unsure == 0 {
			return d
		}
		return Decision{Action: Review, Rule: unsure, Reason: ReasonUnsure + strconv.Itoa(unsure)}
	}
	for i := range p.rules {
		rule := &p.rules[i]
		if !rule.matches(contact, domain, entity, local) {
			continue
		}
		if rule.Group != "" {
			m := r.Groups[rule.Group]
			*checks = append(*checks, GroupCheck{Rule: i + 1, Group: rule.Group, Membership: m})
			if m == Unknown && rule.Action != Accept && unsure == 0 {
				unsure = i + 1
			}
			if m != Member {
				continue
			}
		}
		return failSafe(Decision{Action: rule.Action, SubscribeBack: rule.SubscribeBack, Rule: i + 1, Reason: "rule " + strconv.Itoa(i+1), Message: rule.Message})
	}
	return failSafe(Decision{Action: p.def, Reason: "default", Message: p.defMessage})
}

// ReasonUnsure starts the Reason of a request held because a rule that does
// not accept could not be checked (its group's directory could not say),
// and a later rule or the default would have accepted it: "group unknown,
// rule 2".
const ReasonUnsure = "group unknown, rule "

// Denied returns the deny list's decision for contact (Reject, its Reason
// naming the pattern) and true, when the deny list matches contact.
func (p *Policy) Denied(contact string) (Decision, bool) {
	contact = strings.ToLower(contact)
	domain := contact[strings.LastIndexByte(contact, '@')+1:]
	if pat, ok := firstMatch(p.deny, contact, domain); ok {
		return Decision{Action: Reject, Reason: "deny list " + strconv.Quote(pat)}, true
	}
	return Decision{}, false
}

// matches reports whether every set matcher of the compiled rule r but its
// group matches. All arguments are already lower-case; local says whether
// domain is a local domain.
func (r *compiledRule) matches(contact, domain, entity string, local bool) bool {
	if r.Entity != "" && r.Entity != entity {
		return false
	}
	if r.Domain != "" && r.Domain != domain {
		return false
	}
	if r.local != 0 && local != (r.local > 0) {
		return false
	}
	if r.Contact != "" {
		if ok, _ := path.Match(r.Contact, contact); !ok { // validated at Compile
			return false
		}
	}
	if r.re != nil && !r.re.MatchString(contact) {
		return false
	}
	return true
}

// RuleText returns a one-line description of what made the decision d of
// this policy, for explaining it: `rule 2: contact="*@localhost" -> accept,
// subscribe_back`, `default: review`, `unknown_entity: reject`,
// `deny list "*@spam.example"` or `allow list "example.org"`.
func (p *Policy) RuleText(d Decision) string {
	switch {
	case strings.HasPrefix(d.Reason, ReasonUnsure) && d.Rule > 0 && d.Rule <= len(p.rules):
		return "held: the directory could not say whether rule " + strconv.Itoa(d.Rule) + " (" + p.rules[d.Rule-1].String() +
			") applies, and what comes after it would accept"
	case d.Rule > 0 && d.Rule <= len(p.rules):
		return "rule " + strconv.Itoa(d.Rule) + ": " + p.rules[d.Rule-1].String()
	case d.Rule == 0 && (d.Reason == "default" || d.Reason == "unknown_entity"):
		return d.Reason + ": " + string(d.Action)
	}
	return d.Reason
}

// ValidatePattern normalises (trims and lower-cases) one allow or deny list
// pattern and checks it. A pattern is a glob over the contact's bare JID in
// path.Match syntax, like a rule's contact (`*@spam.example`,
// `mallory@example.com`); a pattern without "@" is a domain (or a glob over
// domains) and matches every contact at it (`example.org`).
func ValidatePattern(p string) (string, error) {
	n, err := normalisePattern(p)
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	return n, nil
}

func normalisePattern(p string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(p))
	if n == "" {
		return "", errors.New("empty pattern")
	}
	if _, err := path.Match(n, ""); err != nil {
		return "", fmt.Errorf("bad pattern %q: %w", p, err)
	}
	if strings.Contains(n, "/") {
		return "", fmt.Errorf("bad pattern %q: a bare JID has no resource", p)
	}
	if strings.IndexFunc(n, unicode.IsSpace) >= 0 {
		return "", fmt.Errorf("bad pattern %q: a JID has no spaces", p)
	}
	return n, nil
}

// WithLists returns a policy that decides like p but first consults the deny
// list (a match is rejected) and then the allow list (a match is accepted,
// without subscribe_back), for known entities only. The lists replace any p
// had; p itself is unchanged. Patterns are as for ValidatePattern, and are
// tried in order: the first match names the decision's Reason.
func (p *Policy) WithLists(allow, deny []string) (*Policy, error) {
	q := *p
	var err error
	if q.allow, err = normaliseList("allow", allow); err != nil {
		return nil, err
	}
	if q.deny, err = normaliseList("deny", deny); err != nil {
		return nil, err
	}
	return &q, nil
}

func normaliseList(name string, list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]string, len(list))
	for i, pat := range list {
		n, err := normalisePattern(pat)
		if err != nil {
			return nil, fmt.Errorf("policy: %s list: %w", name, err)
		}
		out[i] = n
	}
	return out, nil
}

// Lists returns copies of the allow and deny lists, normalised.
func (p *Policy) Lists() (allow, deny []string) {
	return append([]string(nil), p.allow...), append([]string(nil), p.deny...)
}

// firstMatch returns the first pattern of list that matches the lower-case
// bare JID contact, whose domain is domain.
func firstMatch(list []string, contact, domain string) (string, bool) {
	for _, pat := range list {
		subject := contact
		if !strings.Contains(pat, "@") {
			subject = domain
		}
		if ok, _ := path.Match(pat, subject); ok { // validated by WithLists
			return pat, true
		}
	}
	return "", false
}
