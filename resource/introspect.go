package resource

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxIntrospectionSize bounds an introspection answer read from latchkey.
const maxIntrospectionSize = 64 << 10

// introspector asks latchkey about opaque tokens (RFC 7662) and caches the
// answers: active ones for a short while and never past the token's exp,
// inactive ones more briefly. Tokens are cached under their SHA-256, so the
// cache holds nothing that could be replayed.
type introspector struct {
	o   Options
	now func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	claims *Claims // nil: inactive
	until  time.Time
}

func newIntrospector(o Options, now func() time.Time) *introspector {
	return &introspector{o: o, now: now, cache: make(map[[32]byte]cached)}
}

// verify returns the claims of an active token, or an *Error.
func (in *introspector) verify(ctx context.Context, token string, isDPoP bool) (*Claims, error) {
	if !isOpaqueShape(token) {
		return nil, invalidToken(isDPoP, "the token is not a latchkey access token")
	}
	key := sha256.Sum256([]byte(token))
	now := in.now()
	in.mu.Lock()
	hit, ok := in.cache[key]
	in.mu.Unlock()
	if !ok || !now.Before(hit.until) {
		c, err := in.ask(ctx, token)
		if err != nil {
			return nil, err
		}
		hit = cached{claims: c}
		in.store(key, &hit, now)
	}
	if hit.claims == nil {
		return nil, invalidToken(isDPoP, "the token is not active")
	}
	if !now.Before(hit.claims.Expiry) {
		return nil, invalidToken(isDPoP, "the token has expired")
	}
	return hit.claims, nil
}

// store caches an answer for as long as the options allow.
func (in *introspector) store(key [32]byte, c *cached, now time.Time) {
	ttl := in.o.InactiveCacheTTL
	if c.claims != nil {
		ttl = in.o.IntrospectionCacheTTL
	}
	if ttl <= 0 {
		return
	}
	c.until = now.Add(ttl)
	if c.claims != nil && c.claims.Expiry.Before(c.until) {
		c.until = c.claims.Expiry
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.cache[key]; !ok && len(in.cache) >= in.o.IntrospectionCacheMax {
		// Forget an arbitrary answer (map order is random), expired or
		// not: it costs one more introspection, which is all a flood of
		// new tokens can make this cache cost.
		for k := range in.cache {
			delete(in.cache, k)
			break
		}
	}
	in.cache[key] = *c
}

// isOpaqueShape is the cheap offline check of an lk_at_ token: its
// alphabet and length, so junk goes no further than this process.
func isOpaqueShape(token string) bool {
	if !strings.HasPrefix(token, opaquePrefix) || len(token) > 512 || len(token) < len(opaquePrefix)+16 {
		return false
	}
	for i := len(opaquePrefix); i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// introspection is latchkey's RFC 7662 answer, with cnf (RFC 9449 §6.2).
type introspection struct {
	Active    bool            `json:"active"`
	ClientID  string          `json:"client_id"`
	Sub       string          `json:"sub"`
	Scope     string          `json:"scope"`
	Aud       json.RawMessage `json:"aud"`
	Iss       string          `json:"iss"`
	Exp       int64           `json:"exp"`
	Iat       int64           `json:"iat"`
	Jti       string          `json:"jti"`
	TokenType string          `json:"token_type"`
	Cnf       *struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// ask returns the claims of an active token, nil for an inactive one, or
// an error wrapping errUnavailable when latchkey gave no answer.
func (in *introspector) ask(ctx context.Context, token string) (*Claims, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.o.IntrospectionURL, nil)
	if err != nil {
		return nil, err
	}
	if in.o.Authenticate != nil {
		if err := in.o.Authenticate(req, form); err != nil {
			return nil, fmt.Errorf("introspection: authenticate: %w", err)
		}
	} else {
		// RFC 6749 §2.3.1: the credentials are form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(in.o.ClientID), url.QueryEscape(in.o.ClientSecret))
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := in.o.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspection: %w: %w", errUnavailable, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionSize+1))
	if err != nil {
		return nil, fmt.Errorf("introspection: %w: %w", errUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		// 401 or 403: this API's own credentials are wrong, which no
		// client can fix; latchkey's error says which.
		return nil, fmt.Errorf("introspection: %w: status %d: %.200s", errUnavailable, resp.StatusCode, raw)
	}
	if len(raw) > maxIntrospectionSize {
		return nil, fmt.Errorf("introspection: %w: answer larger than %d bytes", errUnavailable, maxIntrospectionSize)
	}
	var a introspection
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("introspection: %w: %w", errUnavailable, err)
	}
	if !a.Active {
		return nil, nil
	}
	if a.Iss != "" && a.Iss != in.o.Issuer {
		return nil, fmt.Errorf("introspection: %w: iss %q is not %q", errUnavailable, a.Iss, in.o.Issuer)
	}
	aud, err := audience(a.Aud)
	if err != nil {
		return nil, fmt.Errorf("introspection: %w: %w", errUnavailable, err)
	}
	c := &Claims{
		Subject: a.Sub, ClientID: a.ClientID, Scopes: strings.Fields(a.Scope), Audience: aud,
		Expiry: time.Unix(a.Exp, 0), IssuedAt: time.Unix(a.Iat, 0), ID: a.Jti,
	}
	if a.Exp == 0 {
		// An active token without exp would be cached for the whole TTL
		// and trusted forever after; latchkey always sends one.
		return nil, fmt.Errorf("introspection: %w: an active token without exp", errUnavailable)
	}
	if a.Cnf != nil {
		c.JKT = a.Cnf.JKT
	}
	if c.JKT == "" && strings.EqualFold(a.TokenType, "DPoP") {
		return nil, fmt.Errorf("introspection: %w: a DPoP token without cnf.jkt", errUnavailable)
	}
	return c, nil
}

// audience reads aud, a string or an array of strings (RFC 7662 §2.2).
func audience(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("aud is neither a string nor an array of strings")
	}
	return many, nil
}
