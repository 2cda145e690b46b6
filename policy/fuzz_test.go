package policy_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"rostergate/policy"
)

// FuzzLists: WithLists with any patterns and Decide never panic; a pattern
// ValidatePattern accepts is normalised (validating it again gives it back)
// and WithLists takes exactly the lists whose every pattern validates,
// normalised as ValidatePattern does; the deny list comes first, a literal
// pattern matches the very contact it was made from, and the receiver is
// never changed. Seeds are in testdata/fuzz/FuzzLists/.
func FuzzLists(f *testing.F) {
	base, err := policy.Compile(policy.Config{
		Default:       policy.Review,
		UnknownEntity: policy.Drop,
		LocalDomains:  []string{"localhost"},
		Rules: []policy.Rule{
			{Contact: "*@localhost", Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true},
			{Domain: "spam.example", Action: policy.Drop},
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, allow1, allow2, deny1, deny2, contact, entity string, known bool) {
		norm := map[string]string{} // pattern → normalised, for the valid ones
		for _, p := range []string{allow1, allow2, deny1, deny2, contact} {
			n, err := policy.ValidatePattern(p)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "policy: ") {
					t.Fatalf("ValidatePattern(%q): error %q lacks the policy: prefix", p, err)
				}
				continue
			}
			n2, err := policy.ValidatePattern(n)
			if err != nil || n2 != n {
				t.Fatalf("ValidatePattern(%q) = %q, but ValidatePattern(%q) = %q, %v", p, n, n, n2, err)
			}
			if n == "" || strings.Contains(n, "/") || strings.IndexFunc(n, unicode.IsSpace) >= 0 {
				t.Fatalf("ValidatePattern(%q) = %q: empty, a resource or a space", p, n)
			}
			norm[p] = n
		}

		req := policy.Request{Contact: contact, Entity: entity, KnownEntity: known}
		before := base.Decide(req)
		allow, deny := []string{allow1, allow2}, []string{deny1, deny2}
		q, err := base.WithLists(allow, deny)
		_, ok1 := norm[allow1]
		_, ok2 := norm[allow2]
		_, ok3 := norm[deny1]
		_, ok4 := norm[deny2]
		valid := ok1 && ok2 && ok3 && ok4
		if err != nil {
			if valid {
				t.Fatalf("WithLists(%q, %q) refuses valid patterns: %v", allow, deny, err)
			}
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Fatalf("WithLists: error %q lacks the policy: prefix", err)
			}
		} else {
			if !valid {
				t.Fatalf("WithLists(%q, %q) accepts an invalid pattern", allow, deny)
			}
			ga, gd := q.Lists()
			wa := []string{norm[allow1], norm[allow2]}
			wd := []string{norm[deny1], norm[deny2]}
			if !reflect.DeepEqual(ga, wa) || !reflect.DeepEqual(gd, wd) {
				t.Fatalf("Lists() = %q, %q; want %q, %q", ga, gd, wa, wd)
			}
			d := q.Decide(req)
			if _, err := policy.ParseAction(string(d.Action)); err != nil {
				t.Fatalf("Decide returned an invalid action: %+v", d)
			}
			if q.RuleText(d) == "" {
				t.Fatalf("RuleText(%+v) is empty", d)
			}
			switch {
			case strings.HasPrefix(d.Reason, "deny list "):
				if d.Action != policy.Reject || d.Rule != 0 || d.SubscribeBack || d.Message != "" {
					t.Fatalf("deny decision %+v", d)
				}
				if d.Reason != "deny list "+strconv.Quote(wd[0]) && d.Reason != "deny list "+strconv.Quote(wd[1]) {
					t.Fatalf("deny decision %+v names no deny pattern of %q", d, wd)
				}
			case strings.HasPrefix(d.Reason, "allow list "):
				if !known || d.Action != policy.Accept || d.Rule != 0 || d.SubscribeBack || d.Message != "" {
					t.Fatalf("allow decision %+v (known=%t)", d, known)
				}
				if d.Reason != "allow list "+strconv.Quote(wa[0]) && d.Reason != "allow list "+strconv.Quote(wa[1]) {
					t.Fatalf("allow decision %+v names no allow pattern of %q", d, wa)
				}
			default:
				if d != before {
					t.Fatalf("lists that do not match changed the decision: %+v, want %+v", d, before)
				}
			}
		}
		if a, d := base.Lists(); a != nil || d != nil || base.Decide(req) != before {
			t.Fatal("WithLists changed the receiver")
		}

		// A literal pattern made from the contact matches it: denied and
		// allowed for a known entity; an unknown one does not exist
		// (unknown_entity = "drop"), whatever the lists say.
		n, ok := norm[contact]
		if !ok || strings.TrimSpace(contact) != contact || strings.ContainsAny(n, `*?[\`) {
			return
		}
		qd, err := base.WithLists(nil, []string{contact})
		if err != nil {
			t.Fatal(err)
		}
		if d := qd.Decide(req); known && (d.Action != policy.Reject || d.Reason != "deny list "+strconv.Quote(n)) ||
			!known && (d.Action != policy.Drop || d.Reason != "unknown_entity") {
			t.Fatalf("contact %q on the deny list as %q (known=%t): %+v", contact, n, known, d)
		}
		qa, err := base.WithLists([]string{contact}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := qa.Decide(req)
		if known && (d.Action != policy.Accept || d.Reason != "allow list "+strconv.Quote(n)) {
			t.Fatalf("contact %q on the allow list as %q: %+v", contact, n, d)
		}
		if !known && d != before {
			t.Fatalf("the allow list changed an unknown entity's decision: %+v, want %+v", d, before)
		}
	})
}
