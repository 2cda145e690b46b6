package roster

import (
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
// JID at the component domain with or without a resource, or the domain
// itself) into the entity's normalised localpart ("" for the domain).
func ParseEntity(domain, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if strings.ContainsAny(s, "@/") || strings.EqualFold(s, domain) {
		j, err := jid.Parse(s)
		if err != nil {
			return "", fmt.Errorf("roster: %q is not a JID: %w", s, err)
		}
		d, err := jid.Parse(domain)
		if err != nil {
			return "", fmt.Errorf("roster: component domain %q: %w", domain, err)
		}
		if j.Domainpart() != d.Domainpart() {
			return "", fmt.Errorf("roster: %q is not at %s", s, domain)
		}
		return j.Localpart(), nil
	}
	j, err := jid.New(s, domain, "")
	if err != nil {
		return "", fmt.Errorf("roster: %q is not a valid entity name: %w", s, err)
	}
	return j.Localpart(), nil
}
