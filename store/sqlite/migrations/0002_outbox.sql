-- The outbox holds the stanzas that report committed state changes until they
-- have been written to the stream: a crash or a dropped connection between
-- commit and write loses no reply, it is sent on the next connect.
CREATE TABLE outbox (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	created INTEGER NOT NULL,
	stanzas TEXT    NOT NULL CHECK (stanzas <> '')
) STRICT;
