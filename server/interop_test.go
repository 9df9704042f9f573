package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/resource"
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

// issuerReplica starts a second replica on e's database, listening where
// its issuer says, and returns that issuer: oauth4webapi wants the issuer
// to be the URL it discovered from. The clock goes live, as the library
// signs with the real one.
func (e *env) issuerReplica(t *testing.T) string {
	t.Helper()
	e.failOnServerErrors()
	e.clock.Live()
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
	return issuer
}

// runNode runs an interop script with env added and returns its output.
func runNode(t *testing.T, node, script string, env ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = interopDir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node %s: %v\n%s%s", script, err, out, stderr)
	}
	return out
}

// TestInteropOAuth4WebAPI has Node's oauth4webapi, unmodified, discover a
// real latchkey server, authenticate with private_key_jwt and get a
// client-credentials token, for each key type; the token is active at
// introspection.
func TestInteropOAuth4WebAPI(t *testing.T) {
	node := needInterop(t, "oauth4webapi")
	e := newEnv(t)
	issuer := e.issuerReplica(t)
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
			out := runNode(t, node, "private_key_jwt.mjs", "ISSUER="+issuer, "CLIENT_ID="+kp.ID, "KEY_FILE="+keyFile, "SCOPE=read")
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

// TestInteropOAuth4WebAPIDPoP has Node's oauth4webapi, unmodified, get a
// DPoP-bound token from a real latchkey with a key pair it generates, and
// call an API behind latchkey's resource package with it; the same token
// without the library's key is refused there.
func TestInteropOAuth4WebAPIDPoP(t *testing.T) {
	node := needInterop(t, "oauth4webapi")
	e := newEnv(t)
	issuer := e.issuerReplica(t)
	const audience = "https://invoices.example.com/"
	rs := e.resourceServer()
	kp := e.createIntegration(map[string]any{"name": "node-dpop", "require_dpop": true, "audience": []string{audience}})

	var seen []string // the tokens the API was called with
	v, err := resource.New(resource.Options{Issuer: issuer, Audience: audience, ClientID: rs.ID, ClientSecret: rs.Secret})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := resource.FromContext(r.Context())
		fmt.Fprintf(w, "invoices for %s, bound to %s", c.Subject, c.JKT)
	})))
	t.Cleanup(api.Close)
	recording := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		seen = append(seen, tok)
		r.URL.Host, r.URL.Scheme = "", ""
		api.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(recording.Close)

	out := runNode(t, node, "dpop.mjs", "ISSUER="+issuer, "CLIENT_ID="+kp.ID, "CLIENT_SECRET="+kp.Secret,
		"RESOURCE_URL="+recording.URL+"/v1/invoices")
	var got struct {
		TokenType string `json:"token_type"`
		Status    int    `json:"status"`
		Body      string `json:"body"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if !strings.EqualFold(got.TokenType, "DPoP") || got.Status != http.StatusOK || !strings.Contains(got.Body, "invoices for node-dpop, bound to ") {
		t.Fatalf("oauth4webapi with DPoP: %+v", got)
	}
	if len(seen) != 1 {
		t.Fatalf("the API saw %d requests, want 1", len(seen))
	}
	// The token alone, as a thief would have it from a log.
	req, _ := http.NewRequest("GET", api.URL+"/v1/invoices", nil)
	req.Header.Set("Authorization", "Bearer "+seen[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the stolen token as Bearer: %d, want 401", resp.StatusCode)
	}
}
