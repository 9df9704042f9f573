package resource_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/resource"
	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// This file starts a real latchkey, the server package on a SQLite file
// behind a real HTTP listener, as resource servers meet it.

const bootstrapToken = "bootstrap-token-for-resource-tests-0123456789"

var secrets = [][]byte{[]byte("resource-test-system-secret-0123456789abcdef")}

// clock is the one clock of latchkey and of the verifiers under test, so
// expiry is reached by moving it, not by sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// latchkey is a running latchkey server.
type latchkey struct {
	t     *testing.T
	URL   string
	clock *clock
	// Counts of the requests resource servers make.
	jwksFetches, introspections atomic.Int64
}

type keyPair struct{ ID, Secret string }

// startLatchkey starts latchkey issuing tokens of format ("opaque" or
// "jwt").
func startLatchkey(t *testing.T, format string) *latchkey {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	st, err := storage.Open(ctx, storage.Options{
		Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "latchkey.db"), Now: clk.Now,
		Credentials: credential.NewMinter(secrets), SealingKeys: credential.SealingKeys(secrets),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	lk := &latchkey{t: t, clock: clk}
	var handler http.Handler
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/jwks.json":
			lk.jwksFetches.Add(1)
		case "/oauth2/introspect":
			lk.introspections.Add(1)
		}
		handler.ServeHTTP(w, r)
	}))
	lk.URL = "http://" + srv.Listener.Addr().String()
	s, err := server.New(ctx, st, server.Options{
		Issuer: lk.URL, TokenLifetime: 10 * time.Hour, Secrets: secrets, TokenFormat: format,
		BootstrapToken: bootstrapToken, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	handler = s.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return lk
}

// do sends a request to latchkey and decodes its JSON answer.
func (lk *latchkey) do(method, path string, body io.Reader, prepare func(*http.Request)) (int, map[string]any) {
	lk.t.Helper()
	req, err := http.NewRequest(method, lk.URL+path, body)
	if err != nil {
		lk.t.Fatal(err)
	}
	prepare(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		lk.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			lk.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// integration creates an integration through the admin API.
func (lk *latchkey) integration(fields map[string]any) keyPair {
	lk.t.Helper()
	b, _ := json.Marshal(fields)
	status, out := lk.do("POST", "/admin/integrations", bytes.NewReader(b), func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+bootstrapToken)
		r.Header.Set("Content-Type", "application/json")
	})
	if status != http.StatusCreated {
		lk.t.Fatalf("create integration: %d %v", status, out)
	}
	kp := out["key_pair"].(map[string]any)
	return keyPair{kp["client_id"].(string), kp["client_secret"].(string)}
}

// oauth posts an OAuth form with kp's credentials.
func (lk *latchkey) oauth(path string, kp keyPair, form url.Values) (int, map[string]any) {
	lk.t.Helper()
	return lk.do("POST", path, strings.NewReader(form.Encode()), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	})
}

// token gets an access token for kp at /oauth2/token.
func (lk *latchkey) token(kp keyPair) string {
	lk.t.Helper()
	status, out := lk.oauth("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusOK {
		lk.t.Fatalf("token: %d %v", status, out)
	}
	return out["access_token"].(string)
}

// revoke revokes token as its owner kp (RFC 7009).
func (lk *latchkey) revoke(kp keyPair, token string) {
	lk.t.Helper()
	if status, out := lk.oauth("/oauth2/revoke", kp, url.Values{"token": {token}}); status != http.StatusOK {
		lk.t.Fatalf("revoke: %d %v", status, out)
	}
}

// active asks latchkey itself whether token is active.
func (lk *latchkey) active(rs keyPair, token string) bool {
	lk.t.Helper()
	before := lk.introspections.Load()
	defer lk.introspections.Store(before) // not the verifier's
	status, out := lk.oauth("/oauth2/introspect", rs, url.Values{"token": {token}})
	if status != http.StatusOK {
		lk.t.Fatalf("introspect: %d %v", status, out)
	}
	return out["active"] == true
}

// setup is the usual cast: latchkey, a resource server integration allowed
// to introspect, and a client with a scope and an audience.
type setup struct {
	lk             *latchkey
	rs, client     keyPair
	audience, name string
}

const (
	invoicesAudience = "https://invoices.example"
	invoicesRead     = "invoices:read"
)

func newSetup(t *testing.T, format string) *setup {
	t.Helper()
	lk := startLatchkey(t, format)
	return &setup{
		lk: lk,
		rs: lk.integration(map[string]any{"name": "invoices-api", "can_introspect": true}),
		client: lk.integration(map[string]any{
			"name": "billing", "scopes": []string{invoicesRead}, "audience": []string{invoicesAudience},
		}),
		audience: invoicesAudience, name: "billing",
	}
}

// verifier returns the Options a resource server for the invoices API
// would use, adjusted by adjust.
func (s *setup) options(adjust ...func(*resource.Options)) resource.Options {
	o := resource.Options{
		Issuer: s.lk.URL, Audience: s.audience, Scopes: []string{invoicesRead},
		ClientID: s.rs.ID, ClientSecret: s.rs.Secret, Now: s.lk.clock.Now,
	}
	for _, f := range adjust {
		f(&o)
	}
	return o
}

// api serves a handler behind v's middleware that answers with the claims
// it was given.
func api(t *testing.T, o resource.Options) *httptest.Server {
	t.Helper()
	v, err := resource.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := resource.FromContext(r.Context())
		if !ok {
			t.Error("handler without claims")
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c)
	})))
	t.Cleanup(srv.Close)
	return srv
}

// answer is a response from the API under test.
type answer struct {
	status    int
	challenge []string // WWW-Authenticate
	claims    resource.Claims
	body      string
}

func (a answer) challenges() string { return strings.Join(a.challenge, " | ") }

// call requests path on srv with the given Authorization and DPoP headers
// ("" leaves one out).
func call(t *testing.T, srv *httptest.Server, method, path, authorization, proof string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, challenge: resp.Header.Values("WWW-Authenticate"), body: string(raw)}
	if a.status == http.StatusOK {
		if err := json.Unmarshal(raw, &a.claims); err != nil {
			t.Fatalf("claims: %v: %s", err, raw)
		}
	}
	return a
}

// refused fails t unless a is a refusal with status and, in its
// challenges, want (e.g. `error="invalid_token"`).
func refused(t *testing.T, what string, a answer, status int, want ...string) {
	t.Helper()
	if a.status != status {
		t.Errorf("%s: status %d (%s %s), want %d", what, a.status, a.challenges(), a.body, status)
		return
	}
	for _, w := range want {
		if !strings.Contains(a.challenges(), w) {
			t.Errorf("%s: WWW-Authenticate %q lacks %q", what, a.challenges(), w)
		}
	}
}
