package xmpptest

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds each setup step done by the testing wrappers, but for
// starting a server (bounded by StartTimeout) and registering a user (which
// on ejabberd boots an Erlang VM for ejabberdctl: bounded by the longer of
// testTimeout and StartTimeout).
const testTimeout = 20 * time.Second

// Prosody starts a Prosody server in a fresh t.TempDir with the default
// domains. With -short it skips the test. If Prosody is not installed it
// skips the test, or fails it when the environment variable CI is "true". The server is stopped when the test
// ends; if the test failed, the tail of the Prosody log is logged.
func Prosody(t testing.TB) *Server {
	t.Helper()
	return ServerWith(t, KindProsody, Config{})
}

// ProsodyWith is Prosody with explicit configuration. An empty cfg.Dir is
// replaced by t.TempDir().
func ProsodyWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	return ServerWith(t, KindProsody, cfg)
}

// Ejabberd starts an ejabberd server in a fresh t.TempDir with the default
// domains, like Prosody: it skips with -short or when ejabberd is not
// installed (fails when CI is "true"), and stops the server when the test
// ends.
func Ejabberd(t testing.TB) *Server {
	t.Helper()
	return ServerWith(t, KindEjabberd, Config{})
}

// EjabberdWith is Ejabberd with explicit configuration.
func EjabberdWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	return ServerWith(t, KindEjabberd, cfg)
}

// ServersEnv names the environment variable that restricts EachServer to
// some kinds, e.g. XMPPTEST_SERVERS=ejabberd; empty means every kind.
const ServersEnv = "XMPPTEST_SERVERS"

// EachServer runs body as one subtest per kind of server, named "prosody",
// "ejabberd" and "openfire", each with a fresh server of its own (see
// ServerWith). The subtests run one after the other. Kinds left out of
// $XMPPTEST_SERVERS are skipped, and so is Openfire without $OPENFIRE_HOME.
func EachServer(t *testing.T, body func(t *testing.T, srv *Server)) {
	t.Helper()
	only := os.Getenv(ServersEnv)
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			if only != "" && !slices.Contains(strings.Split(only, ","), kind) {
				t.Skipf("skipping: %s=%s", ServersEnv, only)
			}
			body(t, ServerWith(t, kind, Config{}))
		})
	}
}

// ServerWith starts a server of the given kind with cfg, for a test. An
// empty cfg.Dir is replaced by t.TempDir(). With -short it skips the test.
// If the server is not installed it skips the test, or fails it when the
// environment variable CI is "true"; Openfire without $OPENFIRE_HOME is
// skipped even then (no registry ships it). Starting is bounded by StartTimeout
// (see $ROSTERGATE_TEST_SERVER_START) per attempt. The server is stopped
// when the test ends; if the test failed, the tail of its log is logged
// then.
func ServerWith(t testing.TB, kind string, cfg Config) *Server {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipping: needs a real %s, and -short is set", kind)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	// Start bounds itself: StartTimeout per attempt, a few attempts.
	s, err := Start(t.Context(), kind, cfg)
	if errors.Is(err, ErrNoOpenfire) {
		// Even with CI=true: no registry ships Openfire.
		t.Skipf("skipping: %v", err)
	}
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true, so this is an error)", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop first: ejabberd buffers its log for up to a few seconds.
		if err := s.Stop(); err != nil {
			t.Errorf("stop %s: %v", s.Kind, err)
		}
		if t.Failed() {
			t.Logf("%s log tail (%s):\n%s", s.Kind, s.LogPath, s.LogTail(80))
		}
	})
	return s
}

// registerTimeout bounds Register in NewUser: the longer of testTimeout
// and StartTimeout.
func registerTimeout(t testing.TB) time.Duration {
	t.Helper()
	d, err := StartTimeout()
	if err != nil {
		t.Fatal(err)
	}
	return max(d, testTimeout)
}

// Password returns the password NewUser registers for user.
func Password(user string) string { return "pw-" + user }

// NewUser registers user@s.Domain with password Password(user), logs in,
// sends initial presence and returns the client, closed when the test ends.
func (s *Server) NewUser(t testing.TB, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout(t))
	defer cancel()
	if err := s.Register(ctx, user, Password(user)); err != nil {
		t.Fatal(err)
	}
	return s.Login(t, user)
}

// Login logs in an already registered user (password Password(user)), for
// example again after Restart. The client is closed when the test ends; if
// the test failed, the presences it received are logged first.
func (s *Server) Login(t testing.TB, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, s.C2SAddr, s.JID(user), Password(user))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range c.Presences() {
				t.Logf("%s received: %s", c.JID, p.Raw)
			}
		}
		if err := c.Close(); err != nil {
			t.Logf("close %s: %v", c.JID, err)
		}
	})
	return c
}
