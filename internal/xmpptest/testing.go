package xmpptest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// testTimeout bounds each setup step done by the testing wrappers.
const testTimeout = 20 * time.Second

// Prosody starts a Prosody server in a fresh t.TempDir with the default
// domains. With -short it skips the test. If Prosody is not installed it
// skips the test, or fails it when the environment variable CI is "true". The server is stopped when the test
// ends; if the test failed, the tail of the Prosody log is logged first.
func Prosody(t testing.TB) *Server {
	t.Helper()
	return ProsodyWith(t, ProsodyConfig{})
}

// ProsodyWith is Prosody with explicit configuration. An empty cfg.Dir is
// replaced by t.TempDir().
func ProsodyWith(t testing.TB, cfg ProsodyConfig) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs a real Prosody, and -short is set")
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := StartProsody(ctx, cfg)
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
		if t.Failed() {
			t.Logf("prosody log tail (%s):\n%s", s.LogPath, s.LogTail(60))
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop prosody: %v", err)
		}
	})
	return s
}

// Password returns the password NewUser registers for user.
func Password(user string) string { return "pw-" + user }

// NewUser registers user@s.Domain with password Password(user), logs in,
// sends initial presence and returns the client, closed when the test ends.
func (s *Server) NewUser(t testing.TB, user string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
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
