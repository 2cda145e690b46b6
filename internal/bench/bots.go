package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rostergate/engine"
	"rostergate/httpapi"
	"rostergate/internal/instance"
	"rostergate/webhook"
)

// BotsResult are the bot API's figures: messages from the API to the
// stream, events from the stream to a webhook, the latency a webhook adds,
// and subscription decisions while a webhook receiver is down.
type BotsResult struct {
	APIMessages    int     `json:"api_messages"`
	APIPerSec      float64 `json:"api_messages_per_s"`
	APIClients     int     `json:"api_clients"`
	WebhookEvents  int     `json:"webhook_events"`
	WebhookPerSec  float64 `json:"webhook_events_per_s"`
	LatencyRate    int     `json:"latency_offered_per_s"`
	LatencyN       int     `json:"latency_messages"`
	LatencyP50Ms   float64 `json:"latency_p50_ms"`
	LatencyP99Ms   float64 `json:"latency_p99_ms"`
	LatencyMaxMs   float64 `json:"latency_max_ms"`
	DecisionsBase  float64 `json:"decisions_per_s_without_http"`
	DecisionsDown  float64 `json:"decisions_per_s_webhook_down"`
	DecisionsRatio float64 `json:"decisions_ratio"`
	DownFailures   int64   `json:"webhook_down_failures"`
}

// BotsConfig sizes the bot benchmarks.
type BotsConfig struct {
	Messages  int // API messages, and stream messages for the webhook run
	Clients   int // concurrent API clients
	Rate, N   int // the latency run: messages per second, and how many
	Decisions int // the decisions of each run with and without a down webhook
	Dir       string
}

// botRig is rostergate with the HTTP API, in-process against the fake server.
type botRig struct {
	*rig
	inst *instance.Instance
	api  string
}

func startBotRig(ctx context.Context, db string, ents []engine.Entity, hooks []httpapi.Webhook) (*botRig, error) {
	bs, closeStore, err := openStore(ctx, db)
	if err != nil {
		return nil, err
	}
	srv, err := newServer(benchDomain, benchSecret)
	if err != nil {
		closeStore()
		return nil, err
	}
	p, err := acceptAll()
	if err != nil {
		srv.close()
		closeStore()
		return nil, err
	}
	inst, err := instance.New(ctx, instance.Config{Domain: benchDomain, Server: srv.addr(), Secret: benchSecret, Store: bs,
		Settings: engine.Settings{Policy: p, Entities: ents, UnknownOnline: true},
		HTTP:     &httpapi.Options{Listen: "127.0.0.1:0", Webhooks: hooks}})
	if err != nil {
		srv.close()
		closeStore()
		return nil, fmt.Errorf("bench: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- inst.Run(rctx) }()
	conn, err := srv.next(ctx)
	if err != nil {
		cancel()
		<-done
		srv.close()
		closeStore()
		return nil, err
	}
	r := &rig{srv: srv, conn: conn}
	var once sync.Once
	var stopErr error
	r.stop = func() error { // once, however often called
		once.Do(func() {
			cancel()
			_ = conn.Close()
			stopErr = <-done
			srv.close()
			closeStore()
		})
		return stopErr
	}
	// The API listens before the stream is opened (instance.Run).
	return &botRig{rig: r, inst: inst, api: "http://" + inst.HTTP.Addr().String()}, nil
}

// hookCounter is a webhook receiver that takes every event (or none, when
// down) and records when each message event with a numbered body came.
type hookCounter struct {
	down  bool
	n     atomic.Int64
	fails atomic.Int64
	mu    sync.Mutex
	at    map[int]time.Time
	moved chan struct{}
}

var bodyNum = []byte(`"body":"m`)

func (h *hookCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	now := time.Now()
	if h.down {
		h.fails.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if i := bytes.Index(b, bodyNum); i >= 0 {
		rest := b[i+len(bodyNum):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			if n, err := strconv.Atoi(string(rest[:j])); err == nil {
				h.mu.Lock()
				h.at[n] = now
				h.mu.Unlock()
			}
		}
	}
	h.n.Add(1)
	select {
	case h.moved <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookCounter) wait(ctx context.Context, n int64) error {
	for h.n.Load() < n {
		select {
		case <-h.moved:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("bench: webhook: %d of %d events: %w", h.n.Load(), n, ctx.Err())
		}
	}
	return nil
}

func startHook(h *hookCounter) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/", func() { _ = srv.Close() }, nil
}

// message is message i from a stranger to entity (which accepts anyone's).
func message(entity string, i int) string {
	n := strconv.Itoa(i)
	return "<message from='u" + n + "@load.example/r' to='" + entity + "@" + benchDomain + "' type='chat' id='m" + n + "'><body>m" + n + "</body></message>"
}

// RunBots runs the bot benchmarks; see BotsResult.
func RunBots(ctx context.Context, cfg BotsConfig) (BotsResult, error) {
	res := BotsResult{APIMessages: cfg.Messages, APIClients: cfg.Clients, WebhookEvents: cfg.Messages, LatencyRate: cfg.Rate, LatencyN: cfg.N}
	secret, err := webhook.NewSecret()
	if err != nil {
		return res, err
	}
	sec, err := webhook.ParseSecret(secret)
	if err != nil {
		return res, err
	}
	up := &hookCounter{at: map[int]time.Time{}, moved: make(chan struct{}, 1)}
	hookURL, stopHook, err := startHook(up)
	if err != nil {
		return res, err
	}
	defer stopHook()

	db := dbPath(cfg.Dir, "bots")
	removeDB(db)
	defer removeDB(db)
	ents := []engine.Entity{
		{Local: "api", SendTo: engine.SendAnyone},
		{Local: "hook", Webhook: true, AcceptMessages: engine.AcceptAnyone},
	}
	br, err := startBotRig(ctx, db, ents, []httpapi.Webhook{{Entity: "hook", URL: hookURL, Secret: sec, MaxAge: time.Hour}})
	if err != nil {
		return res, err
	}
	defer br.stop()
	k := newCounter("<message ", false)
	go k.run(br.conn.r)

	// 1. API → stream.
	tok, _, err := br.inst.Service.CreateToken(ctx, []string{"api"})
	if err != nil {
		return res, err
	}
	url := br.api + "/api/v1/entities/api/messages"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}, Timeout: 30 * time.Second}
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Clients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.Messages) || ctx.Err() != nil {
					return
				}
				body := `{"to":"u` + strconv.FormatInt(i, 10) + `@load.example","body":"hello ` + strconv.FormatInt(i, 10) + `"}`
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						err = fmt.Errorf("bench: API answered %s", resp.Status)
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	if err := k.wait(ctx, int64(cfg.Messages)); err != nil {
		return res, err
	}
	res.APIPerSec = math.Round(float64(cfg.Messages) / time.Since(start).Seconds())

	// 2. Stream → webhook: messages written as fast as the stream takes them.
	start = time.Now()
	var buf []byte
	for i := 0; i < cfg.Messages; {
		buf = buf[:0]
		for end := min(i+64, cfg.Messages); i < end; i++ {
			buf = append(buf, message("hook", i)...)
		}
		if _, err := br.conn.Write(buf); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}
	if err := up.wait(ctx, int64(cfg.Messages)); err != nil {
		return res, err
	}
	res.WebhookPerSec = math.Round(float64(cfg.Messages) / time.Since(start).Seconds())

	// 3. Latency user → webhook at a steady rate, from a settled start:
	// the garbage of the run before collected, its writes checkpointed.
	runtime.GC()
	time.Sleep(time.Second)
	base := cfg.Messages
	sent := make([]time.Time, cfg.N)
	interval := time.Second / time.Duration(cfg.Rate)
	start = time.Now()
	for i := range cfg.N {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		sent[i] = time.Now()
		if _, err := io.WriteString(br.conn, message("hook", base+i)); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}
	if err := up.wait(ctx, int64(cfg.Messages+cfg.N)); err != nil {
		return res, err
	}
	up.mu.Lock()
	lat := make([]time.Duration, 0, cfg.N)
	for i := range cfg.N {
		if at, ok := up.at[base+i]; ok {
			lat = append(lat, at.Sub(sent[i]))
		}
	}
	up.mu.Unlock()
	if len(lat) != cfg.N {
		return res, fmt.Errorf("bench: webhook latency: %d of %d messages timed", len(lat), cfg.N)
	}
	slices.Sort(lat)
	res.LatencyP50Ms, res.LatencyP99Ms, res.LatencyMaxMs = ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(lat[len(lat)-1])
	if err := br.stop(); err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}

	// 4. Decisions: without HTTP, then with every entity's webhook down.
	window := 4096
	basePath := dbPath(cfg.Dir, "bots-base")
	downPath := dbPath(cfg.Dir, "bots-down")
	defer removeDB(basePath)
	defer removeDB(downPath)
	var baseRates, downRates []float64
	down := &hookCounter{down: true, at: map[int]time.Time{}, moved: make(chan struct{}, 1)}
	downURL, stopDown, err := startHook(down)
	if err != nil {
		return res, err
	}
	defer stopDown()
	for round := range 3 {
		removeDB(basePath)
		r, err := Throughput(ctx, basePath, cfg.Decisions, window)
		if err != nil {
			return res, err
		}
		baseRates = append(baseRates, r.PerSecond)
		removeDB(downPath)
		d, err := decisionsWebhookDown(ctx, downPath, downURL, sec, cfg.Decisions, window)
		if err != nil {
			return res, fmt.Errorf("round %d: %w", round+1, err)
		}
		downRates = append(downRates, d)
	}
	slices.Sort(baseRates)
	slices.Sort(downRates)
	res.DecisionsBase, res.DecisionsDown = baseRates[1], downRates[1]
	res.DecisionsRatio = math.Round(res.DecisionsDown/res.DecisionsBase*100) / 100
	res.DownFailures = down.fails.Load()
	return res, nil
}

// decisionsWebhookDown is Throughput with a bot behind each of the ten
// entities, whose webhook receiver answers 503 to everything.
func decisionsWebhookDown(ctx context.Context, db, url string, sec webhook.Secret, n, window int) (float64, error) {
	ents := entities(10)
	var hooks []httpapi.Webhook
	for i := range ents {
		ents[i].Webhook = true
		hooks = append(hooks, httpapi.Webhook{Entity: ents[i].Local, URL: url, Secret: sec, MaxAge: time.Hour})
	}
	br, err := startBotRig(ctx, db, ents, hooks)
	if err != nil {
		return 0, err
	}
	defer br.stop()
	k := newCounter(subscribedMarker, false)
	go k.run(br.conn.r)
	const chunk = 64
	var buf []byte
	start := time.Now()
	for sent := 0; sent < n; {
		if err := k.wait(ctx, int64(sent-window+chunk)); err != nil {
			return 0, err
		}
		buf = buf[:0]
		for end := min(sent+chunk, n); sent < end; sent++ {
			buf = append(buf, subscribe(sent)...)
		}
		if _, err := br.conn.Write(buf); err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
	}
	if err := k.wait(ctx, int64(n)); err != nil {
		return 0, err
	}
	return math.Round(float64(n) / time.Since(start).Seconds()), nil
}
