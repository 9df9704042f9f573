-- Deleting an integration no longer deletes its rows in one transaction,
-- which grew with its tokens and held the writer (and, on PostgreSQL, the
-- rows) for as long as it took. The deletion marks the row deleted, moves
-- its name to one no valid name can take (so the name is free at once) and
-- ends its key pairs; the janitor then deletes the tokens in batches, the
-- key pairs, and last this row.
--
-- The previous release keeps working on it: it never reads deleted_at, and
-- the key pairs it checks on every request have expired, so it refuses them
-- and reports their tokens inactive as this release does. Until the janitor
-- has removed it, it lists a deleted integration under the moved name.
ALTER TABLE integrations ADD COLUMN deleted_at DATETIME;
CREATE INDEX integrations_deleted ON integrations (deleted_at) WHERE deleted_at IS NOT NULL;
