// Command rostergate-bench measures rostergate: the ceiling of its own stream
// layer, the durable store behind it, the latency it adds, a run through a
// real Prosody, and the presence broadcast of a million-item roster. It
// prints a table, checks the performance targets, and writes every figure
// as JSON. docs/benchmarks.md explains each figure.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"rostergate/internal/bench"
	"rostergate/internal/pgtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// benchmarks are the benchmarks' names, in the order they run.
func benchmarks() []string {
	return []string{"stack", "durable", "postgres", "latency", "prosody", "scale", "scale-postgres", "bots"}
}

type options struct {
	only          []string
	decisions     int
	window        int
	repeat        int
	rate          int
	latencyN      int
	clients       int
	rounds        int
	scaleItems    int
	scaleSmall    int
	scaleEntities int
	botMessages   int
	botClients    int
	botRate       int
	botLatencyN   int
	botDecisions  int
	rostergate    string
	jsonPath      string
	dir           string
	strict        bool
	timeout       time.Duration
}

// errUsage is a bad command line: the flag package has said why.
var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	allBenchmarks := benchmarks()
	fs := flag.NewFlagSet("rostergate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: rostergate-bench [flags]\n\nRuns the benchmarks (%s), prints a table, checks the targets and writes JSON.\n\nFlags:\n",
			strings.Join(allBenchmarks, ", "))
		fs.PrintDefaults()
	}
	only := fs.String("only", strings.Join(allBenchmarks, ","), "comma-separated `list` of benchmarks to run")
	fs.IntVar(&o.decisions, "n", 300000, "subscribe requests per throughput run (stack, durable)")
	fs.IntVar(&o.window, "window", 16384, "requests the load generator keeps unanswered at most")
	fs.IntVar(&o.repeat, "repeat", 3, "throughput runs of each store, alternating; the median is reported")
	fs.IntVar(&o.rate, "rate", 1000, "offered requests per second of the latency run")
	fs.IntVar(&o.latencyN, "latency-n", 10000, "requests of the latency run")
	fs.IntVar(&o.clients, "clients", 8, "client connections M of the Prosody run")
	fs.IntVar(&o.rounds, "rounds", 200, "round trips per client and flow of the Prosody run")
	fs.IntVar(&o.scaleItems, "scale-items", 1000000, "roster items of the scale run")
	fs.IntVar(&o.scaleSmall, "scale-small", 100000, "roster items of a second, smaller scale run, to compare RSS; 0 skips it")
	fs.IntVar(&o.scaleEntities, "scale-entities", 10, "entities the scale run's items are spread over")
	fs.IntVar(&o.botMessages, "bot-messages", 50000, "messages of the bots run: API → stream, and stream → webhook")
	fs.IntVar(&o.botClients, "bot-clients", 16, "concurrent API clients of the bots run")
	fs.IntVar(&o.botRate, "bot-rate", 100, "offered messages per second of the bots run's webhook latency")
	fs.IntVar(&o.botLatencyN, "bot-latency-n", 2000, "messages of the bots run's webhook latency")
	fs.IntVar(&o.botDecisions, "bot-decisions", 100000, "requests per run of the bots run's decisions with a webhook down (3 runs each way)")
	fs.StringVar(&o.rostergate, "rostergate", "./rostergate", "the rostergate `binary` the scale run starts (make build)")
	fs.StringVar(&o.jsonPath, "json", "rostergate-bench.json", "`file` the figures are written to as JSON; \"\" for none")
	fs.StringVar(&o.dir, "dir", "", "scratch `directory` (default: a new temporary one, removed afterwards)")
	fs.BoolVar(&o.strict, "strict", false, "exit 1 when a target is missed")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound for each benchmark")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rostergate-bench: unexpected argument %q\n", fs.Arg(0))
		return o, errUsage
	}
	for s := range strings.SplitSeq(*only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allBenchmarks, s) {
			fmt.Fprintf(stderr, "rostergate-bench: -only: unknown benchmark %q (want some of %s)\n", s, strings.Join(allBenchmarks, ", "))
			return o, errUsage
		}
		if !slices.Contains(o.only, s) {
			o.only = append(o.only, s)
		}
	}
	if len(o.only) == 0 {
		fmt.Fprintln(stderr, "rostergate-bench: -only names no benchmark")
		return o, errUsage
	}
	for _, p := range []struct {
		name string
		v    int
		min  int
	}{
		{"n", o.decisions, 1}, {"window", o.window, 64}, {"repeat", o.repeat, 1}, {"rate", o.rate, 1},
		{"latency-n", o.latencyN, 1}, {"clients", o.clients, 1}, {"rounds", o.rounds, 1},
		{"scale-items", o.scaleItems, 1}, {"scale-small", o.scaleSmall, 0}, {"scale-entities", o.scaleEntities, 1},
		{"bot-messages", o.botMessages, 1}, {"bot-clients", o.botClients, 1}, {"bot-rate", o.botRate, 1},
		{"bot-latency-n", o.botLatencyN, 1}, {"bot-decisions", o.botDecisions, 64},
	} {
		if p.v < p.min {
			fmt.Fprintf(stderr, "rostergate-bench: -%s %d: must be at least %d\n", p.name, p.v, p.min)
			return o, errUsage
		}
	}
	if o.timeout <= 0 {
		fmt.Fprintf(stderr, "rostergate-bench: -timeout %v: must be positive\n", o.timeout)
		return o, errUsage
	}
	if o.scaleSmall >= o.scaleItems {
		fmt.Fprintf(stderr, "rostergate-bench: -scale-small %d: must be below -scale-items %d (or 0)\n", o.scaleSmall, o.scaleItems)
		return o, errUsage
	}
	return o, nil
}

// Report is the JSON the command writes.
type Report struct {
	Started  time.Time              `json:"started"`
	Machine  Machine                `json:"machine"`
	Stack    *bench.ThroughputStats `json:"stack,omitempty"`
	Durable  *bench.ThroughputStats `json:"durable,omitempty"`
	Ratio    float64                `json:"durable_to_stack,omitempty"`
	Postgres *bench.ThroughputStats `json:"postgres,omitempty"`
	PGRatio  float64                `json:"postgres_to_durable,omitempty"`
	Latency  *bench.LatencyResult   `json:"latency,omitempty"`
	Prosody  *bench.ProsodyResult   `json:"prosody,omitempty"`
	Scale    []bench.ScaleResult    `json:"scale,omitempty"`
	// ScalePostgres is the scale run with the items in PostgreSQL.
	ScalePostgres []bench.ScaleResult `json:"scale_postgres,omitempty"`
	Bots          *bench.BotsResult   `json:"bots,omitempty"`
	Targets       []Target            `json:"targets"`
	Failures      []string            `json:"errors,omitempty"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu,omitempty"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
}

// Target is one of the performance targets and whether this run met it.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	rep, err := measure(ctx, o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "rostergate-bench:", err)
		return 1
	}
	printTable(stdout, rep)
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(o.jsonPath, append(data, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "rostergate-bench: writing JSON:", err)
			return 1
		}
		fmt.Fprintf(stdout, "\nfigures written to %s\n", o.jsonPath)
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	if o.strict {
		for _, t := range rep.Targets {
			if !t.Met {
				return 1
			}
		}
	}
	return 0
}

// measure runs the benchmarks o selects. A benchmark that fails is
// reported in Failures and the others still run.
func measure(ctx context.Context, o options, stderr io.Writer) (*Report, error) {
	rep := &Report{Started: time.Now().UTC(), Machine: machine()}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "rostergate-bench-")
		if err != nil {
			return nil, fmt.Errorf("scratch directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	want := func(name string) bool { return slices.Contains(o.only, name) }
	fail := func(name string, err error) {
		fmt.Fprintf(stderr, "rostergate-bench: %s: %v\n", name, err)
		rep.Failures = append(rep.Failures, name+": "+err.Error())
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "… "+format+"\n", a...) }

	// One PostgreSQL for the benchmarks that use it, each on its own database.
	var pg *pgtest.Server
	var pgErr error
	if want("postgres") || want("scale-postgres") {
		progress("postgres: starting a PostgreSQL on loopback (Debian's postgresql, fsync on)")
		if pg, pgErr = pgtest.StartServer(ctx); pgErr == nil {
			defer func() {
				_ = pg.Stop()
				_ = os.RemoveAll(pg.Dir)
			}()
		}
	}
	if want("stack") || want("durable") || want("postgres") {
		var stores []string
		if want("stack") {
			stores = append(stores, "nop")
		}
		if want("durable") {
			stores = append(stores, "durable")
		}
		if want("postgres") {
			if pg != nil {
				stores = append(stores, "postgres")
			} else {
				fail("postgres", pgErr)
			}
		}
		progress("throughput: %d requests, %d runs of %s", o.decisions, o.repeat, strings.Join(stores, ", "))
		bctx, cancel := context.WithTimeout(ctx, o.timeout)
		st, err := bench.ThroughputRuns(bctx, stores, dir, o.decisions, o.window, o.repeat, pg)
		cancel()
		if err != nil {
			fail("throughput", err)
		}
		rep.Stack, rep.Durable, rep.Postgres = st["nop"], st["durable"], st["postgres"]
		if rep.Stack != nil && rep.Durable != nil && rep.Stack.PerSecond > 0 {
			rep.Ratio = round3(rep.Durable.PerSecond / rep.Stack.PerSecond)
		}
		if rep.Postgres != nil && rep.Durable != nil && rep.Durable.PerSecond > 0 {
			rep.PGRatio = round3(rep.Postgres.PerSecond / rep.Durable.PerSecond)
		}
	}
	if want("latency") {
		progress("latency: %d requests at %d/s against the durable store", o.latencyN, o.rate)
		bctx, cancel := context.WithTimeout(ctx, o.timeout)
		r, err := bench.Latency(bctx, filepath.Join(dir, "latency.db"), o.rate, o.latencyN)
		cancel()
		if err != nil {
			fail("latency", err)
		} else {
			r.Store = "durable" // not the scratch path
			rep.Latency = &r
		}
	}
	if want("prosody") {
		progress("prosody: %d clients × %d round trips, rostergate then native", o.clients, o.rounds)
		r, err := bench.RunProsody(ctx, bench.ProsodyConfig{Clients: o.clients, Rounds: o.rounds, Dir: filepath.Join(dir, "prosody-run"), Timeout: o.timeout})
		if err != nil {
			fail("prosody", err)
		} else {
			rep.Prosody = &r
		}
	}
	scale := func(name, dsnFor string) []bench.ScaleResult {
		bin, err := filepath.Abs(o.rostergate)
		if err == nil {
			_, err = os.Stat(bin)
		}
		if err != nil {
			fail(name, fmt.Errorf("rostergate binary: %w (run make build, or pass -rostergate)", err))
			return nil
		}
		sizes := []int{o.scaleItems}
		if o.scaleSmall > 0 {
			sizes = []int{o.scaleSmall, o.scaleItems}
		}
		var out []bench.ScaleResult
		for _, n := range sizes {
			progress("%s: %d items over %d entities", name, n, o.scaleEntities)
			d := filepath.Join(dir, fmt.Sprintf("%s-%d", name, n))
			if err := os.MkdirAll(d, 0o755); err != nil {
				fail(name, err)
				break
			}
			var dsn string
			if dsnFor != "" {
				db := fmt.Sprintf("%s_%d", dsnFor, n)
				if dsn, err = pg.CreateDatabase(ctx, db); err != nil {
					fail(name, err)
					break
				}
				defer func() { _ = pg.DropDatabase(context.Background(), db) }()
			}
			r, err := bench.Scale(ctx, bench.ScaleConfig{Items: n, Entities: o.scaleEntities, Binary: bin, Dir: d, Timeout: o.timeout, DSN: dsn})
			if err != nil {
				fail(name, err)
				break
			}
			out = append(out, r)
			_ = os.RemoveAll(d) // a million items take 50 MB
		}
		return out
	}
	if want("scale") {
		rep.Scale = scale("scale", "")
	}
	if want("scale-postgres") {
		if pg == nil {
			fail("scale-postgres", pgErr)
		} else {
			rep.ScalePostgres = scale("scale-postgres", "scale")
		}
	}
	if want("bots") {
		progress("bots: %d messages API → stream (%d clients) and stream → webhook; webhook latency at %d/s; %d decisions with a webhook down",
			o.botMessages, o.botClients, o.botRate, o.botDecisions)
		bctx, cancel := context.WithTimeout(ctx, o.timeout)
		r, err := bench.RunBots(bctx, bench.BotsConfig{Messages: o.botMessages, Clients: o.botClients, Rate: o.botRate, N: o.botLatencyN,
			Decisions: o.botDecisions, Dir: dir})
		cancel()
		if err != nil {
			fail("bots", err)
		} else {
			rep.Bots = &r
		}
	}
	rep.Targets = targets(rep, o.scaleItems, o.scaleSmall)
	return rep, nil
}

// targets checks the figures against the targets.
// The scale targets are judged on the run of scaleItems items (and
// compared with the one of scaleSmall), whatever else ran.
func targets(rep *Report, scaleItems, scaleSmall int) []Target {
	var ts []Target
	if rep.Stack != nil && rep.Durable != nil {
		ts = append(ts, Target{
			Name: "durable vs stack", Want: "≥ 50% of the stack limit",
			Got: fmt.Sprintf("%.0f%%", rep.Ratio*100), Met: rep.Ratio >= 0.5,
		})
	}
	if rep.Durable != nil {
		ts = append(ts, Target{
			Name: "durable rate", Want: "≥ 20,000 decisions/s",
			Got: thousands(rep.Durable.PerSecond) + "/s", Met: rep.Durable.PerSecond >= 20000,
		})
	}
	if p := rep.Postgres; p != nil {
		ts = append(ts, Target{
			Name: "postgres rate", Want: "≥ 30,000 decisions/s",
			Got: thousands(p.PerSecond) + "/s", Met: p.PerSecond >= 30000,
		})
		if rep.Durable != nil {
			ts = append(ts, Target{
				Name: "postgres vs SQLite", Want: "≥ 25% of SQLite's, same run",
				Got: fmt.Sprintf("%.0f%%", rep.PGRatio*100), Met: rep.PGRatio >= 0.25,
			})
		}
	}
	if l := rep.Latency; l != nil {
		ts = append(ts, Target{
			Name: fmt.Sprintf("latency at %d/s", l.Rate), Want: "p99 ≤ 2 ms",
			Got: fmt.Sprintf("p99 %.3f ms", l.P99Ms), Met: l.P99Ms <= 2,
		})
	}
	if p := rep.Prosody; p != nil {
		ts = append(ts, Target{
			Name: "through Prosody", Want: "rostergate ≥ native",
			Got: fmt.Sprintf("%.2f× native", p.Ratio), Met: p.Ratio >= 1,
		})
	}
	if b := rep.Bots; b != nil {
		ts = append(ts,
			Target{Name: "API → stream", Want: "≥ 10,000 messages/s", Got: thousands(b.APIPerSec) + "/s", Met: b.APIPerSec >= 10000},
			Target{Name: "stream → webhook", Want: "≥ 5,000 events/s", Got: thousands(b.WebhookPerSec) + "/s", Met: b.WebhookPerSec >= 5000},
			Target{Name: fmt.Sprintf("user → webhook at %d/s", b.LatencyRate), Want: "p99 ≤ 5 ms",
				Got: fmt.Sprintf("p99 %.3f ms", b.LatencyP99Ms), Met: b.LatencyP99Ms <= 5},
			Target{Name: "decisions, webhook down", Want: "≥ 90% of without HTTP",
				Got: fmt.Sprintf("%.0f%%", b.DecisionsRatio*100), Met: b.DecisionsRatio >= 0.9})
	}
	ts = append(ts, scaleTargets("", rep.Scale, scaleItems, scaleSmall)...)
	ts = append(ts, scaleTargets("PG ", rep.ScalePostgres, scaleItems, scaleSmall)...)
	return ts
}

// scaleTargets checks one store's scale runs; prefix names the store.
func scaleTargets(prefix string, runs []bench.ScaleResult, scaleItems, scaleSmall int) []Target {
	var ts []Target
	var big, small *bench.ScaleResult
	for i := range runs {
		switch runs[i].Items {
		case scaleItems:
			big = &runs[i]
		case scaleSmall:
			small = &runs[i]
		}
	}
	if big != nil {
		// The peak of the whole run: connect, broadcast, idle and the
		// unavailable broadcast of the stop.
		peak := max(big.PeakRSSMiB, big.PeakRSSShutdownMiB)
		ts = append(ts,
			Target{
				Name: prefix + fmt.Sprintf("broadcast to %s", thousands(float64(big.Items))), Want: "≤ 60 s",
				Got: fmt.Sprintf("%.1f s", big.BroadcastSeconds), Met: big.BroadcastSeconds <= 60,
			},
			Target{
				Name: prefix + fmt.Sprintf("peak RSS at %s items", thousands(float64(big.Items))), Want: "≤ 100 MB",
				Got: fmt.Sprintf("%.1f MiB", peak), Met: peak*1.048576 <= 100,
			})
		if small != nil {
			// Ten times the items may not double the peak: what grows is
			// SQLite's page cache, up to its bound, not a copy of the roster.
			ts = append(ts, Target{
				Name: prefix + "RSS vs roster size", Want: fmt.Sprintf("×%d items: peak < ×2", big.Items/small.Items),
				Got: fmt.Sprintf("%.1f → %.1f MiB", max(small.PeakRSSMiB, small.PeakRSSShutdownMiB), peak),
				Met: peak < 2*max(small.PeakRSSMiB, small.PeakRSSShutdownMiB),
			})
		}
	}
	return ts
}

func printTable(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "rostergate-bench, %s, %d CPUs %s, %s\n\n", rep.Started.Format(time.RFC3339), m.CPUs, m.CPU, m.GoVersion)
	row := func(name, figure, detail string) { fmt.Fprintf(w, "%-30s %-28s %s\n", name, figure, detail) }
	row("benchmark", "figure", "detail")
	row(strings.Repeat("-", 30), strings.Repeat("-", 28), strings.Repeat("-", 40))
	tp := func(name string, s *bench.ThroughputStats) {
		if s == nil {
			return
		}
		b := s.Batches
		row(name, thousands(s.PerSecond)+" decisions/s",
			fmt.Sprintf("median of %d (%s); batch mean %.0f p50 %d max %d; commit p50 %.2f ms p99 %.2f ms",
				len(s.Runs), joinRates(s.Runs), b.Mean, b.P50, b.Max, b.CommitP50Ms, b.CommitP99Ms))
	}
	tp("1 stack limit (no-op store)", rep.Stack)
	tp("2 durable (SQLite, defaults)", rep.Durable)
	if rep.Ratio > 0 {
		row("  durable / stack", fmt.Sprintf("%.0f%%", rep.Ratio*100), "same run")
	}
	tp("2b durable (PostgreSQL)", rep.Postgres)
	if rep.PGRatio > 0 {
		row("  PostgreSQL / SQLite", fmt.Sprintf("%.0f%%", rep.PGRatio*100), "same run")
	}
	if l := rep.Latency; l != nil {
		row(fmt.Sprintf("3 latency at %d/s (durable)", l.Rate), fmt.Sprintf("p50 %.3f p99 %.3f ms", l.P50Ms, l.P99Ms),
			fmt.Sprintf("max %.3f ms; %d requests; commit p99 %.3f ms", l.MaxMs, l.Decisions, l.Batches.CommitP99Ms))
	}
	if p := rep.Prosody; p != nil {
		row(fmt.Sprintf("4 through Prosody, M=%d", p.Clients), fmt.Sprintf("%.0f vs %.0f round trips/s", p.RostergatePerSec, p.NativePerSec),
			fmt.Sprintf("rostergate vs native: %.2f×; p50 %.2f vs %.2f ms, p99 %.2f vs %.2f ms; Prosody %s",
				p.Ratio, p.RostergateP50Ms, p.NativeP50Ms, p.RostergateP99Ms, p.NativeP99Ms, p.ProsodyVersion))
	}
	for _, s := range slices.Concat(rep.Scale, rep.ScalePostgres) {
		name := fmt.Sprintf("5 scale, %s items", thousands(float64(s.Items)))
		if s.Store == "postgres" {
			name = fmt.Sprintf("5b PostgreSQL, %s items", thousands(float64(s.Items)))
		}
		row(name, fmt.Sprintf("broadcast %.2f s", s.BroadcastSeconds),
			fmt.Sprintf("peak RSS %.1f MiB, idle %.1f MiB; %.0f presences/s; stop (unavailable to all) %.2f s, peak then %.1f MiB; DB %.1f B/item",
				s.PeakRSSMiB, s.IdleRSSMiB, s.BroadcastPerSec, s.ShutdownSeconds, s.PeakRSSShutdownMiB, s.BytesPerItem))
	}
	if b := rep.Bots; b != nil {
		row("6 bots: API → stream", thousands(b.APIPerSec)+" messages/s", fmt.Sprintf("%d messages, %d clients, each POST answered 202 once written", b.APIMessages, b.APIClients))
		row("  stream → webhook", thousands(b.WebhookPerSec)+" events/s", fmt.Sprintf("%d messages, each committed as an event, POSTed signed, taken", b.WebhookEvents))
		row(fmt.Sprintf("  user → webhook at %d/s", b.LatencyRate), fmt.Sprintf("p50 %.3f p99 %.3f ms", b.LatencyP50Ms, b.LatencyP99Ms),
			fmt.Sprintf("max %.3f ms; %d messages", b.LatencyMaxMs, b.LatencyN))
		row("  decisions, webhook down", fmt.Sprintf("%s vs %s/s", thousands(b.DecisionsDown), thousands(b.DecisionsBase)),
			fmt.Sprintf("%.0f%% of the figure without HTTP (medians of 3); %d failed deliveries meanwhile", b.DecisionsRatio*100, b.DownFailures))
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%-30s %-28s %-22s %s\n", "target", "want", "got", "")
		for _, t := range rep.Targets {
			verdict := "met"
			if !t.Met {
				verdict = "MISSED"
			}
			fmt.Fprintf(w, "%-30s %-28s %-22s %s\n", t.Name, t.Want, t.Got, verdict)
		}
	}
	for _, f := range rep.Failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
}

func joinRates(runs []bench.ThroughputResult) string {
	s := make([]string, len(runs))
	for i, r := range runs {
		s[i] = thousands(r.PerSecond)
	}
	return strings.Join(s, ", ")
}

// thousands formats f rounded, with commas between groups of three digits.
func thousands(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
