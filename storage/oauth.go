package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// Client is one key pair of an integration, as the OAuth endpoints see it:
// the client ID names the pair, not the integration, so regenerating a pair
// changes the client ID too.
type Client struct {
	KeyPairID  int64
	ClientID   string
	SecretHash []byte
	// ExpiresAt is the pair's grace deadline (its revocation time, for a
	// pair revoked at once); nil for the current pair.
	ExpiresAt *time.Time
	// LastUsedAt is when the pair last authenticated (CreateToken and
	// TouchKeyPair record it), to the resolution of
	// lastUsedWriteResolution; nil if never.
	LastUsedAt *time.Time
	// Integration holds what the OAuth endpoints use: its ID, name,
	// whether it is disabled, scopes, audience, introspection right, token
	// lifetime and token rate. The admin API reads the rest through
	// GetIntegration. The owner of a stored token (Token.Owner) has only
	// its IDs, grace deadline and integration name, ID and Disabled.
	Integration Integration
}

// The token and introspection endpoints run these lookups on every
// request, so they go through database/sql directly: gorm's reflection cost
// more than the query. They read only what those endpoints use: the SQLite
// driver makes several cgo calls per column and parses every timestamp from
// text, so unused columns were a measurable share of a lookup.
//
// ownerColumns identify a token's owner: its key pair, that pair's grace
// deadline and its integration, with whether that is disabled, the other
// fact a token's worth depends on. clientColumns add what authenticating
// the pair and issuing it a token need.
const (
	ownerColumns  = `k.id, k.client_id, k.expires_at, i.id, i.name, i.disabled`
	clientColumns = ownerColumns + `, k.secret_hash, k.last_used_at,
	i.scopes, i.audience, i.can_introspect, i.token_lifetime_seconds, i.token_rate_per_minute,
	i.token_endpoint_auth_method, i.jwks, i.jwks_uri, i.require_dpop, i.introspection_audience`
)

// A deleted integration's pairs have expired, which alone refuses them and
// their tokens (and is what the previous release checks); the lookups skip
// deleted integrations too, so nothing of one can ever work again.
const getClientSQL = `SELECT ` + clientColumns + `
	FROM key_pairs k JOIN integrations i ON i.id = k.integration_id
	WHERE k.client_id = $1 AND i.deleted_at IS NULL`

const getTokenSQL = `SELECT t.request_id, t.scopes, t.audience, t.issued_at, t.expires_at, t.jkt, ` + ownerColumns + `
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
		jwks, jwksURI     sql.NullString
		introAud          string
		ig                = &c.Integration
	)
	dest := []any{&c.KeyPairID, &c.ClientID, &expires, &ig.ID, &ig.Name, &ig.Disabled}
	if full {
		dest = append(dest, &c.SecretHash, &lastUsed, &scopes, &aud, &ig.CanIntrospect, &lifetime, &rate,
			&ig.TokenEndpointAuthMethod, &jwks, &jwksURI, &ig.RequireDPoP, &introAud)
	}
	return dest, func() *Client {
		c.ExpiresAt = nullTime(expires)
		c.LastUsedAt = nullTime(lastUsed)
		ig.Scopes, ig.Audience = splitList(scopes), splitList(aud)
		ig.JWKS, ig.JWKSURI = jwks.String, jwksURI.String
		ig.IntrospectionAudience = splitList(introAud)
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

// GetClient returns the key pair with client ID id, or ErrNotFound if no
// pair of a live integration has that ID. A pair past its grace deadline,
// or of a disabled integration, is returned too: whether it still works is
// the caller's decision, made on the caller's clock.
func (s *Store) GetClient(ctx context.Context, id string) (*Client, error) {
	dest, client := scanClient(true)
	err := s.queryRow(ctx, s.rdb, getClientSQL, id).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get client: %w: %w", ErrUnavailable, err)
	}
	return client(), nil
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

// Token is a stored access token.
type Token struct {
	// Signature is the key the token is stored under; the token itself is
	// never stored.
	Signature string
	RequestID string
	// KeyID is the signing key of a JWT, kept published while the token
	// lives; "" for an opaque token. Lookups do not read it: a JWT names
	// its key itself.
	KeyID     string
	Scopes    []string
	Audience  []string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// JKT is the RFC 7638 thumbprint of the key a DPoP-bound token is
	// bound to (RFC 9449 §6); "" for a bearer token.
	JKT string
	// Owner is the key pair the token was issued to.
	Owner *Client
}

// CreateToken stores t, issued to t.Owner, if that key pair works at now
// and will outlive the token and its integration is not disabled, checked
// by the same statement that stores it: a token request that
// authenticated just before its pair was revoked, given a grace deadline
// earlier than the token's expiry, or its integration disabled, fails here
// with ErrKeyPairChanged instead of storing a token that outlives its pair
// or was issued while suspended. The caller may authenticate again and
// retry once.
//
// It also records the pair's last use, at most once per
// lastUsedWriteResolution, so a busy client does not queue its token
// requests on one row.
func (s *Store) CreateToken(ctx context.Context, t *Token, now time.Time) error {
	c := t.Owner
	var kid *string
	if t.KeyID != "" {
		kid = &t.KeyID
	}
	now = now.UTC().Truncate(time.Microsecond)
	expires := t.ExpiresAt.UTC().Truncate(time.Microsecond)
	ins := &tokenInsert{
		args: []any{t.Signature, t.RequestID, kid, joinList(t.Scopes), joinList(t.Audience),
			t.IssuedAt.UTC().Truncate(time.Microsecond), expires, orNil(t.JKT), c.KeyPairID, now, expires},
		keyPairID: c.KeyPairID,
		now:       now,
		touch:     lastUseStale(c.LastUsedAt, now),
	}
	var err error
	if s.commits != nil {
		err = s.commits.insert(ctx, ins)
	} else {
		err = s.insertToken(ctx, nil, ins)
	}
	if err != nil {
		return fmt.Errorf("create access token: %w: %w", ErrUnavailable, err)
	}
	if !ins.stored {
		return fmt.Errorf("create access token: %w", ErrKeyPairChanged)
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
// it and its integration is not disabled: the check and the insert are one
// statement. On PostgreSQL the shared row lock (appended by Open, as
// Store.insertSQL) makes it wait for a regeneration or deletion of the
// pair in progress and then re-check the pair, while token requests for
// one pair never wait for each other.
//
// The integration's row is read, not locked: a token stored by a statement
// that began before a suspension committed was issued before it, and is
// inactive while the suspension lasts like every other token of the
// integration, so there is nothing to wait for. Locking it would make
// every token request of the integration share one more row lock.
// Its parameters are numbered in the order they first appear: SQLite
// binds $n parameters by first appearance, not by n.
const insertTokenSQL = `INSERT INTO access_tokens
	(signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at, jkt)
	SELECT $1, $2, k.id, $3, $4, $5, $6, $7, $8 FROM key_pairs k
	WHERE k.id = $9 AND (k.expires_at IS NULL OR (k.expires_at > $10 AND k.expires_at >= $11))
	AND EXISTS (SELECT 1 FROM integrations i WHERE i.id = k.integration_id AND NOT i.disabled)`

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

// touchKeyPairSQL records a pair's use at $1 unless one after $3 is
// recorded already.
const touchKeyPairSQL = `UPDATE key_pairs SET last_used_at = $1
	WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)`

// TouchKeyPair records that key pair c authenticated at now, as
// CreateToken does for a token request; it is for the other requests a
// pair authenticates (introspection, revocation). It writes nothing while
// c.LastUsedAt, as read by GetClient, is within lastUsedWriteResolution of
// now, so a busy client costs about one write per resolution, not one per
// request; of the requests that race past a stale LastUsedAt, only the
// first changes the row.
func (s *Store) TouchKeyPair(ctx context.Context, c *Client, now time.Time) error {
	now = now.UTC().Truncate(time.Microsecond)
	if !lastUseStale(c.LastUsedAt, now) {
		return nil
	}
	if _, err := s.exec(ctx, nil, touchKeyPairSQL, now, c.KeyPairID, now.Add(-lastUsedWriteResolution)); err != nil {
		return fmt.Errorf("record use of key pair %d: %w: %w", c.KeyPairID, ErrUnavailable, err)
	}
	return nil
}

// lastUseStale reports whether a pair last used at lastUsed (nil: never)
// should have a use at now recorded: the stored time is kept at
// lastUsedWriteResolution, so a more recent use is news to no one.
func lastUseStale(lastUsed *time.Time, now time.Time) bool {
	return lastUsed == nil || now.Sub(*lastUsed) >= lastUsedWriteResolution
}

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

// GetToken returns the token stored under signature with its owner (the
// ownerColumns of it), or
// ErrNotFound if there is none or its integration was deleted. An expired
// token, or one whose pair is past its grace deadline, is returned too:
// whether it is active is the caller's decision, made on the caller's
// clock. Revoking a token deletes it.
func (s *Store) GetToken(ctx context.Context, signature string) (*Token, error) {
	if signature == "" {
		return nil, ErrNotFound
	}
	var (
		t                  Token
		scopeList, audList string
		jkt                sql.NullString
	)
	dest, client := scanClient(false)
	err := s.queryRow(ctx, s.rdb, getTokenSQL, signature).Scan(append([]any{&t.RequestID, &scopeList, &audList, &t.IssuedAt, &t.ExpiresAt, &jkt}, dest...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get access token: %w: %w", ErrUnavailable, err)
	}
	t.Signature = signature
	t.IssuedAt, t.ExpiresAt = t.IssuedAt.UTC(), t.ExpiresAt.UTC()
	t.Scopes, t.Audience = splitList(scopeList), splitList(audList)
	t.JKT = jkt.String
	t.Owner = client()
	return &t, nil
}

// DeleteToken deletes one token by signature; deleting what is gone
// succeeds.
func (s *Store) DeleteToken(ctx context.Context, signature string) error {
	if err := s.w.WithContext(ctx).Where("signature = ?", signature).Delete(&accessTokenRow{}).Error; err != nil {
		return fmt.Errorf("delete access token: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// ListIntegrationTokens returns a page of the access tokens issued to the
// key pairs of integration name, newest first (by IssuedAt, then
// RequestID), and the next page's token. Every stored token is listed:
// expired ones, and those of pairs past their grace, until the janitor
// deletes them. Each has its Owner as GetToken gives it, so that the
// caller decides, on its clock, which are active. Signature is left
// empty: a listing never carries what a token is stored under.
// ErrNotFound if no live integration is name.
//
// An integration may hold hundreds of thousands of tokens, so a page must
// not sort them all: each pair's tokens are read in order from the
// access_tokens (key_pair_id, issued_at) index, a page's worth at most,
// and merged here. An integration has few pairs (the current one, one in
// grace, revoked ones until the janitor takes them), so a page costs
// about its length times that few.
func (s *Store) ListIntegrationTokens(ctx context.Context, name string, p Page) ([]*Token, string, error) {
	op := fmt.Sprintf("list tokens of integration %q", name)
	var ig integrationRow
	if err := s.r.WithContext(ctx).Where("name = ?", name).Where(live).Take(&ig).Error; err != nil {
		return nil, "", translate(op, err)
	}
	var pairs []KeyPair
	if err := s.r.WithContext(ctx).Where("integration_id = ?", ig.ID).Find(&pairs).Error; err != nil {
		return nil, "", unavailable(op, err)
	}
	type owned struct {
		row   accessTokenRow
		owner *Client
	}
	var all []owned
	more := false
	for i := range pairs {
		kp := &pairs[i]
		// A pair's next page token only says that it has more: the
		// merged page has its own.
		rows, next, err := findPage(tokensOfPair(s.r.WithContext(ctx), kp.ID), p, tokensByIssue, op, tokenCursor)
		if err != nil {
			return nil, "", err
		}
		more = more || next != ""
		owner := &Client{KeyPairID: kp.ID, ClientID: kp.ClientID, ExpiresAt: utcPtr(kp.ExpiresAt),
			Integration: Integration{ID: ig.ID, Name: ig.Name, Disabled: ig.Disabled}}
		for _, r := range rows {
			all = append(all, owned{r, owner})
		}
	}
	slices.SortFunc(all, func(a, b owned) int {
		if c := b.row.IssuedAt.Compare(a.row.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(b.row.RequestID, a.row.RequestID)
	})
	if len(all) > p.limit() {
		all, more = all[:p.limit()], true
	}
	next := ""
	if more && len(all) > 0 {
		next = pageToken(tokenCursor(&all[len(all)-1].row))
	}
	out := make([]*Token, len(all))
	for i, t := range all {
		out[i] = &Token{RequestID: t.row.RequestID, Scopes: splitList(t.row.Scopes), Audience: splitList(t.row.Audience),
			IssuedAt: t.row.IssuedAt.UTC(), ExpiresAt: t.row.ExpiresAt.UTC(), Owner: t.owner}
	}
	return out, next, nil
}

// tokensByIssue is how ListIntegrationTokens pages each pair's tokens.
// The merge orders request IDs bytewise and the database by its collation:
// they agree on the request IDs fosite makes (UUIDs: lowercase hex, the
// hyphens in the same places).
var tokensByIssue = pageOrder{column: "issued_at", desc: true, thenID: true, then: "request_id"}

func tokenCursor(r *accessTokenRow) string { return textTimeCursor(r.IssuedAt, r.RequestID) }

// tokensOfPair is the tokens of key pair id, with the columns a listing
// shows.
func tokensOfPair(db *gorm.DB, id int64) *gorm.DB {
	return db.Model(&accessTokenRow{}).
		Select("request_id, key_pair_id, scopes, audience, issued_at, expires_at").
		Where("key_pair_id = ?", id)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
