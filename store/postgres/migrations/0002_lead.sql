-- 0002_lead.sql: several running instances on one database, one of them
-- active (see lead.go).

-- lead: the epoch of the lead, bumped by each instance that becomes active
-- (while it holds the lead's advisory lock), and who took it when.
CREATE TABLE lead (
	id       integer PRIMARY KEY CHECK (id = 1),
	epoch    bigint NOT NULL,
	instance text NOT NULL DEFAULT '',
	since    timestamptz
);
INSERT INTO lead (id, epoch) VALUES (1, 0);

-- lead_check(epoch): the first statement of every write transaction of an
-- instance that has led. It fails, with SQLSTATE RG001, unless the lead is
-- still at that epoch, and it keeps the row locked (FOR SHARE) until the
-- transaction ends: the next active instance's bump (an UPDATE) waits for
-- the writes that passed the check to commit or roll back, and a check
-- that waits for a bump to commit reads the new epoch.
CREATE FUNCTION lead_check(want bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	cur bigint;
BEGIN
	SELECT epoch INTO cur FROM lead WHERE id = 1 FOR SHARE;
	IF cur IS DISTINCT FROM want THEN
		RAISE EXCEPTION 'another instance is active now: the lead is at epoch %, this instance led at %', cur, want
			USING ERRCODE = 'RG001';
	END IF;
END
$$;

-- instances: the running instances that share the store, for status. Each
-- says it runs every few seconds (seen); active marks the one that took
-- the lead, and backend is the server process of its lead connection, so
-- that a reader can tell whether it holds the lead still. The table is
-- unlogged: its writes cost no WAL flush, and after a crash it starts
-- empty and fills again within seconds.
CREATE UNLOGGED TABLE instances (
	id      text COLLATE "C" PRIMARY KEY,
	host    text NOT NULL,
	pid     integer NOT NULL,
	started timestamptz NOT NULL,
	seen    timestamptz NOT NULL,
	backend integer NOT NULL,
	active  boolean NOT NULL DEFAULT false,
	since   timestamptz
);
