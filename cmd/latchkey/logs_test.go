package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeLogsNoSecrets runs serve at debug level with every secret the
// configuration can hold, drives a token request with a wrong and a right
// Basic header and an admin call, stops it, and reads its whole log: none
// of the secrets may appear, plain or as the base64 of a Basic header.
func TestServeLogsNoSecrets(t *testing.T) {
	const (
		secret    = "serve-log-system-secret-0123456789abcdef"
		bootstrap = "serve-log-bootstrap-token-0123456789abcdef"
		metrics   = "serve-log-metrics-token-0123456789abcdef"
	)
	getenv := environ(
		"LATCHKEY_DATABASE", "sqlite://"+filepath.Join(t.TempDir(), "latchkey.db"),
		"LATCHKEY_SECRET", secret,
		"LATCHKEY_BOOTSTRAP_TOKEN", bootstrap,
		"LATCHKEY_METRICS_TOKEN", metrics,
		"LATCHKEY_LOG_LEVEL", "debug",
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"latchkey", "serve", "--listen", "127.0.0.1:0"}, getenv, strings.NewReader(""), &stdout, &stderr)
	}()
	var base string
	for deadline := time.Now().Add(15 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := listening.FindStringSubmatch(stdout.String()); m != nil {
			base = m[2] + "://" + m[1]
		}
	}
	if base == "" {
		t.Fatalf("serve did not start; its log:\n%s", stderr.String())
	}

	call := func(method, path, auth, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for deadline := time.Now().Add(5 * time.Second); call("GET", "/readyz", "", "").StatusCode != http.StatusOK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("serve never became ready")
		}
	}
	wrongBasic := base64.StdEncoding.EncodeToString([]byte("lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa:" + secret))
	call("POST", "/oauth2/token", "Basic "+wrongBasic, url.Values{"grant_type": {"client_credentials"}}.Encode())
	call("GET", "/admin/integrations", "Bearer "+bootstrap, "")
	call("GET", "/metrics", "Bearer "+metrics, "")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}

	log := stderr.String()
	if !strings.Contains(log, "/oauth2/token") {
		t.Fatalf("the log has no access-log line for the token request; is it the right log?\n%s", log)
	}
	for label, v := range map[string]string{
		"the system secret":   secret,
		"the bootstrap token": bootstrap,
		"the metrics token":   metrics,
		"a Basic header":      wrongBasic,
	} {
		if strings.Contains(log, v) {
			t.Errorf("serve's log holds %s", label)
		}
	}
}
