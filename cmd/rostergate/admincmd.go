package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"rostergate/config"
	"rostergate/engine"
	"rostergate/gate"
	"rostergate/roster"
	"rostergate/store"
	"rostergate/store/postgres"
	"rostergate/store/sqlite"
	"rostergate/xmpp/adminui"
)

// actionWait bounds how long the command line waits for the running
// component to carry out what it asked.
const actionWait = 10 * time.Second

// openStore opens the store the config names: only the command line names
// the concrete store. Unless create is set, a SQLite file must exist (a
// command that reads an installation does not make an empty one).
func openStore(ctx context.Context, cfg *config.Config, create bool) (store.Store, error) {
	if cfg.Storage.Driver == config.DriverPostgres {
		return postgres.Open(ctx, cfg.Storage.DSN)
	}
	if !create {
		if _, err := os.Stat(cfg.Storage.Path); err != nil {
			return nil, fmt.Errorf("no database yet (has rostergate run?): %w", err)
		}
	}
	return sqlite.Open(ctx, cfg.Storage.Path)
}

// storeName names the config's store for a person: the SQLite file, or
// the PostgreSQL DSN without its password.
func storeName(cfg *config.Config) string {
	if cfg.Storage.Driver == config.DriverPostgres {
		return "PostgreSQL " + cfg.Storage.Redacted() + " (from " + cfg.Storage.DSNSource + ")"
	}
	return cfg.Storage.Path
}

// openDB opens the SQLite database of an existing installation, for what
// only SQLite does (backup).
func openDB(ctx context.Context, cfg *config.Config) (*sqlite.DB, error) {
	if cfg.Storage.Driver != config.DriverSQLite {
		return nil, errors.New(`backup copies a SQLite database; with [storage] driver = "postgres", use pg_dump (or rostergate export)`)
	}
	if _, err := os.Stat(cfg.Storage.Path); err != nil {
		return nil, fmt.Errorf("no database yet (has rostergate run?): %w", err)
	}
	return sqlite.Open(ctx, cfg.Storage.Path)
}

// openService returns the service over the database of an existing
// installation (or, with create, a new one), as a command-line process:
// acts are queued for the running instance.
func openService(ctx context.Context, cfg *config.Config, create bool) (*gate.Service, func(), error) {
	db, err := openStore(ctx, cfg, create)
	if err != nil {
		return nil, nil, err
	}
	svc, err := gate.New(gate.Options{Domain: cfg.Component.Domain, Store: db, Settings: cfg.Settings(), Wait: actionWait})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, func() { db.Close() }, nil
}

// revokeID reads the one id that `rostergate CMD revoke` takes (what: "a
// token", "an invite"), saying what is wrong on stderr.
func revokeID(cmd, what string, rest []string, stderr io.Writer) (int64, error) {
	if len(rest) != 1 {
		fmt.Fprintf(stderr, "rostergate %s revoke: name one %s id (see rostergate %s list)\n", cmd, strings.TrimPrefix(strings.TrimPrefix(what, "a "), "an "), cmd)
		return 0, errUsage
	}
	n, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil || n <= 0 {
		fmt.Fprintf(stderr, "rostergate %s revoke: %q is not %s id\n", cmd, rest[0], what)
		return 0, errUsage
	}
	return n, nil
}

// cliActor names who acts from the command line, for the audit log.
func cliActor() roster.Actor {
	if u, err := user.Current(); err == nil {
		return roster.Actor{JID: "cli:" + u.Username, Via: roster.ViaCLI}
	}
	return roster.Actor{JID: "cli", Via: roster.ViaCLI}
}

// notRunning prints that what was asked (what) is queued for the next
// start, which is not an error.
func notRunning(err error, what string, w io.Writer) error {
	var q *gate.QueuedError
	if errors.As(err, &q) {
		fmt.Fprintf(w, "rostergate is not running: %s is queued (action %d) and will be carried out when it connects.\n", what, q.ID)
		return nil
	}
	return err
}

func cmdPending(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("pending", "-config FILE [list | approve ID… | reject ID…]", stderr)
	path := configFlag(fs)
	if help, err := parseVerbs(fs, args, stdout); help || err != nil {
		return err
	}
	verb, rest := "list", fs.Args()
	if len(rest) > 0 {
		verb, rest = rest[0], rest[1:]
	}
	var ids []int64
	switch verb {
	case "list":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "rostergate pending list: unexpected argument %q\n", rest[0])
			return errUsage
		}
	case "approve", "reject":
		if len(rest) == 0 {
			fmt.Fprintf(stderr, "rostergate pending %s: name at least one request id\n", verb)
			return errUsage
		}
		for _, a := range rest {
			id, err := strconv.ParseInt(strings.TrimPrefix(a, "#"), 10, 64)
			if err != nil || id <= 0 {
				fmt.Fprintf(stderr, "rostergate pending %s: %q is not a request id\n", verb, a)
				return errUsage
			}
			ids = append(ids, id)
		}
	default:
		fmt.Fprintf(stderr, "rostergate pending: unknown action %q (want list, approve or reject)\n", verb)
		return errUsage
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
	if verb == "list" {
		return printPending(ctx, svc, stdout)
	}
	approve := verb == "approve"
	outs, err := svc.Decide(ctx, cliActor(), ids, approve)
	if err != nil {
		return notRunning(err, strings.Join(rest, " "), stdout)
	}
	lines, _ := adminui.OutcomeLines(cfg.Component.Domain, approve, ids, outs)
	fmt.Fprintln(stdout, strings.Join(lines, "\n"))
	return nil
}

func printPending(ctx context.Context, svc *gate.Service, w io.Writer) error {
	reqs, err := svc.Pending(ctx)
	if err != nil {
		return err
	}
	if len(reqs) == 0 {
		fmt.Fprintln(w, "No pending requests.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONTACT\tENTITY\tRULE\tWAITING")
	now := time.Now()
	for _, r := range reqs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.ID, r.Contact, roster.EntityJID(svc.Domain(), r.Entity), r.Rule, now.Sub(r.Created).Round(time.Second))
	}
	return tw.Flush()
}

func cmdExplain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("explain", "-config FILE -from JID -to JID", stderr)
	path := configFlag(fs)
	from := fs.String("from", "", "the contact asking, e.g. alice@example.com")
	to := fs.String("to", "", "the entity asked, e.g. helpdesk@bots.example.com (or just helpdesk)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	if *from == "" || *to == "" {
		fmt.Fprintln(stderr, "rostergate explain: -from and -to are required")
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	var (
		ex    roster.Explanation
		lists = "without allow/deny lists (no database yet)"
	)
	if svc, closeDB, err := openService(ctx, cfg, false); err == nil {
		defer closeDB()
		allow, deny, err := svc.Lists(ctx)
		if err != nil {
			return err
		}
		lists = fmt.Sprintf("with the allow list (%d) and deny list (%d)", len(allow), len(deny))
		ex, err = svc.Explain(ctx, *from, *to)
		if err != nil {
			return fmt.Errorf("explain: %s", roster.UserText(err))
		}
	} else if ex, err = engine.Explain(ctx, cfg.Settings(), nil, nil, cfg.Component.Domain, *from, *to); err != nil {
		return fmt.Errorf("explain: %s", roster.UserText(err))
	}
	if ex.Note != "" {
		fmt.Fprintf(stdout, "note: %s\n", ex.Note)
	}
	fmt.Fprintf(stdout, "%s → %s: %s\n", ex.Contact, ex.Entity, ex.Action)
	for _, g := range ex.Groups {
		fmt.Fprintf(stdout, "  %s\n", g)
	}
	fmt.Fprintf(stdout, "  decided by: %s\n", ex.Rule)
	if ex.SubscribeBack {
		fmt.Fprintln(stdout, "  subscribe back: yes")
	}
	if ex.Message != "" {
		fmt.Fprintf(stdout, "  message to the requester: %q\n", ex.Message)
	}
	if !ex.KnownEntity {
		fmt.Fprintf(stdout, "  (%s is not an [[entity]]: unknown_entity applies)\n", ex.Entity)
	}
	fmt.Fprintf(stdout, "  (policy as configured, %s; limits not applied)\n", lists)
	return nil
}

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("audit", "-config FILE [-since DURATION] [-format text|json|csv]", stderr)
	path := configFlag(fs)
	since := fs.Duration("since", 24*time.Hour, "show events of this last `duration` (0 = all)")
	format := fs.String("format", "text", "output `format`: text, json (one object a line) or csv")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	if *since < 0 {
		fmt.Fprintf(stderr, "rostergate audit: -since %s is negative\n", *since)
		return errUsage
	}
	switch *format {
	case "text", "json", "csv":
	default:
		fmt.Fprintf(stderr, "rostergate audit: -format %q: want text, json or csv\n", *format)
		return errUsage
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
	from := time.Time{}
	if *since > 0 {
		from = time.Now().Add(-*since)
	}
	header := []string{"at", "entity", "contact", "kind", "action", "rule", "from", "to", "actor", "interface", "detail"}
	row := func(e roster.Event) []string {
		ent := ""
		if e.Entity != "" || e.Contact != "" {
			ent = roster.EntityJID(cfg.Component.Domain, e.Entity)
		}
		return []string{e.At.UTC().Format(time.RFC3339Nano), ent, e.Contact, e.Kind, e.Action, e.Rule, e.From, e.To, e.Actor, e.Interface, e.Detail}
	}
	switch *format {
	case "csv":
		cw := csv.NewWriter(stdout)
		_ = cw.Write(header)
		err = svc.Audit(ctx, from, func(e roster.Event) error { return cw.Write(csvSafe(row(e))) })
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	case "json":
		enc := json.NewEncoder(stdout)
		err = svc.Audit(ctx, from, func(e roster.Event) error {
			m := map[string]string{}
			for i, v := range row(e) {
				m[header[i]] = v
			}
			return enc.Encode(m)
		})
	default:
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tENTITY\tCONTACT\tEVENT\tACTION\tRULE\tSTATE\tBY\tDETAIL")
		err = svc.Audit(ctx, from, func(e roster.Event) error {
			r := row(e)
			state := ""
			if e.From != "" || e.To != "" {
				state = e.From + " → " + e.To
			}
			by := e.Actor
			if e.Interface != "" {
				by += " (" + e.Interface + ")"
			}
			_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				e.At.Local().Format("2006-01-02 15:04:05"), r[1], e.Contact, e.Kind, e.Action, e.Rule, state, by, e.Detail)
			return err
		})
		if ferr := tw.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func cmdLists(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("lists", "-config FILE [show | allow PATTERN | deny PATTERN | unallow PATTERN | undeny PATTERN]", stderr)
	path := configFlag(fs)
	if help, err := parseVerbs(fs, args, stdout); help || err != nil {
		return err
	}
	verb, rest := "show", fs.Args()
	if len(rest) > 0 {
		verb, rest = rest[0], rest[1:]
	}
	switch verb {
	case "show":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "rostergate lists show: unexpected argument %q\n", rest[0])
			return errUsage
		}
	case "allow", "deny", "unallow", "undeny":
		if len(rest) != 1 {
			fmt.Fprintf(stderr, "rostergate lists %s: name one pattern, like *@example.com or example.com\n", verb)
			return errUsage
		}
	default:
		fmt.Fprintf(stderr, "rostergate lists: unknown action %q (want show, allow, deny, unallow or undeny)\n", verb)
		return errUsage
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
	if verb == "show" {
		allow, deny, err := svc.Lists(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "allow: %s\ndeny:  %s\n", listText(allow), listText(deny))
		return nil
	}
	list, add := strings.TrimPrefix(verb, "un"), !strings.HasPrefix(verb, "un")
	changed, err := svc.EditList(ctx, cliActor(), list, add, rest[0])
	if err != nil {
		if err := notRunning(err, verb+" "+rest[0], stdout); err != nil {
			return fmt.Errorf("lists %s: %w", verb, err)
		}
		return nil
	}
	fmt.Fprintln(stdout, adminui.ListEditLine(list, rest[0], add, changed))
	return nil
}

func listText(l []string) string {
	if len(l) == 0 {
		return "(empty)"
	}
	return strings.Join(l, " ")
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: contact JIDs
// are chosen by remote users, and a localpart may start with "=".
func csvSafe(cells []string) []string {
	for i, c := range cells {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			cells[i] = "'" + c
		}
	}
	return cells
}

func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("backup", "-config FILE -out FILE", stderr)
	path := configFlag(fs)
	out := fs.String("out", "", "the `file` to write the copy to (must not exist)")
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "rostergate backup: -out is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	if err := db.Backup(ctx, *out); err != nil {
		return err
	}
	fi, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, consistent copy of %s (integrity_check ok), in %s\n", *out, fi.Size(), cfg.Storage.Path, time.Since(start).Round(time.Millisecond))
	return nil
}

// parseVerbs parses the flags of a command that takes a verb and arguments
// after them; -h prints the usage to stdout and is not an error.
func parseVerbs(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, nil
		}
		return false, errUsage
	}
	return false, nil
}
