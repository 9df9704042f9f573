-- GET /admin/integrations/{name}/tokens lists an integration's tokens
-- newest first. Ordered by issue time within each key pair, a page is an
-- index range scan however many tokens the pair holds (an integration may
-- hold hundreds of thousands); on key_pair_id alone every page sorted all
-- of them.
--
-- The new index serves every lookup by key_pair_id the old one did (the
-- janitor's, the cascade from a deleted pair), in this release and the
-- previous one, so the old one goes: a token insert still writes one entry
-- for its pair, now at the end of the pair's range instead of at a random
-- place in it. Ties in issue time are ordered by request ID, sorted as the
-- index is read: holding them too would make every entry several times
-- larger, on the hot path, for the rare tie.
CREATE INDEX access_tokens_key_pair_issued ON access_tokens (key_pair_id, issued_at);
DROP INDEX access_tokens_key_pair;
