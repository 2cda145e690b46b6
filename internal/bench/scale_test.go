package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"rostergate/internal/pgtest"
	"testing"
	"time"
)

// TestMain stops the shared PostgreSQL (TestScaleSmokePostgres, BenchmarkPostgres), if one started.
func TestMain(m *testing.M) { pgtest.Main(m) }

// buildRostergate builds the rostergate binary into a temporary directory.
func buildRostergate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rostergate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "rostergate/cmd/rostergate").CombinedOutput()
	if err != nil {
		t.Fatalf("go build rostergate: %v\n%s", err, out)
	}
	return bin
}

func TestScaleSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds and runs the rostergate binary, and -short is set")
	}
	bin := buildRostergate(t)
	items := envInt("BENCH_SCALE_ITEMS", 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	res, err := Scale(ctx, ScaleConfig{Items: items, Entities: 10, Binary: bin, Dir: dir, Idle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Items != items || res.BroadcastSeconds <= 0 || res.ShutdownSeconds <= 0 {
		t.Errorf("timings: %+v", res)
	}
	if res.PeakRSSMiB <= 0 || res.IdleRSSMiB <= 0 || res.IdleRSSMiB > res.PeakRSSMiB || res.PeakRSSShutdownMiB < res.PeakRSSMiB {
		t.Errorf("RSS: %+v", res)
	}
	if res.DBBytes <= 0 || res.BytesPerItem <= 0 {
		t.Errorf("DB size: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "scale.db")); err != nil {
		t.Error(err)
	}
}

// The scale run on PostgreSQL: the items preloaded there, rostergate on
// driver "postgres" leading, its broadcast written to every subscriber.
func TestScaleSmokePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds and runs the rostergate binary, and -short is set")
	}
	dsn := pgtest.Start(t).NewDatabase(t)
	bin := buildRostergate(t)
	items := envInt("BENCH_SCALE_ITEMS", 5000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	res, err := Scale(ctx, ScaleConfig{Items: items, Entities: 10, Binary: bin, Dir: dir, Idle: 200 * time.Millisecond, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Store != "postgres" || res.Items != items || res.BroadcastSeconds <= 0 || res.ShutdownSeconds <= 0 {
		t.Errorf("timings: %+v", res)
	}
	if res.PeakRSSMiB <= 0 || res.DBBytes <= 0 {
		t.Errorf("RSS or size: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "scale.db")); err == nil {
		t.Error("a SQLite file was written for a PostgreSQL run")
	}
}
