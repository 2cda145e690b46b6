package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rostergate/store/sqlite"
)

// status on SQLite: whether an instance runs.
func TestStatusSQLite(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(cfg, []byte("[component]\ndomain='bots.localhost'\nserver='127.0.0.1:1'\nsecret='x'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "status", "-config", cfg); err == nil || !strings.Contains(err.Error(), "no database yet") {
		t.Errorf("status before any run: %v", err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "rostergate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if out, _, err := runCmd(t, "status", "-config", cfg); err != nil || !strings.Contains(out, "active     none") {
		t.Errorf("status, none running: %v\n%s", err, out)
	}
	release, err := db.Hold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if out, _, err := runCmd(t, "status", "-config", cfg); err != nil || !strings.Contains(out, "a rostergate runs on this database") {
		t.Errorf("status, one running: %v\n%s", err, out)
	}
}
