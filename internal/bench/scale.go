package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/postgres"
	"rostergate/store/sqlite"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ScaleConfig sizes the broadcast benchmark.
type ScaleConfig struct {
	Items    int           // roster items in "from" state, spread over the entities (default 1,000,000)
	Entities int           // entities (default 10)
	Binary   string        // the rostergate binary to run (required): its RSS is what is measured
	Dir      string        // scratch directory (required): the database, the config and rostergate's log go there
	Idle     time.Duration // how long rostergate is left idle before its idle RSS is read (default 3 s)
	Timeout  time.Duration // bound for the whole run (default 5 min)
	// DSN, when set, is an empty PostgreSQL database: the items are
	// preloaded there and rostergate runs on it (driver "postgres")
	// instead of on a SQLite file in Dir.
	DSN string
}

// ScaleResult is what Scale measured.
type ScaleResult struct {
	Store    string `json:"store"` // sqlite or postgres
	Items    int    `json:"items"`
	Entities int    `json:"entities"`
	// PreloadSeconds is the time to write the items through the store's
	// Commit, in batches of scalePreloadBatch. DBBytes is the SQLite file
	// with its WAL, or the PostgreSQL database's size.
	PreloadSeconds float64 `json:"preload_s"`
	DBBytes        int64   `json:"db_bytes"`
	BytesPerItem   float64 `json:"db_bytes_per_item"`
	// BroadcastSeconds runs from the server's <handshake/> to the read of
	// the last presence of the broadcast to every subscriber.
	BroadcastSeconds float64 `json:"broadcast_s"`
	BroadcastPerSec  float64 `json:"broadcast_presences_per_s"`
	// PeakRSSMiB is rostergate's VmHWM (its peak since it started:
	// connect, resync and broadcast), read after Idle with nothing to do;
	// IdleRSSMiB is its VmRSS then.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	IdleRSSMiB float64 `json:"idle_rss_mib"`
	// ShutdownSeconds runs from SIGTERM to the read of the last unavailable
	// presence; PeakRSSShutdownMiB is rostergate's VmHWM then.
	ShutdownSeconds    float64 `json:"shutdown_s"`
	PeakRSSShutdownMiB float64 `json:"peak_rss_after_shutdown_mib"`
}

// scalePreloadBatch is how many items one preload transaction writes.
const scalePreloadBatch = 20000

// Scale preloads a database with cfg.Items roster items in "from" state
// across cfg.Entities entities, runs the rostergate binary on it against the
// fake server, and measures how long the presence broadcast to every
// subscriber takes to be written to the stream, rostergate's peak and idle
// RSS, and then the unavailable broadcast of a clean stop.
func Scale(ctx context.Context, cfg ScaleConfig) (res ScaleResult, err error) {
	if cfg.Binary == "" || cfg.Dir == "" {
		return res, errors.New("bench: scale: Binary and Dir are required")
	}
	if cfg.Items < 0 || cfg.Entities < 0 || cfg.Idle < 0 || cfg.Timeout < 0 {
		return res, fmt.Errorf("bench: scale: negative size in %+v", cfg)
	}
	if cfg.Items == 0 {
		cfg.Items = 1_000_000
	}
	if cfg.Entities == 0 {
		cfg.Entities = 10
	}
	if cfg.Idle == 0 {
		cfg.Idle = 3 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res.Items, res.Entities = cfg.Items, cfg.Entities

	db := filepath.Join(cfg.Dir, "scale.db")
	res.Store = "sqlite"
	open := func(ctx context.Context) (scaleStore, error) { return sqlite.Open(ctx, db) }
	size := func(context.Context) (int64, error) { return fileSizes(db, db+"-wal") }
	if cfg.DSN != "" {
		res.Store = "postgres"
		open = func(ctx context.Context) (scaleStore, error) { return postgres.Open(ctx, cfg.DSN) }
		size = func(ctx context.Context) (int64, error) { return postgresSize(ctx, cfg.DSN) }
	}
	start := time.Now()
	if err := preload(ctx, open, cfg.Items, cfg.Entities); err != nil {
		return res, err
	}
	res.PreloadSeconds = round3(time.Since(start).Seconds())
	if res.DBBytes, err = size(ctx); err != nil {
		return res, err
	}
	res.BytesPerItem = math.Round(float64(res.DBBytes)/float64(cfg.Items)*10) / 10

	srv, err := newServer(benchDomain, benchSecret)
	if err != nil {
		return res, err
	}
	defer srv.close()
	conf := filepath.Join(cfg.Dir, "scale.toml")
	if err := os.WriteFile(conf, []byte(scaleConfig(srv.addr(), db, cfg.DSN, cfg.Entities)), 0o600); err != nil {
		return res, fmt.Errorf("bench: scale: write config: %w", err)
	}
	logPath := filepath.Join(cfg.Dir, "rostergate.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, fmt.Errorf("bench: scale: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(cfg.Binary, "run", "-config", conf, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("bench: scale: start %s: %w", cfg.Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if err != nil {
			err = fmt.Errorf("%w\nrostergate log tail:\n%s", err, tail(logPath, 10))
		}
	}()

	var conn *serverConn
	select {
	case conn = <-connOrNil(ctx, srv):
		if conn == nil {
			return res, fmt.Errorf("bench: scale: no stream from rostergate: %w", ctx.Err())
		}
	case err := <-exited:
		exited <- err
		return res, fmt.Errorf("bench: scale: rostergate exited before connecting: %v", err)
	}
	defer conn.Close()
	k := newCounter("<presence ", false)
	go k.run(conn.r) // what the handshake read ahead included
	if err := k.wait(ctx, int64(cfg.Items)); err != nil {
		return res, err
	}
	el := time.Since(conn.up)
	res.BroadcastSeconds = round3(el.Seconds())
	res.BroadcastPerSec = math.Round(float64(cfg.Items) / el.Seconds())
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return res, fmt.Errorf("bench: scale: %w", ctx.Err())
	}
	if res.PeakRSSMiB, res.IdleRSSMiB, err = rss(cmd.Process.Pid); err != nil {
		return res, err
	}
	if got := k.n.Load(); got != int64(cfg.Items) {
		return res, fmt.Errorf("bench: scale: %d presences written for %d subscribers", got, cfg.Items)
	}

	// A clean stop: unavailable to every subscriber, then </stream:stream>.
	stop := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return res, fmt.Errorf("bench: scale: SIGTERM: %w", err)
	}
	if err := k.wait(ctx, int64(2*cfg.Items)); err != nil {
		return res, err
	}
	res.ShutdownSeconds = round3(time.Since(stop).Seconds())
	// rostergate now waits for our </stream:stream>: still alive. (Its
	// rusage after exit is no measure: Linux carries the parent's RSS at
	// fork into the child's ru_maxrss.)
	if res.PeakRSSShutdownMiB, _, err = rss(cmd.Process.Pid); err != nil {
		return res, err
	}
	_ = conn.Close() // rostergate waits for our </stream:stream> no longer
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			return res, fmt.Errorf("bench: scale: rostergate exited with %v", err)
		}
	case <-ctx.Done():
		return res, fmt.Errorf("bench: scale: rostergate did not exit after SIGTERM: %w", ctx.Err())
	}
	return res, nil
}

// connOrNil waits for the next stream in the background; nil when ctx ends first.
func connOrNil(ctx context.Context, srv *server) <-chan *serverConn {
	ch := make(chan *serverConn, 1)
	go func() {
		c, _ := srv.next(ctx)
		ch <- c
	}()
	return ch
}

// scaleStore is what preload needs of a store.
type scaleStore interface {
	Commit(ctx context.Context, b store.Batch) (int64, error)
	Close() error
}

// postgresSize is the size of the database dsn names, as PostgreSQL
// counts it (tables, indexes, TOAST; not the WAL), after a VACUUM so that
// the visibility map is as it would be on a long-running database.
func postgresSize(ctx context.Context, dsn string) (int64, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("bench: scale: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return 0, fmt.Errorf("bench: scale: vacuum: %w", err)
	}
	var n int64
	if err := c.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: scale: database size: %w", err)
	}
	return n, nil
}

// preload writes items roster items in "from" state, round-robin over the
// entities, through the store's own Commit, then closes the store (which,
// for SQLite, checkpoints the WAL into the file).
func preload(ctx context.Context, open func(context.Context) (scaleStore, error), items, entities int) error {
	db, err := open(ctx)
	if err != nil {
		return fmt.Errorf("bench: scale: %w", err)
	}
	now := time.Now()
	changes := make([]store.Change, 0, scalePreloadBatch)
	for i := 0; i < items; {
		changes = changes[:0]
		for end := min(i+scalePreloadBatch, items); i < end; i++ {
			changes = append(changes, store.Change{Item: roster.Item{
				Entity:  "e" + strconv.Itoa(i%entities),
				Contact: "c" + strconv.Itoa(i) + "@load.example",
				Sub:     roster.SubFrom,
				Updated: now,
			}})
		}
		if _, err := db.Commit(ctx, store.Batch{Changes: changes}); err != nil {
			_ = db.Close()
			return fmt.Errorf("bench: scale: preload: %w", err)
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("bench: scale: preload: %w", err)
	}
	return nil
}

// scaleConfig is the rostergate configuration of the scale run.
// With a dsn it runs on PostgreSQL, else on the SQLite file db.
func scaleConfig(server, db, dsn string, entities int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[component]\ndomain = %q\nserver = %q\nsecret = %q\nkeepalive = \"10m\"\n\n",
		benchDomain, server, benchSecret)
	if dsn != "" {
		fmt.Fprintf(&b, "[storage]\ndriver = \"postgres\"\ndsn = %q\n\n", dsn)
	} else {
		fmt.Fprintf(&b, "[storage]\npath = %q\n\n", db)
	}
	for i := range entities {
		fmt.Fprintf(&b, "[[entity]]\nlocal = \"e%d\"\n\n", i)
	}
	b.WriteString("[policy]\ndefault = \"accept\"\nunknown_entity = \"reject\"\n")
	return b.String()
}

// fileSizes sums the sizes of the files that exist among paths.
func fileSizes(paths ...string) (int64, error) {
	var n int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("bench: %w", err)
		}
		n += fi.Size()
	}
	return n, nil
}

// rss returns the peak (VmHWM) and current (VmRSS) resident set size of
// process pid, in MiB.
func rss(pid int) (peak, cur float64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("bench: reading RSS: %w", err)
	}
	var foundPeak, foundCur bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmHWM" && name != "VmRSS") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("bench: reading RSS: unexpected %s line %q", name, sc.Text())
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: reading RSS: %s: %w", name, err)
		}
		if name == "VmHWM" {
			peak, foundPeak = round1(kb/1024), true
		} else {
			cur, foundCur = round1(kb/1024), true
		}
	}
	if !foundPeak || !foundCur {
		return 0, 0, fmt.Errorf("bench: reading RSS: no VmHWM/VmRSS in /proc/%d/status", pid)
	}
	return peak, cur, nil
}

// tail returns the last n lines of the file at path, for error reports.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
