package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/x/errorsx"
)

// The interfaces fosite's handlers type-assert their storage to at run
// time, pinned here at compile time: a missing method would otherwise
// switch an endpoint off silently.
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
	LastUsedAt *time.Time
	// Integration holds what the OAuth endpoints use: its ID, name,
	// scopes, audience, introspection right, token lifetime and token
	// rate. The admin API reads the rest through GetIntegration. The
	// owner of a stored token (GetAccessTokenSession) has only its IDs,
	// grace deadline and integration name and ID.
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

// The token and introspection endpoints run these lookups on every
// request, so they go through database/sql directly: gorm's reflection cost
// more than the query. They read only what those endpoints use: the SQLite
// driver makes several cgo calls per column and parses every timestamp from
// text, so unused columns were a measurable share of a lookup.
//
// ownerColumns identify a token's owner: its key pair, that pair's grace
// deadline and its integration. clientColumns add what authenticating the
// pair and issuing it a token need.
const (
	ownerColumns  = `k.id, k.client_id, k.expires_at, i.id, i.name`
	clientColumns = ownerColumns + `, k.secret_hash, k.last_used_at,
	i.scopes, i.audience, i.can_introspect, i.token_lifetime_seconds, i.token_rate_per_minute`
)

// A deleted integration's pairs have expired, which alone refuses them and
// their tokens (and is what the previous release checks); the lookups skip
// deleted integrations too, so nothing of one can ever work again.
const getClientSQL = `SELECT ` + clientColumns + `
	FROM key_pairs k JOIN integrations i ON i.id = k.integration_id
	WHERE k.client_id = $1 AND i.deleted_at IS NULL`

const getTokenSQL = `SELECT t.request_id, t.scopes, t.audience, t.issued_at, t.expires_at, ` + ownerColumns + `
	FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id JOIN integrations i ON i.id = k.integration_id
	WHERE t.signature = $1 AND i.deleted_at IS NULL`

// scanClient returns the destinations of clientColumns (ownerColumns alone
// unless full), in order, and the function that turns them into a Client
// once scanned.
func scanClient(full bool) ([]any, func() *Client) {
	var (
		c                 Client
		expires, lastUsed sql.NullTime
		scopes, aud       string
		lifetime, rate    sql.NullInt64
		ig                = &c.Integration
	)
	dest := []any{&c.KeyPairID, &c.ClientID, &expires, &ig.ID, &ig.Name}
	if full {
		dest = append(dest, &c.SecretHash, &lastUsed, &scopes, &aud, &ig.CanIntrospect, &lifetime, &rate)
	}
	return dest, func() *Client {
		c.ExpiresAt = nullTime(expires)
		c.LastUsedAt = nullTime(lastUsed)
		ig.Scopes, ig.Audience = splitList(scopes), splitList(aud)
		if lifetime.Valid {
			ig.TokenLifetimeSeconds = &lifetime.Int64
		}
		if rate.Valid {
			ig.TokenRatePerMinute = &rate.Int64
		}
		return &c
	}
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// GetClient returns the working key pair with client ID id, or
// fosite.ErrNotFound when the ID is malformed, unknown, or its pair was
// revoked or is past its grace deadline.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if !ValidClientID(id) {
		return nil, fosite.ErrNotFound
	}
	dest, client := scanClient(true)
	err := s.queryRow(ctx, s.rdb, getClientSQL, id).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get client: %w: %w", ErrUnavailable, err)
	}
	c := client()
	if !s.working(c.ExpiresAt) {
		return nil, fosite.ErrNotFound
	}
	return c, nil
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
	now := s.clock()
	expires := req.GetSession().GetExpiresAt(fosite.AccessToken).UTC().Truncate(time.Microsecond)
	t := &tokenInsert{
		args: []any{signature, req.GetID(), kid, joinList(req.GetGrantedScopes()), joinList(req.GetGrantedAudience()),
			req.GetRequestedAt().UTC().Truncate(time.Microsecond), expires, c.KeyPairID, now, expires},
		keyPairID: c.KeyPairID,
		now:       now,
		touch:     c.LastUsedAt == nil || now.Sub(*c.LastUsedAt) >= lastUsedWriteResolution,
	}
	var err error
	if s.commits != nil {
		err = s.commits.insert(ctx, t)
	} else {
		err = s.insertToken(ctx, nil, t)
	}
	if err != nil {
		return fmt.Errorf("create access token: %w: %w", ErrUnavailable, err)
	}
	if !t.stored {
		return errorsx.WithStack(fosite.ErrInvalidClient.
			WithHint("The key pair was revoked or regenerated while the token was being issued.").
			WithWrap(ErrKeyPairChanged))
	}
	return nil
}

// tokenInsert is one token to store, with what the store learns doing it.
type tokenInsert struct {
	args      []any // of Store.insertSQL
	keyPairID int64
	now       time.Time
	touch     bool // record the pair's use
	stored    bool // the pair still worked and outlives the token
}

// insertTokenSQL stores a token only if its key pair works and outlives
// it: the check and the insert are one statement. On PostgreSQL the shared
// row lock (appended by Open, as Store.insertSQL) makes it wait for a
// regeneration or deletion of the pair in progress and then re-check the
// pair, while token requests for one pair never wait for each other.
const insertTokenSQL = `INSERT INTO access_tokens
	(signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
	SELECT $1, $2, id, $3, $4, $5, $6, $7 FROM key_pairs
	WHERE id = $8 AND (expires_at IS NULL OR (expires_at > $9 AND expires_at >= $10))`

// exec runs query in tx, or on the writer pool when tx is nil, through the
// writer's prepared statement on SQLite. Inside a transaction it only uses
// a statement prepared before: preparing one would wait for the writer
// connection the transaction holds.
func (s *Store) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	if tx != nil {
		if st, ok := s.stmts.Load(stmtKey{s.wdb, query}); ok {
			return tx.StmtContext(ctx, st.(*sql.Stmt)).ExecContext(ctx, args...)
		}
		return tx.ExecContext(ctx, query, args...)
	}
	st, err := s.prepared(ctx, s.wdb, query)
	if err != nil || st == nil {
		return s.wdb.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

const touchKeyPairSQL = `UPDATE key_pairs SET last_used_at = $1
	WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)`

// insertToken runs t in tx (nil: on its own) and records whether the
// token was stored.
func (s *Store) insertToken(ctx context.Context, tx *sql.Tx, t *tokenInsert) error {
	res, err := s.exec(ctx, tx, s.insertSQL, t.args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	t.stored = n == 1
	if t.stored && t.touch {
		_, err := s.exec(ctx, tx, touchKeyPairSQL,
			t.now, t.keyPairID, t.now.Add(-lastUsedWriteResolution))
		if err != nil {
			// The token is stored and valid; only the report of its use
			// is late.
			s.log.Warn("key pair: could not record its last use", "key_pair", t.keyPairID, "err", err)
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
	var (
		requestID, scopeList, audList string
		issued, expires               time.Time
	)
	dest, client := scanClient(false)
	err := s.queryRow(ctx, s.rdb, getTokenSQL, signature).Scan(append([]any{&requestID, &scopeList, &audList, &issued, &expires}, dest...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get access token: %w: %w", ErrUnavailable, err)
	}
	c := client()
	if !expires.After(s.clock()) || !s.working(c.ExpiresAt) {
		return nil, fosite.ErrNotFound
	}
	// A token issued before its pair entered a grace period dies with the
	// pair: report the earlier of the two deadlines.
	exp := expires.UTC()
	if c.ExpiresAt != nil && c.ExpiresAt.Before(exp) {
		exp = *c.ExpiresAt
	}
	if session == nil {
		session = new(fosite.DefaultSession)
	}
	session.SetExpiresAt(fosite.AccessToken, exp)
	if ds, ok := session.(*fosite.DefaultSession); ok {
		ds.Subject = c.Integration.Name
	}
	scopes, aud := splitList(scopeList), splitList(audList)
	return &fosite.Request{
		ID:                requestID,
		RequestedAt:       issued.UTC(),
		Client:            c,
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
// latchkey's revocation endpoint deletes by signature instead; on SQLite
// request_id has no index, so this scans the table.
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
