package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/dpop"
)

// writeKey writes key to a PEM file of the given type and returns its path.
func writeKey(t *testing.T, pemType string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dpop.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTokenIssueDPoP: token issue --dpop-key gets a token bound to the key
// in the file, in each PEM form openssl writes; --resource aims it; an
// integration with require_dpop refuses the same command without the key.
// The server listens on another address than its issuer names, as behind
// a proxy: the proof's htu is the metadata's token_endpoint.
func TestTokenIssueDPoP(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	adminToken := strings.TrimSpace(mustCLI(t, environ(), "admin", "create", "alice", "--database", db))
	base, _ := startServe(t, environ(), "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", adminToken)
	pair := func(out string) (string, string) {
		kp := decodeJSON(t, out)["key_pair"].(map[string]any)
		return kp["client_id"].(string), kp["client_secret"].(string)
	}
	id, secret := pair(mustCLI(t, admin, "integration", "create", "bound", "--require-dpop",
		"--audience", "https://invoices.example.com/", "--audience", "https://payroll.example.com/"))
	rsID, rsSecret := pair(mustCLI(t, admin, "integration", "create", "api", "--can-introspect"))
	asBound := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", id, "LATCHKEY_CLIENT_SECRET", secret)
	asRS := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", rsID, "LATCHKEY_CLIENT_SECRET", rsSecret)

	if _, err := cli(t, asBound, "token", "issue"); err == nil || !strings.Contains(err.Error(), "invalid_dpop_proof") {
		t.Fatalf("require_dpop without a key: err = %v, want invalid_dpop_proof", err)
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	keys := []struct {
		name string
		file string
		key  crypto.Signer
	}{
		{"PKCS #8 EC", writeKey(t, "PRIVATE KEY", pkcs8(ec)), ec},
		{"SEC 1 EC", writeKey(t, "EC PRIVATE KEY", sec1), ec},
		{"PKCS #8 Ed25519", writeKey(t, "PRIVATE KEY", pkcs8(ed)), ed},
	}
	for _, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			tok := decodeJSON(t, mustCLI(t, asBound, "token", "issue", "--dpop-key", k.file, "--resource", "https://invoices.example.com/"))
			if tok["token_type"] != "DPoP" {
				t.Fatalf("token issue --dpop-key = %v, want token_type DPoP", tok)
			}
			in := decodeJSON(t, mustCLI(t, asRS, "token", "introspect", tok["access_token"].(string)))
			jkt, err := dpop.Thumbprint(&jose.JSONWebKey{Key: k.key.Public()})
			if err != nil {
				t.Fatal(err)
			}
			if cnf, _ := in["cnf"].(map[string]any); cnf["jkt"] != jkt || in["aud"] != "https://invoices.example.com/" {
				t.Errorf("introspection cnf %v, aud %v; want jkt %s and the resource", in["cnf"], in["aud"], jkt)
			}
		})
	}

	notKey := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ue usageError
	if _, err := cli(t, asBound, "token", "issue", "--dpop-key", notKey); !errors.As(err, &ue) {
		t.Errorf("--dpop-key of a file that is no key: err = %v, want a usage error", err)
	}
}
