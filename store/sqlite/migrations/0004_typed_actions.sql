-- The command line's acts are typed requests (JSON) with typed results,
-- no longer chat command lines. Acts an older rostergate queued and never
-- carried out are closed with an error naming why, rather than run as
-- something they were not.
ALTER TABLE actions RENAME COLUMN verb TO kind;
ALTER TABLE actions RENAME COLUMN args TO request;
UPDATE actions SET done = CAST(unixepoch('subsec') * 1000 AS INTEGER),
	result = '{"error":"queued by an older rostergate; not carried out: run the command again"}'
	WHERE done IS NULL;
