package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// publicJWKS is the JWK Set of key's public part under kid.
func publicJWKS(t *testing.T, key *ecdsa.PrivateKey, kid string) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: kid, Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAdminKeylessIntegration registers a private_key_jwt integration
// through the admin API: it gets a client ID and no secret, now or at a
// regeneration, its keys are shown back, a private key or an unknown
// method is refused without storing anything, and a switch to keys makes
// the old secret fail at the token endpoint.
func TestAdminKeylessIntegration(t *testing.T) {
	e := newEnv(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := publicJWKS(t, key, "2026-12")

	out := e.mustAdmin("POST", "/admin/integrations", map[string]any{
		"name": "signer", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks,
		"require_dpop": true, "introspection_audience": []string{"invoices"},
	}, http.StatusCreated)
	kp := out["key_pair"].(map[string]any)
	if kp["client_secret"] != nil || kp["client_id"] == "" {
		t.Errorf("key_pair = %v, want a client ID and a null secret", kp)
	}
	got := e.mustAdmin("GET", "/admin/integrations/signer", nil, http.StatusOK)
	keys, _ := got["jwks"].(map[string]any)["keys"].([]any)
	if got["token_endpoint_auth_method"] != "private_key_jwt" || len(keys) != 1 || got["require_dpop"] != true ||
		got["jwks_uri"] != nil {
		t.Errorf("GET = %v", got)
	}
	if k := keys[0].(map[string]any); k["kid"] != "2026-12" || k["d"] != nil {
		t.Errorf("stored key = %v", k)
	}
	regen := e.mustAdmin("POST", "/admin/integrations/signer/key-pair", map[string]any{}, http.StatusCreated)
	if regen["client_secret"] != nil {
		t.Errorf("regenerated keyless pair = %v, want a null secret", regen)
	}

	privateJWK, _ := json.Marshal(jose.JSONWebKey{Key: key, KeyID: "oops"})
	for _, tc := range []struct {
		name string
		body string
		want string
	}{
		{"a private key", `{"name":"bad","token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[` + string(privateJWK) + `]}}`, "private key"},
		{"no keys", `{"name":"bad","token_endpoint_auth_method":"private_key_jwt"}`, "needs jwks or jwks_uri"},
		{"unknown method", `{"name":"bad","token_endpoint_auth_method":"tls_client_auth"}`, "token_endpoint_auth_method"},
		{"jwks not a set", `{"name":"bad","token_endpoint_auth_method":"private_key_jwt","jwks":"x"}`, "jwks"},
	} {
		status, body := e.adminCall("POST", "/admin/integrations", testBootstrap, tc.body)
		if status != http.StatusBadRequest || !strings.Contains(string(body), tc.want) || strings.Contains(string(body), `"d"`) {
			t.Errorf("%s: %d %s, want 400 naming %q", tc.name, status, body, tc.want)
		}
	}
	e.mustAdmin("GET", "/admin/integrations/bad", nil, http.StatusNotFound)

	// A secret integration switched to keys: its secret stops working.
	old := e.createIntegration(map[string]any{"name": "mover"})
	e.token(old, nil)
	e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"jwks": jwks}, http.StatusOK)
	e.token(old, nil) // keys registered ahead of the switch change nothing yet
	moved := e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"token_endpoint_auth_method": "private_key_jwt"}, http.StatusOK)
	if moved["token_endpoint_auth_method"] != "private_key_jwt" {
		t.Errorf("PATCH = %v", moved)
	}
	if status, _, body := e.form("/oauth2/token", old, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Errorf("old secret after the switch: %d %v, want 401", status, body)
	}
	// Taking the keys away from a private_key_jwt integration is refused.
	e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"jwks": nil}, http.StatusBadRequest)
	e.mustAdmin("PATCH", "/admin/integrations/mover", map[string]any{"jwks": nil, "jwks_uri": "https://keys.example.com/jwks.json"}, http.StatusOK)
	if got := e.mustAdmin("GET", "/admin/integrations/mover", nil, http.StatusOK); got["jwks"] != nil || got["jwks_uri"] != "https://keys.example.com/jwks.json" {
		t.Errorf("after moving to jwks_uri: %v", got)
	}
}
