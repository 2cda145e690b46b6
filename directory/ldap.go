package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"
	"mellium.im/xmpp/jid"
)

// ldapSource answers from an LDAP directory over one connection, made when
// first needed and made again after it breaks.
type ldapSource struct {
	cfg Config // with defaults

	mu     sync.Mutex // guards conn and closed; held while connecting
	conn   *ldap.Conn
	closed bool
}

func newLDAP(c Config) *ldapSource { return &ldapSource{cfg: c} }

// CheckURL checks an LDAP URL: ldap:// or ldaps://, a host, nothing after
// it (no DN, no query).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("directory: %q is not a URL", s)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		return fmt.Errorf("directory: %q is not an ldap:// or ldaps:// URL", s)
	case u.Host == "":
		return fmt.Errorf("directory: %q has no host", s)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("directory: %q has more than a host and a port (the base and filters are keys of their own)", s)
	}
	return nil
}

// placeholder is a {word} in a filter.
var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// checkFilter checks that f is an LDAP filter (RFC 4515) once its
// placeholders are filled in, and that it has those in need and no others
// than those in allowed.
func checkFilter(f string, need []string, allowed ...string) error {
	for _, p := range placeholder.FindAllString(f, -1) {
		if !slices.Contains(allowed, p) {
			return fmt.Errorf("directory: filter %q: unknown placeholder %s (want %s)", f, p, strings.Join(allowed, ", "))
		}
	}
	for _, p := range need {
		if !strings.Contains(f, p) {
			return fmt.Errorf("directory: filter %q lacks %s", f, p)
		}
	}
	if _, err := ldap.CompileFilter(expand(f, "staff", "cn=someone,dc=example,dc=com", "someone@example.com")); err != nil {
		return fmt.Errorf("directory: filter %q: %w", f, err)
	}
	return nil
}

// CheckUserFilter checks a user_filter: an LDAP filter with {jid}.
func CheckUserFilter(f string) error { return checkFilter(f, []string{"{jid}"}, "{jid}") }

// CheckGroupFilter checks a group_filter: an LDAP filter with {group}, and
// {dn} or {jid} (or both).
func CheckGroupFilter(f string) error {
	if err := checkFilter(f, []string{"{group}"}, "{group}", "{dn}", "{jid}"); err != nil {
		return err
	}
	if !strings.Contains(f, "{dn}") && !strings.Contains(f, "{jid}") {
		return fmt.Errorf("directory: filter %q has neither {dn} nor {jid}: it would not depend on the contact", f)
	}
	return nil
}

// expand fills in a filter's placeholders, each value escaped (RFC 4515
// §3), in one pass: a value holding "{dn}" stays as it is.
func expand(f, group, dn, j string) string {
	return strings.NewReplacer("{group}", ldap.EscapeFilter(group), "{dn}", ldap.EscapeFilter(dn), "{jid}", ldap.EscapeFilter(j)).Replace(f)
}

// connect returns the connection, made (and bound) if there is none or it
// broke; fresh says it was made now.
func (s *ldapSource) connect() (c *ldap.Conn, fresh bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, errors.New("directory: ldap: closed")
	}
	if s.conn != nil && !s.conn.IsClosing() {
		return s.conn, false, nil
	}
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	c, err = ldap.DialURL(s.cfg.URL, ldap.DialWithDialer(&net.Dialer{Timeout: s.cfg.Timeout}))
	if err != nil {
		return nil, false, fmt.Errorf("directory: ldap: connecting to %s: %w", s.cfg.URL, err)
	}
	c.SetTimeout(s.cfg.Timeout)
	if s.cfg.BindDN != "" {
		if err := c.Bind(s.cfg.BindDN, s.cfg.BindPassword); err != nil {
			_ = c.Close()
			return nil, false, fmt.Errorf("directory: ldap: binding to %s as %q: %w", s.cfg.URL, s.cfg.BindDN, err)
		}
	}
	s.conn = c
	return c, true, nil
}

// failed drops c if err says the connection is no good (the network, a
// timeout): the next lookup connects again. An answer of the server's (no
// such base, say) leaves it. It reports whether c was dropped.
func (s *ldapSource) failed(c *ldap.Conn, err error) bool {
	var le *ldap.Error
	if errors.As(err, &le) && le.ResultCode < ldap.ErrorNetwork {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		_ = c.Close()
		s.conn = nil
	}
	return true
}

// search runs one search on the connection. A connection made earlier that
// turns out broken (the server restarted, or the connection was given up
// with another search that timed out) is made again, once, while ctx
// lasts.
func (s *ldapSource) search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, fresh, err := s.connect()
		if err != nil {
			return nil, err
		}
		res, err := c.Search(req)
		if err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			return res, err
		}
		if !s.failed(c, err) || fresh || attempt == 2 || ctx.Err() != nil {
			return nil, fmt.Errorf("directory: ldap: searching %q under %q: %w", req.Filter, req.BaseDN, err)
		}
	}
}

// timeLimit is the time limit a search asks of the server, in seconds.
func (s *ldapSource) timeLimit() int { return max(1, int(s.cfg.Timeout.Seconds()+0.5)) }

func (s *ldapSource) Member(ctx context.Context, j, group string) (bool, error) {
	dn := ""
	if strings.Contains(s.cfg.GroupFilter, "{dn}") {
		// RFC 4511 §4.5.1: a size limit of 2 tells one entry from several.
		req := ldap.NewSearchRequest(s.cfg.Base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, s.timeLimit(), false,
			expand(s.cfg.UserFilter, group, "", j), []string{"1.1"}, nil)
		res, err := s.search(ctx, req)
		switch {
		case ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || err == nil && len(res.Entries) > 1:
			// Which of them is the contact? Neither answer would be safe.
			return false, fmt.Errorf("directory: ldap: several entries match %q under %q: %w", req.Filter, req.BaseDN, errAmbiguous)
		case err != nil:
			return false, err
		case len(res.Entries) == 0:
			return false, nil // no entry: in no group
		}
		dn = res.Entries[0].DN
	}
	req := ldap.NewSearchRequest(s.cfg.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 1, s.timeLimit(), false,
		expand(s.cfg.GroupFilter, group, dn, j), []string{"1.1"}, nil)
	res, err := s.search(ctx, req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return true, nil // more than one entry: a member all the same
	}
	if err != nil {
		return false, err
	}
	return len(res.Entries) > 0, nil
}

// attrOf returns the attribute a filter compares with placeholder p, as in
// (mail={jid}), or "".
func attrOf(f, p string) string {
	m := regexp.MustCompile(`\(([A-Za-z][A-Za-z0-9-]*)=` + regexp.QuoteMeta(p) + `\)`).FindStringSubmatch(f)
	if m == nil {
		return ""
	}
	return m[1]
}

// Members lists a group's members: the entries the group filter finds with
// {dn} and {jid} matching anything, and then the JIDs (the attribute the
// user filter compares with {jid}) of the entries a group lists (the
// attribute the group filter compares with {dn}), or, with a filter on the
// contacts' entries themselves (memberOf), of the entries found.
func (s *ldapSource) Members(ctx context.Context, group string) ([]string, error) {
	jidAttr := attrOf(s.cfg.UserFilter, "{jid}")
	if jidAttr == "" {
		return nil, fmt.Errorf("directory: ldap: user filter %q compares no attribute with {jid}: which holds the JID?", s.cfg.UserFilter)
	}
	memberAttr := attrOf(s.cfg.GroupFilter, "{dn}")
	f := strings.NewReplacer("{group}", ldap.EscapeFilter(group), "{dn}", "*", "{jid}", "*").Replace(s.cfg.GroupFilter)
	attrs := []string{jidAttr}
	if memberAttr != "" {
		attrs = []string{memberAttr}
	}
	res, err := s.search(ctx, ldap.NewSearchRequest(s.cfg.GroupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, s.timeLimit(), false, f, attrs, nil))
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(v string) {
		if j, err := jid.Parse(v); err == nil && j.Localpart() != "" {
			out = append(out, j.Bare().String())
		}
	}
	for _, e := range res.Entries {
		if memberAttr == "" {
			for _, v := range e.GetAttributeValues(jidAttr) {
				add(v)
			}
			continue
		}
		for _, dn := range e.GetAttributeValues(memberAttr) {
			r, err := s.search(ctx, ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, s.timeLimit(), false,
				"(objectClass=*)", []string{jidAttr}, nil))
			if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				continue // a member that is gone
			}
			if err != nil {
				return nil, err
			}
			for _, m := range r.Entries {
				for _, v := range m.GetAttributeValues(jidAttr) {
					add(v)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (s *ldapSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
