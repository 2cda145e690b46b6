package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-only", "stack,bogus"}, `unknown benchmark "bogus"`},
		{[]string{"-only", ","}, "names no benchmark"},
		{[]string{"-n", "0"}, "-n 0: must be at least 1"},
		{[]string{"-window", "10"}, "-window 10: must be at least 64"},
		{[]string{"-scale-small", "5", "-scale-items", "5"}, "must be below -scale-items 5"},
		{[]string{"-rate", "x"}, `invalid value "x" for flag -rate`},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-timeout", "0s"}, "-timeout 0s: must be positive"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", c.args, code)
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: stderr %q, want %q", c.args, stderr.String(), c.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-scale-items") {
		t.Errorf("-h: exit %d, %q", code, stderr.String())
	}
}

// A small run of the command itself: the table, the targets and the JSON.
func TestSmallRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "figures.json")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-only", "stack,durable,latency", "-n", "2000", "-repeat", "2", "-latency-n", "100", "-json", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	for _, want := range []string{"1 stack limit", "2 durable", "durable / stack", "3 latency at 1000/s", "durable vs stack", "p99 ≤ 2 ms"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Stack == nil || rep.Durable == nil || len(rep.Stack.Runs) != 2 || len(rep.Durable.Runs) != 2 || rep.Latency == nil {
		t.Fatalf("report: %s", data)
	}
	if rep.Ratio <= 0 || rep.Durable.PerSecond <= 0 || rep.Latency.Decisions != 100 || len(rep.Targets) != 3 || rep.Prosody != nil || rep.Scale != nil {
		t.Errorf("report: %s", data)
	}
}

func TestThousands(t *testing.T) {
	for f, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -20000: "-20,000"} {
		if got := thousands(f); got != want {
			t.Errorf("thousands(%v) = %q, want %q", f, got, want)
		}
	}
}
