-- Signing keys for JWT access tokens. private_key is AES-256-GCM under a
-- key derived from the system secret (nonce || ciphertext, the kid as
-- associated data): a dump of this table reveals no private key.
CREATE TABLE signing_keys (
    kid         TEXT        PRIMARY KEY,
    algorithm   TEXT        NOT NULL,
    public_jwk  TEXT        NOT NULL,
    private_key BYTEA       NOT NULL,
    active      BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    retired_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (active) WHERE active;

-- The key that signed a JWT access token; NULL for opaque tokens. A retired
-- key stays published while a live token names it.
ALTER TABLE access_tokens ADD COLUMN kid TEXT;
CREATE INDEX access_tokens_kid ON access_tokens (kid, expires_at) WHERE kid IS NOT NULL;
