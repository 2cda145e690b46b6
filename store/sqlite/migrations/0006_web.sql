-- The admins' keys to the web page: one-time login links and sessions, by
-- the SHA-256 of their secret (never the secret). expires is a link's end
-- or a session's idle deadline; a session never outlives until.
CREATE TABLE web_keys (
	hash    BLOB    PRIMARY KEY CHECK (length(hash) = 32),
	kind    TEXT    NOT NULL CHECK (kind IN ('login', 'session')),
	jid     TEXT    NOT NULL,
	created INTEGER NOT NULL,
	expires INTEGER NOT NULL,
	until   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX web_keys_expires ON web_keys (expires);
