package config

import (
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"rostergate/directory"
	"rostergate/engine"
)

// Placement is the [placement] table: how often entities' place_in is
// brought in line with the directory, and how long an unanswered
// subscription request waits before it is sent again.
type Placement struct {
	Interval    Duration `toml:"interval"`
	ResendAfter Duration `toml:"resend_after"`
}

// Bounds of [placement]'s durations.
const (
	minPlaceInterval, maxPlaceInterval = time.Second, 24 * time.Hour
	minResendAfter, maxResendAfter     = time.Minute, 30 * 24 * time.Hour
)

// validatePlacement checks [placement] and each entity's place_in (after
// [directory], which a group needs), normalising the entries: JIDs to
// their normalised bare form, groups to "group:" and the lower-case name.
func (c *Config) validatePlacement() error {
	p := &c.Placement
	if d := p.Interval.Duration; d != 0 && (d < minPlaceInterval || d > maxPlaceInterval) {
		return fmt.Errorf("[placement] interval: %s is out of range (%s to %s)", d, minPlaceInterval, maxPlaceInterval)
	}
	if d := p.ResendAfter.Duration; d != 0 && (d < minResendAfter || d > maxResendAfter) {
		return fmt.Errorf("[placement] resend_after: %s is out of range (%s to %s)", d, minResendAfter, "720h")
	}
	for i := range c.Entities {
		e := &c.Entities[i]
		key := fmt.Sprintf("[[entity]] %d: place_in", i+1)
		seen := map[string]string{}
		for j, s := range e.PlaceIn {
			n, err := c.placeEntry(s)
			if err != nil {
				return fmt.Errorf("%s: entry %d: %w", key, j+1, err)
			}
			if prev, ok := seen[n]; ok {
				return fmt.Errorf("%s: entry %d: %q is %q again", key, j+1, s, prev)
			}
			seen[n] = s
			e.PlaceIn[j] = n
		}
	}
	return nil
}

// placeEntry checks and normalises one place_in entry.
func (c *Config) placeEntry(s string) (string, error) {
	if g, ok := strings.CutPrefix(s, engine.PlaceGroupPrefix); ok {
		if err := directory.CheckGroup(g); err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		if !c.Directory.Enabled() {
			return "", fmt.Errorf("%q names a group, and there is no [directory] to list it (ldap_url or groups_file)", s)
		}
		g = strings.ToLower(g)
		if c.Directory.GroupsFile != "" {
			if _, ok := c.Directory.Groups[g]; !ok {
				return "", fmt.Errorf("%q: the groups file %s has no group %q", s, c.Directory.GroupsFile, g)
			}
		}
		return engine.PlaceGroupPrefix + g, nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && !strings.Contains(s[:i], "@") {
		return "", fmt.Errorf("%q: unknown kind %q (want group:NAME or a user's bare JID)", s, s[:i+1])
	}
	j, err := jid.Parse(s)
	switch {
	case err != nil || s == "":
		return "", fmt.Errorf("%q is not a JID (want a user's bare JID, like alice@example.com, or group:NAME)", s)
	case j.Localpart() == "":
		return "", fmt.Errorf("%q is a domain, not a user's JID", s)
	case j.Resourcepart() != "":
		return "", fmt.Errorf("%q is not a bare JID (no /resource)", s)
	case j.Domainpart() == c.Component.Domain:
		return "", fmt.Errorf("%q is at the component's own domain: an entity, not a user", s)
	}
	return j.String(), nil
}
