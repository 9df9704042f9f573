package server_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// newAdmin creates an admin with role through the bootstrap token and
// returns its first admin token.
func (e *env) newAdmin(name string, role storage.Role) string {
	e.t.Helper()
	return e.mustAdmin("POST", "/admin/admins", map[string]any{"name": name, "role": role}, http.StatusCreated)["token"].(string)
}

// apiError decodes an admin API error answer.
func apiError(t testing.TB, b []byte) (code, description string) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error == "" || body.Description == "" {
		t.Fatalf("body %s is not an admin API error", b)
	}
	return body.Error, body.Description
}

// wantForbidden requires a 403 insufficient_permissions answer whose
// description names need.
func wantForbidden(t testing.TB, what string, status int, b []byte, need storage.Permission) {
	t.Helper()
	if status != http.StatusForbidden {
		t.Errorf("%s: status %d, want 403; body %s", what, status, b)
		return
	}
	code, desc := apiError(t, b)
	if code != "insufficient_permissions" || !strings.Contains(desc, "needs "+string(need)) {
		t.Errorf("%s: %s %q, want insufficient_permissions naming %s", what, code, desc, need)
	}
	var body struct{ Permission storage.Permission }
	if err := json.Unmarshal(b, &body); err != nil || body.Permission != need {
		t.Errorf("%s: permission %q, want %s", what, body.Permission, need)
	}
}

// declaredAdminRoutes reads routes.go and returns every admin route it
// registers (pattern → whether its handler is wrapped in a(permission,
// …)), so that a route added there without a line in the matrix below
// fails the test.
func declaredAdminRoutes(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "routes.go", nil, 0)
	if err != nil {
		t.Fatalf("parse routes.go: %v", err)
	}
	out := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Handle" {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		if _, path, _ := strings.Cut(pattern, " "); !strings.HasPrefix(path, "/admin/") {
			return true
		}
		wrapped := false
		if inner, ok := call.Args[1].(*ast.CallExpr); ok && len(inner.Args) == 2 {
			if id, ok := inner.Fun.(*ast.Ident); ok && id.Name == "a" {
				wrapped = true
			}
		}
		out[pattern] = wrapped
		return true
	})
	if len(out) == 0 {
		t.Fatal("found no admin routes in routes.go")
	}
	return out
}

// TestAuthorizationMatrix calls every admin route as every kind of caller
// and checks who gets through (2xx) and who is refused (403
// insufficient_permissions naming the route's permission). Each route's
// line says who may call it, as DESIGN.md's roles read: an owner does
// everything; an operator runs integrations and their key pairs, reads the
// audit log and keeps its own admin tokens; an auditor reads everything
// and changes nothing but its own admin tokens; the bootstrap token is an
// owner that cannot mint (or revoke) admin tokens; a token narrowed to
// integrations:read reads integrations and says whose it is.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	callers := map[string]string{
		"owner":     e.newAdmin("olivia", storage.RoleOwner),
		"operator":  e.newAdmin("oscar", storage.RoleOperator),
		"auditor":   e.newAdmin("audrey", storage.RoleAuditor),
		"bootstrap": testBootstrap,
	}
	callers["narrowed"] = e.mintAdminToken(callers["owner"], map[string]any{
		"description": "read-only script", "permissions": []storage.Permission{storage.IntegrationsRead},
	})["token"].(string)

	n := 0
	fresh := func(prefix string) string { n++; return fmt.Sprintf("%s-%d", prefix, n) }
	integration := func() string {
		name := fresh("ig")
		e.createIntegration(map[string]any{"name": name})
		return name
	}
	admin := func() string {
		name := fresh("adm")
		e.newAdmin(name, storage.RoleOperator)
		return name
	}
	ownToken := func(tok string) string {
		// Callers that may not mint get an ID that does not exist: they are
		// refused before it is looked up.
		status, b := e.adminCall("POST", "/admin/tokens", tok, map[string]any{"description": "to revoke"})
		if status != http.StatusCreated {
			return "adt_none"
		}
		return mustObject(e.t, b)["id"].(string)
	}
	const (
		all       = "owner operator auditor bootstrap narrowed"
		readers   = "owner operator auditor bootstrap narrowed"
		operators = "owner operator bootstrap"
		selfOnly  = "owner operator auditor"
		owners    = "owner bootstrap"
		auditors  = "owner auditor bootstrap"
	)
	matrix := []struct {
		pattern string
		need    storage.Permission // "" for none beyond a valid token
		who     string             // the callers let through
		want    int                // their status
		call    func(tok string) (path string, body any)
	}{
		{"POST /admin/integrations", storage.IntegrationsWrite, operators, http.StatusCreated,
			func(string) (string, any) { return "/admin/integrations", map[string]any{"name": fresh("new")} }},
		{"GET /admin/integrations", storage.IntegrationsRead, readers, http.StatusOK,
			func(string) (string, any) { return "/admin/integrations", nil }},
		{"GET /admin/integrations/{name}", storage.IntegrationsRead, readers, http.StatusOK,
			func(string) (string, any) { return "/admin/integrations/" + integration(), nil }},
		{"PATCH /admin/integrations/{name}", storage.IntegrationsWrite, operators, http.StatusOK,
			func(string) (string, any) {
				return "/admin/integrations/" + integration(), map[string]any{"description": "changed"}
			}},
		{"DELETE /admin/integrations/{name}", storage.IntegrationsWrite, operators, http.StatusNoContent,
			func(string) (string, any) { return "/admin/integrations/" + integration(), nil }},
		{"POST /admin/integrations/{name}/key-pair", storage.IntegrationsWrite, operators, http.StatusCreated,
			func(string) (string, any) { return "/admin/integrations/" + integration() + "/key-pair", nil }},
		{"DELETE /admin/integrations/{name}/previous-key-pair", storage.IntegrationsWrite, operators, http.StatusNoContent,
			func(string) (string, any) {
				name := integration()
				e.regenerate(name, 3600)
				return "/admin/integrations/" + name + "/previous-key-pair", nil
			}},
		{"GET /admin/integrations/{name}/tokens", storage.IntegrationsRead, readers, http.StatusOK,
			func(string) (string, any) { return "/admin/integrations/" + integration() + "/tokens", nil }},
		{"GET /admin/me", "", all, http.StatusOK,
			func(string) (string, any) { return "/admin/me", nil }},
		{"POST /admin/tokens", storage.AdminTokensWrite, selfOnly, http.StatusCreated,
			func(string) (string, any) { return "/admin/tokens", map[string]any{"description": "minted"} }},
		{"GET /admin/tokens", storage.AdminTokensRead, "owner operator auditor bootstrap", http.StatusOK,
			func(string) (string, any) { return "/admin/tokens", nil }},
		{"DELETE /admin/tokens/{id}", storage.AdminTokensWrite, selfOnly, http.StatusNoContent,
			func(tok string) (string, any) { return "/admin/tokens/" + ownToken(tok), nil }},
		{"GET /admin/admins", storage.AdminsRead, auditors, http.StatusOK,
			func(string) (string, any) { return "/admin/admins", nil }},
		{"POST /admin/admins", storage.AdminsWrite, owners, http.StatusCreated,
			func(string) (string, any) { return "/admin/admins", map[string]any{"name": fresh("new-admin")} }},
		{"PATCH /admin/admins/{name}", storage.AdminsWrite, owners, http.StatusOK,
			func(string) (string, any) { return "/admin/admins/" + admin(), map[string]any{"role": "auditor"} }},
		{"DELETE /admin/admins/{name}", storage.AdminsWrite, owners, http.StatusNoContent,
			func(string) (string, any) { return "/admin/admins/" + admin(), nil }},
		{"GET /admin/audit", storage.AuditRead, "owner operator auditor bootstrap", http.StatusOK,
			func(string) (string, any) { return "/admin/audit", nil }},
		{"POST /admin/credentials/revoke", storage.IntegrationsWrite, operators, http.StatusOK,
			func(string) (string, any) {
				kp := e.createIntegration(map[string]any{"name": fresh("leaked")})
				return "/admin/credentials/revoke", map[string]any{"credential": kp.Secret}
			}},
		{"GET /admin/signing-keys", storage.SigningKeysRead, auditors, http.StatusOK,
			func(string) (string, any) { return "/admin/signing-keys", nil }},
		{"POST /admin/signing-keys/rotate", storage.SigningKeysWrite, owners, http.StatusCreated,
			func(string) (string, any) { return "/admin/signing-keys/rotate", nil }},
	}

	declared := declaredAdminRoutes(t)
	listed := map[string]bool{}
	for _, r := range matrix {
		listed[r.pattern] = true
		if wrapped, ok := declared[r.pattern]; !ok {
			t.Errorf("the matrix lists %s, which routes.go does not register", r.pattern)
		} else if !wrapped {
			t.Errorf("routes.go registers %s without a(permission, …)", r.pattern)
		}
	}
	// open are the admin-listener routes anyone may call, and why; they
	// must answer without a token and must not be wrapped.
	open := map[string]string{
		"GET /admin/openapi.json": "the API's description holds no secret, and client generators fetch it without credentials",
	}
	for p, wrapped := range declared {
		switch _, isOpen := open[p]; {
		case isOpen && wrapped:
			t.Errorf("routes.go wraps %s in a(…), which the test lists as open", p)
		case isOpen:
			if status, b := e.adminCall(strings.Fields(p)[0], strings.Fields(p)[1], "", nil); status != http.StatusOK {
				t.Errorf("%s without a token: status %d, want 200 (%s); body %.200s", p, status, open[p], b)
			}
		case !listed[p]:
			t.Errorf("routes.go registers %s, which the matrix does not list: add a line saying who may call it", p)
		}
	}

	order := []string{"owner", "operator", "auditor", "bootstrap", "narrowed"}
	for _, r := range matrix {
		who := strings.Fields(r.who)
		for _, c := range who {
			if !slices.Contains(order, c) {
				t.Fatalf("%s: unknown caller %q", r.pattern, c)
			}
		}
		for _, c := range order {
			t.Run(r.pattern+"/"+c, func(t *testing.T) {
				path, body := r.call(callers[c])
				method, _, _ := strings.Cut(r.pattern, " ")
				status, b := e.adminCall(method, path, callers[c], body)
				if slices.Contains(who, c) {
					if status != r.want {
						t.Errorf("%s %s as %s: status %d, want %d; body %s", method, path, c, status, r.want, b)
					}
					return
				}
				wantForbidden(t, method+" "+path+" as "+c, status, b, r.need)
			})
		}
		t.Run(r.pattern+"/no token", func(t *testing.T) {
			path, body := r.call("")
			method, _, _ := strings.Cut(r.pattern, " ")
			if status, b := e.adminCall(method, path, "", body); status != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: status %d, want 401; body %s", method, path, status, b)
			}
		})
	}
}

func TestBootstrapCannotMintTokens(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	for _, body := range []any{nil, map[string]any{"description": "break-glass", "expires_in_days": -1}} {
		status, b := e.adminCall("POST", "/admin/tokens", testBootstrap, body)
		wantForbidden(t, "POST /admin/tokens as bootstrap", status, b, storage.AdminTokensWrite)
		if _, desc := apiError(t, b); !strings.Contains(desc, "bootstrap") {
			t.Errorf("the refusal does not say why the bootstrap token may not: %q", desc)
		}
	}
	if items, _ := e.listAll(testBootstrap, "/admin/tokens"); len(items) != 0 {
		t.Errorf("bootstrap holds tokens %v, want none", items)
	}
	// What it is for: making the first admin, who then mints tokens.
	ada := e.newAdmin("ada", storage.RoleOwner)
	e.mintAdminToken(ada, map[string]any{"description": "ada's laptop"})
}

func TestAdminTokenPermissions(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	root := e.newAdmin("root", storage.RoleOwner)
	oscar := e.newAdmin("oscar", storage.RoleOperator)
	perms := func(m map[string]any) []string {
		t.Helper()
		raw, ok := m["permissions"].([]any)
		if !ok {
			t.Fatalf("permissions = %#v, want an array", m["permissions"])
		}
		out := []string{}
		for _, p := range raw {
			out = append(out, p.(string))
		}
		return out
	}
	names := func(ps []storage.Permission) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, string(p))
		}
		return out
	}

	// Narrowed below the role, in the table's order whatever the request's.
	narrow := e.mintAdminToken(root, map[string]any{"description": "script",
		"permissions": []string{"admin-tokens:write", "integrations:read", "integrations:read"}})
	requireKeys(t, "minted token", narrow, "id", "token", "description", "permissions", "created_at", "expires_at")
	if got, want := perms(narrow), []string{"integrations:read", "admin-tokens:write"}; !reflect.DeepEqual(got, want) {
		t.Errorf("permissions = %v, want %v", got, want)
	}
	script := narrow["token"].(string)
	e.adminAs(script, "GET", "/admin/integrations", nil, http.StatusOK)
	status, b := e.adminCall("POST", "/admin/integrations", script, map[string]any{"name": "nope"})
	wantForbidden(t, "narrowed token creating an integration", status, b, storage.IntegrationsWrite)

	t.Run("never wider than the minting token", func(t *testing.T) {
		for _, p := range []storage.Permission{storage.IntegrationsWrite, storage.AdminsWrite, storage.AdminTokensRead} {
			status, b := e.adminCall("POST", "/admin/tokens", script, map[string]any{"permissions": []storage.Permission{storage.IntegrationsRead, p}})
			wantForbidden(t, "minting "+string(p)+" from a narrowed token", status, b, p)
		}
		// By default a token is as narrow as the one that minted it.
		child := e.mintAdminToken(script, map[string]any{"description": "child"})
		if got, want := perms(child), []string{"integrations:read", "admin-tokens:write"}; !reflect.DeepEqual(got, want) {
			t.Errorf("default permissions from a narrowed token = %v, want its own %v", got, want)
		}
		leaf := e.mintAdminToken(script, map[string]any{"permissions": []string{"integrations:read"}})["token"].(string)
		status, b := e.adminCall("POST", "/admin/tokens", leaf, nil)
		wantForbidden(t, "a token without admin-tokens:write minting", status, b, storage.AdminTokensWrite)
		// A role's limit holds for a token that follows it.
		status, b = e.adminCall("POST", "/admin/tokens", oscar, map[string]any{"permissions": []string{"signing-keys:read"}})
		wantForbidden(t, "an operator minting signing-keys:read", status, b, storage.SigningKeysRead)
	})

	t.Run("bad permissions", func(t *testing.T) {
		for _, body := range []string{`{"permissions":["integrations:admin"]}`, `{"permissions":"integrations:read"}`, `{"permissions":[5]}`} {
			status, b := e.adminCall("POST", "/admin/tokens", root, body)
			if status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400; body %s", body, status, b)
				continue
			}
			if _, desc := apiError(t, b); !strings.Contains(desc, "permission") {
				t.Errorf("%s: description %q does not name the field", body, desc)
			}
		}
	})

	t.Run("none: it only says whose it is", func(t *testing.T) {
		none := e.mintAdminToken(root, map[string]any{"permissions": []string{}})
		if got := perms(none); len(got) != 0 {
			t.Errorf("permissions = %v, want none", got)
		}
		e.adminAs(none["token"].(string), "GET", "/admin/me", nil, http.StatusOK)
		status, b := e.adminCall("GET", "/admin/tokens", none["token"].(string), nil)
		wantForbidden(t, "a token with no permissions listing tokens", status, b, storage.AdminTokensRead)
	})

	t.Run("listed with their permissions", func(t *testing.T) {
		items, _ := e.listAll(root, "/admin/tokens")
		got := map[string][]string{}
		for _, it := range items {
			got[it["description"].(string)] = perms(it)
		}
		if want := names(storage.RolePermissions(storage.RoleOwner)); !reflect.DeepEqual(got["initial token"], want) {
			t.Errorf("root's first token lists %v, want the owner's %v", got["initial token"], want)
		}
		if want := []string{"integrations:read", "admin-tokens:write"}; !reflect.DeepEqual(got["script"], want) {
			t.Errorf("the script token lists %v, want %v", got["script"], want)
		}
	})

	t.Run("a demotion narrows every token at once", func(t *testing.T) {
		e.newAdmin("second-owner", storage.RoleOwner)
		e.mustAdmin("PATCH", "/admin/admins/root", map[string]any{"role": "auditor"}, http.StatusOK)
		me := e.adminAs(script, "GET", "/admin/me", nil, http.StatusOK)
		if got, want := perms(me), []string{"integrations:read", "admin-tokens:write"}; !reflect.DeepEqual(got, want) {
			t.Errorf("after demotion to auditor the script token may %v, want %v", got, want)
		}
		status, b := e.adminCall("POST", "/admin/signing-keys/rotate", root, nil)
		wantForbidden(t, "a demoted owner rotating keys", status, b, storage.SigningKeysWrite)
		if _, desc := apiError(t, b); !strings.Contains(desc, "auditor") {
			t.Errorf("the refusal %q does not name the role", desc)
		}
	})
}

func TestAdminMe(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	names := func(ps []storage.Permission) []any {
		out := []any{}
		for _, p := range ps {
			out = append(out, string(p))
		}
		return out
	}
	root := e.newAdmin("root", storage.RoleOwner)
	auditor := e.newAdmin("audrey", storage.RoleAuditor)
	narrow := e.mintAdminToken(root, map[string]any{"description": "ci", "expires_in_days": -1,
		"permissions": []string{"audit:read", "integrations:read"}})
	e.clock.Advance(time.Minute)
	usedAt := e.now()

	ownerAll := names(storage.RolePermissions(storage.RoleOwner))
	tests := []struct {
		name, token string
		want        map[string]any // the fields but token
		wantToken   map[string]any // nil: "token" is null
	}{
		{"owner", root, map[string]any{"name": "root", "role": "owner", "bootstrap": false, "permissions": ownerAll},
			map[string]any{"description": "initial token", "permissions": ownerAll}},
		{"auditor", auditor, map[string]any{"name": "audrey", "role": "auditor", "bootstrap": false,
			"permissions": names(storage.RolePermissions(storage.RoleAuditor))},
			map[string]any{"description": "initial token", "permissions": names(storage.RolePermissions(storage.RoleAuditor))}},
		{"narrowed", narrow["token"].(string), map[string]any{"name": "root", "role": "owner", "bootstrap": false,
			"permissions": []any{"integrations:read", "audit:read"}},
			map[string]any{"id": narrow["id"], "description": "ci", "permissions": []any{"integrations:read", "audit:read"}, "expires_at": nil}},
		{"bootstrap", testBootstrap, map[string]any{"name": "bootstrap", "role": "owner", "bootstrap": true,
			"permissions": slices.DeleteFunc(slices.Clone(ownerAll), func(p any) bool { return p == string(storage.AdminTokensWrite) })}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := e.adminAs(tc.token, "GET", "/admin/me", nil, http.StatusOK)
			if got, want := keysOf(out), []string{"bootstrap", "name", "permissions", "role", "token"}; !reflect.DeepEqual(got, want) {
				t.Errorf("fields %v, want %v", got, want)
			}
			for k, want := range tc.want {
				if got := out[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
			if tc.wantToken == nil {
				if v, ok := out["token"]; !ok || v != nil {
					t.Errorf("token = %#v, want null", v)
				}
				return
			}
			tok, ok := out["token"].(map[string]any)
			if !ok {
				t.Fatalf("token = %#v, want an object", out["token"])
			}
			if got, want := keysOf(tok), []string{"created_at", "description", "expires_at", "id", "last_used_at", "permissions"}; !reflect.DeepEqual(got, want) {
				t.Errorf("token fields %v, want %v", got, want)
			}
			for k, want := range tc.wantToken {
				if got := tok[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("token.%s = %#v, want %#v", k, got, want)
				}
			}
			wantTime(t, "token.last_used_at", tok["last_used_at"], usedAt)
			if strings.Contains(fmt.Sprint(out), tc.token) {
				t.Error("GET /admin/me shows the token itself")
			}
		})
	}
}

func TestAdminWrongScheme(t *testing.T) {
	e := newEnv(t)
	root := e.newAdmin("root", storage.RoleOwner)
	tests := []struct {
		name, header string
		want         string // in the description
	}{
		{"Token scheme", "Token " + root, "Authorization: Bearer <admin token>"},
		{"Basic scheme", "Basic " + root, "Authorization: Bearer <admin token>"},
		{"no scheme", root, "Authorization: Bearer <admin token>"},
		{"bootstrap token without a scheme", testBootstrap, "Authorization: Bearer <admin token>"},
		{"no header", "", "missing admin token"},
		{"bearer without a token", "Bearer ", "missing admin token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", e.srv.URL+"/admin/me", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			status, h, b := e.do(req)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401; body %s", status, b)
			}
			requireAPIError(t, tc.name, h, b)
			_, desc := apiError(t, b)
			if !strings.Contains(desc, tc.want) {
				t.Errorf("description %q, want it to say %q", desc, tc.want)
			}
			if tc.header != "" && !strings.HasPrefix(tc.header, "Bearer") && !strings.Contains(desc, "scheme") {
				t.Errorf("description %q does not say the scheme is wrong", desc)
			}
			if strings.Contains(string(b), root) || strings.Contains(string(b), testBootstrap) {
				t.Errorf("the answer repeats the credential: %s", b)
			}
		})
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	req, _ := http.NewRequest("GET", e.srv.URL+"/admin/me", nil)
	req.Header.Set("Authorization", "bearer "+root)
	if status, _, b := e.do(req); status != http.StatusOK {
		t.Errorf("lowercase bearer: status %d, want 200; body %s", status, b)
	}
}

// TestLastOwner: the last owner (the bootstrap admin aside) can be neither
// deleted nor demoted, by anyone, itself included; with another owner,
// either may go.
func TestLastOwner(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	alice := e.newAdmin("alice", storage.RoleOwner)
	lastOwner := func(what string, status int, b []byte) {
		t.Helper()
		if status != http.StatusConflict {
			t.Fatalf("%s: status %d, want 409; body %s", what, status, b)
		}
		if code, desc := apiError(t, b); code != "conflict" || !strings.Contains(desc, "last owner") {
			t.Errorf("%s: %s %q, want conflict saying it is the last owner", what, code, desc)
		}
	}
	for _, caller := range []string{testBootstrap, alice} {
		status, b := e.adminCall("DELETE", "/admin/admins/alice", caller, nil)
		lastOwner("delete the last owner", status, b)
		for _, role := range []string{"operator", "auditor"} {
			status, b := e.adminCall("PATCH", "/admin/admins/alice", caller, map[string]any{"role": role})
			lastOwner("demote the last owner to "+role, status, b)
		}
	}
	if got := e.adminAs(alice, "GET", "/admin/me", nil, http.StatusOK)["role"]; got != "owner" {
		t.Fatalf("alice is %v after refused changes, want owner", got)
	}

	// A second owner: alice may step down herself, and her token narrows
	// at once.
	bob := e.newAdmin("bob", storage.RoleOwner)
	out := e.adminAs(alice, "PATCH", "/admin/admins/alice", map[string]any{"role": "operator"}, http.StatusOK)
	if got, want := keysOf(out), []string{"created_at", "name", "role"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PATCH answer fields %v, want %v", got, want)
	}
	if out["name"] != "alice" || out["role"] != "operator" {
		t.Errorf("PATCH answer %v, want alice the operator", out)
	}
	status, b := e.adminCall("GET", "/admin/admins", alice, nil)
	wantForbidden(t, "alice, demoted, listing admins", status, b, storage.AdminsRead)
	status, b = e.adminCall("DELETE", "/admin/admins/bob", bob, nil)
	lastOwner("bob deleting himself, the last owner now", status, b)
	e.adminAs(bob, "PATCH", "/admin/admins/alice", map[string]any{"role": "owner"}, http.StatusOK)
	e.adminAs(bob, "DELETE", "/admin/admins/bob", nil, http.StatusNoContent)
	e.adminAs(bob, "GET", "/admin/me", nil, http.StatusUnauthorized)

	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, body string
			want             int
		}{
			{"unknown role", "/admin/admins/alice", `{"role":"root"}`, http.StatusBadRequest},
			{"no role", "/admin/admins/alice", `{}`, http.StatusBadRequest},
			{"rename", "/admin/admins/alice", `{"name":"alicia"}`, http.StatusBadRequest},
			{"unknown admin", "/admin/admins/nobody", `{"role":"owner"}`, http.StatusNotFound},
			{"the bootstrap admin", "/admin/admins/bootstrap", `{"role":"auditor"}`, http.StatusConflict},
		} {
			status, b := e.adminCall("PATCH", tc.path, alice, tc.body)
			if status != tc.want {
				t.Errorf("%s: status %d, want %d; body %s", tc.name, status, tc.want, b)
			}
		}
	})

	t.Run("audited with the old and the new role", func(t *testing.T) {
		items, _ := e.listAll(alice, "/admin/audit")
		var got []string
		for _, it := range items {
			if it["action"] == "admin.update" {
				got = append(got, fmt.Sprint(it["actor"], " ", it["object"], " ", it["details"]))
			}
		}
		want := []string{"bob alice map[role:map[new:owner old:operator]]", "alice alice map[role:map[new:operator old:owner]]"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("admin.update events %q, want %q", got, want)
		}
	})
}

// TestLastOwnerConcurrent demotes the last two owners at once, each
// itself, over and over: every time one change wins and the other is 409.
func TestLastOwnerConcurrent(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	e.clock.Live()
	for i := range 6 {
		x, y := fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i)
		tokens := map[string]string{x: e.newAdmin(x, storage.RoleOwner), y: e.newAdmin(y, storage.RoleOwner)}
		if i > 0 {
			for _, prev := range []string{fmt.Sprintf("x%d", i-1), fmt.Sprintf("y%d", i-1)} {
				e.mustAdmin("PATCH", "/admin/admins/"+prev, map[string]any{"role": "auditor"}, http.StatusOK)
			}
		}
		statuses := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for name, tok := range tokens {
			wg.Go(func() {
				<-start
				status, _ := e.adminCall("PATCH", "/admin/admins/"+name, tok, map[string]any{"role": "operator"})
				mu.Lock()
				statuses[name] = status
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		got := []int{statuses[x], statuses[y]}
		slices.Sort(got)
		if want := []int{http.StatusOK, http.StatusConflict}; !slices.Equal(got, want) {
			t.Fatalf("round %d: statuses %v, want one 200 and one 409", i, statuses)
		}
		owners := 0
		items, _ := e.listAll(testBootstrap, "/admin/admins")
		for _, it := range items {
			if it["role"] == "owner" && it["name"] != "bootstrap" {
				owners++
			}
		}
		if owners != 1 {
			t.Fatalf("round %d: %d owners left, want 1", i, owners)
		}
	}
}

// TestCredentialRevokeAdminTokenNeedsAdminsWrite: revoking a found admin
// token is managing another admin, so beyond the route's integrations:write
// it needs admins:write, checked once the credential is known to be one.
func TestCredentialRevokeAdminTokenNeedsAdminsWrite(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	owner := e.newAdmin("olivia", storage.RoleOwner)
	operator := e.newAdmin("oscar", storage.RoleOperator)
	leaked := e.newAdmin("lena", storage.RoleAuditor)
	status, b := e.adminCall("POST", "/admin/credentials/revoke", operator, map[string]any{"credential": leaked})
	wantForbidden(t, "an operator revoking an admin token", status, b, storage.AdminsWrite)
	if status, b := e.adminCall("GET", "/admin/me", leaked, nil); status != http.StatusOK {
		t.Fatalf("the refused revocation revoked the token: %d %s", status, b)
	}
	if status, b := e.adminCall("POST", "/admin/credentials/revoke", owner, map[string]any{"credential": leaked}); status != http.StatusOK {
		t.Fatalf("an owner revoking an admin token: %d %s", status, b)
	}
	if status, _ := e.adminCall("GET", "/admin/me", leaked, nil); status != http.StatusUnauthorized {
		t.Errorf("the revoked admin token still works: %d", status)
	}
}
