package main

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
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
	sv := startServing(t, getenv)
	base := sv.base

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
	wrongBasic := base64.StdEncoding.EncodeToString([]byte("lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa:" + secret))
	call("POST", "/oauth2/token", "Basic "+wrongBasic, url.Values{"grant_type": {"client_credentials"}}.Encode())
	call("GET", "/admin/integrations", "Bearer "+bootstrap, "")
	call("GET", "/metrics", "Bearer "+metrics, "")
	if err := sv.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	log := sv.log.String()
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

// TestServeTellsHowToGetIn: a server with no admin says, once at start-up,
// both ways in; one with an admin, or a bootstrap token, says neither.
func TestServeTellsHowToGetIn(t *testing.T) {
	hints := []string{"latchkey admin create NAME", "LATCHKEY_BOOTSTRAP_TOKEN"}
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	serveLog := func(env ...string) string {
		t.Helper()
		sv := startServing(t, environ(append([]string{"LATCHKEY_DATABASE", db}, env...)...))
		if err := sv.stop(); err != nil {
			t.Fatalf("serve: %v", err)
		}
		return sv.log.String()
	}
	log := serveLog()
	for _, h := range hints {
		if strings.Count(log, h) != 1 {
			t.Errorf("with no admin, the log mentions %q %d times, want once:\n%s", h, strings.Count(log, h), log)
		}
	}
	log = serveLog("LATCHKEY_BOOTSTRAP_TOKEN", "serve-hint-bootstrap-token-0123456789abcdef")
	mustCLI(t, environ(), "admin", "create", "alice", "--database", db)
	for _, log := range []string{log, serveLog()} {
		for _, h := range hints {
			if strings.Contains(log, h) {
				t.Errorf("with a way in, the log still mentions %q:\n%s", h, log)
			}
		}
	}
}
