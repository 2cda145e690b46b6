-- 0001_init.sql: rostergate's schema on PostgreSQL, the meaning of the
-- SQLite schema's (store/sqlite/migrations) in PostgreSQL's types.
--
-- Times are timestamptz, written to the millisecond (as SQLite keeps them);
-- ids are bigint identities; keys and patterns are text COLLATE "C", so
-- that they sort and compare bytewise, as in SQLite and Go, whatever the
-- database's locale.

-- items: one row per (entity, contact), seen from the entity's side. An
-- item with no state worth keeping (none, nothing pending, not approved)
-- is deleted, never stored.
CREATE TABLE items (
	entity        text COLLATE "C" NOT NULL,
	contact       text COLLATE "C" NOT NULL CHECK (contact <> ''),
	sub           text        NOT NULL CHECK (sub IN ('none', 'to', 'from', 'both')),
	pending_out   boolean     NOT NULL DEFAULT false,
	pending_in    boolean     NOT NULL DEFAULT false,
	approved      boolean     NOT NULL DEFAULT false,
	pending_since timestamptz CHECK (pending_since IS NULL OR pending_in),
	updated       timestamptz NOT NULL,
	PRIMARY KEY (entity, contact),
	CONSTRAINT items_not_empty CHECK (sub <> 'none' OR pending_out OR pending_in OR approved)
);

-- requests: subscription requests held for an admin's decision. A request
-- only makes sense while its item exists, so it goes when the item goes
-- (the cascade is immediate); that the item exists is checked at COMMIT,
-- so the order of the changes within one batch does not matter.
CREATE TABLE requests (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	entity         text COLLATE "C" NOT NULL,
	contact        text COLLATE "C" NOT NULL,
	rule           text        NOT NULL DEFAULT '',
	subscribe_back boolean     NOT NULL DEFAULT false,
	created        timestamptz NOT NULL,
	UNIQUE (entity, contact),
	FOREIGN KEY (entity, contact) REFERENCES items (entity, contact)
		ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX requests_created ON requests (created, id);

-- audit: the append-only log. Its ids grow in commit order (writers take
-- the store's write lock first), and break ties between rows of one instant.
CREATE TABLE audit (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at         timestamptz NOT NULL,
	entity     text COLLATE "C" NOT NULL DEFAULT '',
	contact    text COLLATE "C" NOT NULL DEFAULT '',
	kind       text NOT NULL DEFAULT '',
	action     text NOT NULL DEFAULT '',
	rule       text NOT NULL DEFAULT '',
	from_state text NOT NULL DEFAULT '',
	to_state   text NOT NULL DEFAULT '',
	actor      text NOT NULL DEFAULT '',
	interface  text NOT NULL DEFAULT '',
	detail     text NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at, id);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit log is append-only: rows cannot be %', lower(TG_OP) || 'd';
END
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- outbox: the stanzas that report committed changes, until written to the
-- stream.
CREATE TABLE outbox (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	created timestamptz NOT NULL,
	stanzas text        NOT NULL CHECK (stanzas <> '')
);

-- lists: the allow and deny lists admins edit at run time.
CREATE TABLE lists (
	list     text NOT NULL CHECK (list IN ('allow', 'deny')),
	pattern  text COLLATE "C" NOT NULL CHECK (pattern <> ''),
	added_by text NOT NULL DEFAULT '',
	created  timestamptz NOT NULL,
	PRIMARY KEY (list, pattern)
);

-- actions: the command line's acts (typed requests, JSON), carried out by
-- the running instance, then marked done with their result (JSON).
CREATE TABLE actions (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	created timestamptz NOT NULL,
	actor   text NOT NULL,
	kind    text NOT NULL CHECK (kind <> ''),
	request text NOT NULL DEFAULT '',
	done    timestamptz,
	result  text NOT NULL DEFAULT ''
);
CREATE INDEX actions_waiting ON actions (id) WHERE done IS NULL;

-- bot_events: each entity's event log, one row per event. data is json
-- (not jsonb), so that it comes back as the bytes that went in; it must be
-- one object. Ids grow in commit order, as the audit's do. The BRIN index
-- serves the trims by age: rows are appended roughly in time order.
CREATE TABLE bot_events (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	entity text COLLATE "C" NOT NULL,
	at     timestamptz NOT NULL,
	type   text NOT NULL CHECK (type ~ '^[a-z_]+$'),
	data   json NOT NULL CHECK (json_typeof(data) = 'object')
);
CREATE INDEX bot_events_entity ON bot_events (entity, id);
CREATE INDEX bot_events_at ON bot_events USING brin (at);

-- bot_event_trims: per entity, the highest id retention has deleted.
CREATE TABLE bot_event_trims (
	entity  text COLLATE "C" PRIMARY KEY,
	through bigint NOT NULL
);

-- cursors: the consumers' (webhook delivery) last event ids.
CREATE TABLE cursors (
	name text COLLATE "C" PRIMARY KEY,
	id   bigint NOT NULL
);

-- tokens: the HTTP API's tokens, by the SHA-256 of their secret (never the
-- secret).
CREATE TABLE tokens (
	id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hash      bytea   NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	entities  text[]  NOT NULL,
	admin     boolean NOT NULL DEFAULT false,
	created   timestamptz NOT NULL,
	last_used timestamptz,
	revoked   timestamptz
);

-- bot_entities: the entities a token has been used for.
CREATE TABLE bot_entities (
	entity text COLLATE "C" NOT NULL,
	token  bigint NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	since  timestamptz NOT NULL,
	PRIMARY KEY (entity, token)
);
CREATE INDEX bot_entities_token ON bot_entities (token);

-- entity_presence: the presence bots set.
CREATE TABLE entity_presence (
	entity  text COLLATE "C" PRIMARY KEY,
	show    text NOT NULL,
	status  text NOT NULL,
	updated timestamptz NOT NULL
);

-- web_keys: the admins' keys to the web page, by the SHA-256 of their
-- secret. expires is a link's end or a session's idle deadline; a session
-- never outlives until.
CREATE TABLE web_keys (
	hash    bytea PRIMARY KEY CHECK (octet_length(hash) = 32),
	kind    text NOT NULL CHECK (kind IN ('login', 'session')),
	jid     text NOT NULL,
	created timestamptz NOT NULL,
	expires timestamptz NOT NULL,
	until   timestamptz NOT NULL,
	CHECK (expires <= until)
);
CREATE INDEX web_keys_expires ON web_keys (expires);
