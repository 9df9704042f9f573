package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/server"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// signer is a client's own key pair, for private_key_jwt.
type signer struct {
	alg string
	kid string
	key crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// newSigner makes a key for alg; RSA keys are made once per test binary,
// being slow to make.
func newSigner(t testing.TB, alg, kid string) signer {
	t.Helper()
	var k crypto.Signer
	switch alg {
	case "ES256":
		k, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, _ = ed25519.GenerateKey(rand.Reader)
	case "RS256", "PS256":
		rsaOnce.Do(func() { rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048) })
		k = rsaKey
	default:
		t.Fatalf("no key for %s", alg)
	}
	return signer{alg: alg, kid: kid, key: k}
}

// jwk is the public JWK of s.
func (s signer) jwk() map[string]any {
	b, _ := json.Marshal(jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Use: "sig"})
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// jwksOf is the JWK Set of the signers' public keys.
func jwksOf(ss ...signer) map[string]any {
	keys := make([]any, len(ss))
	for i, s := range ss {
		keys[i] = s.jwk()
	}
	return map[string]any{"keys": keys}
}

// sign signs claims with s, with extra header members.
func (s signer) sign(t testing.TB, claims map[string]any, header map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if s.kid != "" {
		opts.WithHeader("kid", s.kid)
	}
	for k, v := range header {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(s.alg), Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claimsFor are the claims of a valid assertion by clientID at e's token
// endpoint, on e's clock.
func (e *env) claimsFor(clientID string) map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss": clientID, "sub": clientID, "aud": "http://127.0.0.1/oauth2/token",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": newJTI(),
	}
}

var jtiSeq struct {
	sync.Mutex
	n int
}

func newJTI() string {
	jtiSeq.Lock()
	defer jtiSeq.Unlock()
	jtiSeq.n++
	return "jti-" + strconv.Itoa(jtiSeq.n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// assertionCall posts form, with the assertion as client authentication,
// to path.
func (e *env) assertionCall(path, assertion string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	f := url.Values{"client_assertion_type": {assertionType}, "client_assertion": {assertion}}
	for k, v := range form {
		f[k] = v
	}
	status, _, out := e.form(path, keyPair{}, f)
	return status, out
}

func (e *env) assertionToken(assertion string) (int, map[string]any) {
	e.t.Helper()
	return e.assertionCall("/oauth2/token", assertion, url.Values{"grant_type": {"client_credentials"}})
}

// keyless creates a private_key_jwt integration with the signers' keys.
func (e *env) keyless(name string, ss ...signer) keyPair {
	e.t.Helper()
	return e.createIntegration(map[string]any{"name": name, "token_endpoint_auth_method": "private_key_jwt",
		"jwks": jwksOf(ss...), "can_introspect": true})
}

// authFailures is the sum of the client authentication failures counted.
func authFailures(t *testing.T, e *env) int {
	t.Helper()
	n := 0
	for k, v := range scrape(t, e.srv.URL) {
		if strings.HasPrefix(k, "latchkey_client_auth_failures_total") {
			i, _ := strconv.Atoi(v)
			n += i
		}
	}
	return n
}

// TestPrivateKeyJWTAlgorithms gets a token with an assertion signed with
// each accepted algorithm, and checks it by introspection.
func TestPrivateKeyJWTAlgorithms(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	for _, alg := range []string{"ES256", "EdDSA", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, alg, "k-"+alg)
			kp := e.keyless("pk-"+strings.ToLower(alg), s)
			status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil))
			if status != http.StatusOK || out["access_token"] == nil || out["token_type"] != "bearer" {
				t.Fatalf("token with %s: %d %v", alg, status, out)
			}
			// The same integration introspects its own token with another
			// assertion whose aud is the introspection endpoint.
			c := e.claimsFor(kp.ID)
			c["aud"] = []string{"https://elsewhere.example", "http://127.0.0.1/oauth2/introspect"}
			status, info := e.assertionCall("/oauth2/introspect", s.sign(t, c, nil), url.Values{"token": {out["access_token"].(string)}})
			if status != http.StatusOK || info["active"] != true || info["client_id"] != kp.ID {
				t.Fatalf("introspect with %s: %d %v", alg, status, info)
			}
		})
	}
}

// TestPrivateKeyJWTEd25519Alg: RFC 9864's fully-specified alg Ed25519,
// which oauth4webapi sends for Ed25519 keys, is EdDSA with an Ed25519 key;
// it fits no other key type.
func TestPrivateKeyJWTEd25519Alg(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	ed := newSigner(t, "EdDSA", "ed")
	ec := newSigner(t, "ES256", "ec")
	kp := e.keyless("fully-specified", ed, ec)
	sign := func(kid string, key ed25519.PrivateKey) string {
		b64 := base64.RawURLEncoding.EncodeToString
		h, _ := json.Marshal(map[string]string{"alg": "Ed25519", "kid": kid})
		c, _ := json.Marshal(e.claimsFor(kp.ID))
		input := b64(h) + "." + b64(c)
		return input + "." + b64(ed25519.Sign(key, []byte(input)))
	}
	if status, out := e.assertionToken(sign("ed", ed.key.(ed25519.PrivateKey))); status != http.StatusOK {
		t.Fatalf("alg Ed25519: %d %v", status, out)
	}
	if status, out := e.assertionToken(sign("", ed.key.(ed25519.PrivateKey))); status != http.StatusOK {
		t.Fatalf("alg Ed25519 without kid: %d %v", status, out)
	}
	if status, out := e.assertionToken(sign("ec", ed.key.(ed25519.PrivateKey))); status != http.StatusUnauthorized {
		t.Errorf("alg Ed25519 naming an EC key: %d %v", status, out)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if status, out := e.assertionToken(sign("ed", other)); status != http.StatusUnauthorized {
		t.Errorf("alg Ed25519 with another key: %d %v", status, out)
	}
}

// TestPrivateKeyJWTChecks sends an assertion failing each check of RFC
// 7523 §3 (and latchkey's bounds) to the token endpoint: each is refused
// with the RFC 6749 §5.2 error naming the check, no token is issued, and
// each counts as a failed client authentication.
func TestPrivateKeyJWTChecks(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	good := newSigner(t, "ES256", "good")
	other := newSigner(t, "ES256", "other")
	second := newSigner(t, "EdDSA", "second")
	kp := e.keyless("signer", good, second)
	secretKP := e.createIntegration(map[string]any{"name": "secretive"})

	with := func(change func(map[string]any)) map[string]any {
		c := e.claimsFor(kp.ID)
		change(c)
		return c
	}
	now := e.clock.Now()
	replayed := good.sign(t, e.claimsFor(kp.ID), nil)
	if status, out := e.assertionToken(replayed); status != http.StatusOK {
		t.Fatalf("first use: %d %v", status, out)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	claimsJSON, _ := json.Marshal(e.claimsFor(kp.ID))
	hs := signer{alg: "HS256"}
	hsSigned := func(key []byte) string {
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, nil)
		obj, _ := sig.Sign(claimsJSON)
		out, _ := obj.CompactSerialize()
		return out
	}
	_ = hs
	pubJWK, _ := json.Marshal(good.jwk())
	var pubJWKMap map[string]any
	_ = json.Unmarshal(pubJWK, &pubJWKMap)
	privJWK := jose.JSONWebKey{Key: other.key, KeyID: "good"}
	otherPub := jose.JSONWebKey{Key: other.key.Public()}

	for _, tc := range []struct {
		name      string
		assertion string
		form      url.Values
		status    int
		code      string
		want      string // in error_description
	}{
		{name: "wrong aud", assertion: good.sign(t, with(func(c map[string]any) { c["aud"] = "https://other.example/oauth2/token" }), nil), want: "aud"},
		{name: "aud of another endpoint", assertion: good.sign(t, with(func(c map[string]any) { c["aud"] = "http://127.0.0.1/oauth2/revoke" }), nil), want: "aud"},
		{name: "no aud", assertion: good.sign(t, with(func(c map[string]any) { delete(c, "aud") }), nil), want: "aud"},
		{name: "wrong iss", assertion: good.sign(t, with(func(c map[string]any) { c["iss"] = secretKP.ID }), nil), want: "iss and sub differ"},
		{name: "sub is not iss", assertion: good.sign(t, with(func(c map[string]any) { c["sub"] = "lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa" }), nil), want: "iss and sub differ"},
		{name: "no iss", assertion: good.sign(t, with(func(c map[string]any) { delete(c, "iss") }), nil), want: "iss and sub are required"},
		{name: "client_id differs", assertion: good.sign(t, e.claimsFor(kp.ID), nil), form: url.Values{"client_id": {secretKP.ID}}, want: "client_id"},
		{name: "unknown client", assertion: good.sign(t, e.claimsFor("lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa"), nil), want: "no working key pair"},
		// Bad claims are told the same for a client ID that exists and one
		// that does not.
		{name: "expired, unknown client", assertion: good.sign(t, func() map[string]any {
			c := e.claimsFor("lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa")
			c["exp"] = now.Add(-time.Minute).Unix()
			return c
		}(), nil), want: "expired"},
		{name: "expired", assertion: good.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), nil), want: "expired"},
		{name: "exp too far ahead", assertion: good.sign(t, with(func(c map[string]any) { c["exp"] = now.Add(10 * time.Minute).Unix() }), nil), want: "minutes ahead"},
		{name: "no exp", assertion: good.sign(t, with(func(c map[string]any) { delete(c, "exp") }), nil), want: "exp is required"},
		{name: "exp not a number", assertion: good.sign(t, with(func(c map[string]any) { c["exp"] = "soon" }), nil), want: "claims"},
		{name: "nbf in the future", assertion: good.sign(t, with(func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }), nil), want: "nbf is in the future"},
		{name: "iat in the future", assertion: good.sign(t, with(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }), nil), want: "iat is in the future"},
		{name: "no jti", assertion: good.sign(t, with(func(c map[string]any) { delete(c, "jti") }), nil), want: "jti is required"},
		{name: "jti too long", assertion: good.sign(t, with(func(c map[string]any) { c["jti"] = strings.Repeat("j", 257) }), nil), want: "jti is required"},
		{name: "replayed jti", assertion: replayed, want: "used already"},
		{name: "alg none", assertion: b64(`{"alg":"none"}`) + "." + b64(string(claimsJSON)) + ".", want: "compact serialization"},
		{name: "alg none with a signature", assertion: b64(`{"alg":"none"}`) + "." + b64(string(claimsJSON)) + ".c2ln", want: "alg 'none'"},
		{name: "HS256 with the public key as secret", assertion: hsSigned(pubJWK), want: "alg 'HS256'"},
		{name: "HS256 with the client ID", assertion: hsSigned([]byte(kp.ID + kp.ID)), want: "alg 'HS256'"},
		{name: "key not in the set", assertion: signer{alg: "ES256", key: other.key}.sign(t, e.claimsFor(kp.ID), nil), want: "does not verify"},
		{name: "kid of another key", assertion: signer{alg: "ES256", kid: "good", key: other.key}.sign(t, e.claimsFor(kp.ID), nil), want: "does not verify"},
		{name: "kid unknown", assertion: signer{alg: "ES256", kid: "nope", key: good.key}.sign(t, e.claimsFor(kp.ID), nil), want: "kid 'nope'"},
		{name: "kid of a key of another alg", assertion: signer{alg: "ES256", kid: "second", key: good.key}.sign(t, e.claimsFor(kp.ID), nil), want: "kid 'second'"},
		{name: "private key in the jwk header", assertion: signer{alg: "ES256", key: other.key}.sign(t, e.claimsFor(kp.ID), map[string]any{"jwk": privJWK}), want: "not a well-formed JWS"},
		{name: "public key in the jwk header ignored", assertion: signer{alg: "ES256", key: other.key}.sign(t, e.claimsFor(kp.ID), map[string]any{"jwk": otherPub}), want: "does not verify"},
		{name: "signature of another payload", assertion: func() string {
			a := strings.Split(good.sign(t, e.claimsFor(kp.ID), nil), ".")
			return a[0] + "." + b64(string(claimsJSON)) + "." + a[2]
		}(), want: "does not verify"},
		{name: "not a JWS", assertion: "hello", want: "compact serialization"},
		{name: "JSON serialization", assertion: `{"payload":"e30","signatures":[]}`, want: "compact serialization"},
		{name: "oversize", assertion: strings.Repeat("a", 9000), want: "larger than 8192"},
		{name: "assertion for a secret integration", assertion: good.sign(t, e.claimsFor(secretKP.ID), nil), want: "authenticates with its client secret"},
		{name: "other assertion type", assertion: good.sign(t, e.claimsFor(kp.ID), nil), form: url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}}, want: "client_assertion_type must be"},
		{name: "assertion and secret", assertion: good.sign(t, e.claimsFor(kp.ID), nil), form: url.Values{"client_secret": {secretKP.Secret}}, want: "one client authentication method"},
		{name: "type without assertion", assertion: "", status: http.StatusBadRequest, code: "invalid_request", want: "client_assertion is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := authFailures(t, e)
			form := url.Values{"grant_type": {"client_credentials"}}
			for k, v := range tc.form {
				form[k] = v
			}
			status, out := e.assertionCall("/oauth2/token", tc.assertion, form)
			wantStatus, wantCode := tc.status, tc.code
			if wantStatus == 0 {
				wantStatus, wantCode = http.StatusUnauthorized, "invalid_client"
			}
			desc, _ := out["error_description"].(string)
			if status != wantStatus || out["error"] != wantCode || !strings.Contains(desc, tc.want) || out["access_token"] != nil {
				t.Fatalf("got %d %v, want %d %s naming %q", status, out, wantStatus, wantCode, tc.want)
			}
			counted := authFailures(t, e) - before
			if wantStatus == http.StatusUnauthorized && counted != 1 {
				t.Errorf("failures counted: %d, want 1", counted)
			}
		})
	}

	// A secret integration's secret works still; a keyless one's pair has
	// no secret to try, and any secret is refused with a hint.
	e.token(secretKP, nil)
	before := authFailures(t, e)
	status, _, out := e.form("/oauth2/token", keyPair{ID: kp.ID, Secret: secretKP.Secret}, url.Values{"grant_type": {"client_credentials"}})
	if desc, _ := out["error_description"].(string); status != http.StatusUnauthorized || !strings.Contains(desc, "private_key_jwt") {
		t.Errorf("secret for a keyless integration: %d %v", status, out)
	}
	if authFailures(t, e)-before != 1 {
		t.Errorf("a secret for a keyless integration was not counted as a failure")
	}
	m := scrape(t, e.srv.URL)
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="replayed_assertion"}`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="wrong_method"}`, "2")
	for _, r := range []string{"bad_assertion", "malformed_assertion", "unknown_client"} {
		if _, ok := m[`latchkey_client_auth_failures_total{reason="`+r+`"}`]; !ok {
			t.Errorf("no failure counted with reason %s", r)
		}
	}
	// A fresh assertion by the same client still works after all that.
	if status, out := e.assertionToken(good.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
		t.Errorf("valid assertion after the failures: %d %v", status, out)
	}
}

// TestPrivateKeyJWTEndpoints authenticates at introspection and
// revocation with assertions: revocation of the integration's own token,
// and refusals there too.
func TestPrivateKeyJWTEndpoints(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	s := newSigner(t, "EdDSA", "")
	kp := e.keyless("rs", s)
	_, tok := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil))
	token := tok["access_token"].(string)

	// The issuer is an accepted aud at every endpoint.
	c := e.claimsFor(kp.ID)
	c["aud"] = "http://127.0.0.1"
	if status, info := e.assertionCall("/oauth2/introspect", s.sign(t, c, nil), url.Values{"token": {token}}); status != http.StatusOK || info["active"] != true {
		t.Fatalf("introspect: %d %v", status, info)
	}
	bad := e.claimsFor(kp.ID)
	bad["exp"] = e.clock.Now().Add(-time.Hour).Unix()
	if status, out := e.assertionCall("/oauth2/introspect", s.sign(t, bad, nil), url.Values{"token": {token}}); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("introspect with an expired assertion: %d %v", status, out)
	}
	if status, out := e.assertionCall("/oauth2/revoke", s.sign(t, bad, nil), url.Values{"token": {token}}); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("revoke with an expired assertion: %d %v", status, out)
	}
	rc := e.claimsFor(kp.ID)
	rc["aud"] = "http://127.0.0.1/oauth2/revoke"
	if status, out := e.assertionCall("/oauth2/revoke/", s.sign(t, rc, nil), url.Values{"token": {token}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, out)
	}
	if status, info := e.assertionCall("/oauth2/introspect", s.sign(t, e.claimsFor(kp.ID), nil), url.Values{"token": {token}}); status != http.StatusOK || info["active"] != false {
		t.Errorf("introspect after revoke: %d %v", status, info)
	}
}

// TestPrivateKeyJWTFailureLimits: failed assertions spend the failure
// limits like wrong secrets, so guessing is slowed to 429; replays from
// the address of the legitimate client never refuse its fresh assertions.
func TestPrivateKeyJWTFailureLimits(t *testing.T) {
	e := newEnv(t, func(o *server.Options) {
		o.ClientAuthLimit = server.RateLimit{PerMinute: 1, Burst: 3, MaxDelay: time.Millisecond}
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	s := newSigner(t, "ES256", "k")
	forged := signer{alg: "ES256", kid: "k", key: newSigner(t, "ES256", "").key}
	kp := e.keyless("guarded", s)
	var last int
	for range 4 {
		last, _ = e.assertionToken(forged.sign(t, e.claimsFor(kp.ID), nil))
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("fourth forged assertion: %d, want 429", last)
	}
	if status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
		t.Fatalf("right assertion after forgeries: %d %v", status, out)
	}

	other := e.keyless("shared-nat", s)
	used := s.sign(t, e.claimsFor(other.ID), nil)
	if status, _ := e.assertionToken(used); status != http.StatusOK {
		t.Fatal("first use refused")
	}
	for range 6 {
		last, _ = e.assertionToken(used)
		// The legitimate client, from the same address, between replays.
		if status, out := e.assertionToken(s.sign(t, e.claimsFor(other.ID), nil)); status != http.StatusOK {
			t.Fatalf("fresh assertion amid replays: %d %v", status, out)
		}
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("replays were never slowed: last %d", last)
	}

	// From many addresses, one try each: forged assertions for a known
	// client ID spend that client ID's bucket, as wrong secrets do; replays
	// do not, being no guesses at its key.
	from := func(addr, assertion string, clientID string) {
		f := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionType},
			"client_assertion": {assertion}, "client_id": {clientID}}
		req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", addr)
		e.do(req)
	}
	clientLimited := func() string { return scrape(t, e.srv.URL)[`latchkey_rate_limited_total{limit="client"}`] }
	third := e.keyless("many-addresses", s)
	replay := s.sign(t, e.claimsFor(third.ID), nil)
	from("192.0.2.1", replay, third.ID)
	for i := range 6 {
		from("192.0.2."+strconv.Itoa(10+i), replay, third.ID)
	}
	if got := clientLimited(); got != "0" {
		t.Errorf("replays from six addresses held by the client limit %s times, want 0", got)
	}
	// Nor do assertions refused before their client is looked up: anyone
	// can make those up, for any client ID.
	for i := range 6 {
		from("203.0.113."+strconv.Itoa(10+i), "not.an."+strconv.Itoa(i), third.ID)
	}
	if got := clientLimited(); got != "0" {
		t.Errorf("malformed assertions from six addresses held by the client limit %s times, want 0", got)
	}
	for i := range 6 {
		from("198.51.100."+strconv.Itoa(10+i), forged.sign(t, e.claimsFor(third.ID), nil), third.ID)
	}
	if got := clientLimited(); got == "0" || got == "" {
		t.Errorf("forged assertions from six addresses never held by the client limit")
	}
}

// TestPrivateKeyJWTRegenerationRace: a regeneration that commits while a
// token request with an assertion is under way makes the server
// authenticate the request again; the assertion it already spent is not
// taken for a replay then. The regeneration is made to happen at each
// reading of the clock in turn, so one of them falls between the
// authentication and the token's write.
func TestPrivateKeyJWTRegenerationRace(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	s := newSigner(t, "ES256", "k")
	for k := 1; k <= 20; k++ {
		name := "race-" + strconv.Itoa(k)
		kp := e.keyless(name, s)
		assertion := s.sign(t, e.claimsFor(kp.ID), nil)
		fired := make(chan struct{})
		var at func(n int) func()
		at = func(n int) func() {
			return func() {
				if n > 1 {
					e.clock.beforeNext(at(n - 1))
					return
				}
				e.regenerate(name, 60)
				close(fired)
			}
		}
		e.clock.beforeNext(at(k))
		status, out := e.assertionToken(assertion)
		if status != http.StatusOK {
			t.Fatalf("regeneration at clock reading %d of the request: %d %v", k, status, out)
		}
		select {
		case <-fired:
		default:
			e.clock.beforeNext(nil)
			if k == 1 {
				t.Fatal("the regeneration never ran")
			}
			return // past the request's last reading
		}
	}
}

// TestPrivateKeyJWTMigration moves a secret integration to its own keys
// without a moment in which old or new code is refused: keys registered
// while it still uses its secret, assertions and the secret both work;
// the switch then deletes the secret, and the assertions go on.
func TestPrivateKeyJWTMigration(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t, "ES256", "2026-12")
	kp := e.createIntegration(map[string]any{"name": "mover"})
	if status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusUnauthorized {
		t.Fatalf("an assertion before any key is registered: %d %v, want 401", status, out)
	}
	e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"jwks": jwksOf(s)}, http.StatusOK)
	e.token(kp, nil) // old code, still on the secret
	if status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
		t.Fatalf("new code's assertion with keys registered, before the switch: %d %v", status, out)
	}
	e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"token_endpoint_auth_method": "private_key_jwt"}, http.StatusOK)
	if status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Errorf("the secret after the switch: %d %v, want 401", status, out)
	}
	if status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
		t.Errorf("an assertion after the switch: %d %v", status, out)
	}
}

// TestPrivateKeyJWTAliasAudience: an assertion sent to an endpoint's
// trailing-slash alias may name, as aud, the URL it was sent to or the
// canonical one.
func TestPrivateKeyJWTAliasAudience(t *testing.T) {
	e := newEnv(t)
	s := newSigner(t, "ES256", "")
	kp := e.keyless("rs", s)
	for _, aud := range []string{"http://127.0.0.1/oauth2/introspect/", "http://127.0.0.1/oauth2/introspect"} {
		c := e.claimsFor(kp.ID)
		c["aud"] = aud
		if status, out := e.assertionCall("/oauth2/introspect/", s.sign(t, c, nil), url.Values{"token": {"x"}}); status != http.StatusOK {
			t.Errorf("aud %s at /oauth2/introspect/: %d %v", aud, status, out)
		}
	}
}

// TestPrivateKeyJWTIssuanceCap: an assertion refused for the issuance cap
// is given back, so the client's retry of the same request succeeds once
// the cap allows; a replayed assertion is refused before the cap, so
// replays of a captured one never use up the integration's tokens.
func TestPrivateKeyJWTIssuanceCap(t *testing.T) {
	e := capped(t)
	s := newSigner(t, "ES256", "")
	kp := e.createIntegration(map[string]any{"name": "signer", "token_endpoint_auth_method": "private_key_jwt",
		"jwks": jwksOf(s), "token_rate_per_minute": 6}) // one at once, then one every 10 s
	assertion := func() string {
		c := e.claimsFor(kp.ID)
		c["exp"] = e.clock.Now().Add(4 * time.Minute).Unix()
		return s.sign(t, c, nil)
	}
	first := assertion()
	if status, out := e.assertionToken(first); status != http.StatusOK {
		t.Fatalf("first token: %d %v", status, out)
	}
	second := assertion()
	if status, out := e.assertionToken(second); status != http.StatusTooManyRequests {
		t.Fatalf("second token at once: %d %v, want 429", status, out)
	}
	e.clock.Advance(10 * time.Second)
	if status, out := e.assertionToken(second); status != http.StatusOK {
		t.Errorf("the same request retried once the cap allows: %d %v, want 200", status, out)
	}

	e.clock.Advance(10 * time.Second)
	for range 3 {
		if status, out := e.assertionToken(first); status != http.StatusUnauthorized {
			t.Errorf("a replayed assertion: %d %v, want 401", status, out)
		}
	}
	if status, out := e.assertionToken(assertion()); status != http.StatusOK {
		t.Errorf("a fresh assertion after replays: %d %v, want 200: the replays used up the cap", status, out)
	}
}
