package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is an io.Writer safe for the serving goroutine and the test.
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

// environ builds a getenv from pairs.
func environ(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// cli runs one command in-process and returns its stdout.
func cli(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	return cliStdin(t, getenv, "", args...)
}

// cliStdin is cli with stdin as standard input.
func cliStdin(t *testing.T, getenv func(string) string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"latchkey"}, args...), getenv, strings.NewReader(stdin), &out, &errOut)
	if err != nil {
		t.Logf("latchkey %s: %v; stderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

func mustCLI(t *testing.T, getenv func(string) string, args ...string) string {
	t.Helper()
	out, err := cli(t, getenv, args...)
	if err != nil {
		t.Fatalf("latchkey %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func decodeJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %q", s)
	}
	return m
}

var (
	listening      = regexp.MustCompile(`listening on (\S+) \(public\) for (\S+)`)
	listeningAdmin = regexp.MustCompile(`listening on (\S+) \(admin\) for (\S+)`)
)

// startServe runs `latchkey serve` on 127.0.0.1:0 and waits until /readyz
// answers 200. It returns the base URL and a stop function that cancels
// the context and returns serve's error.
func startServe(t *testing.T, getenv func(string) string, args ...string) (string, func() error) {
	t.Helper()
	base, _, stop := startServeAdmin(t, getenv, args...)
	return base, stop
}

// startServeAdmin is startServe that also returns the admin listener's
// base URL, when args give one (--admin-listen localhost:0: the same
// address as --listen is refused). With tls_cert, both are https URLs,
// and readiness is polled without checking the certificate.
func startServeAdmin(t *testing.T, getenv func(string) string, args ...string) (string, string, func() error) {
	t.Helper()
	s := startServing(t, getenv, args...)
	return s.base, s.admin, s.stop
}

// serving is a `latchkey serve` running in-process.
type serving struct {
	base, admin string
	log         *syncBuffer // its stderr
	stop        func() error
}

func startServing(t *testing.T, getenv func(string) string, args ...string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"latchkey", "serve", "--listen", "127.0.0.1:0"}, args...), getenv, strings.NewReader(""), &stdout, &stderr)
	}()
	deadline := time.Now().Add(15 * time.Second)
	var base string
	poll := http.DefaultClient
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited early: %v; stderr: %s", err, stderr.String())
		default:
		}
		if m := listening.FindStringSubmatch(stdout.String()); m != nil && base == "" {
			base = m[2] + "://" + m[1]
			if m[2] == "https" {
				poll = &http.Client{Transport: &http.Transport{
					TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
			}
		}
		if base != "" {
			if resp, err := poll.Get(base + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if base == "" {
		cancel()
		t.Fatalf("serve never became ready; stderr: %s", stderr.String())
	}
	var admin string
	if m := listeningAdmin.FindStringSubmatch(stdout.String()); m != nil {
		admin = m[2] + "://" + m[1]
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop within 30s of cancellation")
			return nil
		}
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("serve's log:\n%s", stderr.String())
		}
	})
	return &serving{base: base, admin: admin, log: &stderr, stop: stop}
}

// TestEndToEnd drives the whole life of a key pair through the CLI:
// admin create, integration create, token, introspect, regenerate, and the
// old token going inactive.
func TestEndToEnd(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	noEnv := environ()

	adminToken := strings.TrimSpace(mustCLI(t, noEnv, "admin", "create", "alice", "--database", db))
	if !strings.HasPrefix(adminToken, "lk_adm_") {
		t.Fatalf("admin create printed %q, want an lk_adm_ token", adminToken)
	}

	base, stop := startServe(t, noEnv, "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", adminToken)

	billing := decodeJSON(t, mustCLI(t, admin, "integration", "create", "billing", "--scope", "invoices:read invoices:write"))
	rs := decodeJSON(t, mustCLI(t, admin, "integration", "create", "orders-api", "--can-introspect"))
	pair := func(m map[string]any) (string, string) {
		kp := m["key_pair"].(map[string]any)
		return kp["client_id"].(string), kp["client_secret"].(string)
	}
	billingID, billingSecret := pair(billing)
	rsID, rsSecret := pair(rs)
	asBilling := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", billingID, "LATCHKEY_CLIENT_SECRET", billingSecret)
	asRS := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", rsID, "LATCHKEY_CLIENT_SECRET", rsSecret)

	tok := decodeJSON(t, mustCLI(t, asBilling, "token", "issue"))
	access, _ := tok["access_token"].(string)
	if !strings.HasPrefix(access, "lk_at_") || tok["expires_in"] != float64(36000) || tok["scope"] != "invoices:read invoices:write" {
		t.Fatalf("token issue = %v", tok)
	}

	got := decodeJSON(t, mustCLI(t, asRS, "token", "introspect", access))
	if got["active"] != true || got["sub"] != "billing" || got["client_id"] != billingID {
		t.Fatalf("introspect before regenerate = %v", got)
	}
	fromStdin, err := cliStdin(t, asRS, access+"\n", "token", "introspect", "-")
	if err != nil || decodeJSON(t, fromStdin)["active"] != true {
		t.Fatalf("introspect - (token on stdin) = %q, %v; want active", fromStdin, err)
	}

	listed := decodeJSON(t, mustCLI(t, admin, "integration", "list"))
	if n := len(listed["items"].([]any)); n != 2 {
		t.Fatalf("integration list has %d items, want 2", n)
	}
	first := decodeJSON(t, mustCLI(t, admin, "integration", "list", "--limit", "1"))
	second := decodeJSON(t, mustCLI(t, admin, "integration", "list", "--limit", "1", "--page-token", first["next_page_token"].(string)))
	name := func(m map[string]any) any { return m["items"].([]any)[0].(map[string]any)["name"] }
	if name(first) != "billing" || name(second) != "orders-api" || second["next_page_token"] != "" {
		t.Fatalf("paged list = %v then %v", first, second)
	}
	if _, err := cli(t, admin, "integration", "regenerate", "billing", "--grace", "1.5s"); exitCode(err) != 2 {
		t.Fatalf("regenerate --grace 1.5s: err = %v, want a usage error", err)
	}
	one := decodeJSON(t, mustCLI(t, admin, "integration", "get", "billing"))
	if strings.Contains(mustCLI(t, admin, "integration", "get", "billing"), billingSecret) || one["name"] != "billing" {
		t.Fatalf("integration get = %v (must not show the secret)", one)
	}

	fresh := decodeJSON(t, mustCLI(t, admin, "integration", "regenerate", "billing"))
	if fresh["client_id"] == billingID || fresh["client_secret"] == nil {
		t.Fatalf("regenerate = %v", fresh)
	}

	inactive, err := cli(t, asRS, "token", "introspect", access)
	if got = decodeJSON(t, inactive); len(got) != 1 || got["active"] != false || exitCode(err) != 1 {
		t.Fatalf("introspect after regenerate = %v, exit %d; want {active:false}, exit 1", got, exitCode(err))
	}
	if _, err := cli(t, asBilling, "token", "issue"); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("token issue with the old pair: err = %v, want invalid_client", err)
	}
	asNew := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", fresh["client_id"].(string), "LATCHKEY_CLIENT_SECRET", fresh["client_secret"].(string))
	mustCLI(t, asNew, "token", "issue")

	mustCLI(t, admin, "integration", "delete", "orders-api")
	if _, err := cli(t, admin, "integration", "get", "orders-api"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("get after delete: err = %v, want a 404", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after cancellation, want nil", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

// TestIntegrationTokenRate sets the issuance cap from serve's flags and an
// integration's own rate from the CLI: create and update take --token-rate
// (a number, 0 for no cap, or "default"), and the server applies it.
func TestIntegrationTokenRate(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	boot := environ("LATCHKEY_BOOTSTRAP_TOKEN", "rate-bootstrap-token-0123456789abcdefgh")
	// One token, then one a minute: this test never waits that long.
	base, _ := startServe(t, boot, "--database", db, "--integration-token-rate", "1", "--integration-token-burst", "1")
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", "rate-bootstrap-token-0123456789abcdefgh")
	as := func(ig map[string]any) func(string) string {
		kp := ig["key_pair"].(map[string]any)
		return environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", kp["client_id"].(string), "LATCHKEY_CLIENT_SECRET", kp["client_secret"].(string))
	}
	refused := func(env func(string) string, what string) {
		t.Helper()
		if _, err := cli(t, env, "token", "issue"); err == nil || !strings.Contains(err.Error(), "slow_down (429)") {
			t.Fatalf("%s: token issue err = %v, want slow_down (429)", what, err)
		}
	}
	rateOf := func(name string) any {
		return decodeJSON(t, mustCLI(t, admin, "integration", "get", name))["token_rate_per_minute"]
	}

	capped := decodeJSON(t, mustCLI(t, admin, "integration", "create", "capped"))
	if capped["token_rate_per_minute"] != nil {
		t.Errorf("create without --token-rate: token_rate_per_minute = %v, want null", capped["token_rate_per_minute"])
	}
	mustCLI(t, as(capped), "token", "issue")
	refused(as(capped), "second token at the server's cap")

	bulk := decodeJSON(t, mustCLI(t, admin, "integration", "create", "bulk", "--token-rate", "0"))
	for range 5 {
		mustCLI(t, as(bulk), "token", "issue")
	}
	if got := rateOf("bulk"); got != float64(0) {
		t.Errorf("bulk: token_rate_per_minute = %v, want 0", got)
	}

	mustCLI(t, admin, "integration", "update", "capped", "--token-rate", "0")
	mustCLI(t, as(capped), "token", "issue")
	mustCLI(t, admin, "integration", "update", "capped", "--description", "leaves the rate alone")
	if got := rateOf("capped"); got != float64(0) {
		t.Errorf("after update --description: token_rate_per_minute = %v, want 0 still", got)
	}
	mustCLI(t, admin, "integration", "update", "capped", "--token-rate", "default")
	if got := rateOf("capped"); got != nil {
		t.Errorf("after update --token-rate default: token_rate_per_minute = %v, want null", got)
	}
	refused(as(capped), "back at the server's cap")

	if _, err := cli(t, admin, "integration", "update", "capped"); exitCode(err) != 2 {
		t.Errorf("update with no flags: err = %v, want a usage error", err)
	}
	if _, err := cli(t, admin, "integration", "create", "bad", "--token-rate", "-1"); err == nil {
		t.Error("create --token-rate -1 succeeded")
	}
}

// TestServeRestartKeepsState checks that the generated secret and the data
// survive a restart: a key pair made before still works after.
func TestServeRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite://" + filepath.Join(dir, "latchkey.db")
	boot := environ("LATCHKEY_BOOTSTRAP_TOKEN", "restart-bootstrap-token-0123456789abcdef")
	base, stop := startServe(t, boot, "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", "restart-bootstrap-token-0123456789abcdef")
	ig := decodeJSON(t, mustCLI(t, admin, "integration", "create", "svc"))
	kp := ig["key_pair"].(map[string]any)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	base, _ = startServe(t, boot, "--database", db)
	as := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", kp["client_id"].(string), "LATCHKEY_CLIENT_SECRET", kp["client_secret"].(string))
	mustCLI(t, as, "token", "issue")
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      func(string) string
		wantCode int
		wantText string
	}{
		{"no command", nil, environ(), 2, "no command"},
		{"unknown command", []string{"frobnicate"}, environ(), 2, "unknown command"},
		{"bad token format", []string{"serve", "--token-format", "paseto"}, environ(), 1, "token_format"},
		{"bad log level from env", []string{"migrate"}, environ("LATCHKEY_LOG_LEVEL", "loud"), 1, "log_level"},
		{"integration without admin token", []string{"integration", "list"}, environ(), 2, "LATCHKEY_ADMIN_TOKEN"},
		{"token without key pair", []string{"token", "issue"}, environ(), 2, "LATCHKEY_CLIENT_ID"},
		{"admin create without name", []string{"admin", "create", "--database", "sqlite://" + filepath.Join(t.TempDir(), "x.db")}, environ(), 2, "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cli(t, tt.env, tt.args...)
			if err == nil {
				t.Fatal("err = nil, want an error")
			}
			if got := exitCode(err); got != tt.wantCode {
				t.Errorf("exit code = %d, want %d (err %v)", got, tt.wantCode, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantText)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out := mustCLI(t, environ(), "version")
	if !strings.HasPrefix(out, "latchkey ") {
		t.Fatalf("version printed %q", out)
	}
}

// TestVersionNamesCommit builds the binary as a release would be, from a
// git checkout with version control stamping on, and wants the commit it
// was built from in `latchkey version`.
func TestVersionNamesCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout (%v): nothing to stamp", err)
	}
	// The go command reads the commit of a linked worktree's main
	// repository, not the worktree's own.
	if dirs, _ := exec.Command("git", "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir").Output(); len(strings.Fields(string(dirs))) == 2 &&
		strings.Fields(string(dirs))[0] != strings.Fields(string(dirs))[1] {
		t.Skip("a linked git worktree: go stamps its main repository's commit")
	}
	bin := filepath.Join(t.TempDir(), "latchkey")
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))[:12]
	if !strings.Contains(string(out), "(commit "+rev) || strings.Contains(string(out), "(devel)") {
		t.Errorf("version printed %q, want the module version and commit %s", out, rev)
	}
}

func TestMigrateTwice(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	if out := mustCLI(t, environ(), "migrate", "--database", db); !strings.Contains(out, "applied migrations") {
		t.Fatalf("first migrate printed %q", out)
	}
	if out := mustCLI(t, environ(), "migrate", "--database", db); !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate printed %q", out)
	}
	_, err := cli(t, environ(), "migrate", "--database", "postgres://localhost/x")
	if err == nil || !strings.Contains(err.Error(), "secret: is required with a postgres database") {
		t.Fatalf("migrate on postgres without a secret: err = %v, want the secret named as required", err)
	}
	var ue usageError
	if errors.As(err, &ue) {
		t.Fatalf("a configuration error is not a usage error: %v", err)
	}
}

func TestMigratePostgres(t *testing.T) {
	env := environ("LATCHKEY_DATABASE", postgresDSN(t), "LATCHKEY_SECRET", strings.Repeat("k", 32))
	if out := mustCLI(t, env, "migrate"); !strings.Contains(out, "applied migrations") {
		t.Fatalf("first migrate printed %q", out)
	}
	if out := mustCLI(t, env, "migrate"); !strings.Contains(out, "up to date") {
		t.Fatalf("second migrate printed %q", out)
	}
	// Nothing listens on port 1: the error names the database and comes
	// at once, and never shows the password.
	start := time.Now()
	_, err := cli(t, env, "migrate", "--database", "postgres://latchkey:hunter2hunter2@127.0.0.1:1/latchkey")
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("migrate against a closed port: err = %v, want a connection error without the password", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("migrate against a closed port took %v", d)
	}
}

// TestShutdownFinishesInFlight stops the server while a token request is
// still sending its body: the request completes with a token, and serve
// then returns cleanly.
func TestShutdownFinishesInFlight(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	const boot = "shutdown-bootstrap-token-0123456789abcdef"
	base, stop := startServe(t, environ("LATCHKEY_BOOTSTRAP_TOKEN", boot), "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", boot)
	kp := decodeJSON(t, mustCLI(t, admin, "integration", "create", "svc"))["key_pair"].(map[string]any)

	body, send := io.Pipe()
	req, err := http.NewRequest("POST", base+"/oauth2/token", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(kp["client_id"].(string), kp["client_secret"].(string))
	type result struct {
		status int
		body   map[string]any
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var out map[string]any
		err = json.NewDecoder(resp.Body).Decode(&out)
		done <- result{resp.StatusCode, out, err}
	}()
	if _, err := send.Write([]byte("grant_type=client_")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the handler is now reading the body

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(200 * time.Millisecond) // shutdown has begun and is waiting for us
	select {
	case err := <-stopped:
		t.Fatalf("serve returned (%v) while a request was in flight", err)
	default:
	}
	if _, err := send.Write([]byte("credentials")); err != nil {
		t.Fatal(err)
	}
	send.Close()

	r := <-done
	if r.err != nil || r.status != http.StatusOK || r.body["access_token"] == nil {
		t.Fatalf("in-flight token request: status %d, body %v, err %v; want 200 with a token", r.status, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v, want nil", err)
	}
}
