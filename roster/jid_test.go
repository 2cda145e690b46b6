package roster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseEntity(t *testing.T) {
	const domain = "bots.localhost"
	tests := []struct {
		name, in, want string
		err            string // in the error's UserText; "" = no error
	}{
		{"localpart", "helpdesk", "helpdesk", ""},
		{"localpart, any case, spaces", "  HelpDesk ", "helpdesk", ""},
		{"localpart with a resource", "helpdesk/phone", "helpdesk", ""},
		{"JID at the domain", "helpdesk@bots.localhost", "helpdesk", ""},
		{"JID at the domain, any case, with a resource", "HelpDesk@Bots.Localhost/x", "helpdesk", ""},
		{"the domain", "bots.localhost", "", ""},
		{"the domain, any case, with a resource", "BOTS.localhost/r", "", ""},
		{"nothing", "", "", ""},
		{"another domain", "alice@other.example", "", `"alice@other.example" is not at bots.localhost`},
		{"not a JID", "a@b@c", "", `"a@b@c" is not a JID`},
		{"not a localpart", "bad name", "", `"bad name" is not a valid entity name`},
		{"only a resource", "/phone", "", `"/phone" names no entity`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseEntity(domain, tc.in)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseEntity(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
				}
				return
			}
			var ie *InputError
			if err == nil || !errors.As(err, &ie) {
				t.Fatalf("ParseEntity(%q) = %q, %v; want an *InputError", tc.in, got, err)
			}
			if !strings.HasPrefix(UserText(err), tc.err) || !strings.HasPrefix(err.Error(), "roster: "+tc.err) {
				t.Errorf("ParseEntity(%q): error %q, user text %q; want them to start %q", tc.in, err, UserText(err), tc.err)
			}
		})
	}
}

func TestUserText(t *testing.T) {
	cause := errors.New("jid: bad localpart")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"input error", &InputError{Pkg: "engine", Msg: `contact "x" is not a JID`}, `contact "x" is not a JID`},
		{"input error with its cause", &InputError{Pkg: "roster", Msg: `"a b" is not a valid entity name`, Err: cause}, `"a b" is not a valid entity name: jid: bad localpart`},
		{"wrapped input error", fmt.Errorf("gate: %w", &InputError{Pkg: "roster", Msg: "m"}), "m"},
		{"any other error", fmt.Errorf("gate: %w", cause), "gate: jid: bad localpart"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := UserText(tc.err); got != tc.want {
				t.Errorf("UserText = %q, want %q", got, tc.want)
			}
		})
	}
	if ie := (&InputError{Pkg: "roster", Msg: "m", Err: cause}); !errors.Is(ie, cause) || ie.Error() != "roster: m: jid: bad localpart" {
		t.Errorf("InputError %q does not wrap its cause", ie)
	}
}

func TestEntityJID(t *testing.T) {
	if got := EntityJID("bots.localhost", ""); got != "bots.localhost" {
		t.Errorf("the domain's JID: %q", got)
	}
	if got := EntityJID("bots.localhost", "helpdesk"); got != "helpdesk@bots.localhost" {
		t.Errorf("an entity's JID: %q", got)
	}
}
