package storage

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/x/errorsx"
	"gorm.io/gorm"
)

// The interfaces fosite's compose package type-asserts at run time, pinned
// here at compile time: a missing method would otherwise switch an endpoint
// off silently.
var (
	_ fosite.Storage                = (*Store)(nil)
	_ oauth2.AccessTokenStorage     = (*Store)(nil)
	_ oauth2.CoreStorage            = (*Store)(nil)
	_ oauth2.TokenRevocationStorage = (*Store)(nil)
	_ fosite.Client                 = (*Client)(nil)
)

// Client is one key pair of an integration, as fosite sees it: the client
// ID names the pair, not the integration, so regenerating a pair changes
// the client ID too.
type Client struct {
	KeyPairID  int64
	ClientID   string
	SecretHash []byte
	// ExpiresAt is the pair's grace deadline; nil for the current pair.
	ExpiresAt   *time.Time
	Integration Integration
}

func (c *Client) GetID() string                      { return c.ClientID }
func (c *Client) GetHashedSecret() []byte            { return c.SecretHash }
func (c *Client) GetRedirectURIs() []string          { return nil }
func (c *Client) GetGrantTypes() fosite.Arguments    { return fosite.Arguments{"client_credentials"} }
func (c *Client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{} }
func (c *Client) GetScopes() fosite.Arguments        { return c.Integration.Scopes }
func (c *Client) IsPublic() bool                     { return false }
func (c *Client) GetAudience() fosite.Arguments      { return c.Integration.Audience }

// clientRow is a key pair joined with its integration.
type clientRow struct {
	KeyPairID    int64
	ClientID     string
	SecretHash   []byte
	ExpiresAt    *time.Time
	LastUsedAt   *time.Time
	KeyCreatedAt time.Time
	// Named and tagged: gorm does not scan into unexported embedded structs.
	I integrationRow `gorm:"embedded"`
}

// integrationColumns names the columns of integrationRow: a column a newer
// migration adds must not change what this build reads.
const integrationColumns = `i.id, i.name, i.description, i.scopes, i.audience, i.can_introspect,
	i.token_lifetime_seconds, i.created_by, i.created_at, i.updated_at`

const clientSelect = `SELECT k.id AS key_pair_id, k.client_id, k.secret_hash, k.expires_at, k.last_used_at,
	k.created_at AS key_created_at, ` + integrationColumns + `
	FROM key_pairs k JOIN integrations i ON i.id = k.integration_id`

func (r *clientRow) client() *Client {
	return &Client{KeyPairID: r.KeyPairID, ClientID: r.ClientID, SecretHash: r.SecretHash,
		ExpiresAt: r.ExpiresAt, Integration: *r.I.integration()}
}

// GetClient returns the working key pair with client ID id, or
// fosite.ErrNotFound when the ID is malformed, unknown, or its pair was
// revoked or is past its grace deadline.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if !ValidClientID(id) {
		return nil, fosite.ErrNotFound
	}
	var rows []clientRow
	if err := s.r.WithContext(ctx).Raw(clientSelect+` WHERE k.client_id = ?`, id).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("get client: %w: %w", ErrUnavailable, err)
	}
	if len(rows) == 0 || !s.working(rows[0].ExpiresAt) {
		return nil, fosite.ErrNotFound
	}
	return rows[0].client(), nil
}

func (s *Store) working(expiresAt *time.Time) bool {
	return expiresAt == nil || expiresAt.After(s.clock())
}

// ClientAssertionJWTValid is part of fosite.ClientManager; latchkey takes no
// JWT client assertions, so no jti is ever known.
func (s *Store) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT is part of fosite.ClientManager; see
// ClientAssertionJWTValid.
func (s *Store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return errors.New("client assertions are not supported")
}

type accessTokenRow struct {
	Signature string `gorm:"primaryKey"`
	RequestID string
	KeyPairID int64
	Kid       *string // the signing key of a JWT; nil for opaque tokens
	Scopes    string
	Audience  string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

func (accessTokenRow) TableName() string { return "access_tokens" }

// SessionKeyID is the fosite.DefaultSession Extra entry in which the JWT
// strategy names the key that signed the token, so the store can keep that
// key published while the token lives.
const SessionKeyID = "kid"

// CreateAccessTokenSession stores an issued token under its signature. The
// request's client must be a *Client; RequestedAt is the issue time and the
// session's access-token expiry is the token's.
//
// In the same transaction it marks the key pair used, and only if the pair
// still works and will outlive the token: a token request that
// authenticated just before its pair was revoked, or given a grace deadline
// earlier than the token's expiry, fails here with invalid_client wrapping
// ErrKeyPairChanged instead of storing a token that outlives its pair. The
// caller may authenticate again and retry once.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	c, ok := req.GetClient().(*Client)
	if !ok {
		return fmt.Errorf("create access token: client is %T, not *storage.Client", req.GetClient())
	}
	row := accessTokenRow{
		Signature: signature, RequestID: req.GetID(), KeyPairID: c.KeyPairID,
		Scopes: joinList(req.GetGrantedScopes()), Audience: joinList(req.GetGrantedAudience()),
		IssuedAt:  req.GetRequestedAt().UTC().Truncate(time.Microsecond),
		ExpiresAt: req.GetSession().GetExpiresAt(fosite.AccessToken).UTC().Truncate(time.Microsecond),
	}
	if ds, ok := req.GetSession().(*fosite.DefaultSession); ok {
		if kid, ok := ds.Extra[SessionKeyID].(string); ok {
			row.Kid = &kid
		}
	}
	// Not s.tx: on PostgreSQL this runs at READ COMMITTED, where the row
	// lock below orders it against regeneration and deletion, which
	// re-check the pair after the lock is theirs. Token requests never
	// conflict with each other, so they never retry.
	err := s.w.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := s.clock()
		works := "id = ? AND (expires_at IS NULL OR (expires_at > ? AND expires_at >= ?))"
		// The use is recorded at most once per lastUsedWriteResolution, so
		// a busy client does not queue its token requests on one row.
		res := tx.Model(&KeyPair{}).
			Where(works+" AND (last_used_at IS NULL OR last_used_at <= ?)",
				c.KeyPairID, now, row.ExpiresAt, now.Add(-lastUsedWriteResolution)).
			Update("last_used_at", now)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			// Shared lock: token requests proceed together, while a
			// regeneration or deletion of the pair waits for them (and
			// they for it).
			var ids []int64
			if err := tx.Raw("SELECT id FROM key_pairs WHERE "+works+s.forShare(),
				c.KeyPairID, now, row.ExpiresAt).Scan(&ids).Error; err != nil {
				return err
			}
			if len(ids) == 0 {
				return errorsx.WithStack(fosite.ErrInvalidClient.
					WithHint("The key pair was revoked or regenerated while the token was being issued.").
					WithWrap(ErrKeyPairChanged))
			}
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		var rfc *fosite.RFC6749Error
		if errors.As(err, &rfc) {
			return err
		}
		return fmt.Errorf("create access token: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// GetAccessTokenSession returns the request a token was issued for, or
// fosite.ErrNotFound unless the token is active: unexpired, not revoked,
// its key pair still working and its integration not deleted. session may
// be nil (the revocation handler passes nil); a *fosite.DefaultSession
// gets the integration name as its subject.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	if signature == "" {
		return nil, fosite.ErrNotFound
	}
	var rows []struct {
		RequestID      string
		TokenScopes    string
		TokenAudience  string
		IssuedAt       time.Time
		TokenExpiresAt time.Time
		C              clientRow `gorm:"embedded"`
	}
	err := s.r.WithContext(ctx).Raw(`SELECT t.request_id, t.scopes AS token_scopes, t.audience AS token_audience,
		t.issued_at, t.expires_at AS token_expires_at, k.id AS key_pair_id, k.client_id, k.secret_hash, k.expires_at,
		k.last_used_at, k.created_at AS key_created_at, `+integrationColumns+`
		FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id JOIN integrations i ON i.id = k.integration_id
		WHERE t.signature = ?`, signature).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("get access token: %w: %w", ErrUnavailable, err)
	}
	if len(rows) == 0 {
		return nil, fosite.ErrNotFound
	}
	r := rows[0]
	if !r.TokenExpiresAt.After(s.clock()) || !s.working(r.C.ExpiresAt) {
		return nil, fosite.ErrNotFound
	}
	// A token issued before its pair entered a grace period dies with the
	// pair: report the earlier of the two deadlines.
	exp := r.TokenExpiresAt
	if r.C.ExpiresAt != nil && r.C.ExpiresAt.Before(exp) {
		exp = *r.C.ExpiresAt
	}
	if session == nil {
		session = new(fosite.DefaultSession)
	}
	session.SetExpiresAt(fosite.AccessToken, exp)
	if ds, ok := session.(*fosite.DefaultSession); ok {
		ds.Subject = r.C.I.Name
	}
	scopes, aud := splitList(r.TokenScopes), splitList(r.TokenAudience)
	return &fosite.Request{
		ID:                r.RequestID,
		RequestedAt:       r.IssuedAt,
		Client:            r.C.client(),
		RequestedScope:    scopes,
		GrantedScope:      scopes,
		RequestedAudience: aud,
		GrantedAudience:   aud,
		Session:           session,
		Form:              url.Values{},
	}, nil
}

// DeleteAccessTokenSession deletes one token by signature.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	if err := s.w.WithContext(ctx).Where("signature = ?", signature).Delete(&accessTokenRow{}).Error; err != nil {
		return fmt.Errorf("delete access token: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// RevokeAccessToken revokes every access token of the token request
// requestID (RFC 7009 §2.1). Revoking what is already gone succeeds.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	if err := s.w.WithContext(ctx).Where("request_id = ?", requestID).Delete(&accessTokenRow{}).Error; err != nil {
		return fmt.Errorf("revoke access token: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// The client-credentials grant issues no refresh tokens (RFC 6749 §4.4.3)
// and latchkey serves no authorization codes; these methods exist because
// fosite's revocation and introspection handlers require the full storage
// interfaces. Lookups find nothing; writes are refused.

var errUnsupportedGrant = errors.New("latchkey issues only client-credentials access tokens")

func (s *Store) CreateRefreshTokenSession(context.Context, string, string, fosite.Requester) error {
	return errUnsupportedGrant
}
func (s *Store) GetRefreshTokenSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}
func (s *Store) DeleteRefreshTokenSession(context.Context, string) error  { return nil }
func (s *Store) RotateRefreshToken(context.Context, string, string) error { return nil }
func (s *Store) RevokeRefreshToken(context.Context, string) error         { return nil }
func (s *Store) CreateAuthorizeCodeSession(context.Context, string, fosite.Requester) error {
	return errUnsupportedGrant
}
func (s *Store) GetAuthorizeCodeSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}
func (s *Store) InvalidateAuthorizeCodeSession(context.Context, string) error {
	return fosite.ErrNotFound
}
