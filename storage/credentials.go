package storage

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// The kinds of credential that can be revoked by their value.
const (
	KindClientSecret = "client_secret"
	KindAdminToken   = "admin_token"
	KindAccessToken  = "access_token"
)

// RevokedCredential says what a credential revoked by its value was and
// whose. It never holds the credential or anything derived from it.
type RevokedCredential struct {
	Kind string
	// OwnerType is "integration" or "admin"; Owner is its name.
	OwnerType, Owner string
	// ClientID names the key pair of a client secret or of an access
	// token; AdminTokenID names an admin token.
	ClientID, AdminTokenID string
	// TokenID is an access token's jti, which is not secret: it is in
	// every introspection answer and JWT.
	TokenID string
	// Revoked reports that the credential still worked, or would again
	// once its integration is enabled, until this revocation; false means
	// it had already expired or been revoked, and the revocation changed
	// nothing but the record.
	Revoked bool
}

// details are the audit details of the revocation: what and whose, never
// the credential or a hash of it.
func (c *RevokedCredential) details() map[string]any {
	d := map[string]any{"kind": c.Kind, "owner_type": c.OwnerType, "owner": c.Owner, "revoked": c.Revoked}
	if c.ClientID != "" {
		d["client_id"] = c.ClientID
	}
	if c.AdminTokenID != "" {
		d["admin_token_id"] = c.AdminTokenID
	}
	if c.TokenID != "" {
		d["jti"] = c.TokenID
	}
	return d
}

// auditCredentialRevoke is the one audit event of every revocation by
// value, about the credential's owner, so that the owner's history (an
// integration's, with ?integration=) shows it.
func (s *Store) auditCredentialRevoke(tx *gorm.DB, by Actor, c *RevokedCredential) error {
	return s.audit(tx, by, "credential.revoke", c.OwnerType, c.Owner, c.details())
}

// RevokeClientSecret finds the key pair whose secret is secret, under any
// accepted system secret, and ends it at once, as a regeneration without
// grace ends the pair it replaces: the pair is refused from now on and
// every token it was issued is inactive. When it was the current pair,
// the integration has no current pair until it is regenerated; a pair in
// its grace period leaves the current one alone. A pair that had already
// ended is left as it was (Revoked false). Audited in the same
// transaction. ErrNotFound when no pair of a live integration has that
// secret; callers reject a malformed secret before it costs a lookup.
func (s *Store) RevokeClientSecret(ctx context.Context, secret string, by Actor) (*RevokedCredential, error) {
	hashes := s.creds.SecretHashes(secret)
	var c *RevokedCredential
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		c = nil
		var found KeyPair
		if err := tx.Select("id", "integration_id", "client_id").Where("secret_hash IN ?", hashes).Take(&found).Error; err != nil {
			return err
		}
		// Locked in RegenerateKeyPair's order, integration then pairs, so
		// the two queue one behind the other; a token request in flight
		// for the pair either stored its token before (which then dies
		// with the pair) or sees the pair ended.
		var ig integrationRow
		if err := tx.Clauses(forUpdate).Select("id", "name").Where("id = ?", found.IntegrationID).Where(live).Take(&ig).Error; err != nil {
			return err
		}
		var locked []int64
		if err := tx.Model(&KeyPair{}).Clauses(forUpdate).Where("id = ?", found.ID).Pluck("id", &locked).Error; err != nil {
			return err
		}
		now := s.clock()
		// The pair still works while its deadline is ahead, as in
		// RegenerateKeyPair; one that ended keeps its deadline, so its
		// history stays true.
		res := tx.Model(&KeyPair{}).Where("id = ? AND (expires_at IS NULL OR expires_at > ?)", found.ID, now).Update("expires_at", now)
		if res.Error != nil {
			return res.Error
		}
		c = &RevokedCredential{Kind: KindClientSecret, OwnerType: "integration", Owner: ig.Name,
			ClientID: found.ClientID, Revoked: res.RowsAffected == 1}
		return s.auditCredentialRevoke(tx, by, c)
	})
	if err != nil {
		return nil, translate("revoke client secret", err)
	}
	return c, nil
}

// RevokeAdminTokenValue finds the admin token token, expired or not, asks
// allow whether the caller may revoke a token of its admin, and if so
// deletes it and audits that, in one transaction. allow's error is
// returned as it is, and nothing changes. Revoked is false for a token
// that had expired. ErrNotFound when no admin token is token; callers
// reject a malformed token before it costs a lookup.
func (s *Store) RevokeAdminTokenValue(ctx context.Context, token string, by Actor, allow func(owner *Admin) error) (*RevokedCredential, error) {
	hashes := s.creds.SecretHashes(token)
	var (
		c      *RevokedCredential
		denied error
	)
	err := s.tx(ctx, func(tx *gorm.DB) error {
		c, denied = nil, nil
		var row adminTokenRow
		if err := tx.Where("token_hash IN ?", hashes).Take(&row).Error; err != nil {
			return err
		}
		var a Admin
		if err := tx.Where("id = ?", row.AdminID).Take(&a).Error; err != nil {
			return err
		}
		if denied = allow(&a); denied != nil {
			return errDenied
		}
		if err := tx.Where("seq = ?", row.Seq).Delete(&adminTokenRow{}).Error; err != nil {
			return err
		}
		c = &RevokedCredential{Kind: KindAdminToken, OwnerType: "admin", Owner: a.Name, AdminTokenID: row.PublicID,
			Revoked: row.ExpiresAt == nil || row.ExpiresAt.After(s.clock())}
		return s.auditCredentialRevoke(tx, by, c)
	})
	if denied != nil {
		return nil, denied
	}
	if err != nil {
		return nil, translate("revoke admin token", err)
	}
	return c, nil
}

// errDenied rolls back a transaction whose caller said no; the caller's
// own error is returned instead.
var errDenied = errors.New("denied")

// RevokeAccessToken deletes the stored token t, found by GetToken, and
// audits that, in one transaction. live is whether t could still be
// active, as server/oauth decides it; it becomes Revoked. ErrNotFound when
// the token is gone already.
func (s *Store) RevokeAccessToken(ctx context.Context, t *Token, live bool, by Actor) (*RevokedCredential, error) {
	c := &RevokedCredential{Kind: KindAccessToken, OwnerType: "integration", Owner: t.Owner.Integration.Name,
		ClientID: t.Owner.ClientID, TokenID: t.RequestID, Revoked: live}
	err := s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Where("signature = ?", t.Signature).Delete(&accessTokenRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return s.auditCredentialRevoke(tx, by, c)
	})
	if err != nil {
		return nil, translate(fmt.Sprintf("revoke access token of %q", c.Owner), err)
	}
	return c, nil
}
