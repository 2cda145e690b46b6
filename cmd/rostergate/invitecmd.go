package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"rostergate/config"
	"rostergate/gate"
	"rostergate/internal/instance"
	"rostergate/roster"
	"rostergate/store"
)

const inviteSynopsis = "create -config FILE -entity LOCAL [-ttl 72h] [-uses 1] [-subscribe-back] | list -config FILE | revoke -config FILE ID"

// cmdInvite makes, lists and revokes invites (XEP-0379 pre-authenticated
// subscription links). They live in the store, so the running rostergate
// honours a new invite, and refuses a revoked one, at once.
func cmdInvite(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "-help" && args[0] != "--help" {
		fmt.Fprintf(stderr, "Usage: rostergate invite %s\n", inviteSynopsis)
		return errUsage
	}
	verb := args[0]
	if verb == "-h" || verb == "-help" || verb == "--help" {
		fmt.Fprintf(stdout, "Usage: rostergate invite %s\n", inviteSynopsis)
		return nil
	}
	fs := newFlags("invite "+verb, "-config FILE", stderr)
	path := configFlag(fs)
	var entity *string
	var ttl *time.Duration
	var uses *int
	var back *bool
	switch verb {
	case "create":
		entity = fs.String("entity", "", "the `entity` (localpart, or bare JID at the domain) the invite is for")
		ttl = fs.Duration("ttl", 72*time.Hour, "how long the invite works (0: until revoked or used up)")
		uses = fs.Int("uses", 1, "how many subscription requests it accepts")
		back = fs.Bool("subscribe-back", false, "the entity subscribes to whoever uses it (a both subscription)")
	case "list", "revoke":
	default:
		fmt.Fprintf(stderr, "rostergate invite: unknown action %q (want create, list or revoke)\n", verb)
		return errUsage
	}
	if help, err := parseVerbs(fs, args[1:], stdout); help || err != nil {
		return err
	}
	rest := fs.Args()
	var id int64
	var err error
	switch verb {
	case "create":
		if *entity == "" {
			fmt.Fprintln(stderr, "rostergate invite create: name the entity it is for with -entity (e.g. -entity helpdesk)")
			return errUsage
		}
		if err := gate.CheckInviteOptions(gate.InviteOptions{TTL: *ttl, Uses: *uses}); err != nil {
			fmt.Fprintf(stderr, "rostergate invite create: %s\n", strings.TrimPrefix(err.Error(), "gate: bad invite: "))
			return errUsage
		}
		fallthrough
	case "list":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "rostergate invite %s: unexpected argument %q\n", verb, rest[0])
			return errUsage
		}
	case "revoke":
		if id, err = revokeID("invite", "an invite", rest, stderr); err != nil {
			return err
		}
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return err
	}
	// One may be made before rostergate first runs: the database is
	// created if need be.
	svc, closeDB, err := openService(ctx, cfg, true)
	if err != nil {
		return err
	}
	defer closeDB()
	if cfg.HTTP.Listen != "" {
		svc.SetWebURL(webAddress(cfg))
	}
	switch verb {
	case "create":
		inv, err := svc.CreateInvite(ctx, cliActor(), *entity, gate.InviteOptions{TTL: *ttl, Uses: *uses, SubscribeBack: *back})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, inv.URI)
		if inv.Landing != "" {
			fmt.Fprintln(stdout, inv.Landing)
		}
		fmt.Fprintf(stderr, "invite %d to %s: %s. It is shown this once (only its hash is kept).\n",
			inv.ID, roster.EntityJID(cfg.Component.Domain, inv.Entity), gate.InviteTerms(inv.Invite))
		if inv.Landing == "" {
			fmt.Fprintf(stderr, "note: %s has no [http] listen: there is no page with a QR code for it\n", cfg.Path)
		}
		return nil
	case "revoke":
		changed, err := svc.RevokeInvite(ctx, cliActor(), id)
		if err != nil {
			return err
		}
		if !changed {
			fmt.Fprintf(stdout, "invite %d was revoked already\n", id)
			return nil
		}
		fmt.Fprintf(stdout, "invite %d revoked: a request that carries it now goes through the policy\n", id)
		return nil
	}
	invs, err := svc.Invites(ctx)
	if err != nil {
		return err
	}
	if len(invs) == 0 {
		fmt.Fprintln(stdout, "No invites.")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFOR\tBY\tCREATED\tUSES\tEXPIRES\tBACK\tSTATE")
	now := time.Now()
	for _, inv := range invs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", inv.ID, roster.EntityJID(cfg.Component.Domain, inv.Entity), inv.Creator,
			inv.Created.Local().Format("2006-01-02 15:04"), inv.Uses, inv.MaxUses, expiry(inv), yesNo(inv.SubscribeBack), inviteState(inv, now))
	}
	return tw.Flush()
}

// inviteState is "usable", or why an invite is not: "revoked 2026-12-02
// 10:00", "expired", "used up".
func inviteState(inv store.Invite, now time.Time) string {
	switch why := inv.Unusable(now, 0); why {
	case "":
		return "usable"
	case "revoked":
		return "revoked " + inv.Revoked.Local().Format("2006-01-02 15:04")
	default:
		return why
	}
}

func expiry(inv store.Invite) string {
	if inv.Expires.IsZero() {
		return "never"
	}
	return inv.Expires.Local().Format("2006-01-02 15:04")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// webAddress is where admins reach the web page by cfg.
func webAddress(cfg *config.Config) string {
	if cfg.HTTP.WebURL != "" {
		return cfg.HTTP.WebURL
	}
	return instance.WebAddress(cfg.HTTP.Listen, cfg.HTTP.TLSCert != "")
}
