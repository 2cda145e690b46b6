package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"rostergate/config"
	"rostergate/placement"
	"rostergate/roster"
	"rostergate/store"
)

// cmdStatus says which instance is active on the config's store: with
// PostgreSQL, the active one (since when) and the standbys; with SQLite,
// whether one runs.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) (err error) {
	fs := newFlags("status", "-config FILE", stderr)
	path := configFlag(fs)
	if help, err := parse(fs, args, stdout); help || err != nil {
		return err
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	db, err := openStore(ctx, cfg, false)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "store      %s\n", storeName(cfg))
	defer func() {
		if err == nil {
			err = placementStatus(ctx, cfg, db, stdout)
		}
	}()
	if leader, ok := db.(store.Leader); ok {
		is, err := leader.Instances(ctx)
		if err != nil {
			return err
		}
		if len(is) == 0 || !is[0].Active {
			fmt.Fprintln(stdout, "active     none")
		}
		if len(is) == 0 {
			fmt.Fprintln(stdout, "instances  none seen in the last minute")
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nROLE\tINSTANCE\tHOST\tPID\tSTARTED\tACTIVE SINCE\tLAST SEEN")
		for _, i := range is {
			role, since := "standby", "-"
			if i.Active {
				role, since = "active", fmt.Sprintf("%s (%s)", i.Since.UTC().Format("2006-01-02 15:04:05"), now.Sub(i.Since).Round(time.Second))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s ago\n", role, i.ID, i.Host, i.PID, i.Started.UTC().Format("2006-01-02 15:04:05"), since, now.Sub(i.Seen).Round(time.Second))
		}
		return tw.Flush()
	}
	release, err := db.Hold(ctx)
	switch {
	case errors.Is(err, store.ErrHeld):
		fmt.Fprintln(stdout, "active     a rostergate runs on this database (SQLite: one instance)")
	case err != nil:
		return err
	default:
		release()
		fmt.Fprintln(stdout, "active     none: no rostergate runs on this database")
	}
	return nil
}

// placementStatus prints, when an entity has place_in or placements are
// stored, the method the last stream had in force (from the audit log's
// last grant) and what each user got.
func placementStatus(ctx context.Context, cfg *config.Config, db store.Store, stdout io.Writer) error {
	ps, err := db.Placements(ctx)
	if err != nil {
		return err
	}
	wanted := false
	for _, e := range cfg.Entities {
		wanted = wanted || len(e.PlaceIn) > 0
	}
	if !wanted && len(ps) == 0 {
		return nil
	}
	evs, err := db.AuditPage(ctx, store.AuditQuery{Action: placement.GrantAction, Desc: true, Limit: 1})
	if err != nil {
		return err
	}
	if len(evs) == 0 {
		fmt.Fprintln(stdout, "placement  not started yet: no stream has placed entities")
	} else {
		g := evs[0]
		fmt.Fprintf(stdout, "placement  %s: %s (stream of %s)\n", g.Rule, g.Detail, g.At.UTC().Format("2006-01-02 15:04:05"))
	}
	if len(ps) == 0 {
		fmt.Fprintln(stdout, "placed     nobody yet")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nENTITY\tUSER\tSOURCE\tMETHOD\tSTATE\tREQUESTS\tSINCE\tDETAIL")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", roster.EntityJID(cfg.Component.Domain, p.Entity), p.Contact, p.Source,
			p.Method, p.State, p.Attempts, p.Updated.UTC().Format("2006-01-02 15:04:05"), p.Detail)
	}
	return tw.Flush()
}
