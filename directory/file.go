package directory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"mellium.im/xmpp/jid"
)

// fileSource answers from the groups of a file, held in memory.
type fileSource struct {
	groups map[string][]string // lower-case name → sorted normalised bare JIDs
}

func newFile(groups map[string][]string) *fileSource {
	return &fileSource{groups: groups}
}

func (f *fileSource) Member(_ context.Context, j, group string) (bool, error) {
	_, found := slices.BinarySearch(f.groups[group], j)
	return found, nil
}

func (f *fileSource) Members(_ context.Context, group string) ([]string, error) {
	return slices.Clone(f.groups[group]), nil
}

func (f *fileSource) Close() error { return nil }

// maxGroupName bounds a group's name.
const maxGroupName = 256

// CheckGroup checks a group's name, as a rule or a groups file gives it:
// not empty, at most 256 bytes of UTF-8, no control characters, no spaces
// around it.
func CheckGroup(name string) error {
	switch {
	case name == "":
		return errors.New("directory: a group's name is empty")
	case len(name) > maxGroupName:
		return fmt.Errorf("directory: group name %.20q… is longer than %d bytes", name, maxGroupName)
	case !utf8.ValidString(name):
		return fmt.Errorf("directory: group name %q is not UTF-8", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("directory: group name %q has spaces around it", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("directory: group name %q holds a control character", name)
	}
	return nil
}

// LoadGroups reads a groups file; see ParseGroups.
func LoadGroups(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	return ParseGroups(b, path)
}

// ParseGroups reads the groups of a groups file: TOML, each key a group's
// name and its value the list of its members' bare JIDs:
//
//	staff = ["alice@example.com", "bob@example.com"]
//	sales = ["carol@example.com"]
//
// Names are compared without case (they are lower-cased; two names that
// differ only in case are an error), JIDs are normalised (RFC 7622) and
// must be bare JIDs of users, each once in a group. name names the file
// in errors.
func ParseGroups(b []byte, name string) (map[string][]string, error) {
	var raw map[string]any
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("directory: %s: line %d: %s", name, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("directory: %s: %w", name, err)
	}
	groups := make(map[string][]string, len(raw))
	as := map[string]string{} // lower-case name → as written
	// In the file's order, so that the first mistake is the one named.
	for _, k := range md.Keys() {
		if len(k) != 1 {
			continue // within a table: the table itself is refused below
		}
		g := k[0]
		if err := CheckGroup(g); err != nil {
			return nil, fmt.Errorf("directory: %s: %w", name, err)
		}
		lg := strings.ToLower(g)
		if prev, ok := as[lg]; ok {
			return nil, fmt.Errorf("directory: %s: group %q is group %q again (names are compared without case)", name, g, prev)
		}
		as[lg] = g
		list, ok := raw[g].([]any)
		if !ok {
			return nil, fmt.Errorf("directory: %s: group %q: want a list of JIDs, like %s = [\"alice@example.com\"]", name, g, g)
		}
		members := make([]string, 0, len(list))
		seen := map[string]string{}
		for _, v := range list {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Errorf("directory: %s: group %q: %v is not a string", name, g, v)
			}
			j, err := jid.Parse(s)
			switch {
			case err != nil:
				return nil, fmt.Errorf("directory: %s: group %q: %q is not a JID", name, g, s)
			case j.Resourcepart() != "":
				return nil, fmt.Errorf("directory: %s: group %q: %q is not a bare JID", name, g, s)
			case j.Localpart() == "":
				return nil, fmt.Errorf("directory: %s: group %q: %q is a domain, not a user's JID", name, g, s)
			}
			n := j.String()
			if prev, ok := seen[n]; ok {
				return nil, fmt.Errorf("directory: %s: group %q: %q is %q again", name, g, s, prev)
			}
			seen[n] = s
			members = append(members, n)
		}
		slices.Sort(members)
		groups[lg] = members
	}
	return groups, nil
}
