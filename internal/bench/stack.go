package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"rostergate/engine"
	"rostergate/internal/instance"
	"rostergate/internal/pgtest"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/postgres"
	"rostergate/store/sqlite"
	"rostergate/xmpp/component"
)

// The component domain and secret of every benchmark against the fake server.
const (
	benchDomain = "bots.bench.localhost"
	benchSecret = "bench-secret"
	// subscribedMarker is in every `subscribed` rostergate writes, and in nothing else it writes here.
	subscribedMarker = "type='subscribed'"
)

// nopStore is a Store that keeps nothing: every item is new, every commit
// succeeds at once. Against it the benchmark measures the stream layer and
// the decision logic alone.
type nopStore struct {
	mu  sync.Mutex
	seq int64
}

func (*nopStore) Get(context.Context, string, string) (roster.Item, error) {
	return roster.Item{}, store.ErrNotFound
}

func (*nopStore) GetMany(context.Context, []roster.Key) ([]roster.Item, error) { return nil, nil }

func (s *nopStore) Commit(context.Context, store.Batch) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq, nil
}

func (*nopStore) CreateWebKey(context.Context, store.WebKey) error { return nil }
func (*nopStore) CreateInvite(_ context.Context, inv store.Invite, _ *roster.Event) (store.Invite, error) {
	return inv, nil
}
func (*nopStore) InviteByHash(context.Context, []byte) (store.Invite, error) {
	return store.Invite{}, store.ErrNotFound
}
func (*nopStore) Invite(context.Context, int64) (store.Invite, error) {
	return store.Invite{}, store.ErrNotFound
}
func (*nopStore) Invites(context.Context) ([]store.Invite, error)       { return nil, nil }
func (*nopStore) Placements(context.Context) ([]store.Placement, error) { return nil, nil }
func (*nopStore) RevokeInvite(context.Context, int64, time.Time, *roster.Event) (bool, error) {
	return false, store.ErrNotFound
}
func (*nopStore) TakeWebKey(context.Context, []byte, string, time.Time) (store.WebKey, error) {
	return store.WebKey{}, store.ErrNotFound
}
func (*nopStore) WebKey(context.Context, []byte, string, time.Time, time.Duration) (store.WebKey, error) {
	return store.WebKey{}, store.ErrNotFound
}
func (*nopStore) DeleteWebKey(context.Context, []byte) error            { return nil }
func (*nopStore) TrimWebKeys(context.Context, time.Time) (int64, error) { return 0, nil }
func (*nopStore) Outbox(context.Context) ([]store.Outgoing, error)      { return nil, nil }
func (*nopStore) Delivered(context.Context, int64) error                { return nil }
func (*nopStore) Items(context.Context, store.Filter, func(roster.Item) error) error {
	return nil
}
func (*nopStore) Requests(context.Context) ([]roster.Request, error) { return nil, nil }
func (*nopStore) Request(context.Context, int64) (roster.Request, error) {
	return roster.Request{}, store.ErrNotFound
}
func (*nopStore) Lists(context.Context) ([]string, []string, error) { return nil, nil, nil }
func (*nopStore) EditList(context.Context, string, string, bool, *roster.Event) (bool, error) {
	return false, nil
}
func (*nopStore) Events(context.Context, time.Time, func(roster.Event) error) error { return nil }
func (*nopStore) AuditPage(context.Context, store.AuditQuery) ([]roster.Event, error) {
	return nil, nil
}
func (*nopStore) Import(context.Context, store.ImportRecords) error { return nil }
func (*nopStore) RequestDecision(context.Context, int64) (roster.Event, error) {
	return roster.Event{}, store.ErrNotFound
}
func (*nopStore) QueueAction(context.Context, string, string, string) (int64, error) {
	return 0, errors.New("bench: the no-op store queues nothing")
}
func (*nopStore) WaitingActions(context.Context) ([]store.Action, error) { return nil, nil }
func (*nopStore) FinishAction(context.Context, int64, string) error      { return nil }
func (*nopStore) Action(context.Context, int64) (store.Action, error) {
	return store.Action{}, store.ErrNotFound
}
func (*nopStore) BotEvents(context.Context, string, int64, int) ([]store.BotEvent, int64, error) {
	return nil, 0, nil
}
func (*nopStore) LastBotEvent(context.Context, string) (int64, error)          { return 0, nil }
func (*nopStore) TrimBotEvents(context.Context, time.Time, int) (int64, error) { return 0, nil }
func (*nopStore) TokenByHash(context.Context, []byte) (store.Token, error) {
	return store.Token{}, store.ErrNotFound
}
func (*nopStore) Tokens(context.Context) ([]store.Token, error)                { return nil, nil }
func (*nopStore) RevokeToken(context.Context, int64) error                     { return store.ErrNotFound }
func (*nopStore) TokenUsed(context.Context, int64, string, time.Time) error    { return nil }
func (*nopStore) BotEntities(context.Context) ([]string, error)                { return nil, nil }
func (*nopStore) Cursor(context.Context, string) (int64, bool, error)          { return 0, false, nil }
func (*nopStore) DeleteCursor(context.Context, string) error                   { return nil }
func (*nopStore) SetCursor(context.Context, string, int64) error               { return nil }
func (*nopStore) Presences(context.Context) (map[string]store.Presence, error) { return nil, nil }
func (*nopStore) SetPresence(context.Context, string, *store.Presence) error   { return nil }
func (*nopStore) CreateToken(context.Context, []byte, []string, bool) (store.Token, error) {
	return store.Token{}, errors.New("bench: the no-op store keeps no tokens")
}
func (*nopStore) Hold(context.Context) (func(), error) { return func() {}, nil }
func (*nopStore) Check(context.Context) error          { return nil }
func (*nopStore) Writable(context.Context) error       { return nil }
func (*nopStore) Close() error                         { return nil }

// batchStore counts the decisions each commit carries: the group commit's
// batch sizes.
type batchStore struct {
	store.Store
	mu    sync.Mutex
	sizes []int
	took  []time.Duration // each commit's duration
}

func (s *batchStore) Commit(ctx context.Context, b store.Batch) (int64, error) {
	start := time.Now()
	id, err := s.Store.Commit(ctx, b)
	if len(b.Changes) > 0 {
		s.mu.Lock()
		d := time.Since(start)
		s.sizes = append(s.sizes, len(b.Changes))
		s.took = append(s.took, d)
		s.mu.Unlock()
	}
	return id, err
}

func (s *batchStore) stats() BatchStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := batchStats(s.sizes)
	if len(s.took) > 0 {
		t := slices.Clone(s.took)
		slices.Sort(t)
		st.CommitP50Ms, st.CommitP99Ms, st.CommitMaxMs = ms(percentile(t, 50)), ms(percentile(t, 99)), ms(t[len(t)-1])
	}
	return st
}

// busy is the time spent in Commit so far.
func (s *batchStore) busy() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d time.Duration
	for _, t := range s.took {
		d += t
	}
	return d
}

// BatchStats describes the sizes of the commits (decisions per transaction).
type BatchStats struct {
	Commits int     `json:"commits"`
	Mean    float64 `json:"mean"`
	P50     int     `json:"p50"`
	P99     int     `json:"p99"`
	Max     int     `json:"max"`
	// How long the commits took (the transaction, fsync included), ms.
	CommitP50Ms float64 `json:"commit_p50_ms"`
	CommitP99Ms float64 `json:"commit_p99_ms"`
	CommitMaxMs float64 `json:"commit_max_ms"`
}

func batchStats(sizes []int) BatchStats {
	if len(sizes) == 0 {
		return BatchStats{}
	}
	s := slices.Clone(sizes)
	slices.Sort(s)
	sum := 0
	for _, v := range s {
		sum += v
	}
	return BatchStats{
		Commits: len(s),
		Mean:    math.Round(float64(sum)/float64(len(s))*10) / 10,
		P50:     percentile(s, 50),
		P99:     percentile(s, 99),
		Max:     s[len(s)-1],
	}
}

// acceptAll is the policy of the benchmarks: every request accepted.
func acceptAll() (*policy.Policy, error) {
	p, err := policy.Compile(policy.Config{Default: policy.Accept, UnknownEntity: policy.Accept})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return p, nil
}

// entities are the configured entities of the benchmarks.
func entities(n int) []engine.Entity {
	es := make([]engine.Entity, n)
	for i := range es {
		es[i] = engine.Entity{Local: "e" + strconv.Itoa(i)}
	}
	return es
}

// newComponent wires rostergate as the command line does, against server.
func newComponent(ctx context.Context, domain, server, secret string, st store.Store, s engine.Settings) (*component.Component, error) {
	inst, err := instance.New(ctx, instance.Config{Domain: domain, Server: server, Secret: secret, Store: st, Settings: s})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return inst.Component, nil
}

// rig is rostergate running in-process against the fake server.
type rig struct {
	srv  *server
	conn *serverConn
	stop func() error // stops rostergate and waits for it
}

// startRig starts rostergate with store against a fresh fake server and
// waits for its stream.
func startRig(ctx context.Context, st store.Store) (*rig, error) {
	srv, err := newServer(benchDomain, benchSecret)
	if err != nil {
		return nil, err
	}
	p, err := acceptAll()
	if err != nil {
		srv.close()
		return nil, err
	}
	comp, err := newComponent(ctx, benchDomain, srv.addr(), benchSecret, st, engine.Settings{Policy: p, Entities: entities(10), UnknownOnline: true})
	if err != nil {
		srv.close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- comp.Run(rctx) }()
	conn, err := srv.next(ctx)
	if err != nil {
		cancel()
		<-done
		srv.close()
		return nil, err
	}
	r := &rig{srv: srv, conn: conn}
	r.stop = func() error {
		cancel()
		_ = conn.Close()
		err := <-done
		srv.close()
		return err
	}
	return r, nil
}

// subscribe returns the subscribe presence of request i: each from a
// distinct contact, to one of ten entities.
func subscribe(i int) string {
	n := strconv.Itoa(i)
	return "<presence from='c" + n + "@load.example/r' to='e" + strconv.Itoa(i%10) + "@" + benchDomain + "' type='subscribe' id='s" + n + "'/>"
}

// ThroughputResult is a run of subscribe stanzas as fast as rostergate takes them.
type ThroughputResult struct {
	Store        string     `json:"store"`
	Decisions    int        `json:"decisions"`
	Seconds      float64    `json:"seconds"`
	PerSecond    float64    `json:"decisions_per_s"`
	Window       int        `json:"window"`
	Batches      BatchStats `json:"batches"`
	CommitBusy   float64    `json:"commit_busy"` // share of the run spent committing
	BytesWritten int64      `json:"reply_bytes"`
	// AllocPerDecision is the Go heap allocated per decision, in bytes, by
	// the whole process (rostergate and the load generator), and GCs the
	// collections during the run.
	AllocPerDecision float64 `json:"alloc_bytes_per_decision"`
	GCs              uint32  `json:"gcs"`
}

// Throughput streams n subscribe presences from distinct contacts to
// rostergate, with at most window of them unanswered, and counts the
// `subscribed` replies. store is "nop" (the stack limit) or a database path
// (durable, with the defaults a user gets).
func Throughput(ctx context.Context, store string, n, window int) (ThroughputResult, error) {
	res := ThroughputResult{Store: store, Decisions: n, Window: window}
	bs, r, k, stop, err := startRun(ctx, store, false)
	if err != nil {
		return res, err
	}
	defer stop()
	const chunk = 64 // stanzas per write
	var buf []byte
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for sent := 0; sent < n; {
		// Keep at most window requests unanswered.
		if err := k.wait(ctx, int64(sent-window+chunk)); err != nil {
			return res, err
		}
		buf = buf[:0]
		for end := min(sent+chunk, n); sent < end; sent++ {
			buf = append(buf, subscribe(sent)...)
		}
		if _, err := r.conn.Write(buf); err != nil {
			return res, fmt.Errorf("bench: writing requests: %w", err)
		}
	}
	if err := k.wait(ctx, int64(n)); err != nil {
		return res, err
	}
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	res.AllocPerDecision = math.Round(float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n))
	res.GCs = m1.NumGC - m0.NumGC
	res.Seconds = el.Seconds()
	res.PerSecond = math.Round(float64(n) / el.Seconds())
	res.Batches = bs.stats()
	res.CommitBusy = math.Round(bs.busy().Seconds()/el.Seconds()*100) / 100
	res.BytesWritten = k.bytes.Load()
	return res, nil
}

// startRun opens the store, starts rostergate on it against a fresh fake
// server, and counts the `subscribed` replies on its stream (recording when
// each was read, if record). stop undoes it all.
func startRun(ctx context.Context, store string, record bool) (*batchStore, *rig, *counter, func(), error) {
	bs, closeStore, err := openStore(ctx, store)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	r, err := startRig(ctx, bs)
	if err != nil {
		closeStore()
		return nil, nil, nil, nil, err
	}
	k := newCounter(subscribedMarker, record)
	go k.run(r.conn.r) // what the handshake read ahead included
	return bs, r, k, func() {
		_ = r.stop() // only the figures matter here
		closeStore()
	}, nil
}

// openStore opens the store a benchmark names, wrapped to count batches.
func openStore(ctx context.Context, store string) (*batchStore, func(), error) {
	if store == "nop" {
		return &batchStore{Store: &nopStore{}}, func() {}, nil
	}
	if dsn, ok := strings.CutPrefix(store, "postgres:"); ok {
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		return &batchStore{Store: db}, func() { _ = db.Close() }, nil
	}
	db, err := sqlite.Open(ctx, store)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	return &batchStore{Store: db}, func() { _ = db.Close() }, nil
}

// LatencyResult is the latency rostergate adds at a fixed offered rate.
type LatencyResult struct {
	Store     string  `json:"store"`
	Rate      int     `json:"offered_per_s"`
	Decisions int     `json:"decisions"`
	Achieved  float64 `json:"achieved_per_s"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// Batches are the commits behind the decisions, with their durations.
	Batches BatchStats `json:"batches"`
}

// Latency sends n subscribe presences at rate per second, one per write, and
// measures for each the time from its write to the read of its `subscribed`
// (loopback both ways included). Replies come in request order: one stream,
// decided in order.
func Latency(ctx context.Context, store string, rate, n int) (LatencyResult, error) {
	res := LatencyResult{Store: store, Rate: rate, Decisions: n}
	if rate <= 0 || n <= 0 {
		return res, fmt.Errorf("bench: latency: rate %d and count %d must be positive", rate, n)
	}
	// A database left by an earlier run would answer from its state and
	// replay its outbox: every request must be a new decision.
	if store != "nop" {
		removeDB(store)
		defer removeDB(store)
	}
	// Whatever earlier runs left to write back would otherwise be flushed
	// by the first fsyncs here, and show as rostergate's latency (seen: a
	// 0.5 s commit after the throughput runs).
	syscall.Sync()
	bs, r, k, stop, err := startRun(ctx, store, true)
	if err != nil {
		return res, err
	}
	defer stop()
	interval := time.Second / time.Duration(rate)
	sent := make([]time.Time, n)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return res, fmt.Errorf("bench: latency: %w", ctx.Err())
			}
		}
		sent[i] = time.Now()
		if _, err := io.WriteString(r.conn, subscribe(i)); err != nil {
			return res, fmt.Errorf("bench: latency: writing request %d: %w", i, err)
		}
	}
	if err := k.wait(ctx, int64(n)); err != nil {
		return res, err
	}
	res.Achieved = math.Round(float64(n) / time.Since(start).Seconds())
	got := k.recorded()
	lat := make([]time.Duration, n)
	for i := range n {
		lat[i] = got[i].Sub(sent[i])
	}
	slices.Sort(lat)
	res.P50Ms = ms(percentile(lat, 50))
	res.P99Ms = ms(percentile(lat, 99))
	res.MaxMs = ms(lat[n-1])
	res.Batches = bs.stats()
	switch {
	case lat[0] < 0:
		return res, fmt.Errorf("bench: latency: a reply came before its request (%v): replies are not the requests' own", lat[0])
	case res.Batches.Commits == 0:
		return res, errors.New("bench: latency: no decision was committed: the requests were not new")
	case k.n.Load() != int64(n):
		return res, fmt.Errorf("bench: latency: %d replies for %d requests", k.n.Load(), n)
	}
	return res, nil
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// percentile returns the p-th percentile (nearest rank) of sorted, or the
// zero value of none.
func percentile[T cmp.Ordered](sorted []T, p int) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	k := (len(sorted)*p + 99) / 100 // ceil(n*p/100)
	return sorted[min(max(k, 1), len(sorted))-1]
}

// removeDB removes a database file and its WAL and shared-memory files.
func removeDB(path string) {
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		_ = os.Remove(f)
	}
}

// dbPath is the database file of a benchmark in dir.
func dbPath(dir, name string) string { return filepath.Join(dir, name+".db") }

// ThroughputStats is the median of several throughput runs of one store.
type ThroughputStats struct {
	PerSecond float64            `json:"decisions_per_s"` // the median run's
	Batches   BatchStats         `json:"batches"`         // the median run's
	Runs      []ThroughputResult `json:"runs"`
}

// ThroughputRuns runs Throughput repeat times for each of stores ("nop",
// "durable" for a new database file in dir each time, or "postgres" for a
// new database on pg each time), alternating between them so that all see
// the same machine, and returns the median of each (for an even count, the
// upper of the two middle runs). If a run fails it returns the error and no
// figures.
func ThroughputRuns(ctx context.Context, stores []string, dir string, n, window, repeat int, pg *pgtest.Server) (map[string]*ThroughputStats, error) {
	out := map[string]*ThroughputStats{}
	for i := range repeat {
		for _, s := range stores {
			path := s
			switch s {
			case "nop":
			case "postgres":
				if pg == nil {
					return nil, errors.New("bench: no PostgreSQL for the postgres runs")
				}
				name := fmt.Sprintf("bench_%d", i)
				dsn, err := pg.CreateDatabase(ctx, name)
				if err != nil {
					return nil, err
				}
				defer func() { _ = pg.DropDatabase(context.WithoutCancel(ctx), name) }()
				path = "postgres:" + dsn
			default:
				path = filepath.Join(dir, fmt.Sprintf("%s-%d.db", s, i))
			}
			r, err := Throughput(ctx, path, n, window)
			if s != "nop" && s != "postgres" {
				// Tens of MB each: gone before the next run, so that its
				// writeback does not stall the next run's fsyncs.
				removeDB(path)
			}
			if err != nil {
				return nil, fmt.Errorf("%s run %d: %w", s, i+1, err)
			}
			r.Store = s
			st := out[s]
			if st == nil {
				st = &ThroughputStats{}
				out[s] = st
			}
			st.Runs = append(st.Runs, r)
		}
	}
	for _, st := range out {
		runs := slices.Clone(st.Runs)
		slices.SortFunc(runs, func(a, b ThroughputResult) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
		med := runs[len(runs)/2]
		st.PerSecond, st.Batches = med.PerSecond, med.Batches
	}
	return out, nil
}
