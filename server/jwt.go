package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/x/errorsx"

	"github.com/latchkey/latchkey/storage"
)

// keyringTTL bounds how stale a replica's view of the signing keys may be:
// after a rotation on another replica, this one signs with the old key (which
// stays published) for at most this long.
const keyringTTL = 30 * time.Second

// keyring caches the active signing key and the published public keys, so
// signing and JWKS requests do not read the database each time.
type keyring struct {
	store *storage.Store
	now   func() time.Time

	mu       sync.Mutex
	loadedAt time.Time
	active   *storage.SigningKey
	signer   jose.Signer
	public   map[string]*storage.SigningKey
	jwks     jose.JSONWebKeySet
}

func newKeyring(store *storage.Store, now func() time.Time) *keyring {
	return &keyring{store: store, now: now}
}

// refresh reloads the keys when they are older than keyringTTL or force
// is set (an unknown kid may be a key another replica just made).
func (k *keyring) refresh(ctx context.Context, force bool) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !force && k.active != nil && k.now().Sub(k.loadedAt) < keyringTTL {
		return nil
	}
	return k.loadLocked(ctx)
}

func (k *keyring) loadLocked(ctx context.Context) error {
	active, err := k.store.ActiveSigningKey(ctx)
	if err != nil {
		return err
	}
	published, err := k.store.PublishedSigningKeys(ctx)
	if err != nil {
		return err
	}
	if k.active == nil || k.active.ID != active.ID {
		opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", active.ID)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(active.Algorithm), Key: active.Private}, opts)
		if err != nil {
			return fmt.Errorf("signer for key %s: %w", active.ID, err)
		}
		k.active, k.signer = active, signer
	}
	k.public = make(map[string]*storage.SigningKey, len(published))
	k.jwks = jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(published))}
	for _, p := range published {
		k.public[p.ID] = p
		k.jwks.Keys = append(k.jwks.Keys, p.Public)
	}
	k.loadedAt = k.now()
	return nil
}

// signing returns the active key's id and signer.
func (k *keyring) signing(ctx context.Context) (string, jose.Signer, error) {
	if err := k.refresh(ctx, false); err != nil {
		return "", nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.active.ID, k.signer, nil
}

// publicKey returns the published key kid, reloading once if it is unknown.
func (k *keyring) publicKey(ctx context.Context, kid string) (*storage.SigningKey, error) {
	if err := k.refresh(ctx, false); err != nil {
		return nil, err
	}
	k.mu.Lock()
	key, ok := k.public[kid]
	k.mu.Unlock()
	if ok {
		return key, nil
	}
	if err := k.refresh(ctx, true); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.public[kid]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("unknown signing key %q", kid)
}

// set returns the JWKS (RFC 7517) of the published keys.
func (k *keyring) set(ctx context.Context) (jose.JSONWebKeySet, error) {
	if err := k.refresh(ctx, false); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.jwks, nil
}

// jwtAlgorithms are the only algorithms a token may claim; anything else,
// "none" included, fails to parse.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.RS256}

// accessTokenClaims are the RFC 9068 §2.2 claims of a latchkey JWT.
type accessTokenClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience jwt.Audience     `json:"aud"`
	ClientID string           `json:"client_id"`
	Scope    string           `json:"scope,omitempty"`
	ID       string           `json:"jti"`
	IssuedAt *jwt.NumericDate `json:"iat"`
	Expiry   *jwt.NumericDate `json:"exp"`
}

// tokenStrategy issues opaque (lk_at_) or JWT access tokens, as
// configured, and recognises both: switching token_format never strands
// tokens already issued.
type tokenStrategy struct {
	*prefixedHMACStrategy
	keys      *keyring
	issuer    string
	issueJWTs bool
	now       func() time.Time
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

func isOpaque(token string) bool { return strings.HasPrefix(token, storage.AccessTokenPrefix) }

// AccessTokenSignature is the key a token is stored under: the HMAC part
// of an opaque token, or the SHA-256 of a JWT's signature segment. A JWT's
// signature is part of the token, and every claim can be derived from the
// row, so storing the signature itself would let a database dump rebuild
// live tokens; its hash cannot be reversed (the signature has far more than
// 128 bits of entropy) and, unlike a keyed hash, survives a change of the
// system secret.
func (t *tokenStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	if isOpaque(token) {
		return t.prefixedHMACStrategy.AccessTokenSignature(ctx, token)
	}
	if strings.Count(token, ".") != 2 {
		return ""
	}
	return jwtStorageKey(token)
}

func jwtStorageKey(token string) string {
	sum := sha256.Sum256([]byte(token[strings.LastIndexByte(token, '.')+1:]))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (t *tokenStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	if !t.issueJWTs {
		return t.prefixedHMACStrategy.GenerateAccessToken(ctx, r)
	}
	kid, signer, err := t.keys.signing(ctx)
	if err != nil {
		return "", "", fmt.Errorf("jwt access token: %w", err)
	}
	sess, ok := r.GetSession().(*fosite.DefaultSession)
	if !ok {
		return "", "", fmt.Errorf("jwt access token: session is %T", r.GetSession())
	}
	aud := []string(r.GetGrantedAudience())
	if len(aud) == 0 {
		aud = []string{t.issuer}
	}
	claims := accessTokenClaims{
		Issuer: t.issuer, Subject: sess.Subject, Audience: aud, ClientID: r.GetClient().GetID(),
		Scope: strings.Join(r.GetGrantedScopes(), " "), ID: r.GetID(),
		IssuedAt: jwt.NewNumericDate(r.GetRequestedAt()),
		Expiry:   jwt.NewNumericDate(sess.GetExpiresAt(fosite.AccessToken)),
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("jwt access token: %w", err)
	}
	if sess.Extra == nil {
		sess.Extra = map[string]any{}
	}
	sess.Extra[storage.SessionKeyID] = kid
	return token, jwtStorageKey(token), nil
}

// ValidateAccessToken checks a token found in storage: an opaque token's
// HMAC, or a JWT's signature against the published key its kid names, with
// an allowed algorithm, and its expiry.
func (t *tokenStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if isOpaque(token) {
		return t.prefixedHMACStrategy.ValidateAccessToken(ctx, r, token)
	}
	parsed, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil || len(parsed.Headers) != 1 {
		return errorsx.WithStack(fosite.ErrInvalidTokenFormat)
	}
	h := parsed.Headers[0]
	key, err := t.keys.publicKey(ctx, h.KeyID)
	if err != nil || key.Algorithm != h.Algorithm {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch)
	}
	var claims accessTokenClaims
	if err := parsed.Claims(key.Public.Key, &claims); err != nil {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch)
	}
	if claims.Expiry == nil || !claims.Expiry.Time().After(t.now()) {
		return errorsx.WithStack(fosite.ErrTokenExpired)
	}
	return nil
}
