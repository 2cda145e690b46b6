-- Placements: the entities rostergate put on users' rosters ([[entity]]
-- place_in), how (privilege or subscription) and how far each got. Only a
-- placed item may be taken away by rostergate again.
CREATE TABLE placements (
	entity   text        NOT NULL,
	contact  text        NOT NULL,
	method   text        NOT NULL CHECK (method IN ('privilege', 'subscription')),
	state    text        NOT NULL CHECK (state IN ('placed', 'waiting', 'accepted', 'failed', 'declined')),
	source   text        NOT NULL,
	detail   text        NOT NULL,
	attempts integer     NOT NULL CHECK (attempts >= 0),
	sent     timestamptz,
	created  timestamptz NOT NULL,
	updated  timestamptz NOT NULL,
	PRIMARY KEY (entity, contact)
);
