package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"rostergate/roster"
	"rostergate/store"

	"mellium.im/xmpp/jid"
)

// Web configures the admins' web page as the service sees it: how long its
// login links and sessions last. Where it is comes with SetWebURL.
type Web struct {
	// LoginTTL bounds a one-time login link's life; default 5 minutes.
	LoginTTL time.Duration
	// Idle ends a session not used for that long; default 30 minutes.
	Idle time.Duration
	// MaxSession ends any session that long after its login; default 12 h.
	MaxSession time.Duration
}

func (w Web) withDefaults() Web {
	if w.LoginTTL <= 0 {
		w.LoginTTL = 5 * time.Minute
	}
	if w.Idle <= 0 {
		w.Idle = 30 * time.Minute
	}
	if w.MaxSession <= 0 {
		w.MaxSession = 12 * time.Hour
	}
	return w
}

// Errors of the web logins.
var (
	// ErrNoWeb: there is no web page ([http] listen is not set).
	ErrNoWeb error = &roster.InputError{Pkg: "gate", Msg: "there is no web page ([http] listen is not set)"}
	// ErrNotAdmin: the JID is not one of the [admin] jids.
	ErrNotAdmin = errors.New("gate: not an admin")
	// ErrLogin: the link or session is unknown, used, expired, or its
	// admin is no longer one. Matches store.ErrNotFound too.
	ErrLogin = errors.New("gate: unknown, used or expired")
)

// loginError is ErrLogin with why, unwrapping to ErrLogin and to the
// store's not-found.
type loginError struct{ why string }

func (e loginError) Error() string { return "gate: " + e.why }
func (e loginError) Is(target error) bool {
	return target == ErrLogin || target == store.ErrNotFound
}

// Prefixes of the web page's secrets: a login link's and a session's.
const (
	LoginPrefix   = "rgl_"
	SessionPrefix = "rgs_"
)

// SetWebURL sets where admins reach the web page (its URL ending in "/"),
// once it is known: when it listens. Held requests' notices link to its
// inbox from then on.
func (s *Service) SetWebURL(u string) {
	if u != "" && !strings.HasSuffix(u, "/") {
		u += "/"
	}
	s.webURL.Store(&u)
	if s.eng != nil && u != "" {
		s.eng.SetInbox(u + "inbox")
	}
}

// WebURL returns where admins reach the web page, "" if there is none.
func (s *Service) WebURL() string {
	if p := s.webURL.Load(); p != nil {
		return *p
	}
	return ""
}

// IsAdmin reports whether a JID (any resource, any case) is an admin by the
// settings in force; false in a command-line process.
func (s *Service) IsAdmin(j string) bool {
	return s.eng != nil && s.eng.IsAdmin(j)
}

// LoginLink makes a one-time login link to the web page for an admin and
// returns it, with when it expires.
func (s *Service) LoginLink(ctx context.Context, admin string) (string, time.Time, error) {
	base := s.WebURL()
	if base == "" {
		return "", time.Time{}, ErrNoWeb
	}
	if !s.IsAdmin(admin) {
		return "", time.Time{}, fmt.Errorf("gate: %s: %w", admin, ErrNotAdmin)
	}
	sec, err := newSecret(LoginPrefix)
	if err != nil {
		return "", time.Time{}, err
	}
	now := time.Now()
	k := store.WebKey{Hash: hashToken(sec), Kind: store.KindLogin, JID: bareLower(admin), Created: now, Expires: now.Add(s.web.LoginTTL)}
	if err := s.store.CreateWebKey(ctx, k); err != nil {
		return "", time.Time{}, fmt.Errorf("gate: %w", err)
	}
	return base + "login/" + sec, k.Expires, nil
}

// SendLoginLink sends an admin a one-time login link over XMPP, from the
// component domain. Anything but an admin's JID is ignored, silently to the
// asker (who learns nothing of who the admins are) but with the reason
// returned for the log.
func (s *Service) SendLoginLink(ctx context.Context, admin string) error {
	if !s.IsAdmin(admin) {
		return fmt.Errorf("gate: %q: %w", admin, ErrNotAdmin)
	}
	msg, err := s.LoginMessage(ctx, admin)
	if err != nil {
		return err
	}
	if err := s.eng.TellAdmin(bareLower(admin), msg); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

// LoginMessage makes a one-time login link for an admin and returns the
// message that gives it (the chat command "login").
func (s *Service) LoginMessage(ctx context.Context, admin string) (string, error) {
	link, exp, err := s.LoginLink(ctx, admin)
	if err != nil {
		return "", err
	}
	return LoginText(link, exp), nil
}

// LoginText is the message that carries a login link.
func LoginText(link string, expires time.Time) string {
	mins := max(1, int(time.Until(expires).Round(time.Minute)/time.Minute))
	unit := "minutes"
	if mins == 1 {
		unit = "minute"
	}
	return fmt.Sprintf("Your login link to the rostergate web page (it works once, within %d %s):\n%s", mins, unit, link)
}

// WebLogin peeks at a login link: whose it is, without using it.
func (s *Service) WebLogin(ctx context.Context, secret string) (store.WebKey, error) {
	return s.webKey(ctx, secret, LoginPrefix, store.KindLogin, 0)
}

// Login uses a one-time login link (its secret) and opens a session for its
// admin: it returns the session's secret and key.
func (s *Service) Login(ctx context.Context, secret string) (string, store.WebKey, error) {
	if !strings.HasPrefix(secret, LoginPrefix) {
		return "", store.WebKey{}, loginError{"not a login link"}
	}
	now := time.Now()
	k, err := s.store.TakeWebKey(ctx, hashToken(secret), store.KindLogin, now)
	if errors.Is(err, store.ErrNotFound) {
		return "", store.WebKey{}, loginError{"the login link is unknown, used already or expired"}
	}
	if err != nil {
		return "", store.WebKey{}, fmt.Errorf("gate: %w", err)
	}
	if !s.IsAdmin(k.JID) {
		return "", store.WebKey{}, loginError{k.JID + " is no longer an admin"}
	}
	sec, err := newSecret(SessionPrefix)
	if err != nil {
		return "", store.WebKey{}, err
	}
	sk := store.WebKey{Hash: hashToken(sec), Kind: store.KindSession, JID: k.JID, Created: now,
		Expires: now.Add(s.web.Idle), Until: now.Add(s.web.MaxSession)}
	if err := s.store.CreateWebKey(ctx, sk); err != nil {
		return "", store.WebKey{}, fmt.Errorf("gate: %w", err)
	}
	return sec, sk, nil
}

// Session returns the session of this secret if it is live and its admin
// still one; touch says the admin acted (the idle deadline moves on).
func (s *Service) Session(ctx context.Context, secret string, touch bool) (store.WebKey, error) {
	var d time.Duration
	if touch {
		d = s.web.Idle
	}
	return s.webKey(ctx, secret, SessionPrefix, store.KindSession, d)
}

func (s *Service) webKey(ctx context.Context, secret, prefix, kind string, touch time.Duration) (store.WebKey, error) {
	if !strings.HasPrefix(secret, prefix) {
		return store.WebKey{}, loginError{"not a " + kind}
	}
	k, err := s.store.WebKey(ctx, hashToken(secret), kind, time.Now(), touch)
	if errors.Is(err, store.ErrNotFound) {
		return k, loginError{"the " + kind + " is unknown, used already or expired"}
	}
	if err != nil {
		return k, fmt.Errorf("gate: %w", err)
	}
	if !s.IsAdmin(k.JID) {
		return store.WebKey{}, loginError{k.JID + " is no longer an admin"}
	}
	return k, nil
}

// Logout ends the session of this secret.
func (s *Service) Logout(ctx context.Context, secret string) error {
	if err := s.store.DeleteWebKey(ctx, hashToken(secret)); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

// CSRF returns the token the web page's forms carry for a session: derived
// from the session's secret (which only the admin's browser has), so none is
// stored.
func CSRF(session string) string {
	h := sha256.Sum256([]byte("rostergate csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func newSecret(prefix string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("gate: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(raw[:]), nil
}

// bareLower is the bare JID of j, normalised as the admins' JIDs are.
func bareLower(j string) string {
	p, err := jid.Parse(j)
	if err != nil {
		return strings.ToLower(j)
	}
	return p.Bare().String()
}

// HeldReason says why a request was held, for admins ("no rule matched;
// held for review", "held for review by rule 2: …").
func (s *Service) HeldReason(rule string) string {
	if s.eng == nil {
		return rule
	}
	return s.eng.HeldWhy(rule)
}

// AuditPage returns a page of the audit log (see store.AuditQuery).
func (s *Service) AuditPage(ctx context.Context, q store.AuditQuery) ([]roster.Event, error) {
	evs, err := s.store.AuditPage(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return evs, nil
}
