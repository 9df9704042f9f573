-- An integration has exactly one current key pair. Regeneration already
-- keeps it so; the index makes the database refuse anything else, whichever
-- replica writes.
CREATE UNIQUE INDEX key_pairs_one_current ON key_pairs (integration_id) WHERE expires_at IS NULL;
