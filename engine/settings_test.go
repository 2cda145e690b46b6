package engine

import (
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
