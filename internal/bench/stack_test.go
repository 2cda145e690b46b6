package bench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"rostergate/internal/pgtest"
)

// envInt reads a size from the environment, for trying bigger runs by hand,
// e.g. BENCH_N=1000000, BENCH_PROSODY_CLIENTS=32 BENCH_PROSODY_ROUNDS=100.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestThroughputSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := envInt("BENCH_N", 2000)
	for _, store := range stores(t) {
		res, err := Throughput(ctx, store, n, envInt("BENCH_WINDOW", 4096))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", res)
		if res.Decisions != n || res.PerSecond <= 0 || res.Batches.Commits == 0 {
			t.Errorf("%s: %+v", store, res)
		}
	}
}

func stores(t *testing.T) []string {
	if os.Getenv("BENCH_STORE") == "nop" {
		return []string{"nop"}
	}
	if os.Getenv("BENCH_STORE") == "db" {
		return []string{dbPath(t.TempDir(), "durable")}
	}
	return []string{"nop", dbPath(t.TempDir(), "durable")}
}

// BenchmarkStack and BenchmarkDurable are the throughput runs as go test
// benchmarks, for profiling: go test -bench Stack -cpuprofile cpu.out
// ./internal/bench/ (see docs/benchmarks.md).
func BenchmarkStack(b *testing.B) { benchThroughput(b, "nop") }

func BenchmarkDurable(b *testing.B) { benchThroughput(b, dbPath(b.TempDir(), "durable")) }

// BenchmarkPostgres is the postgres throughput run, on pgtest's server
// (BENCH_WINDOW sets the window; rostergate-bench's default is 16384).
func BenchmarkPostgres(b *testing.B) {
	benchThroughput(b, "postgres:"+pgtest.Start(b).NewDatabase(b))
}

func benchThroughput(b *testing.B, store string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n := max(b.N, 1000)
	res, err := Throughput(ctx, store, n, envInt("BENCH_WINDOW", 4096))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond, "decisions/s")
	b.ReportMetric(res.Batches.Mean, "batch-mean")
}

func TestLatencySmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rate, n := envInt("BENCH_RATE", 1000), envInt("BENCH_LATENCY_N", 500)
	path := dbPath(t.TempDir(), "latency")
	// Twice on one path: a database left by the first run must not answer
	// the second (its replies would be no decisions, its outbox replayed).
	for run := range 2 {
		res, err := Latency(ctx, path, rate, n)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		t.Logf("%+v", res)
		if res.Decisions != n || res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.MaxMs < res.P99Ms || res.Achieved <= 0 || res.Batches.Commits == 0 {
			t.Errorf("run %d: %+v", run, res)
		}
	}
}
