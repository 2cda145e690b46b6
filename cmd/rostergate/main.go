// Command rostergate is an XMPP external component (XEP-0114) that owns the
// rosters of the JIDs at its domain and answers presence subscriptions
// (RFC 6121) by a configurable policy.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], proc{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	if err != nil {
		var logged *loggedError
		if !errors.Is(err, errUsage) && !errors.As(err, &logged) {
			fmt.Fprintln(os.Stderr, "rostergate:", err)
		}
		os.Exit(exitCode(err))
	}
}

// loggedError is an error the run has logged already.
type loggedError struct{ err error }

func (e *loggedError) Error() string { return e.err.Error() }
func (e *loggedError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

const usage = `rostergate: an XMPP subscription gatekeeper (XEP-0114 component, RFC 6121)

Usage:
  rostergate run     -config FILE   connect to the server and serve
  rostergate check   -config FILE   validate the config, print entities and rules
  rostergate status  -config FILE   which instance is active (PostgreSQL: since when, and the standbys)
  rostergate roster  -config FILE [-entity LOCAL]   print roster items
  rostergate pending -config FILE [list | approve ID… | reject ID…]
                                   held requests; approve or reject them (carried out by the running rostergate)
  rostergate explain -config FILE -from JID -to JID
                                   how a request would be decided, and by which rule
  rostergate lists   -config FILE [show | allow P | deny P | unallow P | undeny P]
                                   the allow and deny lists, consulted before the rules
  rostergate audit   -config FILE [-since DURATION] [-format text|json|csv]
                                   decisions and admin actions
  rostergate token   create -config FILE -entity LOCAL | list -config FILE | revoke -config FILE ID
                                   the bots' HTTP API tokens (printed once, kept as a hash)
  rostergate invite  create -config FILE -entity LOCAL [-ttl 72h] [-uses 1] [-subscribe-back] | list | revoke ID
                                   invite links (XEP-0379) that pre-approve a subscription to an entity
  rostergate backup  -config FILE -out FILE   a consistent copy of the database, while running
  rostergate export  -config FILE -out FILE [-live]   rosters, held requests, lists, audit, tokens as JSON lines
  rostergate import  -config FILE -in FILE    load an export into an empty store (docs/export.md)
  rostergate version               print the version

Run 'rostergate COMMAND -h' for a command's flags.
`

// proc is what run takes from the process it runs in.
type proc struct {
	stdout, stderr io.Writer
	getenv         func(string) string // looks up environment variables
	// hup delivers the signals on which `rostergate run` reloads its
	// config; nil means SIGHUP, received with signal.Notify. A test gives
	// a channel of its own, so that its reload reaches its daemon only.
	hup <-chan os.Signal
}

func run(ctx context.Context, args []string, p proc) error {
	stdout, stderr, getenv := p.stdout, p.stderr, p.getenv
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], p)
	case "check":
		return cmdCheck(args[1:], stdout, stderr, getenv)
	case "roster":
		return cmdRoster(ctx, args[1:], stdout, stderr, getenv)
	case "pending":
		return cmdPending(ctx, args[1:], stdout, stderr, getenv)
	case "explain":
		return cmdExplain(ctx, args[1:], stdout, stderr, getenv)
	case "lists":
		return cmdLists(ctx, args[1:], stdout, stderr, getenv)
	case "token":
		return cmdToken(ctx, args[1:], stdout, stderr, getenv)
	case "invite":
		return cmdInvite(ctx, args[1:], stdout, stderr, getenv)
	case "backup":
		return cmdBackup(ctx, args[1:], stdout, stderr, getenv)
	case "audit":
		return cmdAudit(ctx, args[1:], stdout, stderr, getenv)
	case "status":
		return cmdStatus(ctx, args[1:], stdout, stderr, getenv)
	case "export":
		return cmdExport(ctx, args[1:], stdout, stderr, getenv)
	case "import":
		return cmdImport(ctx, args[1:], stdout, stderr, getenv)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "rostergate", version)
		return nil
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "rostergate: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
