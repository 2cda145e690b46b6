package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"rostergate/engine"
	"rostergate/roster"
	"rostergate/store"
)

// TokenPrefix starts every API token, so that one found in a log or a
// repository is recognised for what it is.
const TokenPrefix = "rgt_"

// ErrBadToken is matched (errors.Is) by Authenticate's error for a token
// that is unknown, malformed or revoked.
var ErrBadToken = errors.New("gate: unknown or revoked token")

// ErrNotEntity is matched (errors.Is) when a name is no configured entity.
var ErrNotEntity = engine.ErrNotEntity

// notEntityError says a name is no [[entity]] of the domain, and matches
// ErrNotEntity without repeating its text.
type notEntityError struct{ name, domain string }

func (e notEntityError) Error() string {
	return fmt.Sprintf("gate: %q is no [[entity]] of %s", e.name, e.domain)
}
func (e notEntityError) Unwrap() error { return ErrNotEntity }

// hashToken is what the store keeps of a token.
func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// CreateToken makes an API token for the entities named (localparts or
// bare JIDs at the domain, each configured), stores its hash, and returns
// the token: the only time it is seen.
func (s *Service) CreateToken(ctx context.Context, entities []string) (string, store.Token, error) {
	if len(entities) == 0 {
		return "", store.Token{}, errors.New("gate: a token is for at least one entity")
	}
	return s.createToken(ctx, entities, false)
}

// CreateAdminToken makes an admin's API token (the admin API: reload),
// for the entities named too, if any.
func (s *Service) CreateAdminToken(ctx context.Context, entities []string) (string, store.Token, error) {
	return s.createToken(ctx, entities, true)
}

func (s *Service) createToken(ctx context.Context, entities []string, admin bool) (string, store.Token, error) {
	configured := s.Entities()
	var locals []string
	for _, name := range entities {
		local, err := roster.ParseEntity(s.domain, name)
		if err != nil {
			return "", store.Token{}, err
		}
		if _, ok := slices.BinarySearch(configured, local); !ok {
			return "", store.Token{}, notEntityError{name, s.domain}
		}
		locals = append(locals, local)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", store.Token{}, fmt.Errorf("gate: %w", err)
	}
	tok := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	t, err := s.store.CreateToken(ctx, hashToken(tok), sortedUnique(locals), admin)
	if err != nil {
		return "", store.Token{}, fmt.Errorf("gate: %w", err)
	}
	return tok, t, nil
}

// Tokens returns every token (never their secret), oldest first.
func (s *Service) Tokens(ctx context.Context) ([]store.Token, error) {
	ts, err := s.store.Tokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	return ts, nil
}

// RevokeToken revokes a token by id: this Service refuses it from the next
// request on, a running instance (another process) within tokenTTL.
func (s *Service) RevokeToken(ctx context.Context, id int64) error {
	if err := s.store.RevokeToken(ctx, id); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	s.uses.mu.Lock()
	for k, c := range s.uses.tokens {
		if c.t.ID == id {
			delete(s.uses.tokens, k)
		}
	}
	s.uses.refresh = time.Time{}
	s.uses.mu.Unlock()
	if s.eng != nil {
		s.refreshBots(ctx, time.Now())
	}
	return nil
}

// tokenTTL is how long Authenticate trusts a token it has read: a token
// revoked by another process (the command line) is refused within it; one
// revoked through this Service at once.
const tokenTTL = 2 * time.Second

// maxCachedTokens bounds the tokens Authenticate remembers.
const maxCachedTokens = 10_000

type cachedToken struct {
	t  store.Token
	at time.Time
}

// Authenticate returns the token tok is, or an error matching ErrBadToken.
func (s *Service) Authenticate(ctx context.Context, tok string) (store.Token, error) {
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) > 128 {
		return store.Token{}, ErrBadToken
	}
	h := hashToken(tok)
	key := string(h)
	now := time.Now()
	s.uses.mu.Lock()
	c, ok := s.uses.tokens[key]
	s.uses.mu.Unlock()
	if ok && now.Sub(c.at) < tokenTTL {
		return c.t, nil
	}
	t, err := s.store.TokenByHash(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, ErrBadToken
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("gate: %w", err)
	}
	if !t.Revoked.IsZero() {
		return store.Token{}, fmt.Errorf("%w (revoked %s)", ErrBadToken, t.Revoked.Format(time.RFC3339))
	}
	s.uses.mu.Lock()
	if s.uses.tokens == nil || len(s.uses.tokens) >= maxCachedTokens {
		s.uses.tokens = map[string]cachedToken{}
	}
	s.uses.tokens[key] = cachedToken{t: t, at: now}
	s.uses.mu.Unlock()
	return t, nil
}

// botUse remembers when each (token, entity) use was last recorded in
// this process, so that it is written at most once a minute, and the
// tokens lately read.
type botUse struct {
	mu       sync.Mutex
	recorded map[string]time.Time
	tokens   map[string]cachedToken // by hash
	refresh  time.Time              // when the bot entities were last read
}

// useEvery is how often a token's use is recorded at most (token list's
// LAST USED is that fresh).
const useEvery = time.Minute

// BotAttached records that token t was used for entity: a bot is behind
// the entity while the token is not revoked (its messages go to its event
// log).
func (s *Service) BotAttached(ctx context.Context, t store.Token, entity string) error {
	key := fmt.Sprint(t.ID, "/", entity)
	now := time.Now()
	s.uses.mu.Lock()
	last, ok := s.uses.recorded[key]
	s.uses.mu.Unlock()
	if ok && now.Sub(last) < useEvery {
		return nil
	}
	if err := s.store.TokenUsed(ctx, t.ID, entity, now); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if s.eng != nil {
		s.eng.BotAttached(entity)
	}
	s.uses.mu.Lock()
	if s.uses.recorded == nil || len(s.uses.recorded) >= maxCachedTokens {
		s.uses.recorded = map[string]time.Time{}
	}
	s.uses.recorded[key] = now
	s.uses.mu.Unlock()
	return nil
}

// botRefresh is how often the running instance reads again which
// entities have a token in use.
const botRefresh = 2 * time.Second

// refreshBots reads the entities with a token in use, at most every
// botRefresh, and puts them in force: revoking an entity's last token (from
// the command line too) takes its bot away.
func (s *Service) refreshBots(ctx context.Context, now time.Time) {
	s.uses.mu.Lock()
	due := now.Sub(s.uses.refresh) >= botRefresh
	if due {
		s.uses.refresh = now
	}
	s.uses.mu.Unlock()
	if !due {
		return
	}
	read := time.Now() // before the read: a use recorded meanwhile is kept, an older read ignored
	ents, err := s.store.BotEntities(ctx)
	if err != nil {
		s.log.Warn("reading the entities with a bot", "err", err)
		return
	}
	s.eng.SetBotEntities(ents, read)
}

// BotItem is a roster item as a bot sees it, with the contact's presence
// where the entity is subscribed to it.
type BotItem struct {
	roster.Item
	Presence []engine.ContactPresence
}

// BotRoster returns entity's roster with its contacts' presence.
func (s *Service) BotRoster(ctx context.Context, entity string) ([]BotItem, error) {
	if s.eng == nil {
		return nil, errors.New("gate: bot roster: not the running instance")
	}
	pres := s.eng.ContactPresences(entity)
	var out []BotItem
	err := s.eachItem(ctx, entity, 0, func(it roster.Item) error {
		bi := BotItem{Item: it}
		if it.Sub == roster.SubTo || it.Sub == roster.SubBoth {
			bi.Presence = pres[it.Contact]
		}
		out = append(out, bi)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SendMessage sends a message as entity (see engine.SendMessage).
func (s *Service) SendMessage(ctx context.Context, actor roster.Actor, entity string, m engine.OutMessage) (string, error) {
	if s.eng == nil {
		return "", errors.New("gate: send message: not the running instance")
	}
	id, err := s.eng.SendMessage(ctx, entity, m)
	if err != nil {
		return "", err
	}
	s.log.Debug("message sent", "entity", entity, "to", m.To, "actor", actor.String())
	return id, nil
}

// SetPresence sets the presence of entity, kept across restarts, or with
// nil puts the configured one back, and sends it to its subscribers.
func (s *Service) SetPresence(ctx context.Context, actor roster.Actor, entity string, p *store.Presence) error {
	if s.eng == nil {
		return errors.New("gate: set presence: not the running instance")
	}
	if err := s.eng.SetPresence(ctx, entity, p); err != nil {
		return err
	}
	if p == nil {
		s.log.Info("presence back to the configured one", "entity", entity, "actor", actor.String())
	} else {
		s.log.Info("presence set", "entity", entity, "show", p.Show, "actor", actor.String())
	}
	return nil
}

// BotEvents returns up to limit events of entity after id after, and the
// highest id retention deleted (see store.Bots).
func (s *Service) BotEvents(ctx context.Context, entity string, after int64, limit int) ([]store.BotEvent, int64, error) {
	evs, trimmed, err := s.store.BotEvents(ctx, entity, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("gate: %w", err)
	}
	return evs, trimmed, nil
}

// EventsSignal returns a channel closed when events are next committed;
// nil (never closed) outside the running instance.
func (s *Service) EventsSignal() <-chan struct{} {
	if s.eng == nil {
		return nil
	}
	return s.eng.EventsSignal()
}

// TrimEvents applies the retention: events older than before, and beyond
// keep per entity, are deleted.
func (s *Service) TrimEvents(ctx context.Context, before time.Time, keep int) (int64, error) {
	n, err := s.store.TrimBotEvents(ctx, before, keep)
	if err != nil {
		return 0, fmt.Errorf("gate: %w", err)
	}
	return n, nil
}

// Cursor returns where a consumer of events stands, and whether it has
// stood anywhere yet.
func (s *Service) Cursor(ctx context.Context, name string) (int64, bool, error) {
	id, ok, err := s.store.Cursor(ctx, name)
	if err != nil {
		return 0, false, fmt.Errorf("gate: %w", err)
	}
	return id, ok, nil
}

// DeleteCursor forgets where a consumer of events stood.
func (s *Service) DeleteCursor(ctx context.Context, name string) error {
	if err := s.store.DeleteCursor(ctx, name); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

// LastEvent returns the id of entity's newest event, 0 if none.
func (s *Service) LastEvent(ctx context.Context, entity string) (int64, error) {
	id, err := s.store.LastBotEvent(ctx, entity)
	if err != nil {
		return 0, fmt.Errorf("gate: %w", err)
	}
	return id, nil
}

// SetCursor stores where a consumer of events stands.
func (s *Service) SetCursor(ctx context.Context, name string, id int64) error {
	if err := s.store.SetCursor(ctx, name, id); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	return nil
}

// EntityJID returns the bare JID of the entity with localpart local.
func (s *Service) EntityJID(local string) string { return roster.EntityJID(s.domain, local) }

// IsEntity reports whether local is a configured entity.
func (s *Service) IsEntity(local string) bool {
	_, ok := slices.BinarySearch(s.Entities(), local)
	return ok
}

// EntityName returns the name ([[entity]] name) of a configured entity,
// "" if it has none or is no entity.
func (s *Service) EntityName(local string) string {
	es := s.settings.Entities
	if s.eng != nil {
		es = s.eng.Entities()
	}
	for _, e := range es {
		if e.Local == local {
			return e.Name
		}
	}
	return ""
}

// Readiness is what the readiness probe reports.
type Readiness struct {
	Role   string `json:"role"`   // "active": this instance serves (a standby answers for itself)
	Stream string `json:"stream"` // "up" or why not
	Store  string `json:"store"`  // "writable" or why not
}

// Ready reports whether the running instance serves: its stream to the
// server up, its store taking writes.
func (s *Service) Ready(ctx context.Context) (Readiness, bool) {
	r := Readiness{Role: "active", Stream: "up", Store: "writable"}
	ok := true
	if s.eng == nil || !s.eng.Sync() {
		r.Stream, ok = "not connected to the server", false
	}
	if err := s.store.Writable(ctx); err != nil {
		r.Store, ok = err.Error(), false
	}
	return r, ok
}
