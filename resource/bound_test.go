package resource_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
	clock   *clock
	fetches atomic.Int64
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key, kid: "k1", clock: &clock{t: time.Now().UTC().Truncate(time.Second)}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		iss.fetches.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: "ES256", Use: "sig"},
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
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, tc.name, call(t, srv, "GET", "/", "Bearer "+tc.token, ""), http.StatusUnauthorized, `error="invalid_token"`, tc.want)
		})
	}
	if a := call(t, srv, "GET", "/", "Bearer "+iss.mint(t, nil), ""); a.status != http.StatusOK {
		t.Errorf("the good token the cases start from: %d %s", a.status, a.challenges())
	}
}
