package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

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
