-- Invites: pre-authenticated subscription links (XEP-0379), by the SHA-256
-- of their token (never the token). expires and revoked are NULL when
-- unset. uses counts the requests accepted with the invite, in the
-- transaction that stores their decision.
CREATE TABLE invites (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hash           bytea       NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
	entity         text        NOT NULL,
	creator        text        NOT NULL,
	created        timestamptz NOT NULL,
	expires        timestamptz,
	max_uses       integer     NOT NULL CHECK (max_uses >= 1),
	uses           integer     NOT NULL DEFAULT 0 CHECK (uses >= 0),
	subscribe_back boolean     NOT NULL,
	revoked        timestamptz
);
