package bench

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"rostergate/internal/xmpptest"
)

func TestRunProsodySmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs a real Prosody, and -short is set")
	}
	clients := envInt("BENCH_PROSODY_CLIENTS", 2)
	rounds := envInt("BENCH_PROSODY_ROUNDS", 20)
	level := ""
	if os.Getenv("BENCH_PROSODY_DEBUG_LOG") != "" {
		level = "debug"
	}
	timeout := 2 * time.Minute
	if s := os.Getenv("BENCH_PROSODY_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BENCH_PROSODY_TIMEOUT: %v", err)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	dir := os.Getenv("BENCH_PROSODY_DIR") // kept, to look at the logs and the database
	if dir == "" {
		dir = t.TempDir()
	}
	res, err := RunProsody(ctx, ProsodyConfig{Clients: clients, Rounds: rounds, Dir: dir, Timeout: timeout, LogLevel: level})
	if errors.Is(err, xmpptest.ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true, so this is an error)", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res)
	t.Logf("%s", out)
	if res.RostergatePerSec <= 0 || res.NativePerSec <= 0 || res.Ratio <= 0 {
		t.Errorf("rates: %+v", res)
	}
	if res.Clients != clients || res.RoundTrips != clients*rounds {
		t.Errorf("sizes: got %d clients, %d round trips; want %d, %d", res.Clients, res.RoundTrips, clients, clients*rounds)
	}
	if res.RostergateP50Ms <= 0 || res.RostergateP99Ms < res.RostergateP50Ms || res.NativeP50Ms <= 0 || res.NativeP99Ms < res.NativeP50Ms {
		t.Errorf("latencies: %+v", res)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct{ p, want int }{{50, 50}, {99, 99}, {100, 100}, {1, 1}} {
		if got := percentile(d, c.p); got != time.Duration(c.want) {
			t.Errorf("p%d = %d, want %d", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99); got != 1 {
		t.Errorf("p99 of one = %d", got)
	}
	if got := percentile([]time.Duration(nil), 50); got != 0 {
		t.Errorf("p50 of none = %d", got)
	}
}
