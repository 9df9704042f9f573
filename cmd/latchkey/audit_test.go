package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCredentialsAndAudit drives `latchkey credentials revoke` and
// `latchkey audit` against a running server.
func TestCredentialsAndAudit(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	const boot = "audit-bootstrap-token-0123456789abcdefgh"
	base, _ := startServe(t, environ("LATCHKEY_BOOTSTRAP_TOKEN", boot), "--database", db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", boot)

	created := decodeJSON(t, mustCLI(t, admin, "integration", "create", "leaky"))
	secret := created["key_pair"].(map[string]any)["client_secret"].(string)
	mustCLI(t, admin, "integration", "update", "leaky", "--description", "found in a log")

	out, err := cliStdin(t, admin, secret+"\n", "credentials", "revoke", "-")
	if err != nil {
		t.Fatalf("credentials revoke - (the secret on stdin): %v", err)
	}
	got := decodeJSON(t, out)
	if got["kind"] != "client_secret" || got["revoked"] != true || got["owner"].(map[string]any)["name"] != "leaky" {
		t.Errorf("credentials revoke - = %v, want leaky's client secret revoked", got)
	}
	if got := decodeJSON(t, mustCLI(t, admin, "credentials", "revoke", secret)); got["revoked"] != false {
		t.Errorf("credentials revoke again = %v, want revoked false", got)
	}
	if _, err := cli(t, admin, "credentials", "revoke", "lk_cs_not-a-secret"); exitCode(err) != 1 || !strings.Contains(err.Error(), "not_found (404)") {
		t.Errorf("credentials revoke of a mistyped secret: err %v, want not_found (404), exit 1", err)
	}
	for name, args := range map[string][]string{
		"no subcommand":    {"credentials"},
		"no value":         {"credentials", "revoke"},
		"two values":       {"credentials", "revoke", secret, secret},
		"other subcommand": {"credentials", "list"},
	} {
		if _, err := cli(t, admin, args...); exitCode(err) != 2 {
			t.Errorf("%s: err %v, want a usage error", name, err)
		}
	}
	if _, err := cliStdin(t, admin, "\n", "credentials", "revoke", "-"); exitCode(err) != 2 {
		t.Errorf("credentials revoke - with nothing on stdin: err %v, want a usage error", err)
	}

	items := func(out string) []any { return decodeJSON(t, out)["items"].([]any) }
	revokes := items(mustCLI(t, admin, "audit", "--action", "credential.revoke"))
	if len(revokes) != 2 {
		t.Errorf("audit --action credential.revoke: %d events, want 2", len(revokes))
	}
	update := items(mustCLI(t, admin, "audit", "--integration", "leaky", "--action", "integration.update", "--actor", "bootstrap", "--since", "1h"))
	if len(update) != 1 {
		t.Fatalf("audit of leaky's update: %v, want 1 event", update)
	}
	changes := update[0].(map[string]any)["details"].(map[string]any)["changes"].(map[string]any)
	if d := changes["description"].(map[string]any); d["old"] != "" || d["new"] != "found in a log" {
		t.Errorf("the update's changes = %v, want description from \"\" to \"found in a log\"", changes)
	}
	if n := len(items(mustCLI(t, admin, "audit", "--until", "1h"))); n != 0 {
		t.Errorf("audit --until 1h: %d events, want none that old", n)
	}
	if n := len(items(mustCLI(t, admin, "audit", "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "--actor", "nobody"))); n != 0 {
		t.Errorf("audit --actor nobody: %d events, want none", n)
	}

	first := decodeJSON(t, mustCLI(t, admin, "audit", "--integration", "leaky", "--limit", "1"))
	next, _ := first["next_page_token"].(string)
	if len(first["items"].([]any)) != 1 || next == "" {
		t.Fatalf("audit --limit 1 = %v, want one event and a next page", first)
	}
	second := decodeJSON(t, mustCLI(t, admin, "audit", "--integration", "leaky", "--limit", "1", "--page-token", next))
	if a, b := first["items"].([]any)[0].(map[string]any)["id"], second["items"].([]any)[0].(map[string]any)["id"]; a == b {
		t.Errorf("the second page repeats the first: event %v", a)
	}

	for name, args := range map[string][]string{
		"a bad since":    {"audit", "--since", "yesterday"},
		"a negative ago": {"audit", "--until", "-1h"},
		"a positional":   {"audit", "leaky"},
	} {
		if _, err := cli(t, admin, args...); exitCode(err) != 2 {
			t.Errorf("%s: err %v, want a usage error", name, err)
		}
	}
	if _, err := cli(t, environ("LATCHKEY_ENDPOINT", base), "audit"); exitCode(err) != 2 {
		t.Errorf("audit without LATCHKEY_ADMIN_TOKEN: err %v, want a usage error", err)
	}
}
