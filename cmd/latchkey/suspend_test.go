package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestIntegrationDisableEnable suspends an integration from the CLI and
// resumes it: while it is disabled its key pair gets no token and its
// token introspects inactive, which token introspect reports with exit
// code 1; once enabled the token is active again, exit code 0.
func TestIntegrationDisableEnable(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	const boot = "suspend-bootstrap-token-0123456789abcdefgh"
	base, _ := startServe(t, environ("LATCHKEY_BOOTSTRAP_TOKEN", boot), "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", boot)
	as := func(ig map[string]any) func(string) string {
		kp := ig["key_pair"].(map[string]any)
		return environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_CLIENT_ID", kp["client_id"].(string), "LATCHKEY_CLIENT_SECRET", kp["client_secret"].(string))
	}
	job := decodeJSON(t, mustCLI(t, admin, "integration", "create", "job"))
	rs := decodeJSON(t, mustCLI(t, admin, "integration", "create", "rs", "--can-introspect"))
	access := decodeJSON(t, mustCLI(t, as(job), "token", "issue"))["access_token"].(string)
	introspect := func(what string, wantActive bool) {
		t.Helper()
		out, err := cli(t, as(rs), "token", "introspect", access)
		got := decodeJSON(t, out)
		wantCode := 1
		if wantActive {
			wantCode = 0
		}
		code := 0
		if err != nil {
			code = exitCode(err)
		}
		if got["active"] != wantActive || code != wantCode {
			t.Errorf("%s: token introspect printed %v, exit %d (%v); want active %v, exit %d", what, got, code, err, wantActive, wantCode)
		}
	}
	introspect("before disabling", true)

	if out := decodeJSON(t, mustCLI(t, admin, "integration", "disable", "job")); out["disabled"] != true || out["name"] != "job" {
		t.Fatalf("integration disable printed %v, want job with disabled true", out)
	}
	if got := decodeJSON(t, mustCLI(t, admin, "integration", "get", "job"))["disabled"]; got != true {
		t.Errorf("integration get after disable: disabled = %v, want true", got)
	}
	if _, err := cli(t, as(job), "token", "issue"); err == nil || !strings.Contains(err.Error(), "invalid_client (401)") || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("token issue while disabled: err = %v, want invalid_client (401) saying the integration is disabled", err)
	}
	introspect("while disabled", false)

	if out := decodeJSON(t, mustCLI(t, admin, "integration", "enable", "job")); out["disabled"] != false {
		t.Fatalf("integration enable printed %v, want disabled false", out)
	}
	introspect("after enabling", true)
	mustCLI(t, as(job), "token", "issue")

	for _, args := range [][]string{{"integration", "disable"}, {"integration", "enable", "a", "b"}} {
		if _, err := cli(t, admin, args...); exitCode(err) != 2 {
			t.Errorf("latchkey %s: exit %d, want 2 (usage)", strings.Join(args, " "), exitCode(err))
		}
	}
	if _, err := cli(t, admin, "integration", "disable", "missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("disable an unknown integration: err = %v, want a 404", err)
	}
}
