-- Invites: pre-authenticated subscription links (XEP-0379), by the SHA-256
-- of their token (never the token). expires and revoked are NULL when
-- unset. uses counts the requests accepted with the invite, in the
-- transaction that stores their decision.
CREATE TABLE invites (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	hash           BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
	entity         TEXT    NOT NULL,
	creator        TEXT    NOT NULL,
	created        INTEGER NOT NULL,
	expires        INTEGER,
	max_uses       INTEGER NOT NULL CHECK (max_uses >= 1),
	uses           INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
	subscribe_back INTEGER NOT NULL CHECK (subscribe_back IN (0, 1)),
	revoked        INTEGER
) STRICT;
