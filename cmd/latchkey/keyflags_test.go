package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestIntegrationKeyFlags registers, moves and drops an integration's
// public keys with the CLI's flags: --auth-method and --jwks at create,
// --jwks-uri and "none" at update, --require-dpop and
// --introspection-audience.
func TestIntegrationKeyFlags(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	noEnv := environ()
	adminToken := strings.TrimSpace(mustCLI(t, noEnv, "admin", "create", "alice", "--database", db))
	base, _ := startServe(t, noEnv, "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", adminToken)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "ci-2026"}}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		t.Fatal(err)
	}
	created := decodeJSON(t, mustCLI(t, admin, "integration", "create", "deployer",
		"--auth-method", "private_key_jwt", "--jwks", file, "--require-dpop"))
	kp := created["key_pair"].(map[string]any)
	keys, _ := created["jwks"].(map[string]any)["keys"].([]any)
	if kp["client_secret"] != nil || created["token_endpoint_auth_method"] != "private_key_jwt" ||
		len(keys) != 1 || created["require_dpop"] != true {
		t.Fatalf("create = %v", created)
	}

	moved := decodeJSON(t, mustCLI(t, admin, "integration", "update", "deployer",
		"--jwks", "none", "--jwks-uri", "https://keys.example.com/deployer.json", "--introspection-audience", "a b"))
	if moved["jwks"] != nil || moved["jwks_uri"] != "https://keys.example.com/deployer.json" ||
		len(moved["introspection_audience"].([]any)) != 2 {
		t.Fatalf("update = %v", moved)
	}

	if _, err := cli(t, admin, "integration", "create", "bad", "--auth-method", "private_key_jwt", "--jwks", "/no/such/file"); err == nil || !strings.Contains(err.Error(), "--jwks") {
		t.Errorf("a missing --jwks file: %v; want a usage error naming --jwks", err)
	}
}
