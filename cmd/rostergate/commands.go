package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"rostergate/store"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"

	"rostergate/config"
	"rostergate/engine"
	"rostergate/gate"
	"rostergate/httpapi"
	"rostergate/internal/instance"
	"rostergate/metrics"
	"rostergate/policy"
	"rostergate/roster"
	"rostergate/webhook"
)

const version = "0.1.0"

// errUsage is a command line that could not be parsed; its message has
// already been printed with the usage.
var errUsage = errors.New("usage")

// newFlags returns a flag set for a subcommand that prints its usage to
// stderr, or to stdout for -h.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: rostergate %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; -h prints the usage to stdout and is not an error.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return true, nil
	}
	if err != nil {
		return false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "rostergate %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return false, errUsage
	}
	return false, nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "component.toml", "the configuration `file`")
}

func cmdRun(ctx context.Context, args []string, p proc) (err error) {
	stdout, stderr, getenv := p.stdout, p.stderr, p.getenv
	fs := newFlags("run", "-config FILE", stderr)
	path := configFlag(fs)
	level := fs.String("log-level", "", "log `level`: trace, debug, info, warn or error (default: [log] level in the config, else info)")
	format := fs.String("log-format", "", "log `format`: text or json (default: [log] format in the config, else text)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	var flags logFlags
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "log-level":
			flags.level = level
		case "log-format":
			flags.format = format
		}
	})
	if err := flags.check(); err != nil {
		return err
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, flags.startLevel(cfg), flags.json(cfg))
	// From here on, what ends the run is a log line like every other (a
	// JSON object in JSON format), and main prints nothing more.
	defer func() {
		if err != nil {
			logger.Error("stopped on an error", "err", err)
			err = &loggedError{err}
		}
	}()
	db, err := openStore(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	rl := &reloader{life: ctx, path: *path, cur: cfg, log: logger, baseLevel: flags.baseLevel(), getenv: getenv}
	hup := p.hup
	if hup == nil {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP)
		defer signal.Stop(sig)
		hup = sig
	}
	reloadCtx, stopReload := context.WithCancel(ctx)
	reloaded := make(chan struct{})
	started := false
	// start logs "starting" once SIGHUP is caught (from "starting" on,
	// SIGHUP reloads), and starts reloading: once the instance is made, or
	// at once for a standby.
	start := func() {
		if started {
			return
		}
		started = true
		logger.Info("starting", "version", version, "domain", cfg.Component.Domain, "server", cfg.Component.Server,
			"entities", len(cfg.Entities), "rules", len(cfg.Policy.Rules), "admins", len(cfg.Admin.JIDs), "db", storeName(cfg))
		go func() {
			defer close(reloaded)
			reloadOnHUP(reloadCtx, hup, rl)
		}()
	}
	// No reload outlives run, nor reaches the database once it is closed.
	defer func() {
		stopReload()
		if started {
			<-reloaded
		}
	}()
	if leader, ok := db.(store.Leader); ok {
		start()
		return runShared(ctx, leader, db, rl)
	}
	release, err := db.Hold(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := runTerm(ctx, db, rl, start); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// runTerm runs rostergate as the active instance until ctx ends: the
// engine over the store, the stream to the server, the HTTP side, with the
// config in force (rl's, which a reload while standing by may have
// changed).
func runTerm(ctx context.Context, db store.Store, rl *reloader, ready func()) error {
	cfg := rl.config()
	httpOpts, err := httpOptions(cfg)
	if err != nil {
		return err
	}
	// POST /-/reload does what SIGHUP does.
	httpOpts.Reload = func(ctx context.Context) error { return rl.reload(ctx, metrics.ViaHTTP) }
	inst, err := instance.New(ctx, instance.Config{
		Domain:         cfg.Component.Domain,
		Server:         cfg.Component.Server,
		Secret:         cfg.Component.Secret,
		Resource:       cfg.Component.Resource,
		Keepalive:      cfg.Component.Keepalive.Duration,
		MaxStanzaBytes: cfg.Limits.MaxStanzaBytes,
		Version:        version,
		Store:          db,
		Settings:       cfg.Settings(),
		Logger:         rl.log,
		HTTP:           httpOpts,
		WebURL:         cfg.HTTP.WebURL,
		Web:            gate.Web{LoginTTL: cfg.HTTP.LoginTTL.Duration, Idle: cfg.HTTP.SessionIdle.Duration, MaxSession: cfg.HTTP.SessionMax.Duration},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	rl.attach(ctx, inst)
	defer rl.detach()
	ready()
	return inst.Run(ctx)
}

// runShared runs one of several instances sharing the store: it stands by
// until it leads, then runs as the active instance until it stops or loses
// the lead (another instance may be active from that instant: it stops at
// once, and stands by again).
func runShared(ctx context.Context, leader store.Leader, db store.Store, rl *reloader) error {
	host, _ := os.Hostname()
	started := time.Now()
	self := store.Instance{ID: fmt.Sprintf("%s:%d:%d", host, os.Getpid(), started.UnixMilli()), Host: host, PID: os.Getpid(), Started: started}
	log := rl.log
	for {
		sb, err := startStandby(ctx, leader, rl)
		if err != nil {
			return err
		}
		log.Info("standby: waiting to lead (another instance is active, or is being waited for)", "instance", self.ID)
		lease, err := leader.Lead(ctx, self)
		if sb != nil {
			sb.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				log.Info("stopped")
				return nil
			}
			return err
		}
		log.Info("active: this instance leads", "instance", self.ID)
		term, cancel := context.WithCancel(ctx)
		lost := make(chan struct{})
		go func() {
			select {
			case <-lease.Lost():
				log.Error("lost the lead (the store session ended or went silent): stopping at once; another instance may be active", "instance", self.ID)
				close(lost)
				cancel()
			case <-term.Done():
			}
		}()
		err = runTerm(term, db, rl, func() {})
		cancel()
		lease.Release()
		select {
		case <-lost:
			continue // stand by again
		default:
		}
		if err != nil {
			return err
		}
		log.Info("stopped")
		return nil
	}
}

// startStandby serves the standby's answers on the HTTP listener, if there
// is one (nil otherwise).
func startStandby(ctx context.Context, leader store.Leader, rl *reloader) (*httpapi.Standby, error) {
	cfg := rl.config()
	h := cfg.HTTP
	if h.Listen == "" {
		return nil, nil
	}
	return httpapi.StartStandby(httpapi.StandbyOptions{
		Listen: h.Listen, TLSCert: h.TLSCert, TLSKey: h.TLSKey,
		Metrics: metrics.Standby(version), MetricsAllow: h.MetricsAllow, Logger: rl.log.Named("http"),
		Active: func(ctx context.Context) string {
			is, err := leader.Instances(ctx)
			if err != nil || len(is) == 0 || !is[0].Active {
				return ""
			}
			return fmt.Sprintf("%s (pid %d on %s, active since %s)", is[0].ID, is[0].PID, is[0].Host, is[0].Since.UTC().Format(time.RFC3339))
		},
	})
}

// reloader puts a re-read config in force, one reload at a time: on
// SIGHUP, or POST /-/reload.
type reloader struct {
	mu sync.Mutex
	// life is the run's context: the webhooks' deliveries live in it, not
	// in a request's.
	life context.Context
	path string
	cur  *config.Config     // read at the start: what a restart-only change is compared with
	next *config.Config     // the last one a reload put in force, for the next term; nil if none
	inst *instance.Instance // nil while standing by
	// log is the root logger: its level is the sub-loggers' too.
	log hclog.Logger
	// baseLevel is the level when the config sets no [log] level: the
	// -log-level flag's, else info.
	baseLevel hclog.Level
	getenv    func(string) string
}

// reload re-reads the config and puts what may change in force; an invalid
// config is refused, with the reason logged and returned, and the one in
// force is kept. Either way the outcome is counted in the metrics.
func (r *reloader) reload(ctx context.Context, via string) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.Debug("reload: reading the config", "config", r.path, "via", via)
	if r.inst == nil {
		return r.reloadStandby(via)
	}
	defer func() { r.inst.Metrics.Reloaded(via, err) }()
	cfg, err := config.Load(r.path, r.getenv)
	var hooks []httpapi.Webhook
	if err == nil {
		hooks, err = webhooks(cfg)
	}
	if err == nil && r.inst.HTTP != nil {
		// Where new webhooks start is settled before the engine logs
		// events for them.
		r.inst.HTTP.PrepareWebhooks(r.life, hooks)
	}
	if err == nil {
		err = r.inst.Service.Reload(ctx, cfg.Settings())
	}
	if err != nil {
		r.log.Error("reload refused; the config in force is kept", "err", err, "via", via)
		return err
	}
	if r.inst.HTTP != nil {
		r.inst.HTTP.SetWebhooks(r.life, hooks)
		r.inst.HTTP.SetMetricsAllow(cfg.HTTP.MetricsAllow)
	}
	r.setLevel(cfg, via)
	r.next = cfg
	if r.cur.RestartNeeded(cfg) {
		r.log.Warn("reload: changes to [component], [storage], max_stanza_bytes, [http] listen and TLS, and [log] format take effect at the next start")
	}
	r.log.Info("reload done", "config", r.path, "via", via)
	return nil
}

// reloadStandby re-reads the config while no instance runs here (a
// standby): it is checked, its log level put in force, and the next term
// runs with it.
func (r *reloader) reloadStandby(via string) error {
	cfg, err := config.Load(r.path, r.getenv)
	if err == nil {
		_, err = webhooks(cfg)
	}
	if err != nil {
		r.log.Error("reload refused; the config in force is kept", "err", err, "via", via)
		return err
	}
	if cfg.Storage != r.cur.Storage {
		r.log.Warn("reload: a change to [storage] takes effect at the next start")
		cfg.Storage = r.cur.Storage
	}
	r.setLevel(cfg, via)
	r.next = cfg
	r.log.Info("reload done; the config is put in force when this instance leads", "config", r.path, "via", via)
	return nil
}

// config returns the config the next term runs with: the last one a reload
// put in force, else the one read at the start.
func (r *reloader) config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next != nil {
		return r.next
	}
	return r.cur
}

// attach makes inst the instance reloads reach, its webhooks' deliveries
// living in ctx.
func (r *reloader) attach(ctx context.Context, inst *instance.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inst, r.life = inst, ctx
}

// detach leaves reloads to the config alone: the instance stopped.
func (r *reloader) detach() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inst = nil
}

// setLevel puts the log level of cfg in force: [log] level if the file
// sets it, else the base level (the -log-level flag's, else info). A change
// is logged, while the more verbose of the two levels is in force.
func (r *reloader) setLevel(cfg *config.Config, via string) {
	to := r.baseLevel
	if cfg.Log.Level != "" {
		to = hclog.LevelFromString(cfg.Log.Level)
	}
	from := r.log.GetLevel()
	if to == from {
		return
	}
	if to < from {
		r.log.SetLevel(to)
	}
	r.log.Info("log level changed", "from", from.String(), "to", to.String(), "via", via)
	r.log.SetLevel(to)
}

// reloadOnHUP reloads on each SIGHUP until ctx ends.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, r *reloader) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		_ = r.reload(ctx, metrics.ViaSIGHUP) // refused reloads are logged, and counted
	}
}

// httpOptions returns the options of the HTTP side: the API when [http]
// listen is set, and always the webhooks' delivery and the events'
// retention, so that a reload may add a webhook.
func httpOptions(cfg *config.Config) (*httpapi.Options, error) {
	hooks, err := webhooks(cfg)
	if err != nil {
		return nil, err
	}
	h := cfg.HTTP
	return &httpapi.Options{Listen: h.Listen, TLSCert: h.TLSCert, TLSKey: h.TLSKey, MaxBody: h.MaxBody, Rate: h.Rate,
		EventRetention: h.EventRetention.Duration, MaxEvents: h.MaxEvents, Webhooks: hooks, MetricsAllow: h.MetricsAllow}, nil
}

// webhooks returns the entities' webhooks.
func webhooks(cfg *config.Config) ([]httpapi.Webhook, error) {
	var out []httpapi.Webhook
	for _, e := range cfg.Entities {
		if e.Webhook == "" {
			continue
		}
		sec, err := webhook.ParseSecret(e.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("[[entity]] %q: %w", e.Localpart(), err)
		}
		out = append(out, httpapi.Webhook{Entity: e.Localpart(), URL: e.Webhook, Secret: sec, MaxAge: e.WebhookMaxAge.Duration})
	}
	return out, nil
}

// logTimeFormat is RFC 3339 with milliseconds.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// logFlags are the -log-level and -log-format flags of run; nil when not
// given.
type logFlags struct{ level, format *string }

// check refuses an unknown level or format.
func (f logFlags) check() error {
	if f.level != nil && !slices.Contains(config.LogLevels, strings.ToLower(*f.level)) {
		return fmt.Errorf("-log-level: unknown level %q (want %s)", *f.level, oneOf(config.LogLevels))
	}
	if f.format != nil && !slices.Contains(config.LogFormats, strings.ToLower(*f.format)) {
		return fmt.Errorf("-log-format: unknown format %q (want %s)", *f.format, oneOf(config.LogFormats))
	}
	return nil
}

// startLevel is the level at start: the flag's, else [log] level, else
// info.
func (f logFlags) startLevel(cfg *config.Config) hclog.Level {
	if f.level == nil && cfg.Log.Level != "" {
		return hclog.LevelFromString(cfg.Log.Level)
	}
	return f.baseLevel()
}

// baseLevel is the level when the config sets none: the flag's, else info.
func (f logFlags) baseLevel() hclog.Level {
	if f.level != nil {
		return hclog.LevelFromString(*f.level)
	}
	return hclog.Info
}

// json says whether to log in JSON: the flag's format, else [log] format,
// else text.
func (f logFlags) json(cfg *config.Config) bool {
	if f.format != nil {
		return strings.EqualFold(*f.format, "json")
	}
	return cfg.Log.Format == "json"
}

// newLogger returns the root logger, named rostergate: text lines, or one
// JSON object a line.
func newLogger(w io.Writer, level hclog.Level, json bool) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "rostergate", Output: w, Level: level, JSONFormat: json, TimeFormat: logTimeFormat})
}

// oneOf lists choices as a sentence does: "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

func cmdCheck(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("check", "-config FILE", stderr)
	path := configFlag(fs)
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	c := cfg.Component
	fmt.Fprintf(stdout, "%s: OK\n\n", cfg.Path)
	fmt.Fprintf(stdout, "component  %s\nserver     %s\nsecret     set (from %s)\nresource   %s\nkeepalive  %s\nstorage    %s\n",
		c.Domain, c.Server, c.SecretSource, c.Resource, c.Keepalive, storeName(cfg))
	if h := cfg.HTTP; h.Listen != "" {
		scheme := "http"
		if h.TLSCert != "" {
			scheme = "https"
		}
		fmt.Fprintf(stdout, "http API   %s://%s/api/v1/ (rate %s per token; events kept %s, at most %d per entity)\n",
			scheme, h.Listen, h.Rate, h.EventRetention, h.MaxEvents)
		web := webAddress(cfg)
		fmt.Fprintf(stdout, "web page   %s (login links last %s; sessions end after %s idle, %s at most)\n",
			web, h.LoginTTL, h.SessionIdle, h.SessionMax)
		if len(h.MetricsAllow) == 0 {
			fmt.Fprintf(stdout, "metrics    off ([http] metrics_allow is empty)\n")
		} else {
			allow := make([]string, len(h.MetricsAllow))
			for i, p := range h.MetricsAllow {
				allow[i] = p.String()
			}
			fmt.Fprintf(stdout, "metrics    %s://%s/metrics to %s\n", scheme, h.Listen, strings.Join(allow, ", "))
		}
	} else {
		fmt.Fprintf(stdout, "http API   off ([http] listen not set)\nweb page   off\n")
	}
	if src := cfg.Directory.Source(); src != "" {
		fmt.Fprintf(stdout, "directory  %s (not contacted by check)\n", src)
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ENTITY\tNAME\tSHOW\tSTATUS\tWEBHOOK\n")
	for _, e := range cfg.Entities {
		j := roster.EntityJID(c.Domain, e.Localpart())
		show := e.Show
		if show == "" {
			show = "available"
		}
		hook := "-"
		if e.Webhook != "" {
			hook = e.Webhook
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j, e.Name, show, e.Status, hook)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range cfg.Entities {
		if len(e.PlaceIn) > 0 {
			every, resend := cfg.Placement.Interval.Duration, cfg.Placement.ResendAfter.Duration
			if every == 0 {
				every = engine.DefaultPlaceInterval
			}
			if resend == 0 {
				resend = engine.DefaultResendAfter
			}
			fmt.Fprintf(stdout, "placed in  %s: %s (reconciled every %s; an unanswered request sent again after %s)\n",
				roster.EntityJID(c.Domain, e.Localpart()), strings.Join(e.PlaceIn, ", "), every, resend)
		}
	}
	p := cfg.Compiled()
	fmt.Fprintf(stdout, "\npolicy (first match wins):\n")
	for i, r := range p.Rules() {
		fmt.Fprintf(stdout, "  rule %d: %s\n", i+1, r)
	}
	fmt.Fprintf(stdout, "  default: %s\n  unknown_entity: %s (%s)\n", p.Default(), p.UnknownEntity(), unknownEntityText(p.UnknownEntity(), c.Domain))
	return nil
}

// unknownEntityText says what unknown_entity does to a JID at domain that
// is no [[entity]].
func unknownEntityText(a policy.Action, domain string) string {
	const none = "JIDs at %s that are no [[entity]] do not exist (RFC 6121 §8.5.1): "
	switch a {
	case policy.Drop:
		return fmt.Sprintf(none+"their subscription requests are ignored, a probe gets unsubscribed", domain)
	case policy.Reject:
		return fmt.Sprintf(none+"their subscription requests get unsubscribed, and so does a probe", domain)
	case policy.Review:
		return fmt.Sprintf("requests for any JID at %s that is no [[entity]] are held for review; those JIDs show online", domain)
	default:
		return fmt.Sprintf("requests for any JID at %s that is no [[entity]] are accepted; those JIDs show online", domain)
	}
}

func cmdRoster(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("roster", "-config FILE [-entity LOCAL]", stderr)
	path := configFlag(fs)
	entity := fs.String("entity", "", "only this entity's `localpart` or JID (default: all entities)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	svc, closeDB, err := openService(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer closeDB()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ENTITY\tCONTACT\tSTATE\tFLAGS\n")
	n := 0
	line := func(it roster.Item) error {
		n++
		var flags []string
		if it.PendingIn {
			flags = append(flags, "pending-in")
		}
		if it.PendingOut {
			flags = append(flags, "pending-out")
		}
		if it.Approved {
			flags = append(flags, "approved")
		}
		fl := strings.Join(flags, ",")
		if fl == "" {
			fl = "-"
		}
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", roster.EntityJID(cfg.Component.Domain, it.Entity), it.Contact, it.Sub, fl)
		return err
	}
	isSet := false
	fs.Visit(func(fl *flag.Flag) { isSet = isSet || fl.Name == "entity" })
	if isSet {
		err = svc.EntityItems(ctx, *entity, line)
	} else {
		err = svc.AllItems(ctx, line)
	}
	if err != nil {
		return fmt.Errorf("roster: %s", roster.UserText(err))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d items\n", n)
	return nil
}
