-- Placements: the entities rostergate put on users' rosters ([[entity]]
-- place_in), how (privilege or subscription) and how far each got. Only a
-- placed item may be taken away by rostergate again.
CREATE TABLE placements (
	entity   TEXT    NOT NULL,
	contact  TEXT    NOT NULL,
	method   TEXT    NOT NULL CHECK (method IN ('privilege', 'subscription')),
	state    TEXT    NOT NULL CHECK (state IN ('placed', 'waiting', 'accepted', 'failed', 'declined')),
	source   TEXT    NOT NULL,
	detail   TEXT    NOT NULL,
	attempts INTEGER NOT NULL CHECK (attempts >= 0),
	sent     INTEGER,
	created  INTEGER NOT NULL,
	updated  INTEGER NOT NULL,
	PRIMARY KEY (entity, contact)
) STRICT;
