-- The command line's acts are typed requests (JSON) with typed results,
-- no longer chat command lines. Acts an older rostergate queued and had
-- not carried out yet are converted, so that they are still carried out
-- when rostergate connects; any other waiting row is closed with an error
-- naming why. Acts already carried out keep their text as history.
ALTER TABLE actions RENAME COLUMN verb TO kind;
ALTER TABLE actions RENAME COLUMN args TO request;
UPDATE actions SET
	request = json_object('ids', json('[' || replace(trim(request), ' ', ',') || ']'),
		'approve', json(CASE kind WHEN 'approve' THEN 'true' ELSE 'false' END)),
	kind = 'decide'
	WHERE done IS NULL AND kind IN ('approve', 'reject')
		AND trim(request) <> '' AND trim(request) NOT GLOB '*[^0-9 ]*'
		AND instr(trim(request), '  ') = 0;
UPDATE actions SET
	request = json_object('list', CASE kind WHEN 'allow' THEN 'allow' WHEN 'unallow' THEN 'allow' ELSE 'deny' END,
		'add', json(CASE WHEN kind IN ('allow', 'deny') THEN 'true' ELSE 'false' END),
		'pattern', request),
	kind = 'list'
	WHERE done IS NULL AND kind IN ('allow', 'deny', 'unallow', 'undeny');
UPDATE actions SET done = CAST(unixepoch('subsec') * 1000 AS INTEGER),
	result = '{"error":"queued by an older rostergate in a form this one does not read; not carried out: run the command again"}'
	WHERE done IS NULL AND kind NOT IN ('decide', 'list', 'act');
