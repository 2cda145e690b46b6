package pgtest

import (
	"context"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestStart(t *testing.T) {
	s := Start(t)
	if again := Start(t); again != s {
		t.Error("a second Start gave another server")
	}
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") || s.Addr != "127.0.0.1:"+strconv.Itoa(s.Port) {
		t.Errorf("Addr %q, Port %d", s.Addr, s.Port)
	}
	c := connect(t, s.DSN("postgres"))
	for setting, want := range map[string]string{
		"fsync":              "on",
		"synchronous_commit": "on",
		"listen_addresses":   "127.0.0.1",
		"server_encoding":    "UTF8",
		"port":               strconv.Itoa(s.Port),
	} {
		var got string
		if err := c.QueryRow(t.Context(), "SELECT current_setting($1)", setting).Scan(&got); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", setting, got, err, want)
		}
	}
	// As root, the server runs as the postgres system user, which owns the
	// data directory.
	st, err := os.Stat(s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	uid := st.Sys().(*syscall.Stat_t).Uid
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if strconv.Itoa(int(uid)) != u.Uid {
			t.Errorf("data directory owned by uid %d, want postgres (%s)", uid, u.Uid)
		}
	} else if int(uid) != os.Geteuid() {
		t.Errorf("data directory owned by uid %d, want %d", uid, os.Geteuid())
	}
}

func TestNewDatabase(t *testing.T) {
	s := Start(t)
	a, b := s.NewDatabase(t), s.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases with one DSN %q", a)
	}
	ca, cb := connect(t, a), connect(t, b)
	mustExec(t, ca, "CREATE TABLE x (v int)")
	mustExec(t, ca, "INSERT INTO x VALUES (1)")
	var n int
	if err := cb.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Errorf("table of one database seen in the other: %d, %v", n, err)
	}
	var name string
	if err := ca.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil || !strings.HasSuffix(a, "/"+name+"?sslmode=disable") {
		t.Errorf("connected to %q, %v; DSN %q", name, err, a)
	}
	t.Run("dropped at the end", func(t *testing.T) {
		var dsn string
		t.Run("inner", func(t *testing.T) { dsn = s.NewDatabase(t) })
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		c := connect(t, s.DSN("postgres"))
		if err := c.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", cfg.Database).Scan(&n); err != nil || n != 0 {
			t.Errorf("database %s still there: %d, %v", cfg.Database, n, err)
		}
	})
}

func TestDBName(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		test string
		want string
	}{
		{1, "TestX", "t1_testx"},
		{2, "TestContract/Commit/upsert_inserts", "t2_testcontract_commit_upsert_inserts"},
		{3, strings.Repeat("Ab/", 40), "t3_" + strings.TrimRight(strings.Repeat("ab_", 20)[:60], "_")},
	} {
		if got := dbName(tc.n, tc.test); got != tc.want || len(got) > 63 {
			t.Errorf("dbName(%d, %q) = %q, want %q", tc.n, tc.test, got, tc.want)
		}
	}
}

func TestRestartKeepsData(t *testing.T) {
	s := StartPrivate(t)
	dsn := s.NewDatabase(t)
	c := connect(t, dsn)
	mustExec(t, c, "CREATE TABLE x (v int)")
	mustExec(t, c, "INSERT INTO x VALUES (42)")
	port := s.Port
	s.Restart(t)
	if s.Port != port {
		t.Errorf("port %d after restart, was %d", s.Port, port)
	}
	if _, err := c.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Error("a connection from before the restart still works")
	}
	var v int
	if err := connect(t, dsn).QueryRow(t.Context(), "SELECT v FROM x").Scan(&v); err != nil || v != 42 {
		t.Errorf("after restart: %d, %v", v, err)
	}

	t.Run("after a kill", func(t *testing.T) {
		c := connect(t, dsn)
		mustExec(t, c, "INSERT INTO x VALUES (43)")
		s.Kill(t)
		s.Restart(t)
		var n int
		if err := connect(t, dsn).QueryRow(t.Context(), "SELECT count(*) FROM x").Scan(&n); err != nil || n != 2 {
			t.Errorf("after a kill and restart: %d rows, %v; want 2", n, err)
		}
	})
}

func TestTerminateConnections(t *testing.T) {
	s := Start(t)
	dsn, other := s.NewDatabase(t), s.NewDatabase(t)
	victims := []*pgx.Conn{connect(t, dsn), connect(t, dsn)}
	bystander := connect(t, other)
	s.TerminateConnections(t, dsn)
	for i, c := range victims {
		_, err := c.Exec(t.Context(), "SELECT 1")
		if err == nil {
			t.Errorf("connection %d still works", i)
		}
	}
	if _, err := bystander.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Errorf("a connection to another database: %v", err)
	}
	// The database takes new connections.
	if _, err := connect(t, dsn).Exec(t.Context(), "SELECT 1"); err != nil {
		t.Error(err)
	}
	// Nothing to terminate is fine.
	s.TerminateConnections(t, s.NewDatabase(t))
}
