package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"rostergate/config"
	"rostergate/roster"
	"rostergate/store"
)

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

const tokenSynopsis = "create -config FILE (-entity LOCAL [-entity LOCAL…] | -admin) | list -config FILE | revoke -config FILE ID"

// cmdToken makes, lists and revokes the HTTP API's tokens. They live in the
// database, so the running rostergate sees a new or revoked token at once.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "-help" && args[0] != "--help" {
		fmt.Fprintf(stderr, "Usage: rostergate token %s\n", tokenSynopsis)
		return errUsage
	}
	verb := args[0]
	if verb == "-h" || verb == "-help" || verb == "--help" {
		fmt.Fprintf(stdout, "Usage: rostergate token %s\n", tokenSynopsis)
		return nil
	}
	fs := newFlags("token "+verb, "-config FILE", stderr)
	path := configFlag(fs)
	var entities stringList
	var admin *bool
	switch verb {
	case "create":
		fs.Var(&entities, "entity", "the `entity` (localpart, or bare JID at the domain) the token acts for; repeat for several")
		admin = fs.Bool("admin", false, "an admin's token: the admin API (POST /-/reload)")
	case "list", "revoke":
	default:
		fmt.Fprintf(stderr, "rostergate token: unknown action %q (want create, list or revoke)\n", verb)
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
		if len(entities) == 0 && !*admin {
			fmt.Fprintln(stderr, "rostergate token create: name the entity it is for with -entity (e.g. -entity helpdesk), or make an admin's token with -admin")
			return errUsage
		}
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "rostergate token create: unexpected argument %q\n", rest[0])
			return errUsage
		}
	case "list":
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "rostergate token list: unexpected argument %q\n", rest[0])
			return errUsage
		}
	case "revoke":
		if id, err = revokeID("token", "a token", rest, stderr); err != nil {
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
	domain := cfg.Component.Domain
	switch verb {
	case "create":
		create := svc.CreateToken
		if *admin {
			create = svc.CreateAdminToken
		}
		tok, t, err := create(ctx, entities)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "token %d for %s: it is shown this once (only its hash is kept); send it as Authorization: Bearer <token>\n",
			t.ID, tokenScope(domain, t))
		if cfg.HTTP.Listen == "" {
			fmt.Fprintf(stderr, "note: %s has no [http] listen: the API is off until it is set\n", cfg.Path)
		}
		return nil
	case "revoke":
		if err := svc.RevokeToken(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %d revoked: a running rostergate refuses it within 2 seconds\n", id)
		return nil
	}
	ts, err := svc.Tokens(ctx)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		fmt.Fprintln(stdout, "No tokens.")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFOR\tCREATED\tLAST USED\tSTATE")
	when := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.Local().Format("2006-01-02 15:04")
	}
	for _, t := range ts {
		state := "active"
		if !t.Revoked.IsZero() {
			state = "revoked " + when(t.Revoked)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.ID, tokenScope(domain, t), when(t.Created), when(t.LastUsed), state)
	}
	return tw.Flush()
}

// tokenScope says what a token is for: "admin", entities, or both.
func tokenScope(domain string, t store.Token) string {
	parts := entityJIDs(domain, t.Entities)
	if t.Admin {
		parts = append([]string{"admin"}, parts...)
	}
	return strings.Join(parts, ",")
}

func entityJIDs(domain string, locals []string) []string {
	out := make([]string, len(locals))
	for i, l := range locals {
		out[i] = roster.EntityJID(domain, l)
	}
	return out
}
