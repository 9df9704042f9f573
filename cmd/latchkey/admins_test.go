package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAdminRecovery runs the commands that open the database directly:
// admin create makes an owner (or the --role given) and refuses a name
// that exists; admin token gives an existing admin a new token, audited as
// the command line's, which works against a running server. On SQLite and
// PostgreSQL.
func TestAdminRecovery(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			env := environ("USER", "ops-oncall")
			if backend == "sqlite" {
				env = environ("USER", "ops-oncall", "LATCHKEY_DATABASE", "sqlite://"+filepath.Join(t.TempDir(), "latchkey.db"))
			} else {
				env = environ("USER", "ops-oncall", "LATCHKEY_DATABASE", postgresDSN(t), "LATCHKEY_SECRET", strings.Repeat("k", 32))
			}
			first := strings.TrimSpace(mustCLI(t, env, "admin", "create", "alice"))
			if !strings.HasPrefix(first, "lk_adm_") {
				t.Fatalf("admin create printed %q, want a token", first)
			}
			if _, err := cli(t, env, "admin", "create", "alice"); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("admin create of an existing name: err = %v, want it refused as existing", err)
			}
			audrey := strings.TrimSpace(mustCLI(t, env, "admin", "create", "--role", "auditor", "audrey"))
			if _, err := cli(t, env, "admin", "create", "mallory", "--role=root"); err == nil || !strings.Contains(err.Error(), `role "root"`) {
				t.Errorf("admin create --role root: err = %v, want the role refused", err)
			}

			// The way back in: a new token for alice, on the database.
			fresh := strings.TrimSpace(mustCLI(t, env, "admin", "token", "alice", "--description", "after losing the laptop", "--expires-in-days", "7"))
			if !strings.HasPrefix(fresh, "lk_adm_") || fresh == first {
				t.Fatalf("admin token printed %q, want a new token", fresh)
			}
			for _, tc := range []struct {
				name string
				args []string
				want string
			}{
				{"unknown admin", []string{"admin", "token", "nobody"}, "not found"},
				{"the bootstrap admin", []string{"admin", "token", "bootstrap"}, "bootstrap"},
				{"bad expiry", []string{"admin", "token", "alice", "--expires-in-days", "0"}, "expires_in_days"},
				{"expiry not a number", []string{"admin", "token", "alice", "--expires-in-days", "week"}, "expires-in-days"},
				{"no name", []string{"admin", "token"}, "usage"},
			} {
				if _, err := cli(t, env, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
				}
			}

			base, _ := startServe(t, env)
			as := func(token string) func(string) string {
				return environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", token)
			}
			me := decodeJSON(t, mustCLI(t, as(fresh), "me"))
			tok, _ := me["token"].(map[string]any)
			if me["name"] != "alice" || me["role"] != "owner" || tok["description"] != "after losing the laptop" {
				t.Errorf("me with the recovered token = %v, want alice the owner and its description", me)
			}
			if got := decodeJSON(t, mustCLI(t, as(audrey), "me"))["role"]; got != "auditor" {
				t.Errorf("audrey's role = %v, want auditor", got)
			}
			// The old token still works: recovery adds, it does not revoke.
			mustCLI(t, as(first), "me")

			audit := decodeJSON(t, mustCLI(t, as(fresh), "admin", "list"))
			if n := len(audit["items"].([]any)); n != 2 {
				t.Errorf("admin list shows %d admins, want alice and audrey", n)
			}
			events := decodeJSON(t, mustCLI(t, as(fresh), "admin-token", "list"))["items"].([]any)
			if len(events) != 2 {
				t.Errorf("alice lists %d tokens, want her first and the recovered one", len(events))
			}
			var byCLI []string
			for _, it := range auditEvents(t, base, fresh) {
				if it["actor_type"] == "cli" {
					byCLI = append(byCLI, it["actor"].(string)+" "+it["action"].(string))
				}
			}
			want := []string{"ops-oncall admin_token.create", "ops-oncall admin_token.create", "ops-oncall admin.create",
				"ops-oncall admin_token.create", "ops-oncall admin.create"}
			if !slices.Equal(byCLI, want) {
				t.Errorf("events by the command line %q, want %q", byCLI, want)
			}
		})
	}
}

// auditEvents reads the audit log as token, newest first.
func auditEvents(t *testing.T, base, token string) []map[string]any {
	t.Helper()
	c := &apiClient{endpoint: base, bearer: token, http: &http.Client{Timeout: 10 * time.Second}}
	b, err := c.admin(t.Context(), http.MethodGet, "/admin/audit", nil)
	if err != nil {
		t.Fatalf("GET /admin/audit: %v", err)
	}
	var items []map[string]any
	for _, it := range decodeJSON(t, string(b))["items"].([]any) {
		items = append(items, it.(map[string]any))
	}
	return items
}

// TestAdminCommands drives the admin plane's API commands: me, admin
// list|set-role|delete and admin-token create|list|revoke.
func TestAdminCommands(t *testing.T) {
	db := environ("LATCHKEY_DATABASE", "sqlite://"+filepath.Join(t.TempDir(), "latchkey.db"))
	root := strings.TrimSpace(mustCLI(t, db, "admin", "create", "root"))
	mustCLI(t, db, "admin", "create", "oscar", "--role", "operator")
	base, _ := startServe(t, db)
	as := func(token string) func(string) string {
		return environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", token)
	}
	admin := as(root)

	if me := decodeJSON(t, mustCLI(t, admin, "me")); me["name"] != "root" || me["role"] != "owner" || me["bootstrap"] != false {
		t.Errorf("me = %v, want root the owner", me)
	}
	names := func() []string {
		var out []string
		for _, it := range decodeJSON(t, mustCLI(t, admin, "admin", "list"))["items"].([]any) {
			m := it.(map[string]any)
			out = append(out, m["name"].(string)+"="+m["role"].(string))
		}
		return out
	}
	if got, want := names(), []string{"oscar=operator", "root=owner"}; !slices.Equal(got, want) {
		t.Errorf("admin list = %v, want %v", got, want)
	}
	if got := decodeJSON(t, mustCLI(t, admin, "admin", "set-role", "oscar", "auditor"))["role"]; got != "auditor" {
		t.Errorf("set-role answered role %v, want auditor", got)
	}
	if _, err := cli(t, admin, "admin", "set-role", "root", "operator"); err == nil || !strings.Contains(err.Error(), "last owner") {
		t.Errorf("demoting the last owner: err = %v, want it refused as the last owner", err)
	}
	if out := mustCLI(t, admin, "admin", "delete", "oscar"); !strings.Contains(out, "deleted admin oscar") {
		t.Errorf("admin delete printed %q", out)
	}
	if got, want := names(), []string{"root=owner"}; !slices.Equal(got, want) {
		t.Errorf("admin list after delete = %v, want %v", got, want)
	}

	created := decodeJSON(t, mustCLI(t, admin, "admin-token", "create", "--description", "dashboards",
		"--expires-in-days", "30", "--permission", "integrations:read", "--permission", "audit:read"))
	narrow, _ := created["token"].(string)
	if got := created["permissions"]; len(got.([]any)) != 2 || created["description"] != "dashboards" {
		t.Errorf("admin-token create = %v, want description dashboards and two permissions", created)
	}
	mustCLI(t, as(narrow), "integration", "list")
	if _, err := cli(t, as(narrow), "integration", "create", "nope"); err == nil || !strings.Contains(err.Error(), "insufficient_permissions (403)") ||
		!strings.Contains(err.Error(), "integrations:write") {
		t.Errorf("a narrowed token creating an integration: err = %v, want 403 naming integrations:write", err)
	}
	if _, err := cli(t, as(narrow), "admin-token", "create"); err == nil || !strings.Contains(err.Error(), "admin-tokens:write") {
		t.Errorf("a narrowed token minting: err = %v, want 403 naming admin-tokens:write", err)
	}
	listed := decodeJSON(t, mustCLI(t, admin, "admin-token", "list"))["items"].([]any)
	if len(listed) != 2 {
		t.Fatalf("admin-token list = %v, want root's first token and dashboards", listed)
	}
	id := created["id"].(string)
	if out := mustCLI(t, admin, "admin-token", "revoke", id); !strings.Contains(out, "revoked admin token "+id) {
		t.Errorf("admin-token revoke printed %q", out)
	}
	if _, err := cli(t, as(narrow), "me"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("me with a revoked token: err = %v, want 401", err)
	}

	for _, args := range [][]string{
		{"admin"}, {"admin", "frob"}, {"admin", "set-role", "root"}, {"admin", "delete"},
		{"admin-token"}, {"admin-token", "frob"}, {"admin-token", "revoke"}, {"me", "extra"},
	} {
		if _, err := cli(t, admin, args...); exitCode(err) != 2 {
			t.Errorf("latchkey %s: err = %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	help := mustCLI(t, environ(), "help")
	for _, cmd := range []string{"admin create NAME [--role R]", "admin token NAME", "admin list|delete NAME|set-role NAME ROLE",
		"admin-token create", "admin-token list|revoke ID", "latchkey me"} {
		if !strings.Contains(help, cmd) {
			t.Errorf("usage does not list %q", cmd)
		}
	}
}
