package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
)

func noEnv(string) string { return "" }

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = run(context.Background(), args, proc{stdout: &o, stderr: &e, getenv: noEnv})
	return o.String(), e.String(), err
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantErr    error
		wantOut    string
		wantStderr string
		wantErrMsg string // for errors that are not usage errors
	}{
		{name: "no command", args: nil, wantErr: errUsage, wantStderr: "Usage:"},
		{name: "unknown command", args: []string{"serve"}, wantErr: errUsage, wantStderr: `unknown command "serve"`},
		{name: "help", args: []string{"-h"}, wantOut: "rostergate run"},
		{name: "version", args: []string{"version"}, wantOut: "rostergate " + version},
		{name: "run -h", args: []string{"run", "-h"}, wantOut: "Usage: rostergate run -config FILE"},
		{name: "check -h", args: []string{"check", "-h"}, wantOut: "Usage: rostergate check -config FILE"},
		{name: "roster -h", args: []string{"roster", "-h"}, wantOut: "-entity localpart"},
		{name: "bad flag", args: []string{"check", "-confg", "x"}, wantErr: errUsage, wantStderr: "flag provided but not defined: -confg"},
		{name: "stray argument", args: []string{"check", "extra"}, wantErr: errUsage, wantStderr: `unexpected argument "extra"`},
		{name: "bad log level", args: []string{"run", "-log-level", "loud"}, wantErrMsg: `-log-level: unknown level "loud" (want trace, debug, info, warn or error)`},
		{name: "empty log level", args: []string{"run", "-log-level", ""}, wantErrMsg: `-log-level: unknown level "" (want trace, debug, info, warn or error)`},
		{name: "log level off", args: []string{"run", "-log-level", "off"}, wantErrMsg: `-log-level: unknown level "off"`},
		{name: "bad log format", args: []string{"run", "-log-format", "logfmt"}, wantErrMsg: `-log-format: unknown format "logfmt" (want text or json)`},
		{name: "missing config", args: []string{"check", "-config", "nope.toml"}, wantErrMsg: "config: open nope.toml: no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := runCmd(t, tc.args...)
			if tc.wantErrMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrMsg) || errors.Is(err, errUsage) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrMsg)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tc.wantOut)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.wantStderr)
			}
		})
	}
	if exitCode(errUsage) != 2 || exitCode(errors.New("x")) != 1 {
		t.Error("exit codes: usage 2, other errors 1")
	}
}

func TestCheck(t *testing.T) {
	out, _, err := runCmd(t, "check", "-config", "../../component.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OK", "helpdesk@bots.localhost", "rule 1: contact=\"*@localhost\" -> accept, subscribe_back", "default: review", "secret     set (from secret)",
		"unknown_entity: drop (JIDs at bots.localhost that are no [[entity]] do not exist (RFC 6121 §8.5.1): their subscription requests are ignored, a probe gets unsubscribed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Error("check printed the secret")
	}
	_, _, err = runCmd(t, "check", "-config", "../../config/testdata/bad/rule-bad-action.toml")
	if err == nil || !strings.Contains(err.Error(), `rule-bad-action.toml: [policy]: policy: rule 1: unknown action "alow"`) {
		t.Fatalf("bad config: err = %v", err)
	}
}

func TestRoster(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte("[component]\ndomain='bots.localhost'\nserver='127.0.0.1:1'\nsecret='x'\n[[entity]]\nlocal='helpdesk'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "roster", "-config", cfg); err == nil || !strings.Contains(err.Error(), "no database yet") {
		t.Fatalf("roster without a database: %v", err)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "rostergate.db"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = db.Apply(ctx, []store.Change{
		{Item: roster.Item{Entity: "helpdesk", Contact: "alice@localhost", Sub: "both", Updated: now}},
		{Item: roster.Item{Entity: "helpdesk", Contact: "bob@localhost", Sub: "from", PendingOut: true, Updated: now}},
		{Item: roster.Item{Entity: "other", Contact: "carol@localhost", Sub: "none", PendingIn: true, Updated: now}},
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "roster", "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"helpdesk@bots.localhost  alice@localhost  both   -", "bob@localhost    from   pending-out", "other@bots.localhost     carol@localhost  none   pending-in", "3 items"} {
		if !strings.Contains(out, want) {
			t.Errorf("roster output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(t, "roster", "-config", cfg, "-entity", "helpdesk")
	if err != nil || strings.Contains(out, "carol") || !strings.Contains(out, "2 items") {
		t.Errorf("roster -entity helpdesk: %v\n%s", err, out)
	}
}

func TestCSVSafe(t *testing.T) {
	got := csvSafe([]string{"=1+1@evil.example", "alice@localhost", "", "-x", "+y", "@z"})
	want := []string{"'=1+1@evil.example", "alice@localhost", "", "'-x", "'+y", "'@z"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("csvSafe cell %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestBackupCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte("[component]\ndomain='bots.localhost'\nserver='127.0.0.1:1'\nsecret='x'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "rostergate.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Apply(ctx, []store.Change{{Item: roster.Item{Entity: "e", Contact: "a@b", Sub: "both", PendingOut: true, Updated: time.Now()}}})
	var want roster.Item // the item as stored
	if err == nil {
		want, err = db.Get(ctx, "e", "a@b")
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "b.db")
	out, _, err := runCmd(t, "backup", "-config", cfg, "-out", copyPath)
	if err != nil || !strings.Contains(out, "integrity_check ok") {
		t.Fatalf("backup: %v\n%s", err, out)
	}

	// The copy: private to its owner, sound, and holding what was written.
	fi, err := os.Stat(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("the copy's mode is %04o, want 0600", mode)
	}
	cp, err := sqlite.Open(ctx, copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := cp.Check(ctx); err != nil {
		t.Errorf("the copy fails its check: %v", err)
	}
	got, err := cp.Get(ctx, want.Entity, want.Contact)
	if err != nil {
		t.Fatalf("the item written before the backup is not in the copy: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the copy holds %+v, want %+v", got, want)
	}

	if _, stderr, err := runCmd(t, "backup", "-config", cfg); !errors.Is(err, errUsage) || !strings.Contains(stderr, "-out is required") {
		t.Errorf("backup without -out: %v %q", err, stderr)
	}
	if _, _, err := runCmd(t, "backup", "-config", cfg, "-out", copyPath); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup over an existing file: %v", err)
	}
}
