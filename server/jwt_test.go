package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// jwksPath is where RFC 8414 metadata says the key set lives.
const jwksPath = "/.well-known/jwks.json"

// privateJWKMembers are the RFC 7518 §6 members that hold private key
// material; none may ever be published.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// withJWT configures JWT access tokens signed with alg ("" keeps the
// default).
func withJWT(alg string) func(*server.Options) {
	return func(o *server.Options) {
		o.TokenFormat = "jwt"
		o.SigningAlgorithm = alg
	}
}

// jwtClaims are the RFC 9068 §2.2 claims as an independent resource server
// reads them.
type jwtClaims struct {
	Issuer   string           `json:"iss"`
	Subject  string           `json:"sub"`
	Audience jwt.Audience     `json:"aud"`
	ClientID string           `json:"client_id"`
	Scope    string           `json:"scope"`
	ID       string           `json:"jti"`
	IssuedAt *jwt.NumericDate `json:"iat"`
	Expiry   *jwt.NumericDate `json:"exp"`
}

// startEnv starts a server on the database at dbPath: what a restart,
// or a second replica, looks like. It fails the test on a start-up error
// and, when the test ends, on any server error.
func startEnv(t *testing.T, dbPath string, clk *clock, secrets [][]byte, opts ...func(*server.Options)) *env {
	t.Helper()
	e, err := tryStartEnv(t, dbPath, clk, secrets, opts...)
	if err != nil {
		t.Fatalf("start server on %s: %v", dbPath, err)
	}
	return e
}

// tryStartEnv is startEnv returning the start-up error instead of failing.
func tryStartEnv(t *testing.T, dbPath string, clk *clock, secrets [][]byte, opts ...func(*server.Options)) (*env, error) {
	t.Helper()
	e, err := openEnv(t, dbPath, clk, secrets, opts...)
	if err != nil {
		return nil, err
	}
	e.failOnServerErrors()
	return e, nil
}

// jwks fetches the key set the way a resource server does: it reads
// jwks_uri from the RFC 8414 metadata and GETs it over HTTP. It returns the
// parsed set, the raw members of each key, and the response headers.
func (e *env) jwks() (jose.JSONWebKeySet, []map[string]any, http.Header) {
	e.t.Helper()
	status, _, md := e.oauthSend("GET", "/.well-known/oauth-authorization-server", "", nil, keyPair{})
	if status != http.StatusOK {
		e.t.Fatalf("metadata: status %d", status)
	}
	if got, want := md["jwks_uri"], oauthIssuer+jwksPath; got != want {
		e.t.Errorf("metadata jwks_uri = %v, want %s", got, want)
	}
	resp, err := http.Get(e.srv.URL + jwksPath)
	if err != nil {
		e.t.Fatalf("GET %s: %v", jwksPath, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("GET %s: %v", jwksPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: status %d: %s", jwksPath, resp.StatusCode, b)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		e.t.Fatalf("GET %s: not a JWK set: %v: %s", jwksPath, err, b)
	}
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		e.t.Fatalf("GET %s: %v", jwksPath, err)
	}
	return set, raw.Keys, resp.Header
}

// kids returns the key IDs of set, sorted.
func kids(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

// jwtHeader decodes the protected header of a compact JWS without
// verifying anything.
func jwtHeader(t testing.TB, tok string) map[string]any {
	t.Helper()
	return decodeSegment(t, strings.Split(tok, ".")[0])
}

func decodeSegment(t testing.TB, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment %q is not base64url: %v", seg, err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("segment %q is not a JSON object: %s", seg, b)
	}
	return out
}

func encodeSegment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// verifyOffline validates tok as an independent resource server: it picks
// the key the header's kid names in set, accepts only that key's algorithm,
// and checks the signature. It returns the verified header and claims, and
// the claims as raw JSON members.
func verifyOffline(set jose.JSONWebKeySet, tok string) (jose.Header, jwtClaims, map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return jose.Header{}, jwtClaims{}, nil, fmt.Errorf("%d segments, want 3", len(parts))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return jose.Header{}, jwtClaims{}, nil, err
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return jose.Header{}, jwtClaims{}, nil, err
	}
	keys := set.Key(h.Kid)
	if len(keys) != 1 {
		return jose.Header{}, jwtClaims{}, nil, fmt.Errorf("kid %q: %d keys in the JWKS", h.Kid, len(keys))
	}
	key := keys[0]
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(key.Algorithm)})
	if err != nil {
		return jose.Header{}, jwtClaims{}, nil, err
	}
	var c jwtClaims
	raw := map[string]any{}
	if err := parsed.Claims(key.Key, &c, &raw); err != nil {
		return jose.Header{}, jwtClaims{}, nil, err
	}
	return parsed.Headers[0], c, raw, nil
}

// mustVerify is verifyOffline against the server's current JWKS, failing
// the test if the token does not verify.
func (e *env) mustVerify(tok string) (jose.Header, jwtClaims, map[string]any) {
	e.t.Helper()
	set, _, _ := e.jwks()
	h, c, raw, err := verifyOffline(set, tok)
	if err != nil {
		e.t.Fatalf("token does not verify against the JWKS (kids %v): %v", kids(set), err)
	}
	return h, c, raw
}

// signingKeys returns GET /admin/signing-keys items by kid.
func (e *env) signingKeys() map[string]map[string]any {
	e.t.Helper()
	out := e.mustAdmin("GET", "/admin/signing-keys", nil, http.StatusOK)
	items, ok := out["items"].([]any)
	if !ok {
		e.t.Fatalf("GET /admin/signing-keys: items = %#v, want an array", out["items"])
	}
	byKid := map[string]map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		byKid[m["kid"].(string)] = m
	}
	return byKid
}

// checkPublicJWK checks one published key: the RFC 7517 members a verifier
// needs, the key type of alg, and no private member.
func checkPublicJWK(t *testing.T, where string, m map[string]any, alg string) {
	t.Helper()
	wantKty := map[string]string{"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA"}[alg]
	for _, tc := range []struct{ member, want string }{
		{"kty", wantKty}, {"alg", alg}, {"use", "sig"},
	} {
		if got := m[tc.member]; got != tc.want {
			t.Errorf("%s: %s = %v, want %q", where, tc.member, got, tc.want)
		}
	}
	if kid, _ := m["kid"].(string); kid == "" {
		t.Errorf("%s: kid = %v, want a non-empty string", where, m["kid"])
	}
	for _, p := range privateJWKMembers {
		if _, ok := m[p]; ok {
			t.Errorf("%s: private member %q is published: %v", where, p, m)
		}
	}
}

// checkIntrospectionMatches checks that introspecting tok gives the same
// facts the JWT carries.
func checkIntrospectionMatches(t *testing.T, in map[string]any, c jwtClaims) {
	t.Helper()
	if in["active"] != true {
		t.Fatalf("introspection = %v, want active", in)
	}
	var aud []string
	switch a := in["aud"].(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, x := range a {
			s, _ := x.(string)
			aud = append(aud, s)
		}
	}
	tests := []struct {
		field     string
		got, want any
	}{
		{"iss", in["iss"], c.Issuer},
		{"sub", in["sub"], c.Subject},
		{"aud", aud, []string(c.Audience)},
		{"client_id", in["client_id"], c.ClientID},
		{"scope", in["scope"], c.Scope},
		{"jti", in["jti"], c.ID},
		{"iat", in["iat"], float64(c.IssuedAt.Time().Unix())},
		{"exp", in["exp"], float64(c.Expiry.Time().Unix())},
	}
	for _, tt := range tests {
		if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
			t.Errorf("introspection %s = %v, JWT says %v", tt.field, tt.got, tt.want)
		}
	}
}

// TestJWTAccessToken checks, for every signing algorithm, that a JWT access
// token is RFC 9068 shaped and verifies offline against the published
// JWKS, and that introspection tells the same story.
func TestJWTAccessToken(t *testing.T) {
	for _, alg := range []string{storage.ES256, storage.EdDSA, storage.RS256} {
		t.Run(alg, func(t *testing.T) {
			e := newOAuthEnv(t, withJWT(alg))
			rs := e.resourceServer()
			plain := e.createIntegration(map[string]any{"name": "plain", "scopes": []string{"read", "write"}})
			aimed := e.createIntegration(map[string]any{"name": "aimed", "scopes": []string{"read"},
				"audience": []string{"https://api.example.com", "https://other.example.com"}})

			set, raw, h := e.jwks()
			t.Run("JWKS", func(t *testing.T) {
				if len(raw) != 1 {
					t.Fatalf("JWKS has %d keys, want 1 (the active key): %v", len(raw), raw)
				}
				checkPublicJWK(t, "JWKS key", raw[0], alg)
				for _, k := range set.Keys {
					if !k.IsPublic() || !k.Valid() {
						t.Errorf("key %s: public %v, valid %v; want a valid public key", k.KeyID, k.IsPublic(), k.Valid())
					}
				}
				m := regexp.MustCompile(`(?:^|[ ,])max-age=(\d+)`).FindStringSubmatch(h.Get("Cache-Control"))
				if m == nil {
					t.Fatalf("Cache-Control = %q, want a max-age", h.Get("Cache-Control"))
				}
				if n, _ := strconv.Atoi(m[1]); n <= 0 {
					t.Errorf("Cache-Control max-age = %d, want > 0", n)
				}
				if ct := h.Get("Content-Type"); !strings.Contains(ct, "json") {
					t.Errorf("Content-Type = %q, want JSON", ct)
				}
			})

			tests := []struct {
				name  string
				kp    keyPair
				extra url.Values
				sub   string
				scope string
				aud   []string
			}{
				{"no audience: aud is the issuer", plain, nil, "plain", "read write", []string{oauthIssuer}},
				{"scope asked", plain, url.Values{"scope": {"write"}}, "plain", "write", []string{oauthIssuer}},
				{"audience asked", aimed, url.Values{"audience": {"https://api.example.com"}}, "aimed", "read", []string{"https://api.example.com"}},
				{"audience not asked: all granted", aimed, nil, "aimed", "read", []string{"https://api.example.com", "https://other.example.com"}},
			}
			jtis := map[string]bool{}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					before := e.clock.Now().Unix()
					resp := e.tokenResponse(tt.kp, tt.extra)
					tok, _ := resp["access_token"].(string)
					if got, want := resp["expires_in"], float64(defaultLifetimeSeconds); got != want {
						t.Errorf("expires_in = %v, want %v", got, want)
					}
					if strings.HasPrefix(tok, credential.AccessTokenPrefix) || strings.Count(tok, ".") != 2 {
						t.Fatalf("access_token = %q, want a compact JWS", tok)
					}

					hdr := jwtHeader(t, tok)
					if got, want := hdr["typ"], "at+jwt"; got != want {
						t.Errorf("header typ = %v, want %q", got, want)
					}
					if got := hdr["alg"]; got != alg {
						t.Errorf("header alg = %v, want %q", got, alg)
					}
					if got, want := hdr["kid"], set.Keys[0].KeyID; got != want {
						t.Errorf("header kid = %v, want the active key %q", got, want)
					}

					vh, c, rawClaims := e.mustVerify(tok)
					if got := vh.ExtraHeaders[jose.HeaderType]; got != "at+jwt" {
						t.Errorf("verified header typ = %v, want at+jwt", got)
					}
					if vh.Algorithm != alg {
						t.Errorf("verified header alg = %q, want %q", vh.Algorithm, alg)
					}
					for _, claim := range []string{"iss", "sub", "aud", "client_id", "scope", "jti", "iat", "exp"} {
						if _, ok := rawClaims[claim]; !ok {
							t.Errorf("claim %q missing: %v", claim, rawClaims)
						}
					}
					checks := []struct {
						claim     string
						got, want any
					}{
						{"iss", c.Issuer, oauthIssuer},
						{"sub", c.Subject, tt.sub},
						{"aud", []string(c.Audience), tt.aud},
						{"client_id", c.ClientID, tt.kp.ID},
						{"scope", scopeList(c.Scope), scopeList(tt.scope)},
					}
					for _, ck := range checks {
						if fmt.Sprint(ck.got) != fmt.Sprint(ck.want) {
							t.Errorf("claim %s = %v, want %v", ck.claim, ck.got, ck.want)
						}
					}
					if c.ID == "" || jtis[c.ID] {
						t.Errorf("jti = %q, want non-empty and unique per token", c.ID)
					}
					jtis[c.ID] = true
					if c.IssuedAt == nil || c.Expiry == nil {
						t.Fatalf("iat = %v, exp = %v, want both", c.IssuedAt, c.Expiry)
					}
					if got := c.IssuedAt.Time().Unix(); got < before || got > e.clock.Now().Unix() {
						t.Errorf("iat = %d, want the issue time %d", got, before)
					}
					if got, want := int64(c.Expiry.Time().Sub(c.IssuedAt.Time())/time.Second), int64(defaultLifetimeSeconds); got != want {
						t.Errorf("exp - iat = %d s, want %d s", got, want)
					}

					checkIntrospectionMatches(t, e.introspect(rs, tok), c)
				})
			}

			t.Run("jti differs per token", func(t *testing.T) {
				_, a, _ := e.mustVerify(e.token(plain, nil))
				_, b, _ := e.mustVerify(e.token(plain, nil))
				if a.ID == b.ID {
					t.Errorf("two tokens share jti %q", a.ID)
				}
			})
		})
	}
}

// TestJWTLifecycle checks that a JWT access token is as revocable as an
// opaque one: revocation, regeneration (immediate and with grace),
// integration deletion and expiry all make introspection say inactive.
func TestJWTLifecycle(t *testing.T) {
	e := newOAuthEnv(t, withJWT(""))
	e.alignClock()
	rs := e.resourceServer()
	cc := url.Values{"grant_type": {"client_credentials"}}

	t.Run("revoke", func(t *testing.T) {
		kp := e.createIntegration(map[string]any{"name": "revoked", "scopes": []string{"read"}})
		tok, other := e.token(kp, nil), e.token(kp, nil)
		if status, _, body := e.form("/oauth2/revoke", kp, url.Values{"token": {tok}}); status != http.StatusOK {
			t.Fatalf("revoke: status %d, want 200: %v", status, body)
		}
		checkInactive(t, e.introspect(rs, tok))
		if got := e.introspect(rs, other)["active"]; got != true {
			t.Errorf("the other token: active = %v, want true", got)
		}
	})

	t.Run("revoke by another integration", func(t *testing.T) {
		owner := e.createIntegration(map[string]any{"name": "owner"})
		thief := e.createIntegration(map[string]any{"name": "thief"})
		tok := e.token(owner, nil)
		status, h, body := e.form("/oauth2/revoke", thief, url.Values{"token": {tok}})
		if status == http.StatusOK {
			t.Errorf("another integration revoked the token: status 200")
		} else {
			code, _ := body["error"].(string)
			checkOAuthError(t, status, h, body, status, code)
		}
		if got := e.introspect(rs, tok)["active"]; got != true {
			t.Errorf("token after a refused revocation: active = %v, want true", got)
		}
	})

	t.Run("regenerate immediately", func(t *testing.T) {
		old := e.createIntegration(map[string]any{"name": "regen"})
		toks := []string{e.token(old, nil), e.token(old, nil)}
		fresh := e.regenerate("regen", 0)
		for i, tok := range toks {
			t.Run(fmt.Sprint("token ", i), func(t *testing.T) { checkInactive(t, e.introspect(rs, tok)) })
		}
		e.checkRejected(t, old)
		if got := e.introspect(rs, e.token(fresh, nil))["active"]; got != true {
			t.Errorf("new pair's token: active = %v, want true", got)
		}
	})

	t.Run("regenerate with grace", func(t *testing.T) {
		old := e.createIntegration(map[string]any{"name": "graced"})
		before := e.token(old, nil)
		fresh, deadline := e.regenerateRaw("graced", map[string]any{"grace_seconds": 3600})
		e.clock.Advance(1800 * time.Second)
		during := e.token(old, nil)
		_, c, _ := e.mustVerify(during)
		if got, want := c.Expiry.Time().Unix(), deadline.Unix(); got != want {
			t.Errorf("token issued during the grace: exp = %d, want the grace deadline %d", got, want)
		}
		if status, _, body := e.form("/oauth2/token", fresh, cc); status != http.StatusOK {
			t.Errorf("new pair during the grace: status %d: %v", status, body)
		}

		// The integration owns its tokens: the new pair revokes one the
		// old pair was issued.
		revoked := e.token(old, nil)
		if status, _, body := e.form("/oauth2/revoke", fresh, url.Values{"token": {revoked}}); status != http.StatusOK {
			t.Errorf("new pair revokes the old pair's token: status %d: %v", status, body)
		}
		checkInactive(t, e.introspect(rs, revoked))

		e.clock.Advance(deadline.Sub(e.clock.Now()) - time.Second)
		for name, tok := range map[string]string{"before": before, "during": during} {
			if got := e.introspect(rs, tok)["active"]; got != true {
				t.Errorf("token issued %s the grace, 1 s before the deadline: active = %v, want true", name, got)
			}
		}
		e.clock.Advance(2 * time.Second)
		for name, tok := range map[string]string{"before": before, "during": during} {
			t.Run("issued "+name+", past the deadline", func(t *testing.T) { checkInactive(t, e.introspect(rs, tok)) })
		}
		e.checkRejected(t, old)
		if got := e.introspect(rs, e.token(fresh, nil))["active"]; got != true {
			t.Errorf("new pair's token past the deadline: active = %v, want true", got)
		}
	})

	t.Run("delete integration", func(t *testing.T) {
		kp := e.createIntegration(map[string]any{"name": "deleted"})
		tok := e.token(kp, nil)
		e.mustAdmin("DELETE", "/admin/integrations/deleted", nil, http.StatusNoContent)
		checkInactive(t, e.introspect(rs, tok))
	})

	t.Run("expiry", func(t *testing.T) {
		kp := e.createIntegration(map[string]any{"name": "short", "token_lifetime_seconds": 600})
		tok := e.token(kp, nil)
		_, c, _ := e.mustVerify(tok)
		if got := c.Expiry.Time().Sub(c.IssuedAt.Time()); got != 600*time.Second {
			t.Errorf("exp - iat = %v, want the integration's 600 s", got)
		}
		e.clock.Advance(c.Expiry.Time().Sub(e.clock.Now()) - time.Second)
		if got := e.introspect(rs, tok)["active"]; got != true {
			t.Errorf("1 s before exp: active = %v, want true", got)
		}
		e.clock.Advance(2 * time.Second)
		checkInactive(t, e.introspect(rs, tok))
	})
}

// TestJWTIntrospectForged checks that no altered or forged JWT is active,
// and that none verifies offline either.
func TestJWTIntrospectForged(t *testing.T) {
	e := newOAuthEnv(t, withJWT(storage.ES256))
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	e.createIntegration(map[string]any{"name": "victim", "scopes": []string{"read", "admin"}})
	brief := e.createIntegration(map[string]any{"name": "brief", "token_lifetime_seconds": 60})

	// A second published key: the one that signed a still-live token
	// before a rotation.
	oldTok := e.token(job, nil)
	oldKid := jwtHeader(t, oldTok)["kid"].(string)
	e.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
	tok := e.token(job, nil)
	briefTok := e.token(brief, nil)

	parts := strings.Split(tok, ".")
	header, payload, sig := decodeSegment(t, parts[0]), decodeSegment(t, parts[1]), parts[2]
	kid := header["kid"].(string)
	if kid == oldKid {
		t.Fatalf("the rotation did not change the signing key: kid %s", kid)
	}
	set, _, _ := e.jwks()
	if got, want := kids(set), kids(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{KeyID: kid}, {KeyID: oldKid}}}); !slices.Equal(got, want) {
		t.Fatalf("JWKS kids = %v, want %v", got, want)
	}

	with := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{}
		for key, val := range m {
			out[key] = val
		}
		out[k] = v
		return out
	}
	foreign := func(t *testing.T, kid string) string {
		t.Helper()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
			(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
		if err != nil {
			t.Fatal(err)
		}
		out, err := jwt.Signed(signer).Claims(payload).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	foreignKid := func() string {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		tp, _ := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
		return base64.RawURLEncoding.EncodeToString(tp)
	}()
	hs256 := func(t *testing.T) string {
		t.Helper()
		// Algorithm confusion: an HMAC keyed with the published public key.
		pubJSON, err := set.Key(kid)[0].MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		input := encodeSegment(t, with(header, "alg", "HS256")) + "." + parts[1]
		m := hmac.New(sha256.New, pubJSON)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}

	tests := []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"tampered signature", func(*testing.T) string { return parts[0] + "." + parts[1] + "." + flipAt(sig, len(sig)/2) }},
		{"signature of another token", func(*testing.T) string {
			return parts[0] + "." + parts[1] + "." + strings.Split(oldTok, ".")[2]
		}},
		{"payload: other sub, same signature", func(t *testing.T) string {
			return parts[0] + "." + encodeSegment(t, with(payload, "sub", "victim")) + "." + sig
		}},
		{"payload: wider scope, same signature", func(t *testing.T) string {
			return parts[0] + "." + encodeSegment(t, with(payload, "scope", "read admin")) + "." + sig
		}},
		{"payload: later exp, same signature", func(t *testing.T) string {
			return parts[0] + "." + encodeSegment(t, with(payload, "exp", payload["exp"].(float64)+86400)) + "." + sig
		}},
		{"header: other published kid, same signature", func(t *testing.T) string {
			return encodeSegment(t, with(header, "kid", oldKid)) + "." + parts[1] + "." + sig
		}},
		{"header: unknown kid, same signature", func(t *testing.T) string {
			return encodeSegment(t, with(header, "kid", foreignKid)) + "." + parts[1] + "." + sig
		}},
		{"header: no kid, same signature", func(t *testing.T) string {
			h := with(header, "kid", nil)
			delete(h, "kid")
			return encodeSegment(t, h) + "." + parts[1] + "." + sig
		}},
		{"alg none, empty signature", func(t *testing.T) string {
			return encodeSegment(t, with(header, "alg", "none")) + "." + parts[1] + "."
		}},
		{"alg none, original signature", func(t *testing.T) string {
			return encodeSegment(t, with(header, "alg", "none")) + "." + parts[1] + "." + sig
		}},
		{"alg HS256 keyed with the public key", hs256},
		{"foreign key, the active kid", func(t *testing.T) string { return foreign(t, kid) }},
		{"foreign key, the retired kid", func(t *testing.T) string { return foreign(t, oldKid) }},
		{"foreign key, a plausible unknown kid", func(t *testing.T) string { return foreign(t, foreignKid) }},
		{"two segments", func(*testing.T) string { return parts[0] + "." + parts[1] }},
		{"four segments", func(*testing.T) string { return tok + "." + sig }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forged := tt.token(t)
			checkInactive(t, e.introspect(rs, forged))
			if _, _, _, err := verifyOffline(set, forged); err == nil {
				t.Errorf("the forged token verifies offline against the JWKS")
			}
			// Revoking a forgery succeeds (RFC 7009 §2.2) and harms nothing.
			if status, _, body := e.form("/oauth2/revoke", job, url.Values{"token": {forged}}); status != http.StatusOK {
				t.Errorf("revoke forged token: status %d, want 200: %v", status, body)
			}
		})
	}
	for name, good := range map[string]string{"token": tok, "token signed before the rotation": oldTok} {
		if got := e.introspect(rs, good)["active"]; got != true {
			t.Errorf("untouched %s: active = %v, want true", name, got)
		}
	}

	t.Run("expired", func(t *testing.T) {
		_, c, _ := e.mustVerify(briefTok)
		e.clock.Advance(61 * time.Second)
		checkInactive(t, e.introspect(rs, briefTok))
		if !c.Expiry.Time().Before(e.clock.Now()) {
			t.Errorf("exp %v is not before now %v", c.Expiry.Time(), e.clock.Now())
		}
	})
}

// TestJWTSigningKeyRotation follows a rotation from the admin's request to
// the janitor dropping the retired key.
func TestJWTSigningKeyRotation(t *testing.T) {
	e := newOAuthEnv(t, withJWT(storage.ES256))
	e.alignClock()
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})

	issued := e.store.Now()
	oldTok := e.token(job, nil)
	_, oldClaims, _ := e.mustVerify(oldTok)
	oldKid := jwtHeader(t, oldTok)["kid"].(string)
	oldExp := issued.Add(10 * time.Hour)
	if got := oldClaims.Expiry.Time(); !got.Equal(oldExp) {
		t.Fatalf("old token exp = %v, want %v", got, oldExp)
	}

	e.clock.Advance(time.Hour)
	if status, b := e.adminCall("POST", "/admin/signing-keys/rotate", "", nil); status != http.StatusUnauthorized {
		t.Errorf("rotate without an admin token: status %d, want 401: %s", status, b)
	}
	if keys := e.signingKeys(); len(keys) != 1 || keys[oldKid] == nil {
		t.Fatalf("signing keys after a refused rotation = %v, want only %s", keys, oldKid)
	}
	rotatedAt := e.store.Now()
	rotated := e.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
	newKid, _ := rotated["kid"].(string)
	if newKid == "" || newKid == oldKid {
		t.Fatalf("rotate: kid = %v, want a new kid (old %s)", rotated["kid"], oldKid)
	}
	if got := rotated["status"]; got != "active" {
		t.Errorf("rotate: status = %v, want active", got)
	}
	newTok := e.token(job, nil)

	t.Run("new token has the new kid", func(t *testing.T) {
		if got := jwtHeader(t, newTok)["kid"]; got != newKid {
			t.Errorf("kid = %v, want %s", got, newKid)
		}
	})
	t.Run("both verify against the JWKS after rotation", func(t *testing.T) {
		set, raw, _ := e.jwks()
		if got, want := kids(set), sortedStrings(oldKid, newKid); !slices.Equal(got, want) {
			t.Fatalf("JWKS kids = %v, want %v", got, want)
		}
		for _, m := range raw {
			checkPublicJWK(t, "JWKS key "+fmt.Sprint(m["kid"]), m, storage.ES256)
		}
		for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
			if _, _, _, err := verifyOffline(set, tok); err != nil {
				t.Errorf("%s token: %v", name, err)
			}
			if got := e.introspect(rs, tok)["active"]; got != true {
				t.Errorf("%s token: active = %v, want true", name, got)
			}
		}
	})
	t.Run("admin list", func(t *testing.T) {
		keys := e.signingKeys()
		if len(keys) != 2 {
			t.Fatalf("GET /admin/signing-keys: %d keys, want 2: %v", len(keys), keys)
		}
		for kid, k := range keys {
			requireKeys(t, "signing key "+kid, k, "kid", "algorithm", "status", "created_at", "retired_at", "published_until", "public_key")
			pub, _ := k["public_key"].(map[string]any)
			checkPublicJWK(t, "public_key of "+kid, pub, storage.ES256)
		}
		active, old := keys[newKid], keys[oldKid]
		if active["status"] != "active" || active["retired_at"] != nil || active["published_until"] != nil {
			t.Errorf("new key = %v, want status active, retired_at and published_until null", active)
		}
		if old["status"] != "retired" {
			t.Errorf("old key status = %v, want retired", old["status"])
		}
		if got := parseRFC3339UTC(t, "retired_at", old["retired_at"]); !got.Equal(rotatedAt) {
			t.Errorf("old key retired_at = %v, want %v", got, rotatedAt)
		}
		if got := parseRFC3339UTC(t, "published_until", old["published_until"]); !got.Equal(oldExp) {
			t.Errorf("old key published_until = %v, want the old token's exp %v", got, oldExp)
		}
	})
	t.Run("audit", func(t *testing.T) {
		events, _ := e.listAll(testBootstrap, "/admin/audit")
		var found map[string]any
		for _, ev := range events {
			if ev["action"] == "signing_key.rotate" && ev["object"] == newKid {
				found = ev
			}
		}
		if found == nil {
			t.Fatalf("no signing_key.rotate event for %s in %v", newKid, events)
		}
		if found["actor_type"] != "admin" || found["actor"] != "bootstrap" {
			t.Errorf("rotation by actor %v/%v, want admin/bootstrap", found["actor_type"], found["actor"])
		}
		if details, _ := found["details"].(map[string]any); details["retired_kid"] != oldKid {
			t.Errorf("rotation details = %v, want retired_kid %s", found["details"], oldKid)
		}
	})

	// The janitor runs while the old token lives: the old key stays.
	e.clock.Advance(oldExp.Sub(e.clock.Now()) - time.Second)
	if _, err := e.store.Purge(context.Background(), 1000); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	t.Run("one second before the old token expires", func(t *testing.T) {
		set, _, _ := e.jwks()
		if _, _, _, err := verifyOffline(set, oldTok); err != nil {
			t.Errorf("old token: %v", err)
		}
		if got := e.introspect(rs, oldTok)["active"]; got != true {
			t.Errorf("old token: active = %v, want true", got)
		}
		if _, ok := e.signingKeys()[oldKid]; !ok {
			t.Errorf("old key left the admin list while its token lives")
		}
	})

	e.clock.Advance(10*time.Minute + 2*time.Second)
	if _, err := e.store.Purge(context.Background(), 1000); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	t.Run("after the old token expired and the janitor ran", func(t *testing.T) {
		set, _, _ := e.jwks()
		if got := kids(set); !slices.Equal(got, []string{newKid}) {
			t.Errorf("JWKS kids = %v, want only the active %s", got, newKid)
		}
		keys := e.signingKeys()
		if _, ok := keys[oldKid]; ok || len(keys) != 1 {
			t.Errorf("admin list = %v, want only %s", keys, newKid)
		}
		checkInactive(t, e.introspect(rs, oldTok))
		if got := e.introspect(rs, e.token(job, nil))["active"]; got != true {
			t.Errorf("fresh token: active = %v, want true", got)
		}
	})
}

func sortedStrings(s ...string) []string {
	slices.Sort(s)
	return s
}

// secretA and secretB are distinct system secrets for tests that restart servers.
var (
	secretA = []byte("system-secret-A-0123456789abcdef0123")
	secretB = []byte("system-secret-B-0123456789abcdef0123")
)

// TestJWTRestart checks that signing keys live in the database: a restarted
// server publishes the same key and honours tokens the first one signed,
// and a changed signing_algorithm rotates without dropping the old key.
func TestJWTRestart(t *testing.T) {
	clk := newClock()
	path := newDatabase(t)
	secrets := [][]byte{secretA}

	first := startEnv(t, path, clk, secrets, withJWT(storage.ES256))
	rs := first.resourceServer()
	job := first.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	tok := first.token(job, nil)
	firstSet, _, _ := first.jwks()
	if len(firstSet.Keys) != 1 {
		t.Fatalf("first JWKS kids = %v, want one", kids(firstSet))
	}
	kid := firstSet.Keys[0].KeyID
	first.srv.Close()

	second := startEnv(t, path, clk, secrets, withJWT(storage.ES256))
	t.Run("same algorithm", func(t *testing.T) {
		set, _, _ := second.jwks()
		if got := kids(set); !slices.Equal(got, []string{kid}) {
			t.Errorf("JWKS kids after restart = %v, want %s", got, kid)
		}
		if _, _, _, err := verifyOffline(set, tok); err != nil {
			t.Errorf("old token against the new JWKS: %v", err)
		}
		if got := second.introspect(rs, tok)["active"]; got != true {
			t.Errorf("old token: active = %v, want true", got)
		}
		if got := jwtHeader(t, second.token(job, nil))["kid"]; got != kid {
			t.Errorf("new token kid = %v, want the same key %s", got, kid)
		}
	})
	second.srv.Close()

	third := startEnv(t, path, clk, secrets, withJWT(storage.EdDSA))
	var edKid string
	t.Run("algorithm changed", func(t *testing.T) {
		set, raw, _ := third.jwks()
		if len(set.Keys) != 2 {
			t.Fatalf("JWKS kids = %v, want the old ES256 key and a new EdDSA key", kids(set))
		}
		for _, m := range raw {
			alg := storage.ES256
			if m["kid"] != kid {
				alg = storage.EdDSA
				edKid, _ = m["kid"].(string)
			}
			checkPublicJWK(t, "JWKS key "+fmt.Sprint(m["kid"]), m, alg)
		}
		newTok := third.token(job, nil)
		h, _, _, err := verifyOffline(set, newTok)
		if err != nil {
			t.Fatalf("new token: %v", err)
		}
		if h.KeyID != edKid || h.Algorithm != storage.EdDSA {
			t.Errorf("new token kid, alg = %s, %s; want %s, EdDSA", h.KeyID, h.Algorithm, edKid)
		}
		if _, _, _, err := verifyOffline(set, tok); err != nil {
			t.Errorf("old ES256 token: %v", err)
		}
		for name, tk := range map[string]string{"old": tok, "new": newTok} {
			if got := third.introspect(rs, tk)["active"]; got != true {
				t.Errorf("%s token: active = %v, want true", name, got)
			}
		}
		keys := third.signingKeys()
		if keys[edKid]["status"] != "active" || keys[kid]["status"] != "retired" {
			t.Errorf("admin list = %v, want %s active and %s retired", keys, edKid, kid)
		}
	})
	third.srv.Close()

	fourth := startEnv(t, path, clk, secrets, withJWT(storage.EdDSA))
	t.Run("algorithm unchanged again", func(t *testing.T) {
		if got := jwtHeader(t, fourth.token(job, nil))["kid"]; got != edKid {
			t.Errorf("kid after another restart = %v, want %s (no rotation)", got, edKid)
		}
	})
}

// TestSecretRotation checks that an operator can replace the system
// secret: with [new, old] every credential, opaque token and signing key
// made under the old one keeps working, and afterwards [new] alone starts.
func TestSecretRotation(t *testing.T) {
	clk := newClock()
	path := newDatabase(t)

	before := startEnv(t, path, clk, [][]byte{secretA})
	rs := before.resourceServer()
	job := before.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	opaque := before.token(job, nil)
	adminTok := before.mintAdminToken(before.newAdmin("ops", storage.RoleOperator), map[string]any{"description": "ops"})["token"].(string)
	setBefore, _, _ := before.jwks()
	kidBefore := kids(setBefore)
	before.srv.Close()

	t.Run("only the new secret, before any rotation: start-up fails", func(t *testing.T) {
		if _, err := tryStartEnv(t, path, clk, [][]byte{secretB}); err == nil {
			t.Errorf("server.New with a secret that cannot decrypt the signing key = nil error")
		}
	})

	rotated := startEnv(t, path, clk, [][]byte{secretB, secretA})
	var fresh string
	t.Run("new and old secrets", func(t *testing.T) {
		if !strings.HasPrefix(opaque, credential.AccessTokenPrefix) {
			t.Fatalf("token %q is not opaque", opaque)
		}
		if got := rotated.introspect(rs, opaque)["active"]; got != true {
			t.Errorf("opaque token from the old secret: active = %v, want true", got)
		}
		fresh = rotated.token(job, nil)
		if got := rotated.introspect(rs, fresh)["active"]; got != true {
			t.Errorf("new token: active = %v, want true", got)
		}
		rotated.adminAs(adminTok, "GET", "/admin/integrations", nil, http.StatusOK)
		set, _, _ := rotated.jwks()
		if got := kids(set); !slices.Equal(got, kidBefore) {
			t.Errorf("JWKS kids = %v, want the same key %v", got, kidBefore)
		}
		if status, _, body := rotated.form("/oauth2/revoke", job, url.Values{"token": {opaque}}); status != http.StatusOK {
			t.Errorf("revoke old token: status %d: %v", status, body)
		}
		checkInactive(t, rotated.introspect(rs, opaque))
	})
	rotated.srv.Close()

	t.Run("only the new secret, after the rotation", func(t *testing.T) {
		after, err := tryStartEnv(t, path, clk, [][]byte{secretB})
		if err != nil {
			t.Fatalf("server.New with the new secret alone after a [new, old] start: %v", err)
		}
		set, _, _ := after.jwks()
		if got := kids(set); !slices.Equal(got, kidBefore) {
			t.Errorf("JWKS kids = %v, want the same key %v", got, kidBefore)
		}
		// The old resource server's secret was hashed under the retired
		// secret; one made now introspects the token issued under [new, old].
		rs2 := after.createIntegration(map[string]any{"name": "rs2", "can_introspect": true})
		if got := after.introspect(rs2, fresh)["active"]; got != true {
			t.Errorf("token issued under [new, old]: active = %v, want true", got)
		}
	})
}

// TestJWTSecretRotation checks that JWTs signed before a system secret
// rotation stay valid and the same key keeps signing.
func TestJWTSecretRotation(t *testing.T) {
	clk := newClock()
	path := newDatabase(t)
	before := startEnv(t, path, clk, [][]byte{secretA}, withJWT(storage.EdDSA))
	rs := before.resourceServer()
	job := before.createIntegration(map[string]any{"name": "job"})
	tok := before.token(job, nil)
	kid := jwtHeader(t, tok)["kid"]
	before.srv.Close()

	after := startEnv(t, path, clk, [][]byte{secretB, secretA}, withJWT(storage.EdDSA))
	if got := after.introspect(rs, tok)["active"]; got != true {
		t.Errorf("JWT from before the secret rotation: active = %v, want true", got)
	}
	if got := jwtHeader(t, after.token(job, nil))["kid"]; got != kid {
		t.Errorf("kid after the secret rotation = %v, want %v", got, kid)
	}
}

// TestDefaultTokenFormat checks that without token_format the server still
// issues opaque lk_at_ tokens, and that switching to JWTs later strands
// none of them.
func TestDefaultTokenFormat(t *testing.T) {
	clk := newClock()
	path := newDatabase(t)
	e := startEnv(t, path, clk, [][]byte{secretA})
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	resp := e.tokenResponse(job, nil)
	tok, _ := resp["access_token"].(string)
	if !regexp.MustCompile(`^lk_at_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`).MatchString(tok) {
		t.Errorf("access_token = %q, want an opaque lk_at_ token", tok)
	}
	if got, want := resp["expires_in"], float64(defaultLifetimeSeconds); got != want {
		t.Errorf("expires_in = %v, want %v", got, want)
	}
	if got := e.introspect(rs, tok)["active"]; got != true {
		t.Errorf("opaque token: active = %v, want true", got)
	}
	// The key set is served whatever the format.
	if set, _, _ := e.jwks(); len(set.Keys) != 1 {
		t.Errorf("JWKS kids = %v, want one key", kids(set))
	}
	e.srv.Close()

	j := startEnv(t, path, clk, [][]byte{secretA}, withJWT(""))
	if got := j.introspect(rs, tok)["active"]; got != true {
		t.Errorf("opaque token after switching to jwt: active = %v, want true", got)
	}
	jwtTok := j.token(job, nil)
	if got := jwtHeader(t, jwtTok)["alg"]; got != storage.ES256 {
		t.Errorf("default signing algorithm = %v, want ES256", got)
	}
	j.srv.Close()

	back := startEnv(t, path, clk, [][]byte{secretA})
	if got := back.introspect(rs, jwtTok)["active"]; got != true {
		t.Errorf("JWT after switching back to opaque: active = %v, want true", got)
	}
	if got := back.token(job, nil); !strings.HasPrefix(got, credential.AccessTokenPrefix) {
		t.Errorf("token after switching back = %q, want opaque", got)
	}
}

// TestJWTRotationStaleReplica checks the promise in keyringTTL's doc: a
// replica that has not yet seen a rotation signs with the old key "which
// stays published". Here replica a rotates and serves the JWKS while
// replica b, within its key cache lifetime, still signs with the old key.
func TestJWTRotationStaleReplica(t *testing.T) {
	clk := newClock()
	path := newDatabase(t)
	a := startEnv(t, path, clk, [][]byte{secretA}, withJWT(""))
	b := startEnv(t, path, clk, [][]byte{secretA}, withJWT(""))
	job := a.createIntegration(map[string]any{"name": "job"})
	rs := a.resourceServer()
	before, _, _ := a.jwks()

	a.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
	tok := b.token(job, nil)
	if got, want := jwtHeader(t, tok)["kid"], before.Keys[0].KeyID; got != want {
		t.Skipf("replica b already signs with the new key %v; nothing stale to check", got)
	}
	set, _, _ := a.jwks()
	if _, _, _, err := verifyOffline(set, tok); err != nil {
		// PublishedSigningKeys drops a retired key with no live token at
		// once, though Purge keeps it signingKeyGrace for stale replicas.
		t.Errorf("token signed by the stale replica against the rotating replica's JWKS (kids %v): %v", kids(set), err)
	}
	if got := a.introspect(rs, tok)["active"]; got != true {
		t.Errorf("token signed by the stale replica: active = %v, want true", got)
	}
}

// TestJWTNotRecoverableFromDatabase checks that the database holds no JWT
// signature: every claim can be derived from a token row, so a stored
// signature would let a dump rebuild live tokens.
func TestJWTNotRecoverableFromDatabase(t *testing.T) {
	e := newEnv(t, withJWT("ES256"))
	kp := e.createIntegration(map[string]any{"name": "job"})
	var sigs []string
	for range 5 {
		tok := e.token(kp, nil)
		sigs = append(sigs, tok[strings.LastIndexByte(tok, '.')+1:])
	}
	var raw []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.dbPath + suffix)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	for i, sig := range sigs {
		if bytes.Contains(raw, []byte(sig)) {
			t.Errorf("token %d: the database holds its signature segment", i)
		}
	}
}
