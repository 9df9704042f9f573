-- access_tokens keyed by signature alone (WITHOUT ROWID): a token's row and
-- its lookup key are one B-tree entry instead of a table row plus an index
-- entry, and request_id loses its index (latchkey revokes by signature).
-- Every token insert then dirties one page at a random place in the file
-- instead of three, which is most of what a write costs.
CREATE TABLE access_tokens_compact (
    signature   TEXT     NOT NULL PRIMARY KEY,
    request_id  TEXT     NOT NULL,
    key_pair_id INTEGER  NOT NULL REFERENCES key_pairs (id) ON DELETE CASCADE,
    kid         TEXT,
    scopes      TEXT     NOT NULL DEFAULT '',
    audience    TEXT     NOT NULL DEFAULT '',
    issued_at   DATETIME NOT NULL,
    expires_at  DATETIME NOT NULL
) WITHOUT ROWID;
INSERT INTO access_tokens_compact (signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
    SELECT signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at FROM access_tokens;
DROP TABLE access_tokens;
ALTER TABLE access_tokens_compact RENAME TO access_tokens;
CREATE INDEX access_tokens_key_pair ON access_tokens (key_pair_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);
CREATE INDEX access_tokens_kid ON access_tokens (kid, expires_at) WHERE kid IS NOT NULL;
