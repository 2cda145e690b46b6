// Package config loads and validates rostergate's TOML configuration
// (component.toml): the XEP-0114 connection, storage, the entities at the
// component domain, the admins, the subscription policy and the limits on
// subscription requests.
//
// Defaults are set before decoding, unknown keys are an error, and every
// error names the file, the key and what is wrong with it.
package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
	"mellium.im/xmpp/jid"

	"rostergate/engine"
	"rostergate/limits"
	"rostergate/policy"
	"rostergate/webhook"
)

// SecretEnv names the environment variable that overrides the secret in the file.
const SecretEnv = "ROSTERGATE_SECRET"

// Config is a loaded, validated configuration.
type Config struct {
	Path      string    `toml:"-"` // the file it was loaded from
	Component Component `toml:"component"`
	Storage   Storage   `toml:"storage"`
	Entities  []Entity  `toml:"entity"`
	Admin     Admin     `toml:"admin"`
	Policy    Policy    `toml:"policy"`
	Limits    Limits    `toml:"limits"`
	Directory Directory `toml:"directory"`
	Placement Placement `toml:"placement"`
	HTTP      HTTP      `toml:"http"`
	Log       Log       `toml:"log"`

	compiled *policy.Policy
}

// Component is the [component] table: how to reach the server (XEP-0114).
type Component struct {
	Domain     string   `toml:"domain"`      // the component's domain, normalised
	Server     string   `toml:"server"`      // host:port of the server's component listener
	Secret     string   `toml:"secret"`      // the shared secret; see SecretSource
	SecretFile string   `toml:"secret_file"` // a file holding the secret, relative to the config file
	Resource   string   `toml:"resource"`    // resource of the entities' available presence
	Keepalive  Duration `toml:"keepalive"`   // idle time before a whitespace keepalive

	// SecretSource says where the secret came from, for `check`: "secret",
	// "secret_file PATH" or the environment variable. Never the secret.
	SecretSource string `toml:"-"`
}

// Storage is the [storage] table.
type Storage struct {
	// Driver is "sqlite" (the default: one file, one machine) or
	// "postgres" (one database several instances share).
	Driver string `toml:"driver"`
	Path   string `toml:"path"` // SQLite file, relative to the config file
	// DSN is PostgreSQL's connection string (postgres://…), or DSNFile a
	// file holding it (relative to the config file), or the environment
	// variable DSNEnv; DSNSource says which, never the DSN.
	DSN       string `toml:"dsn"`
	DSNFile   string `toml:"dsn_file"`
	DSNSource string `toml:"-"`
}

// Storage drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// DSNEnv is the environment variable that, when set, gives PostgreSQL's
// connection string (and wins over dsn and dsn_file).
const DSNEnv = "ROSTERGATE_DSN"

// Redacted is the DSN without its password, for printing.
func (s Storage) Redacted() string {
	u, err := url.Parse(s.DSN)
	if err != nil || u.Scheme == "" {
		if strings.Contains(s.DSN, "password") {
			return "(a connection string with a password)"
		}
		return s.DSN
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Entity is one [[entity]]: a JID at the domain whose roster rostergate owns.
type Entity struct {
	Local  *string `toml:"local"` // localpart; "" is the component domain itself
	Name   string  `toml:"name"`
	Nick   string  `toml:"nick"` // its nickname, in its vCard
	Show   string  `toml:"show"`
	Status string  `toml:"status"`
	// AutoReply answers a message to the entity while no bot is behind it;
	// without it such a message gets service-unavailable.
	AutoReply string `toml:"auto_reply"`
	// AcceptMessages is whose messages reach the entity: "contacts" (the
	// default: a JID with a subscription either way) or "anyone".
	AcceptMessages string `toml:"accept_messages"`
	// Avatar is a PNG, JPEG, GIF or WebP file (relative to the config
	// file), read when the config is: AvatarData and AvatarType.
	Avatar     string `toml:"avatar"`
	AvatarData []byte `toml:"-"`
	AvatarType string `toml:"-"`
	// Webhook is the URL each of the entity's events is POSTed to, signed
	// with the secret in WebhookSecretFile (whsec_…, read when the config
	// is: WebhookSecret); WebhookMaxAge is how long an event is retried.
	Webhook           string   `toml:"webhook"`
	WebhookSecretFile string   `toml:"webhook_secret_file"`
	WebhookSecret     string   `toml:"-"`
	WebhookMaxAge     Duration `toml:"webhook_max_age"`
	// SendTo is whom the entity's bot may message: "subscribers" (the
	// default) or "anyone".
	SendTo string `toml:"send_to"`
	// PlaceIn are the users whose rosters the entity is put on, as bare
	// JIDs and groups of [directory] ("group:sales"); normalised when the
	// config is read.
	PlaceIn []string `toml:"place_in"`
}

// HTTP is the [http] table: the bots' API and webhooks. Off when Listen is
// empty.
type HTTP struct {
	Listen string `toml:"listen"` // host:port
	// TLSCert and TLSKey (PEM files, relative to the config file) serve
	// HTTPS; both or neither.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// EventRetention is how long events are kept; MaxEvents how many per
	// entity at most.
	EventRetention Duration `toml:"event_retention"`
	MaxEvents      int      `toml:"max_events"`
	// MaxBody bounds a request's body, in bytes.
	MaxBody int64 `toml:"max_body"`
	// RateText is the requests each token may make, N/DURATION; Rate its
	// value.
	RateText string      `toml:"rate"`
	Rate     limits.Rate `toml:"-"`
	// WebURL is where admins reach the web page (its login links point
	// there); default http(s)://HOST:PORT/ of listen.
	WebURL string `toml:"web_url"`
	// LoginTTL bounds a one-time login link's life; SessionIdle ends a
	// session unused that long, SessionMax any session that long after
	// its login.
	LoginTTL    Duration `toml:"login_ttl"`
	SessionIdle Duration `toml:"session_idle"`
	SessionMax  Duration `toml:"session_max"`
	// MetricsAllowText are the addresses (CIDRs, or IPs) that may GET
	// /metrics; MetricsAllow their value. Default loopback; [] turns
	// /metrics off (403 to everyone). A reload puts a change in force.
	MetricsAllowText []string       `toml:"metrics_allow"`
	MetricsAllow     []netip.Prefix `toml:"-"`
}

// Log is the [log] table.
type Log struct {
	// Level is trace, debug, info, warn or error, lower case, or "" when
	// the file sets none: the level at start unless the -log-level flag is
	// given, and the level a reload (SIGHUP) puts in force.
	Level string `toml:"level"`
	// Format is text (the default) or json, lower case; the -log-format
	// flag wins over it. Only a restart puts a new format in force.
	Format string `toml:"format"`
}

// LogLevels and LogFormats are the values [log] level and format take,
// as the flags -log-level and -log-format do.
var (
	LogLevels  = []string{"trace", "debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
)

// defaultMetricsAllow is who may GET /metrics unless [http] metrics_allow
// says otherwise: this host only.
var defaultMetricsAllow = []string{"127.0.0.0/8", "::1/128"}

// maxAvatar bounds an avatar: its vCard carries it whole, in base64.
const maxAvatar = 64 << 10

// loadAvatar reads an entity's avatar file.
func (c *Config) loadAvatar(e *Entity) error {
	p := c.resolve(e.Avatar)
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAvatar+1))
	if err != nil {
		return err
	}
	if len(data) > maxAvatar {
		return fmt.Errorf("%s is larger than %d KiB", p, maxAvatar>>10)
	}
	switch t := http.DetectContentType(data); t {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		e.AvatarData, e.AvatarType = data, t
		return nil
	default:
		return fmt.Errorf("%s is %s, not a PNG, JPEG, GIF or WebP image", p, t)
	}
}

// Localpart returns the entity's normalised localpart.
func (e Entity) Localpart() string {
	if e.Local == nil {
		return ""
	}
	return *e.Local
}

// Admin is the [admin] table: who may decide requests held for review.
type Admin struct {
	JIDs []string `toml:"jids"` // bare JIDs, normalised (PRECIS), without duplicates
}

// Policy is the [policy] table.
type Policy struct {
	Default       string `toml:"default"`
	UnknownEntity string `toml:"unknown_entity"`
	// ReviewTTLText is review_ttl as written; ReviewTTL is its value:
	// requests held for review longer than this are rejected (0 = never).
	ReviewTTLText string   `toml:"review_ttl"`
	ReviewTTL     Duration `toml:"-"`
	// LocalDomains are the domains whose users are local contacts
	// (normalised). When local_domains is not set: the component domain's
	// parent (bots.example.com → example.com), or none for a domain without
	// a dot.
	LocalDomains []string `toml:"local_domains"`
	Rules        []Rule   `toml:"rule"`
	// DefaultMessage goes to the requester with the default's answer;
	// ReviewMessage to a requester whose request is held for review (once
	// per request), unless the rule that held it has a message. Unset,
	// ReviewMessage is DefaultReviewMessage; "" sends none.
	DefaultMessage string  `toml:"default_message"`
	ReviewMessage  *string `toml:"review_message"`
}

// DefaultReviewMessage is what a requester is told when a request is held
// for review, unless [policy] review_message says otherwise.
const DefaultReviewMessage = "Your request is waiting for an administrator's approval; you will get the answer here."

// Rule is one [[policy.rule]].
type Rule struct {
	Contact       string `toml:"contact"`
	Domain        string `toml:"domain"`
	Entity        string `toml:"entity"`
	Regex         string `toml:"regex"`
	LocalContact  *bool  `toml:"local_contact"`
	Group         string `toml:"group"` // the contact belongs to this group of [directory]
	Action        string `toml:"action"`
	SubscribeBack bool   `toml:"subscribe_back"`
	Message       string `toml:"message"`
}

// Limits is the limits table of the file: how many subscription requests
// rostergate takes in.
type Limits struct {
	// ContactRateText and DomainRateText are the rates as written ("5/1m";
	// "" = unlimited); ContactRate and DomainRate are their values.
	ContactRateText     string      `toml:"contact_rate"`
	DomainRateText      string      `toml:"domain_rate"`
	ContactRate         limits.Rate `toml:"-"`                      // requests per contact
	DomainRate          limits.Rate `toml:"-"`                      // requests per contact domain
	MaxPendingPerDomain int         `toml:"max_pending_per_domain"` // requests held for review from one domain; 0 = no cap
	MaxPending          int         `toml:"max_pending"`            // requests held for review in all; 0 = no cap
	MaxStanzaBytes      int64       `toml:"max_stanza_bytes"`       // a larger stanza from the server ends the stream (policy-violation)
	Action              string      `toml:"action"`                 // over a limit: "drop" (the default) or "reject"
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"30s\" or \"5m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Compiled returns the compiled policy.
func (c *Config) Compiled() *policy.Policy { return c.compiled }

// Entity returns the entity with the given normalised localpart.
func (c *Config) Entity(local string) (Entity, bool) {
	for _, e := range c.Entities {
		if e.Localpart() == local {
			return e, true
		}
	}
	return Entity{}, false
}

// Load reads, decodes and validates the file at path. getenv looks up
// environment variables (os.Getenv in production).
func Load(path string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b, path, getenv)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes and validates a configuration held in memory; path names it
// in errors and anchors relative paths.
func Parse(b []byte, path string, getenv func(string) string) (*Config, error) {
	c := &Config{
		Path:      path,
		Component: Component{Resource: "rostergate", Keepalive: Duration{60 * time.Second}},
		Storage:   Storage{Path: "rostergate.db"},
		Policy:    Policy{Default: string(policy.Review), UnknownEntity: string(policy.Drop)},
		Limits:    Limits{Action: string(policy.Drop), MaxStanzaBytes: 64 << 10},
		HTTP: HTTP{EventRetention: Duration{7 * 24 * time.Hour}, MaxEvents: 100_000, MaxBody: 64 << 10, RateText: "100/1s",
			LoginTTL: Duration{5 * time.Minute}, SessionIdle: Duration{30 * time.Minute}, SessionMax: Duration{12 * time.Hour},
			MetricsAllowText: slices.Clone(defaultMetricsAllow)},
		Log: Log{Format: "text"},
	}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config: %s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = strconv.Quote(k.String())
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("config: %s: unknown key %s", path, strings.Join(keys, ", "))
	}
	if err := c.validate(getenv, md.IsDefined("policy", "local_domains")); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// validate checks and normalises c; localDomainsSet says whether the file
// sets [policy] local_domains (even to []).
func (c *Config) validate(getenv func(string) string, localDomainsSet bool) error {
	comp := &c.Component
	if comp.Domain == "" {
		return errors.New("[component] domain: required")
	}
	d, err := jid.Parse(comp.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return fmt.Errorf("[component] domain: %q is not a domain", comp.Domain)
	}
	comp.Domain = d.Domainpart()
	if comp.Server == "" {
		return errors.New("[component] server: required (host:port of the server's component port)")
	}
	host, port, err := net.SplitHostPort(comp.Server)
	if err != nil || host == "" {
		return fmt.Errorf("[component] server: %q is not host:port", comp.Server)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("[component] server: port %q is not a number from 1 to 65535", port)
	}
	if err := c.loadSecret(getenv); err != nil {
		return err
	}
	if comp.Resource == "" {
		return errors.New("[component] resource: must not be empty")
	}
	if r, err := jid.New("x", comp.Domain, comp.Resource); err != nil || r.Resourcepart() != comp.Resource {
		return fmt.Errorf("[component] resource: %q is not a valid resourcepart", comp.Resource)
	}
	if comp.Keepalive.Duration < time.Second {
		return fmt.Errorf("[component] keepalive: %s is too short (at least 1s)", comp.Keepalive)
	}
	if err := c.validateStorage(getenv); err != nil {
		return err
	}

	seen := map[string]int{}
	for i := range c.Entities {
		e := &c.Entities[i]
		key := fmt.Sprintf("[[entity]] %d", i+1)
		if e.Local == nil {
			return fmt.Errorf("%s: local: required (\"\" for the domain itself)", key)
		}
		local := *e.Local
		if local != "" {
			j, err := jid.New(local, comp.Domain, "")
			if err != nil {
				return fmt.Errorf("%s: local: %q is not a valid localpart", key, local)
			}
			local = j.Localpart()
			e.Local = &local
		}
		if prev, ok := seen[local]; ok {
			return fmt.Errorf("%s: local: %q is already [[entity]] %d", key, local, prev)
		}
		seen[local] = i + 1
		switch e.Show {
		case "", "away", "chat", "dnd", "xa":
		default:
			return fmt.Errorf("%s: show: unknown value %q (want \"\", away, chat, dnd or xa)", key, e.Show)
		}
		switch e.AcceptMessages {
		case "":
			e.AcceptMessages = engine.AcceptContacts
		case engine.AcceptContacts, engine.AcceptAnyone:
		default:
			return fmt.Errorf("%s: accept_messages: unknown value %q (want contacts or anyone)", key, e.AcceptMessages)
		}
		if local == "" && (e.AutoReply != "" || e.AcceptMessages == engine.AcceptAnyone) {
			return fmt.Errorf("%s: auto_reply and accept_messages do not apply to the component domain itself: its messages are admins' commands", key)
		}
		if e.Avatar != "" {
			if err := c.loadAvatar(e); err != nil {
				return fmt.Errorf("%s: avatar: %w", key, err)
			}
		}
		if err := c.validateBot(e, key); err != nil {
			return err
		}
		for _, f := range []struct{ name, v string }{{"name", e.Name}, {"nick", e.Nick}, {"status", e.Status}, {"auto_reply", e.AutoReply}} {
			if err := checkText(f.v); err != nil {
				return fmt.Errorf("%s: %s: %w", key, f.name, err)
			}
		}
	}

	if err := c.validateAdmin(); err != nil {
		return err
	}
	if s := c.Policy.ReviewTTLText; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("[policy] review_ttl: %q is not a duration (like \"72h\"; \"\" or \"0s\" for never)", s)
		}
		if d < 0 {
			return fmt.Errorf("[policy] review_ttl: %q must not be negative (\"\" or \"0s\" for never)", s)
		}
		c.Policy.ReviewTTL = Duration{d}
	}
	if localDomainsSet {
		if err := c.normaliseLocalDomains(); err != nil {
			return err
		}
	} else {
		c.Policy.LocalDomains = defaultLocalDomains(comp.Domain)
	}

	if err := c.validateDirectory(); err != nil {
		return err
	}
	if err := c.validatePlacement(); err != nil {
		return err
	}
	if c.Policy.ReviewMessage == nil {
		m := DefaultReviewMessage
		c.Policy.ReviewMessage = &m
	}
	pc := policy.Config{
		Default:        policy.Action(c.Policy.Default),
		UnknownEntity:  policy.Action(c.Policy.UnknownEntity),
		LocalDomains:   c.Policy.LocalDomains,
		DefaultMessage: c.Policy.DefaultMessage,
		ReviewMessage:  *c.Policy.ReviewMessage,
	}
	for i, r := range c.Policy.Rules {
		if r.Entity != "" {
			j, err := jid.New(r.Entity, comp.Domain, "")
			if err != nil {
				return fmt.Errorf("[[policy.rule]] %d: entity: %q is not a valid localpart", i+1, r.Entity)
			}
			if _, ok := seen[j.Localpart()]; !ok {
				return fmt.Errorf("[[policy.rule]] %d: entity: no [[entity]] with local = %q", i+1, r.Entity)
			}
			r.Entity = j.Localpart()
		}
		if err := c.checkRuleGroup(i+1, r.Group); err != nil {
			return err
		}
		if r.Domain != "" {
			// Compare domains as contacts arrive: normalised (IDNA, case).
			if d, err := jid.Parse(r.Domain); err == nil && d.Localpart() == "" && d.Resourcepart() == "" {
				r.Domain = d.Domainpart()
			}
		}
		pc.Rules = append(pc.Rules, policy.Rule{
			Contact:       r.Contact,
			Domain:        r.Domain,
			Entity:        r.Entity,
			Regex:         r.Regex,
			LocalContact:  r.LocalContact,
			Group:         r.Group,
			Action:        policy.Action(r.Action),
			SubscribeBack: r.SubscribeBack,
			Message:       r.Message,
		})
	}
	p, err := policy.Compile(pc)
	if err != nil {
		return fmt.Errorf("[policy]: %w", err)
	}
	c.compiled = p
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.validateHTTP(); err != nil {
		return err
	}
	return c.validateLog()
}

// validateLog checks and lower-cases the [log] table.
func (c *Config) validateLog() error {
	l := &c.Log
	l.Level, l.Format = strings.ToLower(l.Level), strings.ToLower(l.Format)
	if l.Level != "" && !slices.Contains(LogLevels, l.Level) {
		return fmt.Errorf("[log] level: unknown value %q (want %s)", l.Level, oneOf(LogLevels))
	}
	if !slices.Contains(LogFormats, l.Format) {
		return fmt.Errorf("[log] format: unknown value %q (want %s)", l.Format, oneOf(LogFormats))
	}
	return nil
}

// oneOf lists choices as a sentence does: "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// validateBot checks an entity's webhook and send_to.
func (c *Config) validateBot(e *Entity, key string) error {
	switch e.SendTo {
	case "":
		e.SendTo = engine.SendSubscribers
	case engine.SendSubscribers, engine.SendAnyone:
	default:
		return fmt.Errorf("%s: send_to: unknown value %q (want subscribers or anyone)", key, e.SendTo)
	}
	if e.WebhookMaxAge.Duration == 0 {
		e.WebhookMaxAge.Duration = 24 * time.Hour
	} else if e.WebhookMaxAge.Duration < time.Minute {
		return fmt.Errorf("%s: webhook_max_age: %s is too short (at least 1m)", key, e.WebhookMaxAge)
	}
	if e.Webhook == "" {
		if e.WebhookSecretFile != "" {
			return fmt.Errorf("%s: webhook_secret_file: set without webhook", key)
		}
		return nil
	}
	u, err := url.Parse(e.Webhook)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s: webhook: %q is not an http:// or https:// URL (without user or fragment)", key, e.Webhook)
	}
	if e.WebhookSecretFile == "" {
		return fmt.Errorf("%s: webhook_secret_file: required with webhook (a file holding whsec_ and the base64 key)", key)
	}
	s, err := readSecretFile(c.resolve(e.WebhookSecretFile))
	if err != nil {
		return fmt.Errorf("%s: webhook_secret_file: %w", key, err)
	}
	if _, err := webhook.ParseSecret(s); err != nil {
		return fmt.Errorf("%s: webhook_secret_file: %s: %w", key, c.resolve(e.WebhookSecretFile), err)
	}
	e.WebhookSecret = s
	return nil
}

// validateHTTP checks the [http] table.
func (c *Config) validateHTTP() error {
	h := &c.HTTP
	if h.Listen != "" {
		host, port, err := net.SplitHostPort(h.Listen)
		if err != nil {
			return fmt.Errorf("[http] listen: %q is not host:port", h.Listen)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("[http] listen: port %q is not a number from 0 to 65535", port)
		}
		_ = host
	}
	if (h.TLSCert == "") != (h.TLSKey == "") {
		return errors.New("[http] tls_cert, tls_key: set both or neither")
	}
	if h.TLSCert != "" {
		h.TLSCert, h.TLSKey = c.resolve(h.TLSCert), c.resolve(h.TLSKey)
		if _, err := tls.LoadX509KeyPair(h.TLSCert, h.TLSKey); err != nil {
			return fmt.Errorf("[http] tls_cert, tls_key: %w", err)
		}
	}
	if h.EventRetention.Duration < time.Minute {
		return fmt.Errorf("[http] event_retention: %s is too short (at least 1m)", h.EventRetention)
	}
	if h.MaxEvents < 100 {
		return fmt.Errorf("[http] max_events: %d is too few (at least 100)", h.MaxEvents)
	}
	if h.MaxBody < 1024 || h.MaxBody > 16<<20 {
		return fmt.Errorf("[http] max_body: %d is out of range (1024 to 16777216)", h.MaxBody)
	}
	var err error
	if h.Rate, err = limits.ParseRate(h.RateText); err != nil {
		return fmt.Errorf("[http] rate: %w", err)
	}
	if h.WebURL != "" {
		u, err := url.Parse(h.WebURL)
		switch {
		case err != nil:
			return fmt.Errorf("[http] web_url: %q is not a URL", h.WebURL)
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("[http] web_url: %q is not an http or https URL", h.WebURL)
		case u.Host == "":
			return fmt.Errorf("[http] web_url: %q has no host", h.WebURL)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			return fmt.Errorf("[http] web_url: %q has a query, fragment or user: give the page's address alone", h.WebURL)
		case u.Path != "" && u.Path != "/":
			return fmt.Errorf("[http] web_url: %q has a path: the page is served at the root of its host (give it a host of its own behind a proxy)", h.WebURL)
		}
		if !strings.HasSuffix(h.WebURL, "/") {
			h.WebURL += "/"
		}
	}
	switch {
	case h.LoginTTL.Duration < 30*time.Second || h.LoginTTL.Duration > time.Hour:
		return fmt.Errorf("[http] login_ttl: %s is out of range (30s to 1h)", h.LoginTTL)
	case h.SessionIdle.Duration < time.Minute || h.SessionIdle.Duration > 7*24*time.Hour:
		return fmt.Errorf("[http] session_idle: %s is out of range (1m to 168h)", h.SessionIdle)
	case h.SessionMax.Duration < h.SessionIdle.Duration || h.SessionMax.Duration > 30*24*time.Hour:
		return fmt.Errorf("[http] session_max: %s is out of range (session_idle, %s, to 720h)", h.SessionMax, h.SessionIdle)
	}
	h.MetricsAllow = make([]netip.Prefix, 0, len(h.MetricsAllowText))
	for _, a := range h.MetricsAllowText {
		p, err := parseAllow(a)
		if err != nil {
			return fmt.Errorf("[http] metrics_allow: %q is neither an IP address nor a CIDR prefix (127.0.0.1, 10.0.0.0/8, ::1/128)", a)
		}
		h.MetricsAllow = append(h.MetricsAllow, p)
	}
	return nil
}

// parseAllow reads one address of an allow-list: a CIDR prefix, or an IP
// address (a prefix of one address). An IPv4-mapped IPv6 address is taken
// as the IPv4 one, as peers' addresses are.
func parseAllow(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("a zone is not allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// validateAdmin normalises [admin] jids: bare JIDs of users, each once.
func (c *Config) validateAdmin() error {
	seen := map[string]string{} // normalised → as written
	for i, s := range c.Admin.JIDs {
		j, err := jid.Parse(s)
		switch {
		case err != nil:
			return fmt.Errorf("[admin] jids: %q is not a valid JID", s)
		case j.Resourcepart() != "":
			return fmt.Errorf("[admin] jids: %q is not a bare JID", s)
		case j.Localpart() == "":
			return fmt.Errorf("[admin] jids: %q is a domain, not a user's JID", s)
		}
		n := j.String()
		if prev, ok := seen[n]; ok {
			return fmt.Errorf("[admin] jids: %q duplicates %q", s, prev)
		}
		seen[n] = s
		c.Admin.JIDs[i] = n
	}
	return nil
}

// normaliseLocalDomains normalises [policy] local_domains like the
// component domain.
func (c *Config) normaliseLocalDomains() error {
	seen := map[string]string{} // normalised → as written
	for i, s := range c.Policy.LocalDomains {
		d, err := jid.Parse(s)
		if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
			return fmt.Errorf("[policy] local_domains: %q is not a domain", s)
		}
		n := d.Domainpart()
		if prev, ok := seen[n]; ok {
			return fmt.Errorf("[policy] local_domains: %q duplicates %q", s, prev)
		}
		seen[n] = s
		c.Policy.LocalDomains[i] = n
	}
	return nil
}

// defaultLocalDomains returns the parent of the (normalised) component
// domain, as the server the component is attached to usually serves it:
// bots.example.com → [example.com]. A domain without a dot, or an IP
// address, has none.
func defaultLocalDomains(domain string) []string {
	_, parent, ok := strings.Cut(domain, ".")
	if !ok || parent == "" || net.ParseIP(strings.Trim(domain, "[]")) != nil {
		return nil
	}
	return []string{parent}
}

// validateLimits parses and checks the [limits] table.
func (c *Config) validateLimits() error {
	l := &c.Limits
	var err error
	if l.ContactRate, err = limits.ParseRate(l.ContactRateText); err != nil {
		return fmt.Errorf("[limits] contact_rate: %w", err)
	}
	if l.DomainRate, err = limits.ParseRate(l.DomainRateText); err != nil {
		return fmt.Errorf("[limits] domain_rate: %w", err)
	}
	if l.MaxPendingPerDomain < 0 {
		return errors.New("[limits] max_pending_per_domain: must not be negative")
	}
	if l.MaxPending < 0 {
		return errors.New("[limits] max_pending: must not be negative")
	}
	if l.MaxStanzaBytes < 4096 || l.MaxStanzaBytes > 16<<20 {
		return fmt.Errorf("[limits] max_stanza_bytes: %d is out of range (4096 to 16777216)", l.MaxStanzaBytes)
	}
	switch policy.Action(l.Action) {
	case policy.Drop, policy.Reject:
	default:
		return fmt.Errorf("[limits] action: unknown value %q (want drop or reject)", l.Action)
	}
	return nil
}

// validateStorage checks [storage] and reads PostgreSQL's DSN.
func (c *Config) validateStorage(getenv func(string) string) error {
	st := &c.Storage
	switch st.Driver {
	case "", DriverSQLite:
		st.Driver = DriverSQLite
		if st.DSN != "" || st.DSNFile != "" {
			return errors.New(`[storage] dsn, dsn_file: only with driver = "postgres"`)
		}
		if st.Path == "" {
			return errors.New("[storage] path: must not be empty")
		}
		st.Path = c.resolve(st.Path)
		return nil
	case DriverPostgres:
	default:
		return fmt.Errorf("[storage] driver: unknown value %q (want sqlite or postgres)", st.Driver)
	}
	if st.DSN != "" && st.DSNFile != "" {
		return errors.New("[storage] dsn, dsn_file: set one, not both")
	}
	switch v := getenv(DSNEnv); {
	case v != "":
		st.DSN, st.DSNSource = v, "environment variable "+DSNEnv
	case st.DSN != "":
		st.DSNSource = "dsn"
	case st.DSNFile != "":
		p := c.resolve(st.DSNFile)
		s, err := readSecretFile(p)
		if err != nil {
			return fmt.Errorf("[storage] dsn_file: %w", err)
		}
		st.DSN, st.DSNSource = s, "dsn_file "+p
	default:
		return fmt.Errorf(`[storage] dsn: required with driver = "postgres" (or dsn_file, or %s in the environment)`, DSNEnv)
	}
	if strings.HasPrefix(st.DSN, "postgres://") || strings.HasPrefix(st.DSN, "postgresql://") {
		u, err := url.Parse(st.DSN)
		if err != nil || u.Host == "" && u.Query().Get("host") == "" {
			return fmt.Errorf("[storage] dsn (from %s): not a postgres:// URL with a host", st.DSNSource)
		}
	} else if !strings.Contains(st.DSN, "=") {
		return fmt.Errorf("[storage] dsn (from %s): neither a postgres:// URL nor key=value pairs", st.DSNSource)
	}
	return nil
}

func (c *Config) loadSecret(getenv func(string) string) error {
	comp := &c.Component
	if comp.Secret != "" && comp.SecretFile != "" {
		return errors.New("[component] secret, secret_file: set one, not both")
	}
	if v := getenv(SecretEnv); v != "" {
		comp.Secret, comp.SecretSource = v, "environment variable "+SecretEnv
		return nil
	}
	switch {
	case comp.Secret != "":
		comp.SecretSource = "secret"
	case comp.SecretFile != "":
		p := c.resolve(comp.SecretFile)
		s, err := readSecretFile(p)
		if err != nil {
			return fmt.Errorf("[component] secret_file: %w", err)
		}
		comp.Secret, comp.SecretSource = s, "secret_file "+p
	default:
		return fmt.Errorf("[component] secret: required (or secret_file, or %s in the environment)", SecretEnv)
	}
	return nil
}

// readSecretFile reads a secret from a file nobody else may read, without
// its line end.
func readSecretFile(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("%s is readable by everyone (mode %04o): chmod 600 it", p, fi.Mode().Perm())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", p)
	}
	return s, nil
}

// maxText bounds a text the entities send (a name, a nickname, a status, an
// automatic reply).
const maxText = 1024

// checkText refuses a text no stanza can carry: too long, not UTF-8, or
// with control characters XML does not allow.
func checkText(s string) error {
	if len(s) > maxText {
		return fmt.Errorf("%d bytes, more than %d", len(s), maxText)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return fmt.Errorf("holds the character %U, which XML does not allow", r)
		}
	}
	return nil
}
