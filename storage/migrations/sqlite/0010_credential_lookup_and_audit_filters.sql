-- Revoking a client secret found in the wild finds its key pair by the
-- secret's hash. Admin tokens need nothing new: token_hash is UNIQUE, so
-- already indexed.
CREATE INDEX key_pairs_secret_hash ON key_pairs (secret_hash);

-- GET /admin/audit lists events newest first, by (occurred_at, id), and
-- filters them by integration, actor, action and time. Each filter is an
-- index range scan already in that order, so a page costs its own length
-- however long the log. audit_events_by_object (0005) orders by id, as the
-- previous release lists; a later release may drop it.
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_by_object_time ON audit_events (object_type, object, occurred_at, id);
CREATE INDEX audit_events_by_actor ON audit_events (actor, occurred_at, id);
CREATE INDEX audit_events_by_action ON audit_events (action, occurred_at, id);

-- The previous release neither knows nor needs these indexes; during a
-- rolling upgrade its writes simply maintain them too.
