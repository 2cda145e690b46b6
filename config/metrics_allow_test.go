package config

import (
	"net/netip"
	"slices"
	"testing"
)

// [http] metrics_allow: loopback by default; IPs and CIDR prefixes, an
// IPv4-mapped address taken as the IPv4 one; [] for no one. (A bad one is
// in testdata/bad.)
func TestMetricsAllow(t *testing.T) {
	const head = "[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n"
	for text, want := range map[string][]string{
		"":                             {"127.0.0.0/8", "::1/128"},
		"[http]\nmetrics_allow = []\n": {},
		"[http]\nmetrics_allow = ['10.1.2.3', ' 192.168.0.0/16', '2001:db8::/32', '::ffff:10.0.0.0/104', '::ffff:10.9.9.9', '10.1.2.3/8']\n": {
			"10.1.2.3/32", "192.168.0.0/16", "2001:db8::/32", "10.0.0.0/8", "10.9.9.9/32", "10.0.0.0/8"},
	} {
		c, err := Parse([]byte(head+text), "c.toml", noEnv)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		var got []string
		for _, p := range c.HTTP.MetricsAllow {
			got = append(got, p.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: metrics_allow = %v, want %v", text, got, want)
		}
		if c.HTTP.MetricsAllow == nil {
			t.Errorf("%s: nil", text)
		}
	}
	c, err := Parse([]byte(head), "c.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.0.0.1", "127.200.0.1", "::1"} {
		if !slices.ContainsFunc(c.HTTP.MetricsAllow, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("the default does not let %s in", a)
		}
	}
	for _, a := range []string{"10.0.0.1", "::2"} {
		if slices.ContainsFunc(c.HTTP.MetricsAllow, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr(a)) }) {
			t.Errorf("the default lets %s in", a)
		}
	}
}
