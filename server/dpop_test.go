package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/dpop"
	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// tokenURL is the token endpoint as a client addresses it: the issuer's
// URL, not the test listener's, as behind a proxy.
const tokenURL = oauthIssuer + "/oauth2/token"

func newProofKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// thumbprint is the jkt a token bound to key must carry.
func thumbprint(t testing.TB, key crypto.Signer) string {
	t.Helper()
	jkt, err := dpop.Thumbprint(&jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}

// proofFor is what a DPoP client sends with a token request to u at the
// server's time.
func (e *env) proofFor(key crypto.Signer, u string) string {
	e.t.Helper()
	p, err := dpop.NewProof(key, "POST", u, "", "", e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// dpopForm posts a token request for kp to path with one DPoP header per
// proof, and returns status, headers and the decoded JSON body.
func (e *env) dpopForm(path string, kp keyPair, extra url.Values, proofs ...string) (int, http.Header, map[string]any) {
	e.t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		f[k] = v
	}
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(f.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	status, h, b := e.do(req)
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("POST %s: body is not a JSON object: %q", path, b)
	}
	return status, h, out
}

// rowCount counts the rows of table, below the API.
func (e *env) rowCount(table string) int {
	e.t.Helper()
	var n int
	if err := e.rawDB().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		e.t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// craftProof signs claims under header with key (ES256, whatever header's
// alg says), so a test can make every kind of wrong proof.
func craftProof(t testing.TB, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := encodeSegment(t, header) + "." + encodeSegment(t, claims)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwkMembers is key as JSON members; private includes its private part.
func jwkMembers(t testing.TB, key *ecdsa.PrivateKey, private bool) map[string]any {
	t.Helper()
	var k any = &key.PublicKey
	if private {
		k = key
	}
	b, err := json.Marshal(jose.JSONWebKey{Key: k})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDPoPBoundToken: a token request with a valid proof gets a token bound
// to the proof's key, in both token formats: token_type DPoP, cnf.jkt in a
// JWT, token_type DPoP and cnf.jkt at introspection. A request without a
// proof from the same integration is a bearer request, unchanged. The
// trailing-slash alias takes a proof for the URL the client addressed.
func TestDPoPBoundToken(t *testing.T) {
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			e := newOAuthEnv(t, func(o *server.Options) { o.TokenFormat = format })
			rs := e.resourceServer()
			kp := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
			key := newProofKey(t)
			jkt := thumbprint(t, key)

			for _, path := range []string{"/oauth2/token", "/oauth2/token/"} {
				status, h, out := e.dpopForm(path, kp, nil, e.proofFor(key, oauthIssuer+path))
				if status != http.StatusOK {
					t.Fatalf("%s: status %d, want 200: %v", path, status, out)
				}
				if got := h.Get("Cache-Control"); got != "no-store" {
					t.Errorf("%s: Cache-Control = %q, want no-store", path, got)
				}
				if got := out["token_type"]; got != "DPoP" {
					t.Errorf("%s: token_type = %v, want DPoP", path, got)
				}
				tok := out["access_token"].(string)
				if format == "jwt" {
					_, _, raw := e.mustVerify(tok)
					cnf, _ := raw["cnf"].(map[string]any)
					if cnf["jkt"] != jkt {
						t.Errorf("%s: JWT cnf = %v, want {jkt: %s}", path, raw["cnf"], jkt)
					}
				}
				in := e.introspect(rs, tok)
				if in["active"] != true || in["token_type"] != "DPoP" {
					t.Errorf("%s: introspection active %v, token_type %v; want true, DPoP", path, in["active"], in["token_type"])
				}
				if cnf, _ := in["cnf"].(map[string]any); cnf["jkt"] != jkt || len(cnf) != 1 {
					t.Errorf("%s: introspection cnf = %v, want {jkt: %s}", path, in["cnf"], jkt)
				}
			}

			out := e.tokenResponse(kp, nil)
			if got := out["token_type"]; got != "bearer" {
				t.Errorf("bearer request: token_type = %v, want bearer", got)
			}
			tok := out["access_token"].(string)
			if format == "jwt" {
				if _, _, raw := e.mustVerify(tok); raw["cnf"] != nil {
					t.Errorf("bearer JWT has cnf %v", raw["cnf"])
				}
			}
			in := e.introspect(rs, tok)
			if in["token_type"] != "Bearer" || in["cnf"] != nil {
				t.Errorf("bearer token introspects token_type %v, cnf %v; want Bearer and no cnf", in["token_type"], in["cnf"])
			}
		})
	}
}

// TestDPoPRequired: an integration with require_dpop gets tokens only with
// a proof; without one, 400 invalid_dpop_proof and no token.
func TestDPoPRequired(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "bound", "require_dpop": true})
	before := e.rowCount("access_tokens")
	status, h, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
	if d, _ := out["error_description"].(string); !strings.Contains(d, "require_dpop") {
		t.Errorf("error_description = %q, want it to name require_dpop", d)
	}
	if n := e.rowCount("access_tokens"); n != before {
		t.Errorf("access_tokens: %d rows after a refused request, want %d", n, before)
	}
	key := newProofKey(t)
	status, _, out = e.dpopForm("/oauth2/token", kp, nil, e.proofFor(key, tokenURL))
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Errorf("with a proof: status %d, token_type %v; want 200, DPoP: %v", status, out["token_type"], out)
	}
}

// TestDPoPProofChecks refuses a proof failing each check of RFC 9449 §4.3
// with 400 invalid_dpop_proof naming the check, and stores nothing: no
// token, no jti.
func TestDPoPProofChecks(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job"})
	key, other := newProofKey(t), newProofKey(t)
	now := e.clock.Now()
	header := func(mod func(map[string]any)) map[string]any {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwkMembers(t, key, false)}
		if mod != nil {
			mod(h)
		}
		return h
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"jti": base64.RawURLEncoding.EncodeToString([]byte(t.Name() + now.String())),
			"htm": "POST", "htu": tokenURL, "iat": now.Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	valid := craftProof(t, key, header(nil), claims(nil))
	hs256 := func() string {
		in := encodeSegment(t, header(func(h map[string]any) { h["alg"] = "HS256" })) + "." + encodeSegment(t, claims(nil))
		m := hmac.New(sha256.New, []byte("a shared secret is no proof of anything"))
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()
	badSig := func() string {
		i := strings.LastIndexByte(valid, '.')
		return valid[:i+1] + flipAt(valid[i+1:], 5)
	}()

	tests := []struct {
		name   string
		proofs []string
		want   string // in error_description
	}{
		{"wrong typ", []string{craftProof(t, key, header(func(h map[string]any) { h["typ"] = "JWT" }), claims(nil))}, "typ"},
		{"alg none", []string{encodeSegment(t, header(func(h map[string]any) { h["alg"] = "none" })) + "." + encodeSegment(t, claims(nil)) + ".AA"}, "alg"},
		{"alg HS256", []string{hs256}, "alg"},
		{"private key in the jwk", []string{craftProof(t, key, header(func(h map[string]any) { h["jwk"] = jwkMembers(t, key, true) }), claims(nil))}, "private"},
		{"wrong htm", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { c["htm"] = "GET" }))}, "htm"},
		{"wrong htu: another path", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { c["htu"] = oauthIssuer + "/oauth2/introspect" }))}, "htu"},
		{"wrong htu: the listener, not the issuer", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { c["htu"] = e.srv.URL + "/oauth2/token" }))}, "htu"},
		{"stale iat", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { c["iat"] = now.Add(-6 * time.Minute).Unix() }))}, "iat is older"},
		{"future iat", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { c["iat"] = now.Add(2 * time.Minute).Unix() }))}, "future"},
		{"signed by another key", []string{craftProof(t, other, header(nil), claims(nil))}, "signature"},
		{"signature altered", []string{badSig}, "signature"},
		{"no jti", []string{craftProof(t, key, header(nil), claims(func(c map[string]any) { delete(c, "jti") }))}, "jti"},
		{"two DPoP headers", []string{valid, e.proofFor(key, tokenURL)}, "more than one"},
		{"two proofs in one header", []string{valid + ", " + e.proofFor(key, tokenURL)}, "more than one"},
		{"empty header", []string{""}, "JWS"},
	}
	tokens, jtis := e.rowCount("access_tokens"), e.rowCount("used_jtis")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, out := e.dpopForm("/oauth2/token", kp, nil, tt.proofs...)
			checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
			if d, _ := out["error_description"].(string); !strings.Contains(d, tt.want) {
				t.Errorf("error_description = %q, want it to name %q", d, tt.want)
			}
		})
	}
	if n, m := e.rowCount("access_tokens"), e.rowCount("used_jtis"); n != tokens || m != jtis {
		t.Errorf("after refused proofs: %d tokens and %d jtis, want %d and %d", n, m, tokens, jtis)
	}

	t.Run("replayed jti", func(t *testing.T) {
		if status, _, out := e.dpopForm("/oauth2/token", kp, nil, valid); status != http.StatusOK {
			t.Fatalf("first use: status %d, want 200: %v", status, out)
		}
		stored := e.rowCount("access_tokens")
		status, h, out := e.dpopForm("/oauth2/token", kp, nil, valid)
		checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
		if d, _ := out["error_description"].(string); !strings.Contains(d, "jti") {
			t.Errorf("error_description = %q, want it to name the jti", d)
		}
		if n := e.rowCount("access_tokens"); n != stored {
			t.Errorf("replay stored a token: %d rows, want %d", n, stored)
		}
	})
}

// TestDPoPReplayAcrossReplicas: a proof used at one replica is refused at
// another sharing the database.
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	a := newOAuthEnv(t)
	b := startEnv(t, a.dbPath, a.clock, testSecrets)
	kp := a.createIntegration(map[string]any{"name": "job"})
	proof := a.proofFor(newProofKey(t), tokenURL)
	if status, _, out := a.dpopForm("/oauth2/token", kp, nil, proof); status != http.StatusOK {
		t.Fatalf("replica a: status %d, want 200: %v", status, out)
	}
	status, h, out := b.dpopForm("/oauth2/token", kp, nil, proof)
	checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
}

// TestDPoPMetadata: the metadata lists the proof algorithms the token
// endpoint accepts (RFC 9449 §5.1), and only asymmetric ones.
func TestDPoPMetadata(t *testing.T) {
	e := newOAuthEnv(t)
	status, _, md := e.oauthSend("GET", "/.well-known/oauth-authorization-server", "", nil, keyPair{})
	if status != http.StatusOK {
		t.Fatalf("metadata: status %d", status)
	}
	got, _ := json.Marshal(md["dpop_signing_alg_values_supported"])
	if want := `["ES256","EdDSA","RS256","PS256"]`; string(got) != want {
		t.Errorf("dpop_signing_alg_values_supported = %s, want %s", got, want)
	}
}

// TestDPoPAfterAuthentication: a caller with wrong credentials is told so,
// whatever its proof; the proof is looked at only for a known client.
func TestDPoPAfterAuthentication(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job"})
	wrong := keyPair{ID: kp.ID, Secret: credential.NewClientSecret()}
	bad := craftProof(t, newProofKey(t), map[string]any{"typ": "JWT", "alg": "ES256"}, map[string]any{})
	status, h, out := e.dpopForm("/oauth2/token", wrong, nil, bad)
	checkOAuthError(t, status, h, out, http.StatusUnauthorized, "invalid_client")
}

// TestDPoPReplayAfterPurge: a proof's jti is remembered as long as the
// proof could be accepted, so the janitor's purge of used jtis does not
// reopen the window for a replay.
func TestDPoPReplayAfterPurge(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job"})
	proof := e.proofFor(newProofKey(t), tokenURL)
	if status, _, out := e.dpopForm("/oauth2/token", kp, nil, proof); status != http.StatusOK {
		t.Fatalf("first use: status %d, want 200: %v", status, out)
	}
	// Still young enough to pass the iat check.
	e.clock.Advance(dpop.DefaultMaxAge - time.Second)
	if _, err := e.store.Purge(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	status, h, out := e.dpopForm("/oauth2/token", kp, nil, proof)
	checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
}

// TestDPoPRegenerationDuringIssuance: a regeneration that lands between
// authentication and the token's write makes the token endpoint try once
// more; the retry must not take the proof it recorded for a replay.
func TestDPoPRegenerationDuringIssuance(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	key := newProofKey(t)
	proof := e.proofFor(key, tokenURL)
	regenerated := false
	// The next reading of the clock is server/oauth deciding whether the
	// pair it has just read works (see TestRegenerationDuringIssuance).
	e.clock.beforeNext(func() {
		_, err := e.store.RegenerateKeyPair(context.Background(), "svc", time.Hour, storage.Actor{Type: "admin", Name: "test"})
		if err != nil {
			t.Errorf("regenerate: %v", err)
		}
		regenerated = true
	})
	status, _, out := e.dpopForm("/oauth2/token", kp, nil, proof)
	if !regenerated {
		t.Fatal("the regeneration never ran: the clock was not read during the request")
	}
	if status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Fatalf("a right pair regenerated mid-request: %d %v, want 200 and a DPoP token", status, out)
	}
	rs := e.resourceServer()
	if cnf, _ := e.introspect(rs, out["access_token"].(string))["cnf"].(map[string]any); cnf["jkt"] != thumbprint(t, key) {
		t.Errorf("cnf = %v, want the proof key's jkt", cnf)
	}
}

// TestDPoPIssuerWithPath: behind a proxy that serves latchkey under a
// path, the proof names the public token endpoint, the issuer's URL and
// path followed by /oauth2/token, as the metadata says.
func TestDPoPIssuerWithPath(t *testing.T) {
	const issuer = "https://auth.example.com/latchkey"
	e := newOAuthEnv(t, func(o *server.Options) { o.Issuer = issuer })
	kp := e.createIntegration(map[string]any{"name": "job"})
	_, _, md := e.oauthSend("GET", "/.well-known/oauth-authorization-server", "", nil, keyPair{})
	endpoint, _ := md["token_endpoint"].(string)
	if endpoint != issuer+"/oauth2/token" {
		t.Fatalf("token_endpoint = %q, want %s/oauth2/token", endpoint, issuer)
	}
	key := newProofKey(t)
	if status, _, out := e.dpopForm("/oauth2/token", kp, nil, e.proofFor(key, endpoint)); status != http.StatusOK || out["token_type"] != "DPoP" {
		t.Errorf("proof for the metadata's token_endpoint: status %d, body %v; want a DPoP token", status, out)
	}
	status, h, out := e.dpopForm("/oauth2/token", kp, nil, e.proofFor(key, "https://auth.example.com/oauth2/token"))
	checkOAuthError(t, status, h, out, http.StatusBadRequest, "invalid_dpop_proof")
}
