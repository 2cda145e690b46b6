-- 0001_init.sql: rostergate's first schema.
--
-- Times are unix milliseconds, booleans 0/1. The tables are STRICT so that a
-- value of the wrong type is refused rather than stored.

-- roster: one row per (entity, contact), seen from the entity's side.
CREATE TABLE roster (
    entity        TEXT    NOT NULL,
    contact       TEXT    NOT NULL CHECK (contact <> ''),
    sub           TEXT    NOT NULL CHECK (sub IN ('none', 'to', 'from', 'both')),
    pending_out   INTEGER NOT NULL DEFAULT 0 CHECK (pending_out IN (0, 1)),
    pending_in    INTEGER NOT NULL DEFAULT 0 CHECK (pending_in IN (0, 1)),
    approved      INTEGER NOT NULL DEFAULT 0 CHECK (approved IN (0, 1)),
    pending_since INTEGER CHECK (pending_since IS NULL OR pending_in = 1),
    updated       INTEGER NOT NULL,
    PRIMARY KEY (entity, contact)
) STRICT, WITHOUT ROWID;

-- requests: subscription requests held for an admin's decision. A request
-- only makes sense while its roster item exists (with pending_in set), so it
-- goes when the item goes. The foreign key is checked at COMMIT, so the order
-- of the changes within one batch does not matter.
CREATE TABLE requests (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    entity         TEXT    NOT NULL,
    contact        TEXT    NOT NULL,
    rule           TEXT    NOT NULL DEFAULT '',
    subscribe_back INTEGER NOT NULL DEFAULT 0 CHECK (subscribe_back IN (0, 1)),
    created        INTEGER NOT NULL,
    UNIQUE (entity, contact),
    FOREIGN KEY (entity, contact) REFERENCES roster (entity, contact)
        ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
) STRICT;

CREATE INDEX requests_created ON requests (created);

-- audit: the append-only log. Rows are never updated or deleted, so the rowid
-- only grows and serves as the tie-breaker between rows of the same instant.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    entity     TEXT    NOT NULL DEFAULT '',
    contact    TEXT    NOT NULL DEFAULT '',
    kind       TEXT    NOT NULL DEFAULT '',
    action     TEXT    NOT NULL DEFAULT '',
    rule       TEXT    NOT NULL DEFAULT '',
    from_state TEXT    NOT NULL DEFAULT '',
    to_state   TEXT    NOT NULL DEFAULT '',
    actor      TEXT    NOT NULL DEFAULT '',
    interface  TEXT    NOT NULL DEFAULT '',
    detail     TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_at ON audit (at);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: rows cannot be updated');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: rows cannot be deleted');
END;
