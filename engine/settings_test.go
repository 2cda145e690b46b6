package engine

import (
	"strings"
	"testing"

	"rostergate/policy"
)

func acceptAll(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{Default: policy.Accept})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// An admin is recognised by bare JID, whatever the case or resource.
func TestIsAdmin(t *testing.T) {
	l, err := newLive(Settings{Policy: acceptAll(t), Admins: []string{"Admin@Example.COM"}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]bool{
		"admin@example.com":          true,
		"ADMIN@example.com/Phone":    true,
		"admin@EXAMPLE.com/desk":     true,
		"admin2@example.com":         false,
		"example.com":                false,
		"admin@example.com.evil.org": false,
		"@@bad":                      false,
		"":                           false,
	} {
		if got := l.isAdmin(from); got != want {
			t.Errorf("isAdmin(%q) = %t, want %t", from, got, want)
		}
	}
}

// A contact written without a domain ("explain carol helpdesk") is a
// user's name: completed with the first local domain, and said so.
func TestExplainNameWithoutDomain(t *testing.T) {
	p, err := policy.Compile(policy.Config{Default: policy.Review, LocalDomains: []string{"example.com", "example.org"},
		Rules: []policy.Rule{{Domain: "example.com", Action: policy.Accept}}})
	if err != nil {
		t.Fatal(err)
	}
	s := Settings{Policy: p, Entities: []Entity{{Local: "helpdesk"}}}
	ex, err := Explain(t.Context(), s, nil, nil, "bots.example.com", "carol", "helpdesk")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Contact != "carol@example.com" || ex.Action != "accept" || !strings.Contains(ex.Note, "read as carol@example.com") {
		t.Errorf("Explain(carol) = %+v", ex)
	}
	// A server's JID stays as written.
	if ex, err := Explain(t.Context(), s, nil, nil, "bots.example.com", "example.net", "helpdesk"); err != nil || ex.Contact != "example.net" || ex.Note != "" {
		t.Errorf("Explain(example.net) = %+v, %v", ex, err)
	}
}
