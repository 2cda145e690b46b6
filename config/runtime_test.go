package config

import (
	"bytes"
	"image"
	pngenc "image/png"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"rostergate/engine"
	"rostergate/limits"
	"rostergate/policy"
)

// minimal is the smallest valid config; the cases below add to it.
const minimal = `[component]
domain = "bots.example.com"
server = "127.0.0.1:5347"
secret = "s3cret"
`

// Settings turns every key a reload may change into the engine's settings.
func TestSettings(t *testing.T) {
	tests := []struct {
		name string
		toml string          // appended to minimal
		want engine.Settings // Policy is left out: it must be the compiled one
	}{
		{
			name: "defaults",
			want: engine.Settings{Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "entities",
			toml: `
[[entity]]
local = "HelpDesk"
name = "Help desk"
nick = "helpdesk"
show = "away"
status = "Ask me anything"
auto_reply = "No one reads this yet."
accept_messages = "anyone"
[[entity]]
local = ""
name = "The bots"
show = "dnd"
status = "Busy"
[[entity]]
local = "plain"
`,
			want: engine.Settings{
				Entities: []engine.Entity{
					{Local: "helpdesk", Name: "Help desk", Nick: "helpdesk", Show: "away", Status: "Ask me anything",
						AutoReply: "No one reads this yet.", AcceptMessages: engine.AcceptAnyone, SendTo: engine.SendSubscribers},
					{Local: "", Name: "The bots", Show: "dnd", Status: "Busy", AcceptMessages: engine.AcceptContacts, SendTo: engine.SendSubscribers},
					{Local: "plain", AcceptMessages: engine.AcceptContacts, SendTo: engine.SendSubscribers},
				},
				Limits: engine.Limits{Action: policy.Drop},
			},
		},
		{
			name: "admins",
			toml: "[admin]\njids = [\"Admin@Example.COM\", \"ops@partner.example\"]\n",
			want: engine.Settings{
				Admins: []string{"admin@example.com", "ops@partner.example"},
				Limits: engine.Limits{Action: policy.Drop},
			},
		},
		{
			name: "review_ttl",
			toml: "[policy]\nreview_ttl = \"72h\"\n",
			want: engine.Settings{ReviewTTL: 72 * time.Hour, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "review_ttl short",
			toml: "[policy]\nreview_ttl = \"1s\"\n",
			want: engine.Settings{ReviewTTL: time.Second, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "review_ttl never",
			toml: "[policy]\nreview_ttl = \"0s\"\n",
			want: engine.Settings{Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "limits",
			toml: `
[limits]
contact_rate = "5/1m"
domain_rate = "100/1h"
max_pending_per_domain = 50
max_pending = 1000
action = "reject"
`,
			want: engine.Settings{Limits: engine.Limits{
				ContactRate:         limits.Rate{N: 5, Per: time.Minute},
				DomainRate:          limits.Rate{N: 100, Per: time.Hour},
				MaxPendingPerDomain: 50,
				MaxPending:          1000,
				Action:              policy.Reject,
			}},
		},
		{
			name: "limits action drop",
			toml: "[limits]\naction = \"drop\"\nmax_stanza_bytes = 8192\n",
			want: engine.Settings{Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "unknown_entity accept",
			toml: "[policy]\nunknown_entity = \"accept\"\n",
			want: engine.Settings{UnknownOnline: true, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "unknown_entity review",
			toml: "[policy]\nunknown_entity = \"review\"\n",
			want: engine.Settings{UnknownOnline: true, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "unknown_entity reject",
			toml: "[policy]\nunknown_entity = \"reject\"\n",
			want: engine.Settings{UnknownOnline: false, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "unknown_entity drop",
			toml: "[policy]\nunknown_entity = \"drop\"\n",
			want: engine.Settings{UnknownOnline: false, Limits: engine.Limits{Action: policy.Drop}},
		},
		{
			name: "everything",
			toml: `
[[entity]]
local = "helpdesk"
[admin]
jids = ["admin@example.com"]
[policy]
default = "reject"
unknown_entity = "review"
review_ttl = "90m"
[[policy.rule]]
domain = "example.com"
action = "accept"
[limits]
contact_rate = "3/10s"
domain_rate = "20/1m"
max_pending_per_domain = 2
max_pending = 7
action = "reject"
`,
			want: engine.Settings{
				Entities:      []engine.Entity{{Local: "helpdesk", AcceptMessages: engine.AcceptContacts, SendTo: engine.SendSubscribers}},
				UnknownOnline: true,
				Admins:        []string{"admin@example.com"},
				ReviewTTL:     90 * time.Minute,
				Limits: engine.Limits{
					ContactRate:         limits.Rate{N: 3, Per: 10 * time.Second},
					DomainRate:          limits.Rate{N: 20, Per: time.Minute},
					MaxPendingPerDomain: 2,
					MaxPending:          7,
					Action:              policy.Reject,
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal+tc.toml), "test.toml", noEnv)
			if err != nil {
				t.Fatal(err)
			}
			got := c.Settings()
			if got.Policy == nil || got.Policy != c.Compiled() {
				t.Errorf("Settings().Policy = %p, want the compiled policy %p", got.Policy, c.Compiled())
			}
			got.Policy = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Settings() =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

// The policy in the settings is the one the file configures.
func TestSettingsPolicy(t *testing.T) {
	c, err := Parse([]byte(minimal+`
[[entity]]
local = "helpdesk"
[policy]
default = "reject"
unknown_entity = "drop"
[[policy.rule]]
domain = "example.com"
entity = "HelpDesk"
action = "accept"
subscribe_back = true
`), "test.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Settings().Policy
	if p == nil {
		t.Fatal("Settings().Policy is nil")
	}
	if p.Default() != policy.Reject || p.UnknownEntity() != policy.Drop {
		t.Errorf("policy default %q, unknown_entity %q; want reject, drop", p.Default(), p.UnknownEntity())
	}
	want := []policy.Rule{{Domain: "example.com", Entity: "helpdesk", Action: policy.Accept, SubscribeBack: true}}
	if !reflect.DeepEqual(p.Rules(), want) {
		t.Errorf("policy rules = %v, want %v", p.Rules(), want)
	}
	if d := p.Decide(policy.Request{Contact: "bob@example.com", Entity: "helpdesk", KnownEntity: true}); d.Action != policy.Accept || !d.SubscribeBack {
		t.Errorf("bob@example.com -> helpdesk: %+v, want accept with subscribe back", d)
	}
}

// RestartNeeded is true for what only a restart puts in force: every
// [component] and [storage] key, max_stanza_bytes and [log] format; false
// for the rest, [log] level among them, which a reload puts in force.
func TestRestartNeeded(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// base is a config that sets every key the cases change.
	base := map[string]string{
		"component.domain":              `"bots.example.com"`,
		"component.server":              `"127.0.0.1:5347"`,
		"component.secret":              `"s3cret"`,
		"component.resource":            `"rostergate"`,
		"component.keepalive":           `"30s"`,
		"storage.path":                  `"rg.db"`,
		"limits.max_stanza_bytes":       `65536`,
		"limits.contact_rate":           `"5/1m"`,
		"limits.domain_rate":            `"100/1h"`,
		"limits.max_pending":            `10`,
		"limits.max_pending_per_domain": `5`,
		"limits.action":                 `"drop"`,
		"admin.jids":                    `["admin@example.com"]`,
		"policy.default":                `"review"`,
		"policy.unknown_entity":         `"reject"`,
		"policy.review_ttl":             `"72h"`,
		"policy.local_domains":          `["example.com"]`,
		"log.level":                     `"info"`,
		"log.format":                    `"text"`,
	}
	render := func(change map[string]string) []byte {
		kv := map[string]string{}
		for k, v := range base {
			kv[k] = v
		}
		for k, v := range change {
			if v == "" {
				delete(kv, k)
			} else {
				kv[k] = v
			}
		}
		var b strings.Builder
		for _, section := range []string{"component", "storage", "admin", "policy", "limits", "log", "http"} {
			b.WriteString("[" + section + "]\n")
			for _, k := range sortedKeys(kv) {
				if key, ok := strings.CutPrefix(k, section+"."); ok {
					b.WriteString(key + " = " + kv[k] + "\n")
				}
			}
		}
		b.WriteString("[[entity]]\nlocal = \"helpdesk\"\n")
		if rule := change["rule"]; rule != "" {
			b.WriteString(rule)
		}
		return []byte(b.String())
	}
	parse := func(t *testing.T, change map[string]string) *Config {
		t.Helper()
		c, err := Parse(render(change), filepath.Join(dir, "c.toml"), noEnv)
		if err != nil {
			t.Fatalf("%v\n%s", err, render(change))
		}
		return c
	}
	cur := parse(t, nil)
	tests := []struct {
		name   string
		change map[string]string
		want   bool
	}{
		{"nothing", nil, false},
		{"component.domain", map[string]string{"component.domain": `"other.example.com"`}, true},
		{"component.server", map[string]string{"component.server": `"127.0.0.1:5348"`}, true},
		{"component.secret", map[string]string{"component.secret": `"changed"`}, true},
		{"component.secret_file", map[string]string{"component.secret": "", "component.secret_file": `"secret"`}, true},
		{"component.resource", map[string]string{"component.resource": `"gate"`}, true},
		{"component.keepalive", map[string]string{"component.keepalive": `"45s"`}, true},
		{"storage.path", map[string]string{"storage.path": `"other.db"`}, true},
		{"limits.max_stanza_bytes", map[string]string{"limits.max_stanza_bytes": `131072`}, true},
		{"log.format", map[string]string{"log.format": `"json"`}, true},

		{"policy.default", map[string]string{"policy.default": `"accept"`}, false},
		{"policy.unknown_entity", map[string]string{"policy.unknown_entity": `"accept"`}, false},
		{"policy.review_ttl", map[string]string{"policy.review_ttl": `"1s"`}, false},
		{"policy.local_domains", map[string]string{"policy.local_domains": `["partner.example"]`}, false},
		{"policy.rule", map[string]string{"rule": "[[policy.rule]]\ndomain = \"example.com\"\naction = \"accept\"\n"}, false},
		{"admin.jids", map[string]string{"admin.jids": `["ops@example.com"]`}, false},
		{"limits.contact_rate", map[string]string{"limits.contact_rate": `"1/1s"`}, false},
		{"limits.domain_rate", map[string]string{"limits.domain_rate": `"1/1s"`}, false},
		{"limits.max_pending", map[string]string{"limits.max_pending": `1`}, false},
		{"limits.max_pending_per_domain", map[string]string{"limits.max_pending_per_domain": `1`}, false},
		{"limits.action", map[string]string{"limits.action": `"reject"`}, false},
		{"log.level", map[string]string{"log.level": `"debug"`}, false},
		{"log.level unset", map[string]string{"log.level": ""}, false},
		{"log.format unset, the default", map[string]string{"log.format": ""}, false},
		{"http.metrics_allow", map[string]string{"http.metrics_allow": `["10.0.0.0/8"]`}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := parse(t, tc.change)
			if got := cur.RestartNeeded(next); got != tc.want {
				t.Errorf("RestartNeeded = %v, want %v; the change:\n%s", got, tc.want, render(tc.change))
			}
			if got := next.RestartNeeded(cur); got != tc.want {
				t.Errorf("RestartNeeded back = %v, want %v", got, tc.want)
			}
		})
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// An avatar is read with the config: its bytes and MIME type reach the
// engine's settings.
func TestAvatar(t *testing.T) {
	dir := t.TempDir()
	var png bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 2, 2))
	if err := pngenc.Encode(&png, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "helpdesk.png"), png.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(path, []byte(minimal+"[[entity]]\nlocal = \"helpdesk\"\navatar = \"helpdesk.png\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ents := c.Settings().Entities
	if len(ents) != 1 || !bytes.Equal(ents[0].Avatar, png.Bytes()) || ents[0].AvatarType != "image/png" {
		t.Errorf("avatar: %d bytes of %q, want %d of image/png", len(ents[0].Avatar), ents[0].AvatarType, png.Len())
	}
	big := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, maxAvatar)...)
	if err := os.WriteFile(filepath.Join(dir, "helpdesk.png"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "larger than 64 KiB") {
		t.Errorf("a %d-byte avatar: %v", len(big), err)
	}
}
