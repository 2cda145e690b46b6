package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/sqlite"
)

// export from one installation, import into another: the same items and
// held requests (with their ids); import refuses a store that holds
// anything, and a running instance's store.
func TestExportImport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfgA, cfgB := filepath.Join(dir, "a.toml"), filepath.Join(dir, "b.toml")
	for f, db := range map[string]string{cfgA: "a.db", cfgB: "b.db"} {
		if err := os.WriteFile(f, []byte("[component]\ndomain='bots.localhost'\nserver='127.0.0.1:1'\nsecret='x'\n[storage]\npath='"+db+"'\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := sqlite.Open(ctx, filepath.Join(dir, "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	q := &roster.Request{Entity: "helpdesk", Contact: "bob@localhost", Rule: "default", Created: time.Now()}
	_, err = a.Commit(ctx, store.Batch{Changes: []store.Change{
		{Item: roster.Item{Entity: "helpdesk", Contact: "alice@localhost", Sub: "both", Updated: time.Now()}},
		{Item: roster.Item{Entity: "helpdesk", Contact: "bob@localhost", Sub: "none", PendingIn: true}, Queue: q},
	}})
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "out.jsonl")
	out, _, err := runCmd(t, "export", "-config", cfgA, "-out", file)
	if err != nil || !strings.Contains(out, "exported 2 roster items, 1 held requests") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the export file: %v, %v (want mode 0600)", fi, err)
	}
	if _, _, err := runCmd(t, "export", "-config", cfgA, "-out", file); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("export over an existing file: %v", err)
	}
	out, _, err = runCmd(t, "import", "-config", cfgB, "-in", file)
	if err != nil || !strings.Contains(out, "imported 2 roster items, 1 held requests") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	b, err := sqlite.Open(ctx, filepath.Join(dir, "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := b.Requests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].ID != q.ID || reqs[0].Contact != "bob@localhost" {
		t.Errorf("requests in the copy: %+v, %v; want #%d from bob", reqs, err, q.ID)
	}
	ia, _ := b.Get(ctx, "helpdesk", "alice@localhost")
	if ia.Sub != "both" {
		t.Errorf("alice in the copy: %+v", ia)
	}
	release, err := b.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "import", "-config", cfgB, "-in", file); err == nil || !strings.Contains(err.Error(), "rostergate is running") {
		t.Errorf("import while running: %v", err)
	}
	release()
	b.Close()
	if _, _, err := runCmd(t, "import", "-config", cfgB, "-in", file); err == nil || !strings.Contains(err.Error(), "holds data already") {
		t.Errorf("import into a full store: %v", err)
	}
	if _, stderr, err := runCmd(t, "import", "-config", cfgB); !errors.Is(err, errUsage) || !strings.Contains(stderr, "-in is required") {
		t.Errorf("import without -in: %v %q", err, stderr)
	}
}
