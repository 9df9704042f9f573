package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
	"github.com/latchkey/latchkey/storage/storagetest"
)

const testBootstrap = "bootstrap-token-for-tests-0123456789abcdef"

// clock is an injectable clock: tests move it past deadlines instead of
// sleeping.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	live bool
	// next, when set, runs once, at the next reading of the clock: a
	// way to make something happen at a chosen point inside a request.
	next func()
}

// beforeNext makes f run once, at the next reading of the clock, before
// that reading returns.
func (c *clock) beforeNext(f func()) {
	c.mu.Lock()
	c.next = f
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Now().UTC()} }

// Live makes the clock follow real time, for tests about the order of
// concurrent events.
func (c *clock) Live() {
	c.mu.Lock()
	c.live = true
	c.mu.Unlock()
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	if f := c.next; f != nil {
		c.next = nil
		c.mu.Unlock()
		f()
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	if c.live {
		return time.Now().UTC()
	}
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one latchkey server over real HTTP on a real database: a SQLite
// file, or a PostgreSQL schema under TestPostgres.
type env struct {
	t      testing.TB
	server *server.Server
	srv    *httptest.Server
	admin  *httptest.Server // set when the admin API has its own listener
	store  *storage.Store
	clock  *clock
	logs   *syncBuffer
	dbPath string // the SQLite file, or the PostgreSQL DSN
}

// testSecrets are the system secrets of a test server.
var testSecrets = [][]byte{[]byte("test-system-secret-0123456789abcdef")}

// newEnv starts a server on a fresh database; opts may adjust the options
// before New.
func newEnv(t testing.TB, opts ...func(*server.Options)) *env {
	t.Helper()
	e, err := openEnv(t, newDatabase(t), newClock(), testSecrets, opts...)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	return e
}

// newDatabase returns a fresh database for one test: a PostgreSQL schema
// for the tests TestPostgres runs, else a SQLite file.
func newDatabase(t testing.TB) string {
	t.Helper()
	if onPostgres(t) {
		return storagetest.PostgresDSN(t)
	}
	return filepath.Join(t.TempDir(), "latchkey.db")
}

// openEnv starts a server on the database at dbPath (a SQLite file or a
// postgres:// DSN) with the given system secrets (current first) and
// clock. Two envs on one database are two replicas; one after another, a
// restart.
func openEnv(t testing.TB, dbPath string, clk *clock, secrets [][]byte, opts ...func(*server.Options)) (*env, error) {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, clock: clk, logs: &syncBuffer{}, dbPath: dbPath}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	driver := "sqlite"
	if strings.HasPrefix(dbPath, "postgres://") {
		driver = "postgres"
	}
	st, err := storage.Open(ctx, storage.Options{Driver: driver, DSN: dbPath, Now: clk.Now, Logger: log,
		Credentials: credential.NewMinter(secrets), SealingKeys: credential.SealingKeys(secrets)})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	e.store = st
	o := server.Options{
		Issuer: "http://127.0.0.1", TokenLifetime: 10 * time.Hour, Secrets: secrets,
		BootstrapToken: testBootstrap, Logger: log, Now: clk.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	s, err := server.New(ctx, st, o)
	if err != nil {
		return nil, err
	}
	e.server = s
	// With the admin API on its own listener, each listener answers 404
	// for the other's paths.
	var onPublic, onAdmin func(path string) bool
	if o.SeparateAdmin {
		onPublic = func(p string) bool { return !adminListenerPath(p) }
		onAdmin = adminListenerPath
	}
	e.srv = httptest.NewServer(e.checked(s.Handler(), onPublic))
	t.Cleanup(e.srv.Close)
	if o.SeparateAdmin {
		e.admin = httptest.NewServer(e.checked(s.AdminHandler(), onAdmin))
		t.Cleanup(e.admin.Close)
	}
	return e, nil
}

// adminListenerPath reports whether admin_listen moves path to the admin
// listener.
func adminListenerPath(path string) bool {
	return path == "/admin" || strings.HasPrefix(path, "/admin/") || path == "/metrics"
}

// checked validates every exchange with h against the OpenAPI document
// (see openapi_test.go), but in benchmarks, which measure the server
// alone; serves, when not nil, tells the paths h serves. Fuzz targets
// call the server's handler themselves and validate with each input's t
// (fuzzServer.serve).
func (e *env) checked(h http.Handler, serves func(path string) bool) http.Handler {
	if _, bench := e.t.(*testing.B); bench {
		return h
	}
	return validated(e.t, h, serves)
}

// failOnServerErrors fails the test, when it ends, if any request was
// answered with a 5xx or anything was logged at error level: no client
// input may cause a server error.
func (e *env) failOnServerErrors() {
	e.t.Cleanup(func() {
		for line := range strings.SplitSeq(e.logs.String(), "\n") {
			var rec struct {
				Level  string `json:"level"`
				Status int    `json:"status"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && (rec.Status >= 500 || rec.Level == "ERROR") {
				e.t.Errorf("server error in log: %s", line)
			}
		}
	})
}

// adminURL is where the admin API answers.
func (e *env) adminURL() string {
	if e.admin != nil {
		return e.admin.URL
	}
	return e.srv.URL
}

// do sends a request and returns the status, headers and body.
func (e *env) do(req *http.Request) (int, http.Header, []byte) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// adminCall calls the admin API with token; body is marshalled unless it
// is a string, which is sent as is.
func (e *env) adminCall(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(js)
	}
	status, _, b := e.callAdminRaw(e.adminURL(), method, path, token, r)
	return status, b
}

// mustAdmin calls the admin API as the bootstrap admin and requires want.
func (e *env) mustAdmin(method, path string, body any, want int) map[string]any {
	e.t.Helper()
	status, b := e.adminCall(method, path, testBootstrap, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			e.t.Fatalf("%s %s: body is not a JSON object: %s", method, path, b)
		}
	}
	return out
}

// callAdminRaw sends one request to base+path with an optional bearer token
// and returns status, headers and the raw body.
func (e *env) callAdminRaw(base, method, path, token string, body io.Reader) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.do(req)
}

// keyPair is an integration's credentials as the create call returned them.
type keyPair struct{ ID, Secret string }

// createIntegration creates an integration from body and returns its pair.
func (e *env) createIntegration(body map[string]any) keyPair {
	e.t.Helper()
	out := e.mustAdmin("POST", "/admin/integrations", body, http.StatusCreated)
	kp := out["key_pair"].(map[string]any)
	secret, _ := kp["client_secret"].(string) // null for private_key_jwt
	return keyPair{ID: kp["client_id"].(string), Secret: secret}
}

// regenerate regenerates name's key pair with grace seconds.
func (e *env) regenerate(name string, grace int) keyPair {
	e.t.Helper()
	out := e.mustAdmin("POST", "/admin/integrations/"+name+"/key-pair", map[string]any{"grace_seconds": grace}, http.StatusCreated)
	secret, _ := out["client_secret"].(string)
	return keyPair{ID: out["client_id"].(string), Secret: secret}
}

// form posts an OAuth form to path with Basic credentials (when kp is
// non-zero) and returns status, headers and the decoded JSON body.
func (e *env) form(path string, kp keyPair, form url.Values) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if kp.ID != "" {
		req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	}
	status, h, b := e.do(req)
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			e.t.Fatalf("POST %s: body is not a JSON object: %q", path, b)
		}
	}
	return status, h, out
}

// tokenResponse gets a token for kp with client_secret_basic and returns
// the whole response, failing the test unless it is 200.
func (e *env) tokenResponse(kp keyPair, extra url.Values) map[string]any {
	e.t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		f[k] = v
	}
	status, _, out := e.form("/oauth2/token", kp, f)
	if status != http.StatusOK {
		e.t.Fatalf("token: status %d, want 200: %v", status, out)
	}
	return out
}

// token gets an access token for kp or fails the test.
func (e *env) token(kp keyPair, extra url.Values) string {
	e.t.Helper()
	return e.tokenResponse(kp, extra)["access_token"].(string)
}

// introspect asks, as the resource server rs, about token.
func (e *env) introspect(rs keyPair, token string) map[string]any {
	e.t.Helper()
	status, _, out := e.form("/oauth2/introspect", rs, url.Values{"token": {token}})
	if status != http.StatusOK {
		e.t.Fatalf("introspect: status %d: %v", status, out)
	}
	return out
}

// resourceServer creates an integration allowed to introspect.
func (e *env) resourceServer() keyPair {
	e.t.Helper()
	return e.createIntegration(map[string]any{"name": "resource-server", "can_introspect": true})
}
