package config

import (
	"bytes"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzLoad: Parse never panics, every error names the file, and a file it
// accepts has a compiled policy and is equivalent to the file its result
// encodes to: that file is accepted too, to the same configuration. Seeds
// (testdata/fuzz/FuzzLoad/) are testdata/good.toml, testdata/bad/*.toml and
// ../component.toml.
func FuzzLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		getenv := fuzzGetenv(data)
		c, err := Parse(data, "fuzz.toml", getenv)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: fuzz.toml: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if c.Compiled() == nil {
			t.Fatal("Parse succeeded without a compiled policy")
		}
		b1 := encodeConfig(t, c)
		c2, err := Parse(b1, "fuzz.toml", getenv)
		if err != nil {
			t.Fatalf("the encoded configuration is refused: %v\n%s", err, b1)
		}
		if b2 := encodeConfig(t, c2); !bytes.Equal(b1, b2) {
			t.Fatalf("parsing the encoded configuration changed it:\n%s\nbecame\n%s", b1, b2)
		}
		p1, p2 := c.Compiled(), c2.Compiled()
		if !reflect.DeepEqual(p1.Rules(), p2.Rules()) || p1.Default() != p2.Default() ||
			p1.UnknownEntity() != p2.UnknownEntity() || !slices.Equal(p1.LocalDomains(), p2.LocalDomains()) {
			t.Fatalf("compiled policies differ:\n%v %s %s %q\n%v %s %s %q", p1.Rules(), p1.Default(), p1.UnknownEntity(), p1.LocalDomains(),
				p2.Rules(), p2.Default(), p2.UnknownEntity(), p2.LocalDomains())
		}
		if c.Policy.ReviewTTL != c2.Policy.ReviewTTL || c.Limits.ContactRate != c2.Limits.ContactRate ||
			c.Limits.DomainRate != c2.Limits.DomainRate || c.Component.Secret != c2.Component.Secret {
			t.Fatalf("derived values differ: %+v %+v, %+v %+v", c.Policy, c.Limits, c2.Policy, c2.Limits)
		}
	})
}

// fuzzGetenv keeps Parse away from files outside this directory: when the
// file names a secret_file that is not a local path (absolute, or with ..,
// such as /proc/self/fd/0, which could block), the secret comes from the
// environment, which Parse consults before reading the file.
func fuzzGetenv(data []byte) func(string) string {
	var probe struct {
		Component struct {
			SecretFile string `toml:"secret_file"`
		} `toml:"component"`
	}
	_, _ = toml.Decode(string(data), &probe)
	if p := probe.Component.SecretFile; p != "" && !filepath.IsLocal(p) {
		return func(k string) string {
			if k == SecretEnv {
				return "from the environment"
			}
			return ""
		}
	}
	return func(string) string { return "" }
}

// encodeConfig writes c as a configuration file: its values as Parse left
// them (normalised), the secret inline, and local_domains only when it is
// not the default.
func encodeConfig(t *testing.T, c *Config) []byte {
	t.Helper()
	e := *c
	e.Component.SecretFile = ""
	if slices.Equal(e.Policy.LocalDomains, defaultLocalDomains(e.Component.Domain)) {
		e.Policy.LocalDomains = nil
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(e); err != nil {
		t.Fatalf("encoding %+v: %v", e, err)
	}
	return b.Bytes()
}
