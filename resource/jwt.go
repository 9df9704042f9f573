package resource

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// jwtAlgs are the algorithms a latchkey signing key may have, and the
// asymmetric ones other issuers use; "none" and HMAC never verify a token.
var jwtAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
}

// maxJWKSSize bounds the key set read from the issuer.
const maxJWKSSize = 1 << 20

// keySet is the issuer's JWKS, cached. It is fetched again when it is older
// than ttl (in the background: requests meanwhile use the cached keys) or
// when a token names a kid it lacks, a key rotated in since (while the
// request waits). Fetches, good or failed, are at least minRefetch apart,
// so neither made-up kids nor an unreachable issuer turn into a fetch per
// request.
type keySet struct {
	client     *http.Client
	url        string
	ttl        time.Duration
	minRefetch time.Duration
	now        func() time.Time

	fetching sync.Mutex // one fetch at a time

	mu        sync.Mutex // guards the fields below
	keys      map[string]*jose.JSONWebKey
	fetchedAt time.Time // of the last good fetch
	triedAt   time.Time // of the last fetch, good or not
}

func newKeySet(client *http.Client, url string, ttl, minRefetch time.Duration, now func() time.Time) *keySet {
	return &keySet{client: client, url: url, ttl: ttl, minRefetch: minRefetch, now: now}
}

func (k *keySet) snapshot() (keys map[string]*jose.JSONWebKey, fetchedAt, triedAt time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.fetchedAt, k.triedAt
}

// key returns the published key kid. An error means no key set could be
// fetched yet; a kid that stays unknown is (nil, nil).
func (k *keySet) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	keys, fetchedAt, triedAt := k.snapshot()
	if keys != nil {
		if now := k.now(); now.Sub(fetchedAt) >= k.ttl && now.Sub(triedAt) >= k.minRefetch && k.fetching.TryLock() {
			go func() {
				defer k.fetching.Unlock()
				k.refresh(context.Background())
			}()
		}
		if key, ok := keys[kid]; ok {
			return key, nil
		}
	}
	k.fetching.Lock()
	defer k.fetching.Unlock()
	// Another request may have fetched while this one waited.
	keys, _, triedAt = k.snapshot()
	if key, ok := keys[kid]; ok {
		return key, nil
	}
	if triedAt.IsZero() || k.now().Sub(triedAt) >= k.minRefetch {
		k.refresh(ctx)
		keys, _, _ = k.snapshot()
	}
	if keys == nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", k.url, errUnavailable)
	}
	return keys[kid], nil
}

// refresh fetches the key set; on failure it keeps the last good one. The
// caller holds k.fetching.
func (k *keySet) refresh(ctx context.Context) {
	now := k.now()
	keys, err := k.fetch(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.triedAt = now
	if err == nil {
		k.keys, k.fetchedAt = keys, now
	}
}

func (k *keySet) fetch(ctx context.Context) (map[string]*jose.JSONWebKey, error) {
	// A client that hangs up must not cancel the fetch every waiter needs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, errors.New("JWKS: larger than 1 MiB")
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys := make(map[string]*jose.JSONWebKey, len(set.Keys))
	for _, raw := range set.Keys {
		// One key of a kind this package does not know must not hide
		// the others (RFC 7517 §5).
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil || key.KeyID == "" || (key.Use != "" && key.Use != "sig") {
			continue
		}
		pub := key.Public()
		if !pub.Valid() || !pub.IsPublic() {
			continue
		}
		keys[key.KeyID] = &pub
	}
	return keys, nil
}

// atClaims are the RFC 9068 §2.2 claims, and cnf (RFC 9449 §6.1).
type atClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	ClientID  string           `json:"client_id"`
	Scope     string           `json:"scope"`
	ID        string           `json:"jti"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	Cnf       *struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// verifyJWT is RFC 9068 §4: the type, the signature by a key of the
// issuer's with the algorithm that key is for, iss, exp, and the times.
// aud and scope are the caller's.
func (v *Verifier) verifyJWT(ctx context.Context, token string, isDPoP bool) (*Claims, error) {
	refuse := func(format string, args ...any) (*Claims, error) {
		return nil, invalidToken(isDPoP, format, args...)
	}
	if strings.Count(token, ".") != 2 {
		return refuse("the token is neither a latchkey opaque token nor a JWT")
	}
	parsed, err := jwt.ParseSigned(token, jwtAlgs)
	if err != nil || len(parsed.Headers) != 1 {
		return refuse("the token is not a signed JWT with an accepted algorithm")
	}
	h := parsed.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return refuse("the token's typ is not at+jwt")
	}
	if h.KeyID == "" {
		return refuse("the token has no kid")
	}
	key, err := v.keys.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return refuse("the token is not signed by a key the issuer publishes")
	}
	if !keyFitsAlg(key, h.Algorithm) {
		return refuse("the token's alg is not the one its key is for")
	}
	var c atClaims
	if err := parsed.Claims(key.Key, &c); err != nil {
		return refuse("the token's signature does not verify")
	}
	now := v.now()
	switch {
	case c.Issuer != v.o.Issuer:
		return refuse("the token is not from this issuer")
	case c.Expiry == nil:
		return refuse("the token has no exp")
	case !now.Before(c.Expiry.Time().Add(v.o.Leeway)):
		return refuse("the token has expired")
	case c.IssuedAt == nil:
		return refuse("the token has no iat")
	case c.IssuedAt.Time().After(now.Add(v.o.Leeway)):
		return refuse("the token's iat is in the future")
	case c.NotBefore != nil && c.NotBefore.Time().After(now.Add(v.o.Leeway)):
		return refuse("the token is not valid yet")
	case c.Subject == "" || c.ClientID == "":
		return refuse("the token lacks sub or client_id")
	}
	out := &Claims{
		Subject: c.Subject, ClientID: c.ClientID, Scopes: strings.Fields(c.Scope),
		Audience: []string(c.Audience), Expiry: c.Expiry.Time(), IssuedAt: c.IssuedAt.Time(), ID: c.ID,
	}
	if c.Cnf != nil {
		if c.Cnf.JKT == "" {
			return refuse("the token's cnf has no jkt")
		}
		out.JKT = c.Cnf.JKT
	}
	return out, nil
}

// keyFitsAlg holds a token to the algorithm its key is published for, or,
// for a key published without one, to the kind of key it is: an attacker
// cannot pick the algorithm.
func keyFitsAlg(key *jose.JSONWebKey, alg string) bool {
	if key.Algorithm != "" {
		return key.Algorithm == alg
	}
	switch k := key.Key.(type) {
	case *ecdsa.PublicKey:
		return map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg] == k.Curve
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	}
	return false
}
