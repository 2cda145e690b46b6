-- Allow and deny lists, edited at runtime by admins and consulted before the
-- policy rules.
CREATE TABLE lists (
	list     TEXT    NOT NULL CHECK (list IN ('allow', 'deny')),
	pattern  TEXT    NOT NULL CHECK (pattern <> ''),
	added_by TEXT    NOT NULL DEFAULT '',
	created  INTEGER NOT NULL,
	PRIMARY KEY (list, pattern)
) STRICT, WITHOUT ROWID;

-- Admin actions asked for by the command line, carried out by the running
-- component (which alone can send the stanzas), then marked done.
CREATE TABLE actions (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	created INTEGER NOT NULL,
	actor   TEXT    NOT NULL,
	verb    TEXT    NOT NULL CHECK (verb <> ''),
	args    TEXT    NOT NULL DEFAULT '',
	done    INTEGER,
	result  TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX actions_waiting ON actions (id) WHERE done IS NULL;
