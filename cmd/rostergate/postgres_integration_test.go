package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rostergate/internal/pgtest"
	"rostergate/internal/xmpptest"
)

// From SQLite to PostgreSQL as an admin would move: a request held on
// SQLite, `rostergate export`, `rostergate import` into PostgreSQL, then
// `rostergate run` on PostgreSQL (its DSN from the environment) against a
// real server: the held request is there with its id, and the admin
// approves it.
func TestIntegrationMoveToPostgres(t *testing.T) {
	srv := xmpptest.Prosody(t)
	dsn := pgtest.Start(t).NewDatabase(t)
	dir := t.TempDir()
	base := fmt.Sprintf(testConfig, srv.ComponentDomain, srv.ComponentAddr, srv.ComponentSecret) + "default = \"review\"\n"
	sqliteCfg := filepath.Join(dir, "sqlite.toml")
	if err := os.WriteFile(sqliteCfg, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	pgCfg := filepath.Join(dir, "pg.toml")
	if err := os.WriteFile(pgCfg, []byte(strings.Replace(base, "[storage]\npath = \"rg.db\"\n", "[storage]\ndriver = \"postgres\"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	helpdesk := "helpdesk@" + srv.ComponentDomain
	admin := srv.NewUser(t, "admin")
	alice := srv.NewUser(t, "alice")

	// On SQLite: alice's request is held.
	d := startRun(t, sqliteCfg, make(chan os.Signal, 1))
	d.waitLog(t, "presence resync sent")
	if err := alice.SendPresence(helpdesk, "subscribe"); err != nil {
		t.Fatal(err)
	}
	id := waitHeld(t, admin, "alice@"+srv.Domain, helpdesk)
	d.stop(t)

	file := filepath.Join(dir, "move.jsonl")
	if out, _, err := runCmd(t, "export", "-config", sqliteCfg, "-out", file); err != nil {
		t.Fatalf("export: %v %s", err, out)
	}
	env := func(k string) string {
		if k == "ROSTERGATE_DSN" {
			return dsn
		}
		return ""
	}
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"import", "-config", pgCfg, "-in", file}, proc{stdout: &out, stderr: &errOut, getenv: env}); err != nil ||
		!strings.Contains(out.String(), "1 held requests") || !strings.Contains(out.String(), "PostgreSQL") {
		t.Fatalf("import: %v\n%s%s", err, out.String(), errOut.String())
	}

	// On PostgreSQL: the request is there, under its id; approving it
	// reaches alice.
	p := startRunEnv(t, pgCfg, make(chan os.Signal, 1), env)
	p.waitLog(t, "presence resync sent")
	if body := chatReply(t, admin, srv.ComponentDomain, "pending"); !strings.Contains(body, "#"+id+" alice@") {
		t.Fatalf("pending on PostgreSQL: %q, want #%s from alice", body, id)
	}
	if err := admin.SendMessage(srv.ComponentDomain, "approve "+id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := alice.WaitPresence(ctx, func(pr xmpptest.Presence) bool {
		return pr.Type == "subscribed" && strings.HasPrefix(pr.From, helpdesk)
	}); err != nil {
		t.Fatalf("alice was not told of the approval: %v", err)
	}
}
