package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestServeJWKSFetchAllowPrivate: serve passes jwks_fetch_allow_private to
// the server. A private_key_jwt integration whose jwks_uri is on this
// machine gets a token with it on, and is refused without it.
func TestServeJWKSFetchAllowPrivate(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k", Use: "sig"}}})
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) }))
	t.Cleanup(host.Close)
	const boot = "keyless-serve-bootstrap-token-0123456789abcdef"

	for _, allow := range []string{"true", "false"} {
		t.Run("allow="+allow, func(t *testing.T) {
			sv := startServing(t, environ("LATCHKEY_DATABASE", "sqlite://"+filepath.Join(t.TempDir(), "k.db"),
				"LATCHKEY_BOOTSTRAP_TOKEN", boot, "LATCHKEY_JWKS_FETCH_ALLOW_PRIVATE", allow))
			req, _ := http.NewRequest("POST", sv.base+"/admin/integrations", strings.NewReader(
				`{"name":"remote","token_endpoint_auth_method":"private_key_jwt","jwks_uri":"`+host.URL+`/jwks.json"}`))
			req.Header.Set("Authorization", "Bearer "+boot)
			req.Header.Set("Content-Type", "application/json")
			var created struct {
				KeyPair struct {
					ClientID string `json:"client_id"`
				} `json:"key_pair"`
			}
			if status := doJSON(t, req, &created); status != http.StatusCreated {
				t.Fatalf("create: %d", status)
			}
			id := created.KeyPair.ClientID
			signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
			now := time.Now()
			claims, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": "http://localhost:8080",
				"exp": now.Add(time.Minute).Unix(), "jti": now.String()})
			obj, _ := signer.Sign(claims)
			assertion, _ := obj.CompactSerialize()
			form := url.Values{"grant_type": {"client_credentials"}, "client_assertion": {assertion},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}}
			req, _ = http.NewRequest("POST", sv.base+"/oauth2/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			var out map[string]any
			status := doJSON(t, req, &out)
			want := http.StatusOK
			if allow == "false" {
				want = http.StatusUnauthorized
			}
			if status != want {
				t.Errorf("token with jwks_fetch_allow_private=%s: %d %v, want %d", allow, status, out, want)
			}
		})
	}
}

func doJSON(t *testing.T, req *http.Request, out any) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: %v", req.URL.Path, err)
	}
	return resp.StatusCode
}
