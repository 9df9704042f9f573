-- Keyless and sender-constrained integrations.
--
-- token_endpoint_auth_method says how an integration's key pairs
-- authenticate: with their secret (client_secret_basic, the default every
-- existing integration takes) or with a JWT signed by one of the public
-- keys in jwks or at jwks_uri (private_key_jwt). A private_key_jwt pair's
-- secret_hash is empty: no secret matches it, on this release or the
-- previous one.
ALTER TABLE integrations ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
ALTER TABLE integrations ADD COLUMN jwks TEXT;
ALTER TABLE integrations ADD COLUMN jwks_uri TEXT;
-- require_dpop: tokens only for requests with a DPoP proof (RFC 9449).
ALTER TABLE integrations ADD COLUMN require_dpop BOOLEAN NOT NULL DEFAULT FALSE;
-- introspection_audience: a resource server sees only the tokens meant
-- for one of these audiences (RFC 7662 §4); '' sees every token.
ALTER TABLE integrations ADD COLUMN introspection_audience TEXT NOT NULL DEFAULT '';

-- jkt is the thumbprint of the key a DPoP-bound token is bound to; NULL
-- for a bearer token.
ALTER TABLE access_tokens ADD COLUMN jkt TEXT;

-- used_jtis remembers the jti of every client assertion and DPoP proof
-- until it could no longer be accepted anyway, so a replay is refused on
-- every replica. The key names what the jti belongs to (an assertion of
-- one client, a proof of one key).
CREATE TABLE used_jtis (
    jti        TEXT     NOT NULL PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX used_jtis_expires ON used_jtis (expires_at);

-- During a rolling upgrade the previous release ignores all of this: it
-- refuses private_key_jwt pairs (their secret matches nothing), issues
-- bearer tokens to integrations that require DPoP and shows every token
-- to every resource server, until no replica runs it. Its inserts take
-- the defaults, so what it creates is what it always was.
