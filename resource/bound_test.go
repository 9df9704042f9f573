package resource_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/dpop"
	"github.com/latchkey/latchkey/resource"
)

// latchkey does not issue DPoP-bound tokens yet, so these tests sign bound
// tokens themselves, as latchkey will (RFC 9068 with cnf.jkt), and publish
// the key at a real JWKS endpoint.

// issuer is a token issuer of the test's own: a signing key and its JWKS
// over HTTP.
type issuer struct {
	URL     string
	key     *ecdsa.PrivateKey
	kid     string
	rsa     *rsa.PrivateKey // published as "r1", for RS256
	clock   *clock
	fetches atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key, kid: "k1", rsa: rsaKey, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		iss.fetches.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: "ES256", Use: "sig"},
			{Key: &rsaKey.PublicKey, KeyID: "r1", Algorithm: "RS256", Use: "sig"},
		}})
	}))
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	return iss
}

// mint signs claims over the defaults of a latchkey token, as typ at+jwt
// with the issuer's kid; a nil value in claims removes that claim.
func (iss *issuer) mint(t *testing.T, claims map[string]any) string {
	t.Helper()
	return iss.mintWith(t, iss.key, iss.kid, "at+jwt", claims)
}

func (iss *issuer) mintWith(t *testing.T, key crypto.Signer, kid, typ string, claims map[string]any) string {
	t.Helper()
	alg := jose.ES256
	if _, ok := key.(*rsa.PrivateKey); ok {
		alg = jose.PS256
	}
	return iss.mintAlg(t, alg, key, kid, typ, claims)
}

func (iss *issuer) mintAlg(t *testing.T, alg jose.SignatureAlgorithm, key crypto.Signer, kid, typ string, claims map[string]any) string {
	t.Helper()
	now := iss.clock.Now()
	c := map[string]any{
		"iss": iss.URL, "sub": "billing", "aud": []string{invoicesAudience}, "client_id": "lk_ci_test",
		"scope": invoicesRead, "jti": "t1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

func (iss *issuer) options(adjust ...func(*resource.Options)) resource.Options {
	o := resource.Options{Issuer: iss.URL, Audience: invoicesAudience, Scopes: []string{invoicesRead}, Now: iss.clock.Now}
	for _, f := range adjust {
		f(&o)
	}
	return o
}

var (
	holderOnce sync.Once
	holder     *ecdsa.PrivateKey
	thief      *ecdsa.PrivateKey
)

// holderKey is the client's DPoP key, the one tokens are bound to.
func holderKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	holderOnce.Do(func() {
		holder, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		thief, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
	return holder
}

func jkt(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	s, err := dpop.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func proofFor(t *testing.T, key *ecdsa.PrivateKey, method, u, token string) string {
	t.Helper()
	return proofAt(t, key, method, u, token, time.Now())
}

func proofAt(t *testing.T, key *ecdsa.PrivateKey, method, u, token string, at time.Time) string {
	t.Helper()
	p, err := dpop.NewProof(key, method, u, token, "", at)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBoundToken holds the middleware to RFC 9449 §7: a bound token
// passes only with the DPoP scheme and a fresh proof for this request by
// the key it is bound to, so a stolen token without the key is worthless.
func TestBoundToken(t *testing.T) {
	iss := newIssuer(t)
	holderKey(t)
	srv := api(t, iss.options())
	now := iss.clock.Now()
	bound := iss.mint(t, map[string]any{"cnf": map[string]string{"jkt": jkt(t, holder)}})
	u := srv.URL + "/v1/invoices"

	a := call(t, srv, "GET", "/v1/invoices", "DPoP "+bound, proofAt(t, holder, "GET", u, bound, now))
	if a.status != http.StatusOK || a.claims.JKT != jkt(t, holder) {
		t.Fatalf("bound token with its proof: %d %s %+v", a.status, a.challenges(), a.claims)
	}

	dpopErr := func(code string) string { return `DPoP algs="ES256 EdDSA RS256 PS256", error="` + code + `"` }
	cases := []struct {
		name, auth, proof, method, path string
		want                            string
	}{
		{name: "stolen token, the thief's own key", auth: "DPoP " + bound,
			proof: proofAt(t, thief, "GET", u, bound, now), want: dpopErr("invalid_dpop_proof")},
		{name: "stolen token, no proof", auth: "DPoP " + bound, want: dpopErr("invalid_dpop_proof")},
		{name: "stolen token as Bearer", auth: "Bearer " + bound, want: dpopErr("invalid_token")},
		{name: "stolen token and a replayed proof", auth: "DPoP " + bound,
			proof: "replay", want: dpopErr("invalid_dpop_proof")},
		{name: "proof for another URL", auth: "DPoP " + bound,
			proof: proofAt(t, holder, "GET", srv.URL+"/v1/payroll", bound, now), want: dpopErr("invalid_dpop_proof")},
		{name: "proof for another method", auth: "DPoP " + bound, method: "DELETE",
			proof: proofAt(t, holder, "GET", u, bound, now), want: dpopErr("invalid_dpop_proof")},
		{name: "proof for another token", auth: "DPoP " + bound,
			proof: proofAt(t, holder, "GET", u, "another token", now), want: dpopErr("invalid_dpop_proof")},
		{name: "stale proof", auth: "DPoP " + bound,
			proof: proofAt(t, holder, "GET", u, bound, now.Add(-dpop.DefaultMaxAge-resource.DefaultLeeway-time.Second)), want: dpopErr("invalid_dpop_proof")},
		{name: "unbound token as DPoP", auth: "DPoP " + iss.mint(t, nil), want: dpopErr("invalid_token")},
	}
	replayed := proofAt(t, holder, "GET", u, bound, now)
	if a := call(t, srv, "GET", "/v1/invoices", "DPoP "+bound, replayed); a.status != http.StatusOK {
		t.Fatalf("first use of the proof to replay: %d", a.status)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method, path, proof := tc.method, tc.path, tc.proof
			if method == "" {
				method = "GET"
			}
			if path == "" {
				path = "/v1/invoices"
			}
			if proof == "replay" {
				proof = replayed
			}
			if tc.name == "unbound token as DPoP" {
				proof = proofAt(t, holder, "GET", u, tc.auth[len("DPoP "):], now)
			}
			refused(t, tc.name, call(t, srv, method, path, tc.auth, proof), http.StatusUnauthorized, tc.want)
		})
	}
}

// TestReplayCacheFull: a full replay cache forgets its oldest proofs and
// then refuses proofs that old, so a replay never gets in, while fresh
// proofs still do.
func TestReplayCacheFull(t *testing.T) {
	iss := newIssuer(t)
	holderKey(t)
	srv := api(t, iss.options(func(o *resource.Options) { o.ReplayCacheMax = 2 }))
	bound := iss.mint(t, map[string]any{"cnf": map[string]string{"jkt": jkt(t, holder)}})
	u := srv.URL + "/"
	now := iss.clock.Now()
	first := proofAt(t, holder, "GET", u, bound, now.Add(-3*time.Second))
	for i, p := range []string{
		first,
		proofAt(t, holder, "GET", u, bound, now.Add(-2*time.Second)),
		proofAt(t, holder, "GET", u, bound, now.Add(-time.Second)),
	} {
		if a := call(t, srv, "GET", "/", "DPoP "+bound, p); a.status != http.StatusOK {
			t.Fatalf("proof %d: %d %s", i, a.status, a.challenges())
		}
	}
	refused(t, "replay of a forgotten proof", call(t, srv, "GET", "/", "DPoP "+bound, first),
		http.StatusUnauthorized, `error="invalid_dpop_proof"`)
	if a := call(t, srv, "GET", "/", "DPoP "+bound, proofAt(t, holder, "GET", u, bound, now)); a.status != http.StatusOK {
		t.Errorf("fresh proof: %d %s", a.status, a.challenges())
	}
}

// TestJWTChecks: each RFC 9068 §4 check on a JWT of the test issuer.
func TestJWTChecks(t *testing.T) {
	iss := newIssuer(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := api(t, iss.options())
	now := iss.clock.Now()
	cases := []struct {
		name  string
		token string
		want  string
	}{
		{"another issuer", iss.mint(t, map[string]any{"iss": "https://elsewhere.example"}), "issuer"},
		{"expired", iss.mint(t, map[string]any{"exp": now.Add(-time.Minute).Unix()}), "expired"},
		{"no exp", iss.mint(t, map[string]any{"exp": nil}), "no exp"},
		{"iat in the future", iss.mint(t, map[string]any{"iat": now.Add(time.Hour).Unix()}), "future"},
		{"no iat", iss.mint(t, map[string]any{"iat": nil}), "no iat"},
		{"not valid yet", iss.mint(t, map[string]any{"nbf": now.Add(time.Hour).Unix()}), "not valid yet"},
		{"wrong typ", iss.mintWith(t, iss.key, iss.kid, "JWT", nil), "typ"},
		{"signed by another key", iss.mintWith(t, other, iss.kid, "at+jwt", nil), "signature"},
		{"unknown kid", iss.mintWith(t, other, "k2", "at+jwt", nil), "not signed by a key the issuer publishes"},
		{"no kid", iss.mintWith(t, iss.key, "", "at+jwt", nil), "no kid"},
		{"no sub", iss.mint(t, map[string]any{"sub": nil}), "sub"},
		{"cnf without jkt", iss.mint(t, map[string]any{"cnf": map[string]string{}}), "jkt"},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoiazEifQ.eyJpc3MiOiJ4In0.", "algorithm"},
		{"not a JWT", "abc", "neither"},
		{"an algorithm its key is not for", iss.mintAlg(t, jose.PS256, iss.rsa, "r1", "at+jwt", nil), "alg is not the one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, tc.name, call(t, srv, "GET", "/", "Bearer "+tc.token, ""), http.StatusUnauthorized, `error="invalid_token"`, tc.want)
		})
	}
	for _, good := range []string{iss.mint(t, nil), iss.mintAlg(t, jose.RS256, iss.rsa, "r1", "at+jwt", nil)} {
		if a := call(t, srv, "GET", "/", "Bearer "+good, ""); a.status != http.StatusOK {
			t.Errorf("a good token of the kind the cases start from: %d %s", a.status, a.challenges())
		}
	}
}

// TestBoundOpaqueToken: an opaque token whose introspection answer carries
// cnf.jkt (RFC 9449 §6.2, as DESIGN says latchkey will answer) is held to
// its key like a bound JWT. The introspection endpoint here answers in
// latchkey's place, for latchkey does not issue bound tokens yet.
func TestBoundOpaqueToken(t *testing.T) {
	holderKey(t)
	token := "lk_at_" + strings.Repeat("b", 43) + "." + strings.Repeat("c", 43)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	var issuerURL string
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, _ := r.BasicAuth(); r.URL.Path != "/oauth2/introspect" || id != "lk_ci_rs" || secret != "rs-secret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		if r.PostFormValue("token") != token {
			json.NewEncoder(w).Encode(map[string]any{"active": false})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"active": true, "client_id": "lk_ci_client", "sub": "billing", "scope": invoicesRead,
			"aud": invoicesAudience, "iss": issuerURL, "exp": clk.Now().Add(time.Hour).Unix(),
			"iat": clk.Now().Unix(), "jti": "t1", "token_type": "DPoP", "token_use": "access_token",
			"cnf": map[string]string{"jkt": jkt(t, holder)},
		})
	}))
	t.Cleanup(as.Close)
	issuerURL = as.URL
	srv := api(t, resource.Options{
		Issuer: as.URL, Audience: invoicesAudience, Scopes: []string{invoicesRead},
		ClientID: "lk_ci_rs", ClientSecret: "rs-secret", Now: clk.Now,
	})
	u := srv.URL + "/"
	if a := call(t, srv, "GET", "/", "DPoP "+token, proofFor(t, holder, "GET", u, token)); a.status != http.StatusOK || a.claims.JKT != jkt(t, holder) {
		t.Fatalf("bound opaque token with its proof: %d %s %+v", a.status, a.challenges(), a.claims)
	}
	refused(t, "as Bearer", call(t, srv, "GET", "/", "Bearer "+token, ""), http.StatusUnauthorized, `error="invalid_token"`)
	refused(t, "the thief's key", call(t, srv, "GET", "/", "DPoP "+token, proofFor(t, thief, "GET", u, token)),
		http.StatusUnauthorized, `error="invalid_dpop_proof"`)
}

// TestReplayWithNonPositiveDurations: options that dpop reads as its
// defaults leave the replay cache remembering proofs as long.
func TestReplayWithNonPositiveDurations(t *testing.T) {
	iss := newIssuer(t)
	holderKey(t)
	srv := api(t, iss.options(func(o *resource.Options) { o.DPoPMaxAge, o.Leeway = -time.Second, -time.Second }))
	bound := iss.mint(t, map[string]any{"cnf": map[string]string{"jkt": jkt(t, holder)}})
	p := proofAt(t, holder, "GET", srv.URL+"/", bound, iss.clock.Now())
	if a := call(t, srv, "GET", "/", "DPoP "+bound, p); a.status != http.StatusOK {
		t.Fatalf("first use: %d %s", a.status, a.challenges())
	}
	refused(t, "replay", call(t, srv, "GET", "/", "DPoP "+bound, p), http.StatusUnauthorized, `error="invalid_dpop_proof"`)
}

// TestBoundTokenUnderStripPrefix: an API mounted under http.StripPrefix
// verifies proofs against the URL the client called, prefix included.
func TestBoundTokenUnderStripPrefix(t *testing.T) {
	iss := newIssuer(t)
	holderKey(t)
	v, err := resource.New(iss.options())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", http.StripPrefix("/api", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	bound := iss.mint(t, map[string]any{"cnf": map[string]string{"jkt": jkt(t, holder)}})
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/invoices", nil)
	req.Header.Set("Authorization", "DPoP "+bound)
	req.Header.Set("DPoP", proofAt(t, holder, "GET", srv.URL+"/api/v1/invoices", bound, iss.clock.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("bound token under StripPrefix: %d %v", resp.StatusCode, resp.Header.Values("WWW-Authenticate"))
	}
}
