package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics GETs base/metrics and returns its status, each sample by
// its series as written (name{label="value",...}), and every label value.
func scrapeMetrics(t *testing.T, base string) (int, map[string]float64, []string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	var values []string
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, samples, values
	}
	label := regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_]*="((?:[^"\\]|\\.)*)"`)
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("not a sample: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("not a sample: %q", line)
		}
		samples[line[:i]] = v
		for _, m := range label.FindAllStringSubmatch(line[:i], -1) {
			values = append(values, m[1])
		}
	}
	return resp.StatusCode, samples, values
}

// waitMetric scrapes base/metrics until series has value want, at most
// waitFor, and returns the last scrape.
func waitMetric(t *testing.T, base, series string, want float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		status, s, _ := scrapeMetrics(t, base)
		if status != http.StatusOK {
			t.Fatalf("GET /metrics: %d", status)
		}
		got, ok := s[series]
		if ok && got == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present: %t) after %s, want %v", series, got, ok, waitFor, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
