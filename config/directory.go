package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"rostergate/directory"
)

// Directory is the [directory] table: where group rules look groups up,
// an LDAP directory or a groups file (not both). A reload re-reads the
// password file and the groups file.
type Directory struct {
	LDAPURL string `toml:"ldap_url"` // ldap://host[:port] or ldaps://host[:port]
	// BindDN is whom rostergate binds as, with the password in
	// BindPasswordFile (mode 0600, read when the config is:
	// BindPassword); neither: it binds anonymously.
	BindDN           string `toml:"bind_dn"`
	BindPasswordFile string `toml:"bind_password_file"`
	BindPassword     string `toml:"-"`
	Base             string `toml:"base"`       // where contacts' entries are searched
	GroupBase        string `toml:"group_base"` // where groups are searched; default: base
	// UserFilter and GroupFilter: see directory.Config; "" is the
	// default (directory.DefaultUserFilter, DefaultGroupFilter).
	UserFilter  string `toml:"user_filter"`
	GroupFilter string `toml:"group_filter"`
	// GroupsFile is a TOML file of groups (directory.ParseGroups),
	// relative to the config file, read when the config is: Groups.
	GroupsFile string              `toml:"groups_file"`
	Groups     map[string][]string `toml:"-"`
	// CacheTTL, Timeout, RetryAfter: see directory.Config; 0 is the
	// default.
	CacheTTL   Duration `toml:"cache_ttl"`
	Timeout    Duration `toml:"timeout"`
	RetryAfter Duration `toml:"retry_after"`
}

// Enabled reports whether [directory] names a source.
func (d Directory) Enabled() bool { return d.LDAPURL != "" || d.GroupsFile != "" }

// Source describes where groups come from, for `check`: "ldap URL (base
// …)", "groups_file PATH (N groups)" or "".
func (d Directory) Source() string {
	switch {
	case d.LDAPURL != "":
		bind := "anonymously"
		if d.BindDN != "" {
			bind = "as " + d.BindDN
		}
		return fmt.Sprintf("ldap %s (base %q, bound %s)", d.LDAPURL, d.Base, bind)
	case d.GroupsFile != "":
		n := fmt.Sprintf("%d groups", len(d.Groups))
		if len(d.Groups) == 1 {
			n = "1 group"
		}
		return fmt.Sprintf("groups_file %s (%s)", d.GroupsFile, n)
	}
	return ""
}

// Bounds of [directory]'s durations. The timeout bounds how long a batch
// of decisions waits for the directory.
const (
	minDirTimeout, maxDirTimeout = 10 * time.Millisecond, 10 * time.Second
	minCacheTTL, maxCacheTTL     = time.Second, 24 * time.Hour
	minRetryAfter, maxRetryAfter = 10 * time.Millisecond, time.Hour
)

// validateDirectory checks the [directory] table and reads its files.
func (c *Config) validateDirectory() error {
	d := &c.Directory
	ldapOnly := []struct{ key, v string }{
		{"bind_dn", d.BindDN}, {"bind_password_file", d.BindPasswordFile}, {"base", d.Base}, {"group_base", d.GroupBase},
		{"user_filter", d.UserFilter}, {"group_filter", d.GroupFilter},
	}
	for _, b := range []struct {
		key      string
		v        time.Duration
		min, max time.Duration
	}{
		{"timeout", d.Timeout.Duration, minDirTimeout, maxDirTimeout},
		{"cache_ttl", d.CacheTTL.Duration, minCacheTTL, maxCacheTTL},
		{"retry_after", d.RetryAfter.Duration, minRetryAfter, maxRetryAfter},
	} {
		if b.v != 0 && (b.v < b.min || b.v > b.max) {
			return fmt.Errorf("[directory] %s: %s is out of range (%s to %s)", b.key, b.v, b.min, b.max)
		}
	}
	switch {
	case d.LDAPURL != "" && d.GroupsFile != "":
		return errors.New("[directory] ldap_url, groups_file: set one, not both")
	case d.GroupsFile != "":
		for _, k := range ldapOnly {
			if k.v != "" {
				return fmt.Errorf("[directory] %s: only with ldap_url, not with groups_file", k.key)
			}
		}
		d.GroupsFile = c.resolve(d.GroupsFile)
		groups, err := directory.LoadGroups(d.GroupsFile)
		if err != nil {
			return fmt.Errorf("[directory] groups_file: %w", err)
		}
		d.Groups = groups
		return nil
	case d.LDAPURL == "":
		for _, k := range ldapOnly {
			if k.v != "" {
				return fmt.Errorf("[directory] %s: set without ldap_url", k.key)
			}
		}
		if d.Timeout.Duration != 0 || d.CacheTTL.Duration != 0 || d.RetryAfter.Duration != 0 {
			return errors.New("[directory]: set ldap_url or groups_file")
		}
		return nil
	}
	if err := directory.CheckURL(d.LDAPURL); err != nil {
		return fmt.Errorf("[directory] ldap_url: %w", err)
	}
	if d.Base == "" {
		return errors.New(`[directory] base: required with ldap_url (where contacts' entries are, e.g. "ou=people,dc=example,dc=com")`)
	}
	if (d.BindDN == "") != (d.BindPasswordFile == "") {
		return errors.New("[directory] bind_dn, bind_password_file: set both (or neither, to bind anonymously)")
	}
	if d.BindPasswordFile != "" {
		p := c.resolve(d.BindPasswordFile)
		pw, err := readSecretFile(p)
		if err != nil {
			return fmt.Errorf("[directory] bind_password_file: %w", err)
		}
		d.BindPasswordFile, d.BindPassword = p, pw
	}
	if d.UserFilter != "" {
		if err := directory.CheckUserFilter(d.UserFilter); err != nil {
			return fmt.Errorf("[directory] user_filter: %w", err)
		}
	}
	if d.GroupFilter != "" {
		if err := directory.CheckGroupFilter(d.GroupFilter); err != nil {
			return fmt.Errorf("[directory] group_filter: %w", err)
		}
	}
	return nil
}

// checkRuleGroup checks a rule's group against [directory]: there must be
// one, and a groups file must have the group.
func (c *Config) checkRuleGroup(n int, group string) error {
	if group == "" {
		return nil
	}
	if err := directory.CheckGroup(group); err != nil {
		return fmt.Errorf("[[policy.rule]] %d: group: %w", n, err)
	}
	d := c.Directory
	if !d.Enabled() {
		return fmt.Errorf("[[policy.rule]] %d: group: %q needs a [directory] (ldap_url or groups_file) to look it up in", n, group)
	}
	if d.GroupsFile != "" {
		if _, ok := d.Groups[strings.ToLower(group)]; !ok {
			names := make([]string, 0, len(d.Groups))
			for g := range d.Groups {
				names = append(names, g)
			}
			slices.Sort(names)
			return fmt.Errorf("[[policy.rule]] %d: group: no group %q in %s (it has: %s)", n, group, d.GroupsFile, strings.Join(names, ", "))
		}
	}
	return nil
}

// directoryConfig is [directory] as package directory takes it.
func (c *Config) directoryConfig() directory.Config {
	d := c.Directory
	return directory.Config{
		URL: d.LDAPURL, BindDN: d.BindDN, BindPassword: d.BindPassword, Base: d.Base, GroupBase: d.GroupBase,
		UserFilter: d.UserFilter, GroupFilter: d.GroupFilter,
		File: d.GroupsFile, Groups: d.Groups,
		CacheTTL: d.CacheTTL.Duration, Timeout: d.Timeout.Duration, RetryAfter: d.RetryAfter.Duration,
	}
}
