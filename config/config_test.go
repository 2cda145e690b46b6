package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err from the current errors")

func noEnv(string) string { return "" }

func TestGood(t *testing.T) {
	c, err := Load("testdata/good.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Component.Domain != "bots.example.com" {
		t.Errorf("domain = %q, want it normalised to bots.example.com", c.Component.Domain)
	}
	if c.Component.Keepalive.Duration != 30*time.Second {
		t.Errorf("keepalive = %s", c.Component.Keepalive)
	}
	if c.Component.Resource != "rostergate" {
		t.Errorf("resource default = %q", c.Component.Resource)
	}
	if want := filepath.Join("testdata", "state", "rg.db"); c.Storage.Path != want {
		t.Errorf("storage path = %q, want %q (relative to the config file)", c.Storage.Path, want)
	}
	if len(c.Entities) != 2 || c.Entities[0].Localpart() != "helpdesk" || c.Entities[1].Localpart() != "" {
		t.Errorf("entities = %+v", c.Entities)
	}
	if _, ok := c.Entity(""); !ok {
		t.Error("the domain itself is not an entity")
	}
	p := c.Compiled()
	if p.Default() != "reject" || p.UnknownEntity() != "drop" || len(p.Rules()) != 2 {
		t.Errorf("policy = %v %v %v", p.Default(), p.UnknownEntity(), p.Rules())
	}
	if c.Component.SecretSource != "secret" {
		t.Errorf("secret source = %q", c.Component.SecretSource)
	}
}

// The example shipped at the top of the repository must stay valid.
func TestExample(t *testing.T) {
	c, err := Load("../component.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entities) == 0 || len(c.Policy.Rules) == 0 {
		t.Errorf("example has no entities or rules: %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte("[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n"), "min.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Path != "rostergate.db" || c.Component.Keepalive.Duration != time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	if c.Compiled().Default() != "review" || c.Compiled().UnknownEntity() != "reject" {
		t.Errorf("policy defaults: %v %v", c.Compiled().Default(), c.Compiled().UnknownEntity())
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("secret.txt", "from-file\n", 0o600)
	write("open.txt", "from-file\n", 0o644)
	write("empty.txt", "\n", 0o600)
	head := "[component]\ndomain='b.example'\nserver='h:1'\n"
	tests := []struct {
		name, body, env, want, wantErr string
	}{
		{name: "inline", body: "secret='inline'", want: "inline"},
		{name: "file", body: "secret_file='secret.txt'", want: "from-file"},
		{name: "env overrides inline", body: "secret='inline'", env: "from-env", want: "from-env"},
		{name: "env overrides file", body: "secret_file='secret.txt'", env: "from-env", want: "from-env"},
		{name: "env alone", body: "", env: "from-env", want: "from-env"},
		{name: "world-readable file", body: "secret_file='open.txt'", wantErr: "open.txt is readable by everyone (mode 0644): chmod 600 it"},
		{name: "empty file", body: "secret_file='empty.txt'", wantErr: "empty.txt is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string {
				if k == SecretEnv {
					return tc.env
				}
				return ""
			}
			c, err := Parse([]byte(head+tc.body+"\n"), filepath.Join(dir, "c.toml"), env)
			if tc.wantErr != "" {
				if err == nil || !strings.HasSuffix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want suffix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Component.Secret != tc.want {
				t.Errorf("secret = %q, want %q", c.Component.Secret, tc.want)
			}
			if strings.Contains(c.Component.SecretSource, tc.want) {
				t.Errorf("secret source %q reveals the secret", c.Component.SecretSource)
			}
		})
	}
}

// Each testdata/bad/NAME.toml fails with exactly the error in NAME.err.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad configs: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		t.Run(name, func(t *testing.T) {
			_, err := Load(f, noEnv)
			if err == nil {
				t.Fatal("loaded without error")
			}
			golden := strings.TrimSuffix(f, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", rerr)
			}
			if got := err.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("error:\n got %s\nwant %s", got, strings.TrimSpace(string(want)))
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.toml", noEnv)
	if err == nil || !strings.Contains(err.Error(), "config: open testdata/nope.toml") {
		t.Fatalf("err = %v", err)
	}
}

// A rule's domain is normalised as contacts' domains are, so an IDNA
// A-label matches the contact's domain.
func TestRuleDomainNormalised(t *testing.T) {
	c, err := Parse([]byte("[component]\ndomain='b.example'\nserver='h:1'\nsecret='x'\n[[policy.rule]]\ndomain='XN--BCHER-KVA.Example'\naction='accept'\n"), "c.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Compiled().Decide(policyRequest("a@bücher.example"))
	if d.Rule != 1 {
		t.Errorf("rule domain %q did not match a@bücher.example: %+v", c.Compiled().Rules()[0].Domain, d)
	}
}

func policyRequest(contact string) policy.Request {
	return policy.Request{Contact: contact, Entity: "x", KnownEntity: true}
}
