// Package xmpptest starts real XMPP servers on loopback for rostergate's
// integration tests and demo, and logs real clients in.
//
// Three servers are supported, Prosody, ejabberd and Openfire
// (Server.Kind), behind one API. Prosody and ejabberd come from Debian's
// packages; Openfire from the installation $OPENFIRE_HOME points at (a
// release, or a build's distribution directory), which is never written
// to: each server gets a home of its own in its directory. The core
// (Start, StartProsody, StartEjabberd, StartOpenfire, Server.Register,
// Server.Stop, Server.Restart, Dial, Client methods) takes a context and
// returns errors, so it can be used from a non-test program such as a demo.
// Prosody, Ejabberd, ServerWith, EachServer and Server.NewUser are thin
// testing.TB wrappers on top that skip (or fail, when CI=true) if the
// server is not installed and register cleanups; EachServer runs a test
// body once per server.
//
// Servers run in the foreground with a generated configuration in a
// caller-provided directory. Everything listens on 127.0.0.1 only: one
// client-to-server port (plaintext, PLAIN auth allowed) and one XEP-0114
// component port for a single component domain, and for ejabberd the
// Erlang distribution port its ejabberdctl talks to (fixed, no epmd).
// Server to server and HTTP listeners are disabled.
//
// # Starting
//
// The ports are picked free at random, outside the kernel's ephemeral port
// range where it leaves room (so outgoing connections and port-0 listeners
// of other processes do not take them). A start is complete when the
// server process itself listens on each of its ports on 127.0.0.1 (checked
// in /proc on Linux) and answers there. If another process took a port
// first, which the server says (Prosody logs it, ejabberd exits with
// eaddrinuse), the start is retried on fresh ports a bounded number of
// times; Restart keeps the ports, waits (bounded) for a taken one to be
// free and retries a bounded number of times. Errors then wrap
// ErrPortInUse.
//
// Each attempt to start is bounded by the caller's context and by the start
// timeout: the environment variable ROSTERGATE_TEST_SERVER_START
// (StartTimeoutEnv), a Go duration such as "90s" or "5m", default 120s
// (DefaultStartTimeout). A value that does not parse, or is not positive,
// makes every start fail. ejabberd starts in a few seconds on an idle
// machine, but much more slowly on a busy one (its Erlang VMs run without
// scheduler busy-waiting, which helps a lot there). The testing wrappers
// bound the start only by this timeout, and NewUser's Register (which for
// ejabberd boots an Erlang VM for ejabberdctl) by the longer of it and 20
// seconds.
//
// Clients log in through github.com/xmppo/go-xmpp (SASL PLAIN, no TLS). A
// Client keeps every stanza the server sends it, so tests can wait for
// presences without sleeping (Client.WaitPresence), and it answers roster
// pushes. Client.Roster returns the roster as the server holds it.
package xmpptest

import "errors"

// ErrNotInstalled is returned (wrapped) by Start, StartProsody and
// StartEjabberd when a binary the server needs cannot be found.
var ErrNotInstalled = errors.New("xmpptest: server is not installed")
