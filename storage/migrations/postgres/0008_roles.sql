-- Admins get a role and admin tokens optional permissions that narrow it
-- (storage/permissions.go holds the table of both).
--
-- role: every admin so far could do everything, so every existing admin
-- becomes an owner. The previous release inserts admins without naming the
-- column; the default makes those owners too, which is what every admin is
-- to that release.
--
-- permissions: NULL follows the admin's role; otherwise the space-separated
-- permission names the token is narrowed to. The previous release neither
-- reads nor writes it: until every replica runs this release, a request
-- that reaches a replica of the previous release is served as it always
-- was, whatever its admin's role or its token's permissions, so finish the
-- upgrade before relying on roles.
--
-- The bootstrap admin may no longer hold admin tokens: it is a break-glass
-- owner, and nothing it minted may outlive its removal from config. Its
-- tokens are revoked here; one the previous release mints for it during the
-- upgrade is refused by this release at authentication.
ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'owner';
ALTER TABLE admin_tokens ADD COLUMN permissions TEXT;
DELETE FROM admin_tokens WHERE admin_id IN (SELECT id FROM admins WHERE name = 'bootstrap');
