// Package pgtest starts a real PostgreSQL on loopback for rostergate's
// tests, as package xmpptest starts Prosody.
//
// The server comes from Debian's postgresql package: the newest
// /usr/lib/postgresql/*/bin with an initdb and a postgres in it (else the
// directory `pg_config --bindir` names, else PATH). Without one, Start skips
// the test, or fails it when the environment variable CI is "true".
//
// # The shared server and private ones
//
// Start returns the test binary's shared server: the first call starts it,
// the others reuse it (and its failure, if it failed). It runs until the
// test binary exits: call Main from TestMain to stop it and remove its
// directory then; without that, the kernel sends it SIGQUIT (an immediate
// shutdown) when the test binary dies, and the next Start removes the
// directories of servers whose test binary has gone. Tests on the shared
// server keep to databases of their own (NewDatabase); whatever stops the
// whole server (Restart, Kill) belongs on a private one.
//
// StartPrivate starts a server for one test alone, stopped and removed when
// that test ends: the one to Restart or Kill.
//
// # How it runs
//
// Each server has a temporary directory (Dir) holding its data directory,
// its Unix socket directory and its log (postgres.log, whose tail failure
// messages include). It listens on 127.0.0.1 only, on a free port picked
// outside the kernel's ephemeral range, with trust authentication for the
// superuser "postgres" (pg_hba.conf allows local sockets and 127.0.0.1
// only). fsync and synchronous_commit are on, as in production, so that
// what is measured on it is honest; shared_buffers is small.
//
// initdb and postgres refuse to run as root: as root (CI), they run as the
// unprivileged "postgres" system user (Debian's package creates it), which
// owns the data and socket directories; otherwise as the current user.
//
// Every wait is bounded in time: a start by StartTimeout (60 s), a stop by
// a fast shutdown (SIGINT) of at most 30 s, then SIGKILL to the server's
// process group.
package pgtest
