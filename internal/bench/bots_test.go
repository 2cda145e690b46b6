package bench

import (
	"context"
	"testing"
	"time"
)

// The bot benchmarks run end to end at a small size: every message reaches
// the stream, every event the webhook, and the figures are filled in.
func TestRunBots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := RunBots(ctx, BotsConfig{Messages: 300, Clients: 4, Rate: 100, N: 50, Decisions: 500, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.APIPerSec <= 0 || r.WebhookPerSec <= 0 || r.LatencyP99Ms <= 0 || r.DecisionsBase <= 0 || r.DecisionsDown <= 0 || r.DownFailures == 0 {
		t.Errorf("figures missing: %+v", r)
	}
	t.Logf("%+v", r)
}
