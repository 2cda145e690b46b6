// Package policy decides XMPP subscription requests (RFC 6121 §3.1) for rostergate: ordered rules, first match wins, then a default.
//
// The package is a pure rule engine: it does no I/O, reads no clock and knows
// nothing about XML. A compiled *Policy is immutable and safe for concurrent use.
package policy

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
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
type Rule struct {
	Contact       string // glob over the contact's bare JID, e.g. "*@example.com" ("" = any); path.Match syntax, case-insensitive
	Domain        string // exact contact domain, case-insensitive ("" = any)
	Entity        string // entity localpart, e.g. "helpdesk" ("" = all entities); case-insensitive
	Action        Action
	SubscribeBack bool // only with Accept: the entity asks for the contact's presence in return
}

// String returns a compact one-line form, e.g.
// `contact="*@localhost" entity="helpdesk" -> accept, subscribe_back`.
func (r Rule) String() string {
	var b strings.Builder
	for _, m := range [...]struct{ k, v string }{{"contact", r.Contact}, {"domain", r.Domain}, {"entity", r.Entity}} {
		if m.v != "" {
			fmt.Fprintf(&b, "%s=%q ", m.k, m.v)
		}
	}
	if b.Len() == 0 {
		b.WriteString("any ")
	}
	fmt.Fprintf(&b, "-> %s", r.Action)
	if r.SubscribeBack {
		b.WriteString(", subscribe_back")
	}
	return b.String()
}

// Config is the uncompiled policy, as read from configuration.
type Config struct {
	Default       Action // applies when no rule matches; "" means Review
	UnknownEntity Action // applies to requests for JIDs at the domain that are not configured entities; "" means Reject. Rules are not consulted for unknown entities.
	Rules         []Rule
}

// Policy is a compiled Config. It is immutable and safe for concurrent use.
type Policy struct {
	rules   []Rule // normalised: matchers lower-cased, patterns validated
	def     Action
	unknown Action
}

// Compile validates c and returns the compiled policy. Errors name the
// offending rule by its 1-based index.
func Compile(c Config) (*Policy, error) {
	p := &Policy{def: Review, unknown: Reject, rules: make([]Rule, 0, len(c.Rules))}
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
	for i, r := range c.Rules {
		r, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d: %w", i+1, err)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func compileRule(r Rule) (Rule, error) {
	if r.Action == "" {
		return r, errors.New("action is missing")
	}
	if _, err := parseAction(string(r.Action)); err != nil {
		return r, err
	}
	if r.SubscribeBack && r.Action != Accept {
		return r, fmt.Errorf("subscribe_back needs action %q, not %q", Accept, r.Action)
	}
	if r.Contact == "" && r.Domain == "" && r.Entity == "" {
		return r, errors.New("no matcher: set contact, domain or entity")
	}
	if strings.ContainsAny(r.Domain, "@/*") {
		return r, fmt.Errorf("domain %q is not a domain (use contact for patterns)", r.Domain)
	}
	contact := strings.ToLower(r.Contact)
	if _, err := path.Match(contact, ""); err != nil {
		return r, fmt.Errorf("bad contact pattern %q: %w", r.Contact, err)
	}
	r.Contact = contact
	r.Domain = strings.ToLower(r.Domain)
	r.Entity = strings.ToLower(r.Entity)
	return r, nil
}

// Rules returns a copy of the compiled rules (matchers lower-cased), for printing.
func (p *Policy) Rules() []Rule { return append([]Rule(nil), p.rules...) }

// Default returns the action taken when no rule matches.
func (p *Policy) Default() Action { return p.def }

// UnknownEntity returns the action taken for requests to unconfigured entities.
func (p *Policy) UnknownEntity() Action { return p.unknown }

// Request is a subscription request as seen by the policy.
type Request struct {
	Contact     string // normalised bare JID of the requester, e.g. "alice@localhost"
	Entity      string // localpart of the entity asked, e.g. "helpdesk" ("" = the component domain itself)
	KnownEntity bool
}

// Decision is the outcome of Decide.
type Decision struct {
	Action        Action
	SubscribeBack bool
	Rule          int    // 1-based index of the matching rule; 0 when the default or unknown_entity decided
	Reason        string // "rule 2", "default", "unknown_entity": stable, used in logs and the audit table
}

// Decide returns the decision for r: unknown_entity for unknown entities
// (rules are not consulted), else the first matching rule, else the default.
func (p *Policy) Decide(r Request) Decision {
	if !r.KnownEntity {
		return Decision{Action: p.unknown, Reason: "unknown_entity"}
	}
	contact := strings.ToLower(r.Contact)
	entity := strings.ToLower(r.Entity)
	domain := contact[strings.LastIndexByte(contact, '@')+1:]
	for i, rule := range p.rules {
		if rule.matches(contact, domain, entity) {
			return Decision{Action: rule.Action, SubscribeBack: rule.SubscribeBack, Rule: i + 1, Reason: "rule " + strconv.Itoa(i+1)}
		}
	}
	return Decision{Action: p.def, Reason: "default"}
}

// matches reports whether every set matcher of the compiled rule r matches.
// All arguments are already lower-case.
func (r *Rule) matches(contact, domain, entity string) bool {
	if r.Entity != "" && r.Entity != entity {
		return false
	}
	if r.Domain != "" && r.Domain != domain {
		return false
	}
	if r.Contact != "" {
		ok, _ := path.Match(r.Contact, contact) // validated at Compile
		return ok
	}
	return true
}
