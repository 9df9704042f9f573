-- How many tokens a minute the integration may be issued: NULL follows the
-- server's integration_token_rate, 0 is no cap. A nullable column: the
-- previous release neither reads nor writes it.
ALTER TABLE integrations ADD COLUMN token_rate_per_minute BIGINT;
