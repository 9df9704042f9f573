package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/x/errorsx"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// keyringTTL bounds how stale a replica's view of the signing keys may be:
// after a rotation on another replica, this one signs with the old key (which
// stays published) for at most this long.
const keyringTTL = 30 * time.Second

// keyring caches the active signing key and the published public keys, so
// signing and JWKS requests do not read the database. Readers take the
// current snapshot without locking; one caller at a time refreshes a stale
// snapshot while the others keep using it, and a failed refresh keeps the
// last good snapshot, so a database hiccup never stops signing.
type keyring struct {
	store *storage.Store
	now   func() time.Time
	log   *slog.Logger

	snap    atomic.Pointer[keySnapshot]
	loading sync.Mutex
	// lastMiss is when an unknown kid last caused a reload (unix nanos);
	// forged kids must not turn into a database query each.
	lastMiss atomic.Int64
}

type keySnapshot struct {
	loadedAt time.Time
	activeID string
	signer   jose.Signer
	public   map[string]*storage.SigningKey
	jwks     jose.JSONWebKeySet
}

func newKeyring(store *storage.Store, now func() time.Time, log *slog.Logger) *keyring {
	return &keyring{store: store, now: now, log: log}
}

// current returns a snapshot no older than keyringTTL if it can, else the
// last good one. Only the first load can fail.
func (k *keyring) current(ctx context.Context) (*keySnapshot, error) {
	snap := k.snap.Load()
	if snap != nil && k.now().Sub(snap.loadedAt) < keyringTTL {
		return snap, nil
	}
	if snap != nil && !k.loading.TryLock() {
		return snap, nil // another request is refreshing
	}
	if snap == nil {
		k.loading.Lock()
	}
	defer k.loading.Unlock()
	if fresh := k.snap.Load(); fresh != snap {
		return fresh, nil
	}
	return k.load(ctx)
}

// load reads the keys, decrypting the active private key only when the
// active key changed. On failure it keeps the previous snapshot, retrying
// after a few seconds.
func (k *keyring) load(ctx context.Context) (*keySnapshot, error) {
	// The snapshot serves every request, not just this one: a client
	// that hangs up must not abort the refresh. The request's deadline
	// still holds, so an unreachable database costs this request no more
	// than request_timeout.
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	prev := k.snap.Load()
	next, err := k.read(ctx, prev)
	if err != nil {
		if prev == nil {
			return nil, fmt.Errorf("load signing keys: %w: %w", storage.ErrUnavailable, err)
		}
		k.log.Warn("signing keys: refresh failed; using the cached keys", "err", err)
		retry := *prev
		retry.loadedAt = k.now().Add(5*time.Second - keyringTTL)
		k.snap.Store(&retry)
		return &retry, nil
	}
	k.snap.Store(next)
	return next, nil
}

func (k *keyring) read(ctx context.Context, prev *keySnapshot) (*keySnapshot, error) {
	published, err := k.store.PublishedSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	next := &keySnapshot{
		loadedAt: k.now(),
		public:   make(map[string]*storage.SigningKey, len(published)),
		jwks:     jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(published))},
	}
	for _, p := range published {
		next.public[p.ID] = p
		next.jwks.Keys = append(next.jwks.Keys, p.Public)
		if p.Active {
			next.activeID = p.ID
		}
	}
	if prev != nil && prev.activeID == next.activeID {
		next.signer = prev.signer
		return next, nil
	}
	active, err := k.store.ActiveSigningKey(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := next.public[active.ID]; !ok {
		// A rotation committed between the two reads: publish the key
		// this snapshot signs with, or its own tokens would not verify.
		next.public[active.ID] = active
		next.jwks.Keys = append(next.jwks.Keys, active.Public)
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", active.ID)
	next.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(active.Algorithm), Key: active.Private}, opts)
	if err != nil {
		return nil, fmt.Errorf("signer for key %s: %w", active.ID, err)
	}
	next.activeID = active.ID
	return next, nil
}

// reload forces a refresh, after this replica rotated the key.
func (k *keyring) reload(ctx context.Context) error {
	k.loading.Lock()
	defer k.loading.Unlock()
	_, err := k.load(ctx)
	return err
}

// publicKey returns the published key kid. An unknown kid may be a key
// another replica just made, so it reloads once, unless a reload ran in the
// last second: forged kids must not turn into a database query each.
func (k *keyring) publicKey(ctx context.Context, kid string) (*storage.SigningKey, bool) {
	snap, err := k.current(ctx)
	if err != nil {
		return nil, false
	}
	if key, ok := snap.public[kid]; ok {
		return key, true
	}
	now := k.now()
	if now.Sub(snap.loadedAt) < time.Second || now.Sub(time.Unix(0, k.lastMiss.Load())) < time.Second || !k.loading.TryLock() {
		return nil, false
	}
	defer k.loading.Unlock()
	k.lastMiss.Store(now.UnixNano())
	snap, err = k.load(ctx)
	if err != nil {
		return nil, false
	}
	key, ok := snap.public[kid]
	return key, ok
}

// jwtAlgorithms are the only algorithms a token may claim, those keys are
// made for; anything else, "none" included, fails to parse.
var jwtAlgorithms = func() []jose.SignatureAlgorithm {
	algs := make([]jose.SignatureAlgorithm, len(storage.SigningAlgorithms))
	for i, a := range storage.SigningAlgorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return algs
}()

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
	// Cnf binds a DPoP token to its key (RFC 9449 §6.1).
	Cnf *Confirmation `json:"cnf,omitempty"`
}

// tokenStrategy issues opaque (lk_at_) or JWT access tokens, as
// configured, and recognises both: switching token_format never strands
// tokens already issued.
type tokenStrategy struct {
	*prefixedHMACStrategy
	keys      *keyring
	issuer    string
	issueJWTs bool
}

var _ oauth2.CoreStrategy = (*tokenStrategy)(nil)

func isOpaque(token string) bool { return strings.HasPrefix(token, credential.AccessTokenPrefix) }

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
	snap, err := t.keys.current(ctx)
	if err != nil {
		return "", "", fmt.Errorf("jwt access token: %w", err)
	}
	kid, signer := snap.activeID, snap.signer
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
	if jkt := jktOf(sess); jkt != "" {
		claims.Cnf = &Confirmation{JKT: jkt}
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("jwt access token: %w", err)
	}
	if sess.Extra == nil {
		sess.Extra = map[string]any{}
	}
	sess.Extra[sessionKeyID] = kid
	return token, jwtStorageKey(token), nil
}

// ValidateAccessToken checks that a token found in storage is the one
// stored: an opaque token's HMAC, or a JWT's signature against the
// published key its kid names, with an allowed algorithm. Whether it is
// still active was decided when it was found (active, in lifetime.go); its
// claims carry the same expiry.
func (t *tokenStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	if isOpaque(token) {
		return t.prefixedHMACStrategy.ValidateAccessToken(ctx, r, token)
	}
	parsed, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil || len(parsed.Headers) != 1 {
		return errorsx.WithStack(fosite.ErrInvalidTokenFormat)
	}
	h := parsed.Headers[0]
	key, ok := t.keys.publicKey(ctx, h.KeyID)
	if !ok || key.Algorithm != h.Algorithm {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch)
	}
	var claims accessTokenClaims
	if err := parsed.Claims(key.Public.Key, &claims); err != nil {
		return errorsx.WithStack(fosite.ErrTokenSignatureMismatch)
	}
	return nil
}
