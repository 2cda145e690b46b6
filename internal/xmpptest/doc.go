// Package xmpptest starts real XMPP servers on loopback for rostergate's
// integration tests and demo, and logs real clients in.
//
// Two servers are supported, Prosody and ejabberd (Server.Kind), behind one
// API. The core (Start, StartProsody, StartEjabberd, Server.Register,
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
// Clients log in through github.com/xmppo/go-xmpp (SASL PLAIN, no TLS). A
// Client keeps every stanza the server sends it, so tests can wait for
// presences without sleeping (Client.WaitPresence), and it answers roster
// pushes. Client.Roster returns the roster as the server holds it.
package xmpptest

import "errors"

// ErrNotInstalled is returned (wrapped) by Start, StartProsody and
// StartEjabberd when a binary the server needs cannot be found.
var ErrNotInstalled = errors.New("xmpptest: server is not installed")
