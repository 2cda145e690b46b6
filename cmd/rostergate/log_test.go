package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/config"
)

// The level and format of the log: a flag wins at start, else the config,
// else info and text; the base level (a reload's when the file sets no
// [log] level) is the flag's, else info.
func TestLogFlags(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name        string
		flags       logFlags
		cfg         config.Log
		start, base hclog.Level
		json        bool
	}{
		{"nothing set", logFlags{}, config.Log{Format: "text"}, hclog.Info, hclog.Info, false},
		{"config", logFlags{}, config.Log{Level: "debug", Format: "json"}, hclog.Debug, hclog.Info, true},
		{"config trace", logFlags{}, config.Log{Level: "trace", Format: "text"}, hclog.Trace, hclog.Info, false},
		{"flags win at start", logFlags{level: str("warn"), format: str("text")}, config.Log{Level: "debug", Format: "json"}, hclog.Warn, hclog.Warn, false},
		{"flag level, config format", logFlags{level: str("ERROR")}, config.Log{Format: "json"}, hclog.Error, hclog.Error, true},
		{"flag format", logFlags{format: str("json")}, config.Log{Level: "warn", Format: "text"}, hclog.Warn, hclog.Info, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.flags.check(); err != nil {
				t.Fatal(err)
			}
			cfg := &config.Config{Log: tc.cfg}
			if got := tc.flags.startLevel(cfg); got != tc.start {
				t.Errorf("start level = %s, want %s", got, tc.start)
			}
			if got := tc.flags.baseLevel(); got != tc.base {
				t.Errorf("base level = %s, want %s", got, tc.base)
			}
			if got := tc.flags.json(cfg); got != tc.json {
				t.Errorf("json = %v, want %v", got, tc.json)
			}
		})
	}
}

// The parts' sub-loggers follow the root logger's level, which is all a
// reload sets.
func TestSubLoggersFollowRootLevel(t *testing.T) {
	var buf bytes.Buffer
	root := newLogger(&buf, hclog.Info, false)
	eng := root.Named("engine")
	hook := root.Named("http").Named("webhook").With("entity", "bot@bots.localhost")
	eng.Debug("before")
	hook.Debug("before")
	root.SetLevel(hclog.Debug)
	eng.Debug("after", "n", 1)
	hook.Debug("after")
	root.SetLevel(hclog.Error)
	eng.Warn("hidden")
	hook.Warn("hidden")
	out := buf.String()
	for _, want := range []string{"[DEBUG] rostergate.engine: after: n=1\n", "[DEBUG] rostergate.http.webhook: after: entity=bot@bots.localhost\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "before") || strings.Contains(out, "hidden") {
		t.Errorf("a sub-logger wrote below the root's level:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("%d lines, want 2:\n%s", n, out)
	}
}

// A reload's level: [log] level if the file sets it, else the base level;
// a change is logged once, even when the new level hides info lines.
func TestReloaderSetLevel(t *testing.T) {
	var buf bytes.Buffer
	r := &reloader{log: newLogger(&buf, hclog.Info, false), baseLevel: hclog.Info}
	steps := []struct {
		level string      // [log] level in the file
		base  hclog.Level // -log-level, else info
		want  hclog.Level
		line  string // the change logged; "" for none
	}{
		{"", hclog.Info, hclog.Info, ""},
		{"info", hclog.Info, hclog.Info, ""},
		{"debug", hclog.Info, hclog.Debug, "from=info to=debug"},
		{"error", hclog.Info, hclog.Error, "from=debug to=error"},
		{"", hclog.Info, hclog.Info, "from=error to=info"},
		{"", hclog.Debug, hclog.Debug, "from=info to=debug"}, // started with -log-level debug
		{"debug", hclog.Debug, hclog.Debug, ""},
		{"warn", hclog.Debug, hclog.Warn, "from=debug to=warn"},
		{"warn", hclog.Debug, hclog.Warn, ""},
	}
	for i, s := range steps {
		buf.Reset()
		r.baseLevel = s.base
		r.setLevel(&config.Config{Log: config.Log{Level: s.level, Format: "text"}}, fmt.Sprint("step", i))
		if got := r.log.GetLevel(); got != s.want {
			t.Errorf("step %d: level %s, want %s", i, got, s.want)
		}
		want := ""
		if s.line != "" {
			want = fmt.Sprintf("[INFO]  rostergate: log level changed: %s via=step%d\n", s.line, i)
		}
		if got := buf.String(); want == "" && got != "" || want != "" && !strings.HasSuffix(got, want) {
			t.Errorf("step %d: logged %q, want %q", i, got, want)
		}
	}
}

// runConfig is a config for `rostergate run` with no server behind it (a
// reload does not wait for the stream), and extra at the end.
func runConfig(t *testing.T, path, extra string) {
	t.Helper()
	const text = "[component]\ndomain = \"bots.localhost\"\nserver = \"127.0.0.1:1\"\nsecret = \"s3cret-never-logged\"\n" +
		"[storage]\npath = \"rg.db\"\n[[entity]]\nlocal = \"helpdesk\"\n"
	if err := os.WriteFile(path, []byte(text+extra), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A reload puts the file's [log] level in force: debug lines appear after
// a reload to debug, and not before.
func TestReloadLogLevel(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "component.toml")
	runConfig(t, cfg, "[log]\nlevel = \"info\"\n")
	d := startRun(t, cfg, make(chan os.Signal, 1))
	d.waitLog(t, "rostergate: starting: ")
	runConfig(t, cfg, "[log]\nlevel = \"debug\"\n")
	d.reload(t)
	d.waitLog(t, "reload done")
	out := d.log.String()
	if !strings.Contains(out, "[INFO]  rostergate: log level changed: from=info to=debug via=SIGHUP\n") {
		t.Errorf("the change of level is not logged:\n%s", out)
	}
	// The reload's first line is a debug one, written while info was in
	// force.
	if strings.Contains(out, "[DEBUG]") {
		t.Errorf("a debug line before debug was in force:\n%s", out)
	}
	d.reload(t)
	d.waitLog(t, "[DEBUG] rostergate: reload: reading the config: config=")
}

// Started with -log-level, the flag's level stays through reloads until
// the file sets [log] level.
func TestReloadLogLevelFlag(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "component.toml")
	runConfig(t, cfg, "[log]\nlevel = \"warn\"\n")
	d := startRun(t, cfg, make(chan os.Signal, 1), "-log-level", "debug")
	d.waitLog(t, "rostergate: starting: ") // info: the flag wins over the file at start
	runConfig(t, cfg, "")
	d.reload(t)
	d.waitLog(t, "reload done")
	if out := d.log.String(); strings.Contains(out, "log level changed") || !strings.Contains(out, "[DEBUG] rostergate: reload: reading the config") {
		t.Errorf("a file without [log] level changed the flag's level:\n%s", out)
	}
	runConfig(t, cfg, "[log]\nlevel = \"info\"\n")
	d.reload(t)
	d.waitLog(t, "[INFO]  rostergate: log level changed: from=debug to=info via=SIGHUP\n")
}

// JSON logs, by the flag or the config: one object a line, each naming the
// part that wrote it (@module), with the time to the millisecond; never
// the secret.
func TestLogFormatJSON(t *testing.T) {
	for _, how := range []string{"flag", "config"} {
		t.Run(how, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "component.toml")
			var flags []string
			if how == "flag" {
				runConfig(t, cfg, "")
				flags = []string{"-log-format", "json"}
			} else {
				runConfig(t, cfg, "[log]\nformat = \"json\"\n")
			}
			d := startRun(t, cfg, make(chan os.Signal, 1), flags...)
			// The component's first failed connect.
			d.waitLog(t, `"@module":"rostergate.component"`)
			out := d.log.String()
			if strings.Contains(out, "s3cret-never-logged") {
				t.Errorf("the log shows the secret:\n%s", out)
			}
			lines := strings.Split(out, "\n")
			lines = lines[:len(lines)-1] // the last may be partly written
			modules := map[string]string{}
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("not a JSON line: %v\n%s", err, l)
				}
				ts, _ := m["@timestamp"].(string)
				if _, err := time.Parse(logTimeFormat, ts); err != nil || len(ts) != len("2006-01-02T15:04:05.000Z") && len(ts) != len(logTimeFormat) {
					t.Errorf("@timestamp %q is not RFC 3339 with milliseconds: %v", ts, err)
				}
				mod, _ := m["@module"].(string)
				msg, _ := m["@message"].(string)
				if _, ok := modules[mod]; !ok {
					modules[mod] = msg
				}
				if mod == "rostergate.component" && (m["@level"] != "warn" || m["server"] != "127.0.0.1:1" || !strings.Contains(fmt.Sprint(m["err"]), "connection refused")) {
					t.Errorf("the component's line: %s", l)
				}
			}
			if modules["rostergate"] != "starting" || modules["rostergate.component"] != "could not connect, retrying" {
				t.Errorf("first message by module: %q\n%s", modules, out)
			}
		})
	}
}
