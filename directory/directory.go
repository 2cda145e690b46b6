// Package directory tells whether an XMPP contact belongs to a group, and
// who a group's members are, for rostergate's group rules: from an LDAP
// directory (RFC 4511; OpenLDAP's groupOfNames by default, any schema
// through the search filters) or from a plain file of groups.
//
// A Directory puts one Source (LDAP or the file) behind a cache: an LDAP
// answer, "member" and "not a member" alike, is kept for Config.CacheTTL. A
// failure is never an answer: it is not cached, the caller learns that the
// directory could not say (Result.Err), and for Config.RetryAfter the
// source is not asked again (lookups fail at once instead of each waiting
// out a timeout). Every lookup is bounded by Config.Timeout.
//
// A Directory is safe for concurrent use; Configure swaps its
// configuration (a reload) and keeps the cache when the LDAP settings stay
// the same.
package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Source is where group membership comes from.
type Source interface {
	// Member reports whether the contact whose normalised bare JID is jid
	// belongs to group (a lower-case group name).
	Member(ctx context.Context, jid, group string) (bool, error)
	// Members returns the normalised bare JIDs of group's members, sorted
	// and without duplicates; a group that does not exist has none.
	Members(ctx context.Context, group string) ([]string, error)
	// Close releases what the source holds (a connection).
	Close() error
}

// The names of the sources, as Result.Source and Stats.Source give them.
const (
	SourceLDAP = "ldap"
	SourceFile = "file"
)

// Defaults of Config's durations and filters.
const (
	DefaultCacheTTL   = 5 * time.Minute
	DefaultTimeout    = 2 * time.Second
	DefaultRetryAfter = 5 * time.Second
	// DefaultUserFilter finds the contact's entry by its mail attribute.
	DefaultUserFilter = "(mail={jid})"
	// DefaultGroupFilter finds the group, an OpenLDAP groupOfNames, by its
	// cn, with the contact's entry among its members.
	DefaultGroupFilter = "(&(objectClass=groupOfNames)(cn={group})(member={dn}))"
)

// Config says where groups come from: LDAP (URL set) or a file of groups
// (Groups, read from File), not both. The zero Config has no source: every
// lookup fails with ErrNoDirectory.
type Config struct {
	// URL is ldap://host[:port] or ldaps://host[:port].
	URL          string
	BindDN       string // "" binds anonymously
	BindPassword string
	Base         string // where contacts' entries are searched (subtree)
	GroupBase    string // where groups are searched (subtree); "" is Base
	// UserFilter finds the contact's entry: {jid} is the contact's bare
	// JID. GroupFilter finds the group with the contact in it: {group} is
	// the group's name, {dn} the contact's entry's DN (found with
	// UserFilter), {jid} the bare JID; any entry found means "member".
	// Every value put in is escaped (RFC 4515). "" is the default.
	UserFilter  string
	GroupFilter string

	// File names the file Groups were read from (for messages); Groups are
	// its groups, by lower-case name, each its members' normalised bare
	// JIDs (see ParseGroups).
	File   string
	Groups map[string][]string

	CacheTTL   time.Duration // how long an LDAP answer is kept; 0 is DefaultCacheTTL
	Timeout    time.Duration // bounds a lookup (connecting included); 0 is DefaultTimeout
	RetryAfter time.Duration // after a failure, the source is not asked for this long; 0 is DefaultRetryAfter
}

// Enabled reports whether c names a source.
func (c Config) Enabled() bool { return c.URL != "" || c.File != "" || c.Groups != nil }

// withDefaults fills in the defaults.
func (c Config) withDefaults() Config {
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	if c.UserFilter == "" {
		c.UserFilter = DefaultUserFilter
	}
	if c.GroupFilter == "" {
		c.GroupFilter = DefaultGroupFilter
	}
	if c.GroupBase == "" {
		c.GroupBase = c.Base
	}
	return c
}

// Validate checks c: one source, an LDAP URL, filters that compile with
// the placeholders they need, durations that make sense.
func (c Config) Validate() error {
	if c.URL != "" && (c.File != "" || c.Groups != nil) {
		return errors.New("directory: LDAP and a groups file: configure one source, not both")
	}
	if c.CacheTTL < 0 || c.Timeout < 0 || c.RetryAfter < 0 {
		return errors.New("directory: a duration is negative")
	}
	if c.URL == "" {
		return nil
	}
	if err := CheckURL(c.URL); err != nil {
		return err
	}
	d := c.withDefaults()
	if err := CheckUserFilter(d.UserFilter); err != nil {
		return err
	}
	return CheckGroupFilter(d.GroupFilter)
}

// ldapSame reports whether a and b reach the same LDAP the same way: the
// cache of one holds for the other.
func ldapSame(a, b Config) bool {
	a, b = a.withDefaults(), b.withDefaults()
	return a.URL == b.URL && a.BindDN == b.BindDN && a.BindPassword == b.BindPassword && a.Base == b.Base &&
		a.GroupBase == b.GroupBase && a.UserFilter == b.UserFilter && a.GroupFilter == b.GroupFilter && a.Timeout == b.Timeout
}

// ErrNoDirectory is the error of a lookup in a Directory with no source.
var ErrNoDirectory = errors.New("directory: no [directory] is configured")

// Result is the answer to one lookup.
type Result struct {
	Member bool
	// Err says the directory could not answer (down, slow, misconfigured):
	// Member is false and means nothing. A group rule does not match.
	Err    error
	Source string    // SourceLDAP or SourceFile
	At     time.Time // when the source answered (for a cached answer, when it was asked)
	Cached bool      // the answer came from the cache
}

// Query is one lookup: is JID a member of Group.
type Query struct{ JID, Group string }

// Stats are a Directory's counts, for monitoring.
type Stats struct {
	Source string // SourceLDAP, SourceFile, or "" when none is configured
	// Answers given (cache hits included), by result; Errors are lookups
	// the directory could not answer (failed, timed out, or refused while
	// it was given time after a failure).
	Member, NotMember, Errors uint64
	CacheHits                 uint64 // answers that came from the cache
	// Up is false from a failure of the source until it answers again.
	Up bool
}

// Options configure a Directory.
type Options struct {
	Logger hclog.Logger     // nil logs nothing
	Now    func() time.Time // the clock; nil is time.Now
}

// maxEntries bounds the cache under a flood of distinct contacts.
const maxEntries = 100_000

// maxFetches bounds how many lookups run at the source at once.
const maxFetches = 8

// Directory answers membership lookups from its source, through its cache;
// see the package documentation.
type Directory struct {
	log hclog.Logger
	now func() time.Time
	sem chan struct{} // maxFetches slots

	mu     sync.Mutex
	cfg    Config // with defaults
	src    Source // nil: no source
	kind   string // SourceLDAP, SourceFile or ""
	gen    uint64 // bumped by each new source: an older source's answers are not cached
	cache  map[string]entry
	flight map[string]*call
	// downSince is when the source failed (zero while it is up); asking it
	// again waits until downUntil; downErr is why.
	downSince, downUntil time.Time
	downErr              error

	member, notMember, errs, hits atomic.Uint64
}

type entry struct {
	member bool
	at     time.Time
}

// errAmbiguous is a contact that the directory's data cannot tell: several
// entries match it.
var errAmbiguous = errors.New("which of them is the contact cannot be told")

// call is one lookup at the source, which the callers asking the same
// question wait for together.
type call struct {
	done      chan struct{}
	res       Result
	askedAt   atomic.Int64 // when the source began to be asked (UnixNano; 0 while the lookup waits for a slot)
	waiters   int          // d.mu: callers that joined it (for the tests)
	abandoned bool         // d.mu: given up on by its callers, the source counted down (abandon)

}

// New returns a Directory for c (see Validate).
func New(c Config, opts Options) (*Directory, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Directory{log: opts.Logger, now: opts.Now, sem: make(chan struct{}, maxFetches),
		cache: map[string]entry{}, flight: map[string]*call{}}
	if err := d.Configure(c); err != nil {
		return nil, err
	}
	return d, nil
}

// Configure puts c in force (a reload). The cache is kept when the LDAP
// settings stay the same; a new groups file is in force at once. On error
// the configuration in force is kept.
func (d *Directory) Configure(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.src
	switch {
	case c.URL != "" && d.kind == SourceLDAP && ldapSame(c, d.cfg):
		d.cfg = c // durations may change; the source and the cache stay
		return nil
	case c.URL != "":
		d.src, d.kind = newLDAP(c), SourceLDAP
	case c.Groups != nil || c.File != "":
		d.src, d.kind = newFile(c.Groups), SourceFile
	default:
		d.src, d.kind = nil, ""
	}
	d.cfg = c
	d.gen++
	clear(d.cache)
	// Lookups at the old source are not joined: their failure would be
	// taken for the new one's.
	d.flight = map[string]*call{}
	d.downSince, d.downUntil, d.downErr = time.Time{}, time.Time{}, nil
	if old != nil {
		// Lookups still running on it fail, and are not cached.
		go func() { _ = old.Close() }()
	}
	return nil
}

// Close releases the source's connection; lookups after it fail.
func (d *Directory) Close() error {
	d.mu.Lock()
	src := d.src
	d.src, d.kind = nil, ""
	d.gen++
	d.mu.Unlock()
	if src == nil {
		return nil
	}
	return src.Close()
}

// Timeout returns the bound of one lookup in force.
func (d *Directory) Timeout() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Timeout
}

// Lookup tells whether the contact whose normalised bare JID is jid
// belongs to group, within Config.Timeout (and ctx).
func (d *Directory) Lookup(ctx context.Context, jid, group string) Result {
	wait, cancel := context.WithTimeout(ctx, d.Timeout())
	defer cancel()
	return d.lookup(ctx, wait, jid, group)
}

// LookupAll answers qs, concurrently, within one Config.Timeout (and ctx)
// for all of them: the i-th result answers qs[i].
func (d *Directory) LookupAll(ctx context.Context, qs []Query) []Result {
	out := make([]Result, len(qs))
	if len(qs) == 0 {
		return out
	}
	wait, cancel := context.WithTimeout(ctx, d.Timeout())
	defer cancel()
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() { out[i] = d.lookup(ctx, wait, q.JID, q.Group) })
	}
	wg.Wait()
	return out
}

// Cached returns the cached answer for jid and group, if there is one,
// without asking the source (a file is asked: it answers at once).
func (d *Directory) Cached(jid, group string) (Result, bool) {
	group = strings.ToLower(group)
	d.mu.Lock()
	src, kind := d.src, d.kind
	if kind == SourceLDAP {
		e, ok := d.cache[key(jid, group)]
		fresh := ok && d.now().Sub(e.at) < d.cfg.CacheTTL
		d.mu.Unlock()
		if !fresh {
			return Result{}, false
		}
		return d.count(Result{Member: e.member, Source: kind, At: e.at, Cached: true}), true
	}
	d.mu.Unlock()
	if src == nil {
		return Result{}, false
	}
	m, err := src.Member(context.Background(), jid, group)
	return d.count(Result{Member: m && err == nil, Err: err, Source: kind, At: d.now()}), true
}

// lookup answers from the cache or the source, waiting until wait is done
// (ctx, with the directory's timeout).
func (d *Directory) lookup(ctx, wait context.Context, jid, group string) Result {
	group = strings.ToLower(group)
	d.mu.Lock()
	src, kind, gen := d.src, d.kind, d.gen
	if src == nil {
		d.mu.Unlock()
		return d.count(Result{Err: ErrNoDirectory})
	}
	if kind == SourceFile {
		d.mu.Unlock()
		m, err := src.Member(wait, jid, group)
		return d.count(Result{Member: m && err == nil, Err: err, Source: kind, At: d.now()})
	}
	k := key(jid, group)
	now := d.now()
	if e, ok := d.cache[k]; ok && now.Sub(e.at) < d.cfg.CacheTTL {
		d.mu.Unlock()
		return d.count(Result{Member: e.member, Source: kind, At: e.at, Cached: true})
	}
	if now.Before(d.downUntil) {
		err := fmt.Errorf("directory: %s unavailable since %s, not asked again until %s: %w",
			kind, d.downSince.Format(time.TimeOnly), d.downUntil.Format(time.TimeOnly), d.downErr)
		d.mu.Unlock()
		return d.count(Result{Err: err, Source: kind})
	}
	c, ok := d.flight[k]
	if !ok {
		c = &call{done: make(chan struct{})}
		d.flight[k] = c
		go d.fetch(c, gen, src, d.cfg, jid, group)
	}
	c.waiters++
	d.mu.Unlock()
	select {
	case <-c.done:
		return d.count(c.res)
	case <-wait.Done():
		err := fmt.Errorf("directory: %s did not answer in time: %w", kind, wait.Err())
		if at := c.askedAt.Load(); ctx.Err() == nil && at != 0 && time.Since(time.Unix(0, at)) >= d.cfg.Timeout*3/4 {
			// The directory's own timeout, with the source asked (nearly)
			// all along: it is down (or as good as). The next lookups need
			// not wait for it, nor join this one. A lookup that waited
			// for a slot most of the time says nothing of the source:
			// only this request goes without its answer.
			d.abandon(gen, k, c, err)
		}
		return d.count(Result{Err: err, Source: kind})
	}
}

// fetch asks the source (on a goroutine of its own, bounded by the
// timeout: a caller that stops waiting leaves it to finish and fill the
// cache), and records the answer or the failure.
func (d *Directory) fetch(c *call, gen uint64, src Source, cfg Config, jid, group string) {
	res := Result{Source: SourceLDAP}
	busy := false
	slot := time.NewTimer(cfg.Timeout)
	select {
	case d.sem <- struct{}{}:
		slot.Stop()
		// The timeout runs from here: time spent waiting for a slot is
		// no failure of the source.
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
		c.askedAt.Store(time.Now().UnixNano())
		res.Member, res.Err = src.Member(ctx, jid, group)
		cancel()
		<-d.sem
		res.Member = res.Member && res.Err == nil
	case <-slot.C:
		busy = true
		res.Err = fmt.Errorf("directory: %d lookups already running: %w", maxFetches, context.DeadlineExceeded)
	}
	res.At = d.now()
	d.mu.Lock()
	if d.flight[key(jid, group)] == c {
		delete(d.flight, key(jid, group))
	}
	switch {
	case gen != d.gen:
		// Reconfigured meanwhile: the answer is the old source's.
		if res.Err == nil {
			res.Err = errors.New("directory: reconfigured during the lookup")
		}
	case res.Err == nil:
		d.put(key(jid, group), entry{member: res.Member, at: res.At})
		if !d.downSince.IsZero() {
			d.log.Info("directory reachable again", "source", SourceLDAP, "down_for", res.At.Sub(d.downSince).Round(time.Millisecond).String())
			d.downSince, d.downUntil, d.downErr = time.Time{}, time.Time{}, nil
		}
	case errors.Is(res.Err, errAmbiguous):
		// The directory's data, not its health: this contact has no
		// answer (and none is cached), the others do.
	case busy || c.abandoned:
		// Many lookups at once is no failure of the source; an abandoned
		// one's failure was recorded when it was abandoned.
	default:
		d.downLocked(res.Err)
	}
	d.mu.Unlock()
	c.res = res
	close(c.done)
}

// abandon gives up on the lookup c (under key k) at the source of
// generation gen, which failed to answer it in time (err): later lookups
// start afresh, and for RetryAfter the source is not asked.
func (d *Directory) abandon(gen uint64, k string, c *call, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.abandoned || gen != d.gen {
		return
	}
	c.abandoned = true
	if d.flight[k] == c {
		delete(d.flight, k)
	}
	d.downLocked(err)
}

// downLocked records that the source failed with err: for RetryAfter it is
// not asked again; d.mu is held.
func (d *Directory) downLocked(err error) {
	now := d.now()
	if d.downSince.IsZero() {
		d.downSince = now
		d.log.Warn("directory unavailable: group rules do not match until it answers",
			"source", d.kind, "err", err, "retry_after", d.cfg.RetryAfter.String())
	} else {
		d.log.Warn("directory still unavailable", "source", d.kind, "err", err)
	}
	d.downUntil, d.downErr = now.Add(d.cfg.RetryAfter), err
}

// put caches e under k; d.mu is held. A full cache first loses its stale
// entries, then, if it is still full, some others.
func (d *Directory) put(k string, e entry) {
	if len(d.cache) >= maxEntries {
		now := d.now()
		for k, e := range d.cache {
			if now.Sub(e.at) >= d.cfg.CacheTTL {
				delete(d.cache, k)
			}
		}
		for k := range d.cache {
			if len(d.cache) < maxEntries*9/10 {
				break
			}
			delete(d.cache, k)
		}
	}
	d.cache[k] = e
}

// count counts r by its result and returns it.
func (d *Directory) count(r Result) Result {
	switch {
	case r.Err != nil:
		d.errs.Add(1)
	case r.Member:
		d.member.Add(1)
	default:
		d.notMember.Add(1)
	}
	if r.Cached {
		d.hits.Add(1)
	}
	return r
}

// Members returns the normalised bare JIDs of group's members, sorted,
// from the source (not cached), within Config.Timeout (and ctx).
func (d *Directory) Members(ctx context.Context, group string) ([]string, error) {
	d.mu.Lock()
	src, timeout := d.src, d.cfg.Timeout
	d.mu.Unlock()
	if src == nil {
		return nil, ErrNoDirectory
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return src.Members(ctx, strings.ToLower(group))
}

// Stats returns the counts so far.
func (d *Directory) Stats() Stats {
	d.mu.Lock()
	kind, up := d.kind, d.downSince.IsZero()
	d.mu.Unlock()
	return Stats{Source: kind, Member: d.member.Load(), NotMember: d.notMember.Load(), Errors: d.errs.Load(),
		CacheHits: d.hits.Load(), Up: up}
}

func key(jid, group string) string { return jid + "\x00" + group }
