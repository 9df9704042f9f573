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
	ExpiresAt *time.Time
	// LastUsedAt is when the pair last got a token, to the resolution of
	// lastUsedWriteResolution; nil if never.
	LastUsedAt  *time.Time
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
		ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt, Integration: *r.I.integration()}
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
// The token is stored only if its key pair still works and will outlive
// it, checked by the same statement that stores it: a token request that
// authenticated just before its pair was revoked, or given a grace
// deadline earlier than the token's expiry, fails here with invalid_client
// wrapping ErrKeyPairChanged instead of storing a token that outlives its
// pair. The caller may authenticate again and retry once.
//
// It also records the pair's last use, at most once per
// lastUsedWriteResolution, so a busy client does not queue its token
// requests on one row.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	c, ok := req.GetClient().(*Client)
	if !ok {
		return fmt.Errorf("create access token: client is %T, not *storage.Client", req.GetClient())
	}
	var kid *string
	if ds, ok := req.GetSession().(*fosite.DefaultSession); ok {
		if k, ok := ds.Extra[SessionKeyID].(string); ok {
			kid = &k
		}
	}
	issued := req.GetRequestedAt().UTC().Truncate(time.Microsecond)
	expires := req.GetSession().GetExpiresAt(fosite.AccessToken).UTC().Truncate(time.Microsecond)
	now := s.clock()
	// One statement, no transaction: on PostgreSQL the shared row lock
	// makes it wait for a regeneration or deletion of the pair in
	// progress and then re-check the pair, while token requests for the
	// same pair never wait for each other. SQLite's single writer orders
	// it by itself.
	res := s.w.WithContext(ctx).Exec(`INSERT INTO access_tokens
		(signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
		SELECT ?, ?, id, ?, ?, ?, ?, ? FROM key_pairs
		WHERE id = ? AND (expires_at IS NULL OR (expires_at > ? AND expires_at >= ?))`+s.forShare(),
		signature, req.GetID(), kid, joinList(req.GetGrantedScopes()), joinList(req.GetGrantedAudience()), issued, expires,
		c.KeyPairID, now, expires)
	if res.Error != nil {
		return fmt.Errorf("create access token: %w: %w", ErrUnavailable, res.Error)
	}
	if res.RowsAffected == 0 {
		return errorsx.WithStack(fosite.ErrInvalidClient.
			WithHint("The key pair was revoked or regenerated while the token was being issued.").
			WithWrap(ErrKeyPairChanged))
	}
	if c.LastUsedAt == nil || now.Sub(*c.LastUsedAt) >= lastUsedWriteResolution {
		err := s.w.WithContext(ctx).Model(&KeyPair{}).
			Where("id = ? AND (last_used_at IS NULL OR last_used_at <= ?)", c.KeyPairID, now.Add(-lastUsedWriteResolution)).
			Update("last_used_at", now).Error
		if err != nil {
			// The token is stored and valid; only the report of its use
			// is late.
			s.log.Warn("key pair: could not record its last use", "client_id", c.ClientID, "err", err)
		}
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
