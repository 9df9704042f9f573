-- Integrations are the OAuth clients; their credentials live in key_pairs.
CREATE TABLE integrations (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    name                   TEXT     NOT NULL UNIQUE,
    description            TEXT     NOT NULL DEFAULT '',
    scopes                 TEXT     NOT NULL DEFAULT '',
    audience               TEXT     NOT NULL DEFAULT '',
    can_introspect         BOOLEAN  NOT NULL DEFAULT FALSE,
    token_lifetime_seconds INTEGER,
    created_by             TEXT     NOT NULL,
    created_at             DATETIME NOT NULL,
    updated_at             DATETIME NOT NULL
);

-- expires_at is NULL for the current pair; a replaced pair keeps working
-- until expires_at (the grace deadline, or the moment it was revoked).
CREATE TABLE key_pairs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id INTEGER  NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    client_id      TEXT     NOT NULL UNIQUE,
    secret_hash    BLOB     NOT NULL,
    created_at     DATETIME NOT NULL,
    last_used_at   DATETIME,
    expires_at     DATETIME
);
CREATE INDEX key_pairs_integration ON key_pairs (integration_id);
CREATE INDEX key_pairs_expires ON key_pairs (expires_at) WHERE expires_at IS NOT NULL;

-- signature is fosite's HMAC part of the token: a dump of this table
-- cannot be turned back into usable tokens.
CREATE TABLE access_tokens (
    signature   TEXT     PRIMARY KEY,
    request_id  TEXT     NOT NULL,
    key_pair_id INTEGER  NOT NULL REFERENCES key_pairs (id) ON DELETE CASCADE,
    scopes      TEXT     NOT NULL DEFAULT '',
    audience    TEXT     NOT NULL DEFAULT '',
    issued_at   DATETIME NOT NULL,
    expires_at  DATETIME NOT NULL
);
CREATE INDEX access_tokens_request ON access_tokens (request_id);
CREATE INDEX access_tokens_key_pair ON access_tokens (key_pair_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE admins (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT     NOT NULL UNIQUE,
    created_at DATETIME NOT NULL
);

-- seq orders listings; public_id is what the API shows.
CREATE TABLE admin_tokens (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id    TEXT     NOT NULL UNIQUE,
    admin_id     INTEGER  NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    token_hash   BLOB     NOT NULL UNIQUE,
    description  TEXT     NOT NULL DEFAULT '',
    created_at   DATETIME NOT NULL,
    expires_at   DATETIME,
    last_used_at DATETIME
);
CREATE INDEX admin_tokens_admin ON admin_tokens (admin_id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at DATETIME NOT NULL,
    actor_type  TEXT     NOT NULL,
    actor       TEXT     NOT NULL,
    action      TEXT     NOT NULL,
    object_type TEXT     NOT NULL,
    object      TEXT     NOT NULL,
    remote_addr TEXT     NOT NULL DEFAULT '',
    details     TEXT     NOT NULL DEFAULT '{}'
);
