package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/server"
)

// interopDir holds the third-party clients the interop tests run
// (interop/package.json pins them; `npm ci` there installs them).
const interopDir = "../interop"

// needInterop skips the test when node or the installed client libraries
// are missing, unless LATCHKEY_TEST_INTEROP=1 says they must be there.
func needInterop(t *testing.T, module string) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(interopDir, "node_modules", module, "package.json"))
	}
	if err != nil {
		if os.Getenv("LATCHKEY_TEST_INTEROP") == "1" {
			t.Fatalf("interop client %s: %v (run `npm ci` in interop/)", module, err)
		}
		t.Skipf("interop client %s not installed (`cd interop && npm ci`): %v", module, err)
	}
	return node
}

// TestInteropOAuth4WebAPI has Node's oauth4webapi, unmodified, discover a
// real latchkey server, authenticate with private_key_jwt and get a
// client-credentials token, for each key type; the token is active at
// introspection.
func TestInteropOAuth4WebAPI(t *testing.T) {
	node := needInterop(t, "oauth4webapi")
	e := newEnv(t)
	e.failOnServerErrors()
	e.clock.Live() // the library signs with the real clock
	// oauth4webapi wants the issuer to be the URL it discovered from: a
	// second replica on the same database, listening where its issuer says.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	s, err := server.New(context.Background(), e.store, server.Options{
		Issuer: issuer, TokenLifetime: 10 * time.Hour, Secrets: testSecrets, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: validated(t, s.Handler(), nil), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	rs := e.resourceServer()

	for _, alg := range []string{"ES256", "EdDSA", "PS256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			sg := newSigner(t, alg, "node-"+strings.ToLower(alg))
			kp := e.createIntegration(map[string]any{"name": "node-" + strings.ToLower(alg),
				"token_endpoint_auth_method": "private_key_jwt", "jwks": jwksOf(sg), "scopes": []string{"read"}})
			priv, err := json.Marshal(jose.JSONWebKey{Key: sg.key, KeyID: sg.kid, Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(t.TempDir(), "key.json")
			if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "private_key_jwt.mjs")
			cmd.Dir = interopDir
			cmd.Env = append(os.Environ(), "ISSUER="+issuer, "CLIENT_ID="+kp.ID, "KEY_FILE="+keyFile, "SCOPE=read")
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("node: %v\n%s%s", err, out, stderr)
			}
			var resp struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				Scope       string `json:"scope"`
			}
			if err := json.Unmarshal(out, &resp); err != nil || resp.AccessToken == "" {
				t.Fatalf("token response %q: %v", out, err)
			}
			info := e.introspect(rs, resp.AccessToken)
			if info["active"] != true || info["client_id"] != kp.ID || info["scope"] != "read" {
				t.Errorf("introspection of oauth4webapi's token: %v", info)
			}
		})
	}
}
