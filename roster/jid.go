package roster

import (
	"errors"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"
)

// EntityJID returns the bare JID of the entity with localpart local at the
// component domain: local@domain, or the domain itself for "".
func EntityJID(domain, local string) string {
	if local == "" {
		return domain
	}
	return local + "@" + domain
}

// ParseEntity turns what a person writes for an entity (its localpart, its
// JID at the component domain, or the domain itself, each with or without a
// resource, which is ignored) into the entity's normalised localpart (""
// for the domain). Its errors are *InputError.
func ParseEntity(domain, s string) (string, error) {
	in := strings.TrimSpace(s)
	s = in
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i] // an entity is a bare JID: its resource says nothing of it
	}
	if s == "" {
		if in != "" {
			return "", &InputError{Pkg: "roster", Msg: fmt.Sprintf("%q names no entity", in)}
		}
		return "", nil
	}
	if strings.Contains(s, "@") || strings.EqualFold(s, domain) {
		j, err := jid.Parse(s)
		if err != nil {
			return "", &InputError{Pkg: "roster", Msg: fmt.Sprintf("%q is not a JID", in), Err: err}
		}
		d, err := jid.Parse(domain)
		if err != nil {
			return "", fmt.Errorf("roster: component domain %q: %w", domain, err)
		}
		if j.Domainpart() != d.Domainpart() {
			return "", &InputError{Pkg: "roster", Msg: fmt.Sprintf("%q is not at %s", in, domain)}
		}
		return j.Localpart(), nil
	}
	j, err := jid.New(s, domain, "")
	if err != nil {
		return "", &InputError{Pkg: "roster", Msg: fmt.Sprintf("%q is not a valid entity name", in), Err: err}
	}
	return j.Localpart(), nil
}

// InputError is a value a person wrote (a JID, an entity, a pattern) that
// rostergate cannot use. Error is prefixed by the package that refused it,
// as every error is; UserText gives the person just what is wrong.
type InputError struct {
	Pkg string // the package that refused it
	Msg string // what is wrong, for the person who wrote it
	Err error  // the cause, if any
}

func (e *InputError) Error() string { return e.Pkg + ": " + e.text() }

func (e *InputError) Unwrap() error { return e.Err }

func (e *InputError) text() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// UserText is what a person should read of err: for an *InputError in its
// chain, what is wrong with what they wrote, without package prefixes;
// otherwise the error as it is.
func UserText(err error) string {
	var ie *InputError
	if errors.As(err, &ie) {
		return ie.text()
	}
	return err.Error()
}
