package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// Credential shapes from DESIGN.md, written out here so the tests check the
// contract and not the implementation's copy of it.
var (
	clientIDRE   = regexp.MustCompile(`^lk_ci_[a-z2-7]{26}$`)
	secretRE     = regexp.MustCompile(`^lk_cs_[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}$`)
	adminTokenRE = regexp.MustCompile(`^lk_adm_[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}$`)
)

// adminAs calls the admin API as token and requires want, returning the
// decoded object (empty for an empty body).
func (e *env) adminAs(token, method, path string, body any, want int) map[string]any {
	e.t.Helper()
	status, b := e.adminCall(method, path, token, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	return mustObject(e.t, b)
}

// mustObject decodes a JSON object; an empty body is an empty map.
func mustObject(t testing.TB, b []byte) map[string]any {
	t.Helper()
	out := map[string]any{}
	if len(b) == 0 {
		return out
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("body is not a JSON object: %q", b)
	}
	checkTimes(t, "", out)
	return out
}

// checkTimes requires every field called "time" or ending in "_at" to be
// JSON null or an RFC 3339 time in UTC (ending in Z), at any depth.
func checkTimes(t testing.TB, where string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k != "time" && !strings.HasSuffix(k, "_at") {
				checkTimes(t, where+"."+k, x)
				continue
			}
			switch s := x.(type) {
			case nil:
			case string:
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
					t.Errorf("%s.%s = %q, want an RFC 3339 time in UTC ending in Z", where, k, s)
				}
			default:
				t.Errorf("%s.%s = %#v, want an RFC 3339 string or null", where, k, x)
			}
		}
	case []any:
		for i, x := range v {
			checkTimes(t, fmt.Sprintf("%s[%d]", where, i), x)
		}
	}
}

// wantTime requires v to be an RFC 3339 string equal to want.
func wantTime(t *testing.T, field string, v any, want time.Time) {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Errorf("%s = %#v, want the time %s", field, v, want.Format(time.RFC3339Nano))
		return
	}
	got, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !got.Equal(want) {
		t.Errorf("%s = %q, want %s", field, s, want.UTC().Format(time.RFC3339Nano))
	}
}

// now is the server's clock reading as the store records it.
func (e *env) now() time.Time { return e.clock.Now().UTC().Truncate(time.Microsecond) }

// keysOf returns the sorted keys of m.
func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// requireKeys fails unless m has every key in want.
func requireKeys(t testing.TB, what string, m map[string]any, want ...string) {
	t.Helper()
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s has no %q field; fields: %v", what, k, keysOf(m))
		}
	}
}

// requireAPIError checks the admin API's error shape and content type.
func requireAPIError(t *testing.T, what string, h http.Header, b []byte) {
	t.Helper()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Errorf("%s: body is not a JSON object: %q", what, b)
		return
	}
	for _, k := range []string{"error", "error_description"} {
		if s, ok := body[k].(string); !ok || s == "" {
			t.Errorf("%s: %q = %#v, want a non-empty string; body %s", what, k, body[k], b)
		}
	}
}

// listAll follows next_page_token from path (which carries its own query)
// and returns every item and the number of pages.
func (e *env) listAll(token, path string) ([]map[string]any, int) {
	e.t.Helper()
	var items []map[string]any
	pageToken := ""
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for pages := 1; pages <= 100; pages++ {
		p := path
		if pageToken != "" {
			p += sep + "page_token=" + url.QueryEscape(pageToken)
		}
		out := e.adminAs(token, "GET", p, nil, http.StatusOK)
		requireKeys(e.t, "GET "+p, out, "items", "next_page_token")
		raw, ok := out["items"].([]any)
		if !ok {
			e.t.Fatalf("GET %s: items = %#v, want an array", p, out["items"])
		}
		for _, it := range raw {
			items = append(items, it.(map[string]any))
		}
		next, ok := out["next_page_token"].(string)
		if !ok {
			e.t.Fatalf("GET %s: next_page_token = %#v, want a string", p, out["next_page_token"])
		}
		if next == "" {
			return items, pages
		}
		pageToken = next
	}
	e.t.Fatalf("GET %s: more than 100 pages", path)
	return nil, 0
}

// mintAdminToken makes an admin token as caller and returns the response.
func (e *env) mintAdminToken(caller string, body any) map[string]any {
	e.t.Helper()
	return e.adminAs(caller, "POST", "/admin/tokens", body, http.StatusCreated)
}

// adminTokenItem finds the token id in caller's GET /admin/tokens.
func (e *env) adminTokenItem(caller, id string) map[string]any {
	e.t.Helper()
	items, _ := e.listAll(caller, "/admin/tokens")
	for _, it := range items {
		if it["id"] == id {
			return it
		}
	}
	e.t.Fatalf("admin token %s not in GET /admin/tokens", id)
	return nil
}

// noServerErrors fails the test if anything was logged at ERROR level: the
// admin API logs only unexpected failures, which answer 500.
func (e *env) noServerErrors() {
	e.t.Helper()
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			e.t.Errorf("unexpected error logged: %s", line)
		}
	}
}

// flipLast changes the last character of s, breaking its checksum.
func flipLast(s string) string {
	last := s[len(s)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return s[:len(s)-1] + string(repl)
}

func TestAdminAuth(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})

	root := e.newAdmin("root", storage.RoleOwner)
	valid := e.mintAdminToken(root, map[string]any{"description": "valid"})
	validToken := valid["token"].(string)
	revoked := e.mintAdminToken(root, map[string]any{"description": "revoked"})
	e.adminAs(root, "DELETE", "/admin/tokens/"+revoked["id"].(string), nil, http.StatusNoContent)
	revokedToken := revoked["token"].(string)

	t.Run("bootstrap token works", func(t *testing.T) {
		e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)
	})

	t.Run("minted token works and records last use", func(t *testing.T) {
		before := e.adminTokenItem(root, valid["id"].(string))
		if before["last_used_at"] != nil {
			t.Errorf("last_used_at before use = %v, want null", before["last_used_at"])
		}
		e.clock.Advance(time.Minute)
		usedAt := e.now()
		e.adminAs(validToken, "GET", "/admin/integrations", nil, http.StatusOK)
		after := e.adminTokenItem(validToken, valid["id"].(string))
		wantTime(t, "last_used_at after use", after["last_used_at"], usedAt)
	})

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bootstrap:"+testBootstrap))
	tests := []struct {
		name   string
		header string // the whole Authorization header; "" sends none
	}{
		{"no Authorization header", ""},
		{"wrong scheme Basic", basic},
		{"wrong scheme Token", "Token " + testBootstrap},
		{"bearer without token", "Bearer "},
		{"garbage token", "Bearer garbage"},
		{"bootstrap token with a suffix", "Bearer " + testBootstrap + "x"},
		{"bootstrap token prefix", "Bearer " + testBootstrap[:len(testBootstrap)-1]},
		{"lk_adm_ token with a bad checksum", "Bearer " + flipLast(validToken)},
		{"truncated lk_adm_ token", "Bearer " + validToken[:len(validToken)-1]},
		{"lk_adm_ prefix only", "Bearer lk_adm_"},
		{"well-formed unknown lk_adm_ token", "Bearer " + credential.NewAdminToken()},
		{"client secret as admin token", "Bearer " + kp.Secret},
		{"revoked token", "Bearer " + revokedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", e.srv.URL+"/admin/integrations", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			got, h, b := e.do(req)
			if want := http.StatusUnauthorized; got != want {
				t.Fatalf("status %d, want %d; body %s", got, want, b)
			}
			requireAPIError(t, "401", h, b)
		})
	}

	t.Run("every endpoint requires a token", func(t *testing.T) {
		endpoints := []struct{ method, path, body string }{
			{"POST", "/admin/integrations", `{"name":"sneaky"}`},
			{"GET", "/admin/integrations", ""},
			{"GET", "/admin/integrations/svc", ""},
			{"PATCH", "/admin/integrations/svc", `{"description":"sneaky"}`},
			{"DELETE", "/admin/integrations/svc", ""},
			{"POST", "/admin/integrations/svc/key-pair", ""},
			{"POST", "/admin/tokens", `{}`},
			{"GET", "/admin/tokens", ""},
			{"DELETE", "/admin/tokens/" + valid["id"].(string), ""},
			{"GET", "/admin/admins", ""},
			{"POST", "/admin/admins", `{"name":"sneaky"}`},
			{"DELETE", "/admin/admins/bootstrap", ""},
			{"GET", "/admin/audit", ""},
		}
		for _, ep := range endpoints {
			for _, tok := range []string{"", "garbage", revokedToken} {
				var body io.Reader
				if ep.body != "" {
					body = strings.NewReader(ep.body)
				}
				status, h, b := e.callAdminRaw(e.srv.URL, ep.method, ep.path, tok, body)
				if got, want := status, http.StatusUnauthorized; got != want {
					t.Errorf("%s %s with token %.10q: status %d, want %d; body %s", ep.method, ep.path, tok, got, want, b)
					continue
				}
				requireAPIError(t, ep.method+" "+ep.path, h, b)
			}
		}
		// Nothing happened.
		e.mustAdmin("GET", "/admin/integrations/svc", nil, http.StatusOK)
		e.adminAs(validToken, "GET", "/admin/tokens", nil, http.StatusOK)
		items, _ := e.listAll(testBootstrap, "/admin/integrations")
		if len(items) != 1 {
			t.Errorf("integrations = %v, want only svc", items)
		}
		e.token(kp, nil)
	})

	t.Run("expired token", func(t *testing.T) {
		short := e.mintAdminToken(root, map[string]any{"description": "default expiry"})["token"].(string)
		never := e.mintAdminToken(root, map[string]any{"description": "never", "expires_in_days": -1})["token"].(string)
		e.clock.Advance(90*24*time.Hour - time.Second)
		e.adminAs(short, "GET", "/admin/integrations", nil, http.StatusOK)
		e.clock.Advance(2 * time.Second)
		status, b := e.adminCall("GET", "/admin/integrations", short, nil)
		if got, want := status, http.StatusUnauthorized; got != want {
			t.Fatalf("90 days and 1 s later: status %d, want %d; body %s", got, want, b)
		}
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil || body["error"] == nil || body["error_description"] == nil {
			t.Errorf("401 body = %s, want {error, error_description}", b)
		}
		e.adminAs(never, "GET", "/admin/integrations", nil, http.StatusOK)
		e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)
	})
	e.noServerErrors()
}

func TestAdminIntegrationCreate(t *testing.T) {
	e := newEnv(t)
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)

	tests := []struct {
		name   string
		caller string
		body   map[string]any
		want   map[string]any // every field but the times and the key pair
	}{
		{
			name: "defaults", caller: testBootstrap,
			body: map[string]any{"name": "minimal"},
			want: map[string]any{
				"name": "minimal", "description": "", "scopes": []any{}, "audience": []any{},
				"can_introspect": false, "token_lifetime_seconds": float64(36000), "token_rate_per_minute": nil,
				"created_by": "bootstrap",
			},
		},
		{
			name: "every field", caller: testBootstrap,
			body: map[string]any{
				"name": "billing.sync-2", "description": "nightly sync", "scopes": []string{"read", "write:all"},
				"audience": []string{"https://api.example.com"}, "can_introspect": true, "token_lifetime_seconds": 600,
				"token_rate_per_minute": 120,
			},
			want: map[string]any{
				"name": "billing.sync-2", "description": "nightly sync", "scopes": []any{"read", "write:all"},
				"audience": []any{"https://api.example.com"}, "can_introspect": true,
				"token_lifetime_seconds": float64(600), "token_rate_per_minute": float64(120), "created_by": "bootstrap",
			},
		},
		{
			name: "by another admin", caller: alice,
			body: map[string]any{"name": "0-by-alice", "token_lifetime_seconds": 60, "token_rate_per_minute": 0},
			want: map[string]any{
				"name": "0-by-alice", "description": "", "scopes": []any{}, "audience": []any{},
				"can_introspect": false, "token_lifetime_seconds": float64(60), "token_rate_per_minute": float64(0),
				"created_by": "alice",
			},
		},
		{
			name: "longest name", caller: testBootstrap,
			body: map[string]any{"name": strings.Repeat("a", 63)},
			want: map[string]any{
				"name": strings.Repeat("a", 63), "description": "", "scopes": []any{}, "audience": []any{},
				"can_introspect": false, "token_lifetime_seconds": float64(36000), "created_by": "bootstrap",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Second)
			now := e.now()
			out := e.adminAs(tc.caller, "POST", "/admin/integrations", tc.body, http.StatusCreated)
			requireKeys(t, "create response", out, "name", "description", "scopes", "audience", "can_introspect",
				"token_lifetime_seconds", "token_rate_per_minute", "created_by", "created_at", "key_pair")
			for k, want := range tc.want {
				if got := out[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
			wantTime(t, "created_at", out["created_at"], now)
			if _, ok := out["previous_key_pair"]; ok {
				t.Errorf("previous_key_pair present on a new integration: %v", out["previous_key_pair"])
			}

			kp, ok := out["key_pair"].(map[string]any)
			if !ok {
				t.Fatalf("key_pair = %#v, want an object", out["key_pair"])
			}
			requireKeys(t, "key_pair", kp, "client_id", "client_secret", "created_at")
			id, _ := kp["client_id"].(string)
			secret, _ := kp["client_secret"].(string)
			if !clientIDRE.MatchString(id) {
				t.Errorf("client_id %q does not match %s", id, clientIDRE)
			}
			if !secretRE.MatchString(secret) {
				t.Errorf("client_secret %q does not match %s", secret, secretRE)
			}
			if !credential.ValidChecksummed(secret, "lk_cs_") {
				t.Errorf("client_secret %q has a bad checksum", secret)
			}
			wantTime(t, "key_pair.created_at", kp["created_at"], now)

			// The pair works.
			e.token(keyPair{ID: id, Secret: secret}, nil)

			// GET shows the same integration, without the secret.
			status, raw := e.adminCall("GET", "/admin/integrations/"+tc.want["name"].(string), testBootstrap, nil)
			if status != http.StatusOK {
				t.Fatalf("GET: status %d; body %s", status, raw)
			}
			got := mustObject(t, raw)
			for k, want := range tc.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("GET %s = %#v, want %#v", k, got[k], want)
				}
			}
			wantTime(t, "GET created_at", got["created_at"], now)
			if strings.Contains(string(raw), secret) || strings.Contains(string(raw), `"client_secret"`) {
				t.Errorf("GET shows the client secret: %s", raw)
			}
		})
	}

	t.Run("secret is unique per integration", func(t *testing.T) {
		a := e.createIntegration(map[string]any{"name": "uniq-a"})
		b := e.createIntegration(map[string]any{"name": "uniq-b"})
		if a.ID == b.ID || a.Secret == b.Secret {
			t.Errorf("two integrations share credentials: %v %v", a, b)
		}
	})
	e.noServerErrors()
}

func TestAdminIntegrationGet(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc", "scopes": []string{"read"}})
	createdAt := e.now()

	get := func(t *testing.T) (map[string]any, string) {
		t.Helper()
		status, raw := e.adminCall("GET", "/admin/integrations/svc", testBootstrap, nil)
		if status != http.StatusOK {
			t.Fatalf("GET: status %d; body %s", status, raw)
		}
		if strings.Contains(string(raw), kp.Secret) || strings.Contains(string(raw), `"client_secret"`) {
			t.Errorf("GET shows the client secret: %s", raw)
		}
		return mustObject(t, raw), string(raw)
	}

	t.Run("before use", func(t *testing.T) {
		out, _ := get(t)
		requireKeys(t, "integration", out, "name", "description", "scopes", "audience", "can_introspect",
			"token_lifetime_seconds", "token_rate_per_minute", "created_by", "created_at", "key_pair")
		pair, ok := out["key_pair"].(map[string]any)
		if !ok {
			t.Fatalf("key_pair = %#v, want an object", out["key_pair"])
		}
		if got, want := keysOf(pair), []string{"client_id", "created_at", "last_used_at"}; !reflect.DeepEqual(got, want) {
			t.Errorf("key_pair fields = %v, want %v", got, want)
		}
		if got, want := pair["client_id"], kp.ID; got != want {
			t.Errorf("client_id = %v, want %v", got, want)
		}
		wantTime(t, "key_pair.created_at", pair["created_at"], createdAt)
		if v, ok := pair["last_used_at"]; !ok || v != nil {
			t.Errorf("last_used_at = %#v (present %v), want null", v, ok)
		}
	})

	t.Run("after a token", func(t *testing.T) {
		e.clock.Advance(5 * time.Second)
		usedAt := e.now()
		e.token(kp, nil)
		out, _ := get(t)
		pair := out["key_pair"].(map[string]any)
		wantTime(t, "key_pair.last_used_at", pair["last_used_at"], usedAt)
		wantTime(t, "key_pair.created_at", pair["created_at"], createdAt)
	})

	t.Run("list never shows secrets", func(t *testing.T) {
		status, raw := e.adminCall("GET", "/admin/integrations", testBootstrap, nil)
		if status != http.StatusOK {
			t.Fatalf("status %d; body %s", status, raw)
		}
		if strings.Contains(string(raw), kp.Secret) || strings.Contains(string(raw), `"client_secret"`) {
			t.Errorf("list shows the client secret: %s", raw)
		}
		out := mustObject(t, raw)
		items := out["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("items = %v, want 1 integration", items)
		}
		pair := items[0].(map[string]any)["key_pair"].(map[string]any)
		if got, want := pair["client_id"], kp.ID; got != want {
			t.Errorf("client_id = %v, want %v", got, want)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		status, h, b := e.callAdminRaw(e.srv.URL, "GET", "/admin/integrations/nope", testBootstrap, nil)
		if got, want := status, http.StatusNotFound; got != want {
			t.Fatalf("status %d, want %d; body %s", got, want, b)
		}
		requireAPIError(t, "404", h, b)
	})
	e.noServerErrors()
}

func TestAdminIntegrationList(t *testing.T) {
	e := newEnv(t)
	names := []string{"echo", "alpha", "delta", "charlie", "bravo"}
	for _, n := range names {
		e.createIntegration(map[string]any{"name": n})
	}

	t.Run("default limit returns all", func(t *testing.T) {
		out := e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)
		if got, want := len(out["items"].([]any)), 5; got != want {
			t.Errorf("items = %d, want %d", got, want)
		}
		if got, want := out["next_page_token"], ""; got != want {
			t.Errorf("next_page_token = %#v, want %#v", got, want)
		}
	})

	t.Run("limit 2 pages through every item once", func(t *testing.T) {
		var seen []string
		pageSizes := []int{}
		tok := ""
		for i := 0; i < 10; i++ {
			p := "/admin/integrations?limit=2"
			if tok != "" {
				p += "&page_token=" + url.QueryEscape(tok)
			}
			out := e.mustAdmin("GET", p, nil, http.StatusOK)
			items := out["items"].([]any)
			pageSizes = append(pageSizes, len(items))
			for _, it := range items {
				seen = append(seen, it.(map[string]any)["name"].(string))
			}
			tok = out["next_page_token"].(string)
			if tok == "" {
				break
			}
		}
		if got, want := pageSizes, []int{2, 2, 1}; !reflect.DeepEqual(got, want) {
			t.Errorf("page sizes = %v, want %v", got, want)
		}
		slices.Sort(seen)
		want := slices.Clone(names)
		slices.Sort(want)
		if !reflect.DeepEqual(seen, want) {
			t.Errorf("names seen = %v, want each of %v once", seen, want)
		}
	})

	t.Run("limit 5 has no next page", func(t *testing.T) {
		out := e.mustAdmin("GET", "/admin/integrations?limit=5", nil, http.StatusOK)
		if got, want := len(out["items"].([]any)), 5; got != want {
			t.Errorf("items = %d, want %d", got, want)
		}
		if got, want := out["next_page_token"], ""; got != want {
			t.Errorf("next_page_token = %#v, want %#v", got, want)
		}
	})

	ok := []string{"limit=1", "limit=1000"}
	for _, q := range ok {
		t.Run("accepts "+q, func(t *testing.T) {
			e.mustAdmin("GET", "/admin/integrations?"+q, nil, http.StatusOK)
		})
	}

	bad := []struct{ name, query string }{
		{"limit 0", "limit=0"},
		{"limit 1001", "limit=1001"},
		{"limit -1", "limit=-1"},
		{"limit abc", "limit=abc"},
		{"limit 1.5", "limit=1.5"},
		{"page_token not base64", "page_token=" + url.QueryEscape("not a token!")},
		{"page_token bad characters", "page_token=%25%25%25"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/admin/integrations", "/admin/tokens", "/admin/admins", "/admin/audit"} {
				status, h, b := e.callAdminRaw(e.srv.URL, "GET", path+"?"+tc.query, testBootstrap, nil)
				if got, want := status, http.StatusBadRequest; got != want {
					t.Errorf("GET %s?%s: status %d, want %d; body %s", path, tc.query, got, want, b)
					continue
				}
				requireAPIError(t, path, h, b)
			}
		})
	}
	e.noServerErrors()
}

func TestAdminIntegrationPatch(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc", "description": "first", "scopes": []string{"read"}})
	createdAt := e.now()

	// want is the integration as it should be after every step so far.
	want := map[string]any{
		"name": "svc", "description": "first", "scopes": []any{"read"}, "audience": []any{},
		"can_introspect": false, "token_lifetime_seconds": float64(36000), "token_rate_per_minute": nil,
		"created_by": "bootstrap",
	}
	tests := []struct {
		name   string
		body   map[string]any
		change map[string]any
	}{
		{"description", map[string]any{"description": "second"}, map[string]any{"description": "second"}},
		{"scopes", map[string]any{"scopes": []string{"read", "write"}}, map[string]any{"scopes": []any{"read", "write"}}},
		{"audience", map[string]any{"audience": []string{"api-1", "api-2"}}, map[string]any{"audience": []any{"api-1", "api-2"}}},
		{"can_introspect", map[string]any{"can_introspect": true}, map[string]any{"can_introspect": true}},
		{"token_lifetime_seconds", map[string]any{"token_lifetime_seconds": 3600}, map[string]any{"token_lifetime_seconds": float64(3600)}},
		{"several at once", map[string]any{"description": "", "scopes": []string{}, "can_introspect": false},
			map[string]any{"description": "", "scopes": []any{}, "can_introspect": false}},
		{"same name is allowed", map[string]any{"name": "svc"}, nil},
		{"empty patch changes nothing", map[string]any{}, nil},
		// JSON Merge Patch: null drops the integration's own lifetime, where
		// leaving the field out (the case above) keeps it.
		{"null token_lifetime_seconds follows the server again", map[string]any{"token_lifetime_seconds": nil},
			map[string]any{"token_lifetime_seconds": float64(36000)}},
		{"token_rate_per_minute", map[string]any{"token_rate_per_minute": 6000}, map[string]any{"token_rate_per_minute": float64(6000)}},
		{"token_rate_per_minute 0, no cap", map[string]any{"token_rate_per_minute": 0}, map[string]any{"token_rate_per_minute": float64(0)}},
		{"token_rate_per_minute left out stays", map[string]any{"description": "third"}, map[string]any{"description": "third"}},
		{"null token_rate_per_minute follows the server again", map[string]any{"token_rate_per_minute": nil},
			map[string]any{"token_rate_per_minute": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Second)
			for k, v := range tc.change {
				want[k] = v
			}
			out := e.mustAdmin("PATCH", "/admin/integrations/svc", tc.body, http.StatusOK)
			got := e.mustAdmin("GET", "/admin/integrations/svc", nil, http.StatusOK)
			for k, w := range want {
				if !reflect.DeepEqual(out[k], w) {
					t.Errorf("PATCH response %s = %#v, want %#v", k, out[k], w)
				}
				if !reflect.DeepEqual(got[k], w) {
					t.Errorf("GET after PATCH %s = %#v, want %#v", k, got[k], w)
				}
			}
			wantTime(t, "created_at", got["created_at"], createdAt)
			if got["key_pair"].(map[string]any)["client_id"] != kp.ID {
				t.Errorf("PATCH changed the key pair: %v", got["key_pair"])
			}
		})
	}

	t.Run("lifetime and scopes apply to new tokens", func(t *testing.T) {
		e.mustAdmin("PATCH", "/admin/integrations/svc", map[string]any{"token_lifetime_seconds": 120, "scopes": []string{"a", "b"}}, http.StatusOK)
		status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
		if status != http.StatusOK {
			t.Fatalf("token: status %d: %v", status, out)
		}
		if got, want := out["expires_in"], float64(120); got != want {
			t.Errorf("expires_in = %v, want %v", got, want)
		}
		if got, want := out["scope"], "a b"; got != want {
			t.Errorf("scope = %v, want %v", got, want)
		}
	})

	t.Run("a null lifetime applies to new tokens", func(t *testing.T) {
		e.mustAdmin("PATCH", "/admin/integrations/svc", map[string]any{"token_lifetime_seconds": nil}, http.StatusOK)
		status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
		if status != http.StatusOK {
			t.Fatalf("token: status %d: %v", status, out)
		}
		if got, want := out["expires_in"], float64(36000); got != want {
			t.Errorf("expires_in = %v, want the server's %v", got, want)
		}
	})

	t.Run("a lifetime that is not an integer is refused by name", func(t *testing.T) {
		for _, body := range []string{`{"token_lifetime_seconds":"600"}`, `{"token_lifetime_seconds":600.5}`, `{"token_lifetime_seconds":[600]}`} {
			status, h, b := e.callAdminRaw(e.srv.URL, "PATCH", "/admin/integrations/svc", testBootstrap, strings.NewReader(body))
			if status != http.StatusBadRequest {
				t.Fatalf("%s: status %d, want 400; body %s", body, status, b)
			}
			requireAPIError(t, body, h, b)
			if !strings.Contains(string(b), "token_lifetime_seconds") {
				t.Errorf("%s: the error does not name the field: %s", body, b)
			}
		}
		if got := e.mustAdmin("GET", "/admin/integrations/svc", nil, http.StatusOK)["token_lifetime_seconds"]; got != float64(36000) {
			t.Errorf("after refused patches token_lifetime_seconds = %v, want 36000 unchanged", got)
		}
	})

	t.Run("can_introspect applies", func(t *testing.T) {
		tok := e.token(kp, nil)
		status, _, out := e.form("/oauth2/introspect", kp, url.Values{"token": {tok}})
		if status != http.StatusForbidden {
			t.Errorf("introspect with can_introspect false: status %d %v, want 403", status, out)
		}
		e.mustAdmin("PATCH", "/admin/integrations/svc", map[string]any{"can_introspect": true}, http.StatusOK)
		if got := e.introspect(kp, tok)["active"]; got != true {
			t.Errorf("introspect with can_introspect true: active = %v, want true", got)
		}
	})

	t.Run("name cannot change", func(t *testing.T) {
		status, h, b := e.callAdminRaw(e.srv.URL, "PATCH", "/admin/integrations/svc", testBootstrap, strings.NewReader(`{"name":"renamed"}`))
		if got, want := status, http.StatusBadRequest; got != want {
			t.Fatalf("status %d, want %d; body %s", got, want, b)
		}
		requireAPIError(t, "rename", h, b)
		e.mustAdmin("GET", "/admin/integrations/svc", nil, http.StatusOK)
		e.mustAdmin("GET", "/admin/integrations/renamed", nil, http.StatusNotFound)
	})

	t.Run("unknown integration", func(t *testing.T) {
		e.mustAdmin("PATCH", "/admin/integrations/nope", map[string]any{"description": "x"}, http.StatusNotFound)
	})
	e.noServerErrors()
}

func TestAdminIntegrationDelete(t *testing.T) {
	e := newEnv(t)
	rs := e.resourceServer()
	kp := e.createIntegration(map[string]any{"name": "svc"})
	other := e.createIntegration(map[string]any{"name": "other"})
	tok := e.token(kp, nil)
	otherTok := e.token(other, nil)
	if got := e.introspect(rs, tok)["active"]; got != true {
		t.Fatalf("before delete: active = %v, want true", got)
	}

	status, h, b := e.callAdminRaw(e.srv.URL, "DELETE", "/admin/integrations/svc", testBootstrap, nil)
	if got, want := status, http.StatusNoContent; got != want {
		t.Fatalf("DELETE: status %d, want %d; body %s", got, want, b)
	}
	if len(b) != 0 {
		t.Errorf("DELETE: body %q, want none", b)
	}
	_ = h

	tests := []struct {
		name   string
		method string
		want   int
	}{
		{"GET after delete", "GET", http.StatusNotFound},
		{"DELETE again", "DELETE", http.StatusNotFound},
		{"PATCH after delete", "PATCH", http.StatusNotFound},
		{"regenerate after delete", "POST", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := "/admin/integrations/svc"
			var body io.Reader
			switch tc.method {
			case "PATCH":
				body = strings.NewReader(`{"description":"x"}`)
			case "POST":
				path += "/key-pair"
			}
			status, h, b := e.callAdminRaw(e.srv.URL, tc.method, path, testBootstrap, body)
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %s", status, tc.want, b)
			}
			requireAPIError(t, tc.name, h, b)
		})
	}

	t.Run("token issued before delete is inactive", func(t *testing.T) {
		if got, want := e.introspect(rs, tok), map[string]any{"active": false}; !reflect.DeepEqual(got, want) {
			t.Errorf("introspect = %v, want %v", got, want)
		}
		if got := e.introspect(rs, otherTok)["active"]; got != true {
			t.Errorf("another integration's token: active = %v, want true", got)
		}
	})

	t.Run("key pair no longer works", func(t *testing.T) {
		status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
		if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Errorf("token: status %d %v, want 401 invalid_client", status, out)
		}
	})

	t.Run("not listed", func(t *testing.T) {
		items, _ := e.listAll(testBootstrap, "/admin/integrations")
		var got []string
		for _, it := range items {
			got = append(got, it["name"].(string))
		}
		slices.Sort(got)
		if want := []string{"other", "resource-server"}; !reflect.DeepEqual(got, want) {
			t.Errorf("integrations = %v, want %v", got, want)
		}
	})

	t.Run("name can be reused", func(t *testing.T) {
		again := e.createIntegration(map[string]any{"name": "svc"})
		if again.ID == kp.ID {
			t.Errorf("re-created integration got the deleted client ID %s", kp.ID)
		}
		if got := e.introspect(rs, tok)["active"]; got != false {
			t.Errorf("old token after the name was reused: active = %v, want false", got)
		}
	})
	e.noServerErrors()
}

// slowReader hides its length, so the client sends the body chunked and the
// server finds out only while reading it.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) { return s.r.Read(p) }

func TestAdminRequestErrors(t *testing.T) {
	e := newEnv(t)
	e.createIntegration(map[string]any{"name": "existing", "scopes": []string{"read"}})
	e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)
	// An owner, who may do all the bootstrap token may, and mint tokens.
	root := e.newAdmin("root", storage.RoleOwner)

	// snapshot is everything the admin API stores, as it reads back.
	snapshot := func(t *testing.T) string {
		t.Helper()
		var sb strings.Builder
		for _, p := range []string{"/admin/integrations", "/admin/integrations/existing", "/admin/admins", "/admin/tokens", "/admin/audit?limit=1000"} {
			status, b := e.adminCall("GET", p, root, nil)
			if status != http.StatusOK {
				t.Fatalf("GET %s: status %d; body %s", p, status, b)
			}
			sb.Write(b)
		}
		return sb.String()
	}

	big := `{"name":"big","description":"` + strings.Repeat("a", server.MaxBodyBytes) + `"}`
	bigWhitespace := `{"name":"big"}` + strings.Repeat(" ", server.MaxBodyBytes)
	const ig = "/admin/integrations"
	tests := []struct {
		name         string
		method, path string
		body         string // sent as is; "" sends no body
		chunked      bool
		want         int
	}{
		{"empty body", "POST", ig, "", false, http.StatusBadRequest},
		{"invalid JSON", "POST", ig, `{"name":`, false, http.StatusBadRequest},
		{"not JSON", "POST", ig, `name=x`, false, http.StatusBadRequest},
		{"JSON array", "POST", ig, `[{"name":"x"}]`, false, http.StatusBadRequest},
		{"JSON string", "POST", ig, `"x"`, false, http.StatusBadRequest},
		{"trailing object", "POST", ig, `{"name":"x"} {"name":"y"}`, false, http.StatusBadRequest},
		{"trailing garbage", "POST", ig, `{"name":"x"}garbage`, false, http.StatusBadRequest},
		{"unknown field", "POST", ig, `{"name":"x","colour":"red"}`, false, http.StatusBadRequest},
		{"wrong type name", "POST", ig, `{"name":5}`, false, http.StatusBadRequest},
		{"wrong type scopes", "POST", ig, `{"name":"x","scopes":"read write"}`, false, http.StatusBadRequest},
		{"wrong type can_introspect", "POST", ig, `{"name":"x","can_introspect":"yes"}`, false, http.StatusBadRequest},
		{"wrong type token_lifetime_seconds", "POST", ig, `{"name":"x","token_lifetime_seconds":"600"}`, false, http.StatusBadRequest},
		{"fractional token_lifetime_seconds", "POST", ig, `{"name":"x","token_lifetime_seconds":600.5}`, false, http.StatusBadRequest},
		{"missing name", "POST", ig, `{}`, false, http.StatusBadRequest},
		{"uppercase name", "POST", ig, `{"name":"Billing"}`, false, http.StatusBadRequest},
		{"64-character name", "POST", ig, `{"name":"` + strings.Repeat("a", 64) + `"}`, false, http.StatusBadRequest},
		{"leading dash", "POST", ig, `{"name":"-svc"}`, false, http.StatusBadRequest},
		{"leading dot", "POST", ig, `{"name":".svc"}`, false, http.StatusBadRequest},
		{"name with space", "POST", ig, `{"name":"my svc"}`, false, http.StatusBadRequest},
		{"name with slash", "POST", ig, `{"name":"a/b"}`, false, http.StatusBadRequest},
		{"scope with space", "POST", ig, `{"name":"x","scopes":["read write"]}`, false, http.StatusBadRequest},
		{"scope with quote", "POST", ig, `{"name":"x","scopes":["re\"ad"]}`, false, http.StatusBadRequest},
		{"scope with backslash", "POST", ig, `{"name":"x","scopes":["re\\ad"]}`, false, http.StatusBadRequest},
		{"empty scope", "POST", ig, `{"name":"x","scopes":[""]}`, false, http.StatusBadRequest},
		{"audience with space", "POST", ig, `{"name":"x","audience":["a b"]}`, false, http.StatusBadRequest},
		{"token_lifetime_seconds 0", "POST", ig, `{"name":"x","token_lifetime_seconds":0}`, false, http.StatusBadRequest},
		{"token_lifetime_seconds negative", "POST", ig, `{"name":"x","token_lifetime_seconds":-1}`, false, http.StatusBadRequest},
		{"token_lifetime_seconds too large", "POST", ig, `{"name":"x","token_lifetime_seconds":2592001}`, false, http.StatusBadRequest},
		{"token_lifetime_seconds overflows", "POST", ig, `{"name":"x","token_lifetime_seconds":1e30}`, false, http.StatusBadRequest},
		{"token_rate_per_minute negative", "POST", ig, `{"name":"x","token_rate_per_minute":-1}`, false, http.StatusBadRequest},
		{"token_rate_per_minute too large", "POST", ig, `{"name":"x","token_rate_per_minute":1000001}`, false, http.StatusBadRequest},
		{"fractional token_rate_per_minute", "POST", ig, `{"name":"x","token_rate_per_minute":1.5}`, false, http.StatusBadRequest},
		{"wrong type token_rate_per_minute", "POST", ig, `{"name":"x","token_rate_per_minute":"60"}`, false, http.StatusBadRequest},
		{"description too long", "POST", ig, `{"name":"x","description":"` + strings.Repeat("d", 1025) + `"}`, false, http.StatusBadRequest},
		{"duplicate name", "POST", ig, `{"name":"existing"}`, false, http.StatusConflict},
		{"duplicate name with other fields", "POST", ig, `{"name":"existing","description":"again","scopes":["write"]}`, false, http.StatusConflict},
		{"body over 1 MiB", "POST", ig, big, false, http.StatusRequestEntityTooLarge},
		{"body over 1 MiB chunked", "POST", ig, big, true, http.StatusRequestEntityTooLarge},
		{"trailing whitespace over 1 MiB chunked", "POST", ig, bigWhitespace, true, http.StatusRequestEntityTooLarge},
		{"PATCH body over 1 MiB", "PATCH", ig + "/existing", big, false, http.StatusRequestEntityTooLarge},
		{"PATCH invalid JSON", "PATCH", ig + "/existing", `{`, false, http.StatusBadRequest},
		{"PATCH empty body", "PATCH", ig + "/existing", "", false, http.StatusBadRequest},
		{"PATCH unknown field", "PATCH", ig + "/existing", `{"owner":"x"}`, false, http.StatusBadRequest},
		{"PATCH wrong type", "PATCH", ig + "/existing", `{"scopes":"read"}`, false, http.StatusBadRequest},
		{"PATCH bad scope", "PATCH", ig + "/existing", `{"scopes":["a b"]}`, false, http.StatusBadRequest},
		{"PATCH lifetime 0", "PATCH", ig + "/existing", `{"token_lifetime_seconds":0}`, false, http.StatusBadRequest},
		{"PATCH lifetime too large", "PATCH", ig + "/existing", `{"token_lifetime_seconds":2592001}`, false, http.StatusBadRequest},
		{"PATCH rate negative", "PATCH", ig + "/existing", `{"token_rate_per_minute":-1}`, false, http.StatusBadRequest},
		{"PATCH rate wrong type", "PATCH", ig + "/existing", `{"token_rate_per_minute":true}`, false, http.StatusBadRequest},
		{"PATCH rename", "PATCH", ig + "/existing", `{"name":"renamed"}`, false, http.StatusBadRequest},
		{"PATCH valid field beside a bad one", "PATCH", ig + "/existing", `{"description":"changed","token_lifetime_seconds":0}`, false, http.StatusBadRequest},
		{"PATCH unknown integration", "PATCH", ig + "/nope", `{"description":"x"}`, false, http.StatusNotFound},
		{"DELETE unknown integration", "DELETE", ig + "/nope", "", false, http.StatusNotFound},
		{"regenerate unknown integration", "POST", ig + "/nope/key-pair", "", false, http.StatusNotFound},
		{"regenerate negative grace", "POST", ig + "/existing/key-pair", `{"grace_seconds":-1}`, false, http.StatusBadRequest},
		{"regenerate unknown field", "POST", ig + "/existing/key-pair", `{"grace":60}`, false, http.StatusBadRequest},
		{"admin token expires_in_days 0", "POST", "/admin/tokens", `{"description":"x","expires_in_days":0}`, false, http.StatusBadRequest},
		{"admin token unknown field", "POST", "/admin/tokens", `{"description":"x","scope":"all"}`, false, http.StatusBadRequest},
		{"admin bad name", "POST", "/admin/admins", `{"name":"Alice"}`, false, http.StatusBadRequest},
		{"admin missing name", "POST", "/admin/admins", `{}`, false, http.StatusBadRequest},
		{"admin duplicate", "POST", "/admin/admins", `{"name":"alice"}`, false, http.StatusConflict},
		{"admin bootstrap name", "POST", "/admin/admins", `{"name":"bootstrap"}`, false, http.StatusConflict},
		{"delete unknown admin", "DELETE", "/admin/admins/nobody", "", false, http.StatusNotFound},
		{"delete bootstrap admin", "DELETE", "/admin/admins/bootstrap", "", false, http.StatusConflict},
		{"revoke unknown admin token", "DELETE", "/admin/tokens/adt_nope", "", false, http.StatusNotFound},
		{"unknown admin path", "GET", "/admin/nope", "", false, http.StatusNotFound},
		{"unknown sub-path", "GET", ig + "/existing/nope", "", false, http.StatusNotFound},
		{"empty integration name", "GET", ig + "/", "", false, http.StatusNotFound},
		{"PUT integrations", "PUT", ig, `{"name":"x"}`, false, http.StatusMethodNotAllowed},
		{"DELETE integrations collection", "DELETE", ig, "", false, http.StatusMethodNotAllowed},
		{"PUT integration", "PUT", ig + "/existing", `{"name":"existing"}`, false, http.StatusMethodNotAllowed},
		{"GET key-pair", "GET", ig + "/existing/key-pair", "", false, http.StatusMethodNotAllowed},
		{"PATCH tokens", "PATCH", "/admin/tokens", `{}`, false, http.StatusMethodNotAllowed},
		{"POST audit", "POST", "/admin/audit", `{}`, false, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
				if tc.chunked {
					body = slowReader{body}
				}
			}
			status, h, b := e.callAdminRaw(e.srv.URL, tc.method, tc.path, root, body)
			if status == http.StatusInternalServerError {
				t.Fatalf("500: %s", b)
			}
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %s", status, tc.want, b)
			}
			requireAPIError(t, tc.name, h, b)
			if tc.want == http.StatusMethodNotAllowed && h.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			if after := snapshot(t); after != before {
				t.Errorf("state changed after a failed request:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	e.noServerErrors()
}

// TestAdminErrorDescriptions pins the error_description of answers whose
// words are not the handler's own: storage's reason for refusing input,
// which reaches the client without storage's "invalid: " prefix, and the
// body decoder's, which names the first field it cannot take.
func TestAdminErrorDescriptions(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	e.createIntegration(map[string]any{"name": "existing"})
	root := e.newAdmin("root", storage.RoleOwner)
	const ig = "/admin/integrations"
	tests := []struct {
		name         string
		method, path string
		body         string // sent as is; "" sends no body
		want         string
	}{
		{"bad name", "POST", ig, `{"name":"Billing"}`, `name "Billing" must match ^[a-z0-9][a-z0-9._-]{0,62}$`},
		{"lifetime out of range", "PATCH", ig + "/existing", `{"token_lifetime_seconds":0}`, "token_lifetime_seconds must be between 60 and 2592000"},
		{"bad expiry", "POST", "/admin/tokens", `{"description":"x","expires_in_days":0}`, "expires_in_days must be -1 (never) or between 1 and 3650"},
		{"foreign page token", "GET", ig + "?page_token=!", "", "page_token is not one this server issued"},
		{"non-numeric page token", "GET", "/admin/audit?page_token=eA", "", "page_token is not one this server issued"},
		{"limit 0", "GET", ig + "?limit=0", "", "limit must be an integer between 1 and 1000"},
		{"limit over the maximum", "GET", "/admin/admins?limit=1001", "", "limit must be an integer between 1 and 1000"},
		{"limit not a number", "GET", "/admin/tokens?limit=x", "", "limit must be an integer between 1 and 1000"},
		{"unknown field", "POST", ig, `{"name":"x","colour":"red"}`, `unknown field "colour"`},
		{"unknown field after a known one in other case", "POST", ig, `{"NAME":"x","colour":"red"}`, `unknown field "colour"`},
		{"first of two unknown fields", "POST", ig, `{"zeta":1,"alpha":2}`, `unknown field "zeta"`},
		{"unknown field with an escape", "POST", ig, `{"col\"our":1}`, `unknown field "col\"our"`},
		{"PATCH unknown field", "PATCH", ig + "/existing", `{"owner":"x"}`, `unknown field "owner"`},
		{"regenerate unknown field", "POST", ig + "/existing/key-pair", `{"grace":60}`, `unknown field "grace"`},
		{"admin token unknown field", "POST", "/admin/tokens", `{"description":"x","scope":"all"}`, `unknown field "scope"`},
		{"wrong type", "POST", ig, `{"name":5}`, `field "name" must be a string`},
		{"wrong type before an unknown field", "POST", ig, `{"name":5,"colour":"red"}`, `field "name" must be a string`},
		{"unknown field before a wrong type", "POST", ig, `{"colour":"red","name":5}`, `unknown field "colour"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			status, _, b := e.callAdminRaw(e.srv.URL, tc.method, tc.path, root, body)
			var got struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("status %d, body %s: %v", status, b, err)
			}
			if status != http.StatusBadRequest || got.Error != "invalid_request" || got.Description != tc.want {
				t.Errorf("status %d, %s: %q; want 400, invalid_request: %q", status, got.Error, got.Description, tc.want)
			}
		})
	}
	// The signing keys are one short list: paging parameters are ignored.
	if status, b := e.adminCall("GET", "/admin/signing-keys?limit=0&page_token=!", testBootstrap, nil); status != http.StatusOK {
		t.Errorf("GET /admin/signing-keys with paging parameters: status %d, body %s; want 200", status, b)
	}
}

func TestAdminTokens(t *testing.T) {
	e := newEnv(t)
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)

	tests := []struct {
		name       string
		body       any
		want       int
		wantExpiry time.Duration // 0: never expires
	}{
		{"default expiry", map[string]any{"description": "laptop"}, http.StatusCreated, 90 * 24 * time.Hour},
		{"no body", nil, http.StatusCreated, 90 * 24 * time.Hour},
		{"one day", map[string]any{"description": "ci", "expires_in_days": 1}, http.StatusCreated, 24 * time.Hour},
		{"maximum", map[string]any{"description": "long", "expires_in_days": 3650}, http.StatusCreated, 3650 * 24 * time.Hour},
		{"never", map[string]any{"description": "robot", "expires_in_days": -1}, http.StatusCreated, 0},
		{"zero days", map[string]any{"description": "x", "expires_in_days": 0}, http.StatusBadRequest, 0},
		{"minus two", map[string]any{"description": "x", "expires_in_days": -2}, http.StatusBadRequest, 0},
		{"4000 days", map[string]any{"description": "x", "expires_in_days": 4000}, http.StatusBadRequest, 0},
		{"days as string", map[string]any{"description": "x", "expires_in_days": "7"}, http.StatusBadRequest, 0},
		{"description too long", map[string]any{"description": strings.Repeat("d", 1025)}, http.StatusBadRequest, 0},
	}
	minted := map[string]string{} // id -> token
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Advance(time.Second)
			now := e.now()
			status, raw := e.adminCall("POST", "/admin/tokens", alice, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %s", status, tc.want, raw)
			}
			out := mustObject(t, raw)
			if tc.want != http.StatusCreated {
				requireAPIError(t, tc.name, http.Header{"Content-Type": {"application/json"}}, raw)
				return
			}
			requireKeys(t, "token", out, "id", "token", "description", "created_at", "expires_at")
			tok, _ := out["token"].(string)
			if !adminTokenRE.MatchString(tok) || !credential.ValidChecksummed(tok, "lk_adm_") {
				t.Errorf("token %q does not match %s with a valid checksum", tok, adminTokenRE)
			}
			id, _ := out["id"].(string)
			if id == "" || strings.Contains(tok, id) {
				t.Errorf("id = %q, want a non-empty id that is not part of the token", id)
			}
			wantDesc := ""
			if m, ok := tc.body.(map[string]any); ok {
				wantDesc, _ = m["description"].(string)
			}
			if got := out["description"]; got != wantDesc {
				t.Errorf("description = %#v, want %q", got, wantDesc)
			}
			wantTime(t, "created_at", out["created_at"], now)
			if v, ok := out["expires_at"]; tc.wantExpiry == 0 {
				if !ok || v != nil {
					t.Errorf("expires_at = %#v, want null", v)
				}
			} else {
				wantTime(t, "expires_at", v, now.Add(tc.wantExpiry))
			}
			e.adminAs(tok, "GET", "/admin/integrations", nil, http.StatusOK)
			minted[id] = tok
		})
	}

	bob := e.newAdmin("bob", storage.RoleOperator)
	bobTok := e.mintAdminToken(bob, map[string]any{"description": "bob's"})

	t.Run("list shows only the caller's tokens, never the token", func(t *testing.T) {
		status, raw := e.adminCall("GET", "/admin/tokens", alice, nil)
		if status != http.StatusOK {
			t.Fatalf("status %d; body %s", status, raw)
		}
		for _, tok := range append(mapValues(minted), alice, bobTok["token"].(string)) {
			if strings.Contains(string(raw), tok) {
				t.Errorf("list shows a token value: %s", raw)
			}
		}
		items, _ := e.listAll(alice, "/admin/tokens")
		got := map[string]bool{}
		for _, it := range items {
			if _, ok := it["token"]; ok {
				t.Errorf("item has a token field: %v", it)
			}
			requireKeys(t, "token item", it, "id", "description", "created_at", "expires_at", "last_used_at")
			got[it["id"].(string)] = true
		}
		// alice's initial token, plus every one she minted.
		if len(got) != len(minted)+1 {
			t.Errorf("alice lists %d tokens, want %d", len(got), len(minted)+1)
		}
		for id := range minted {
			if !got[id] {
				t.Errorf("alice's token %s missing from her list", id)
			}
		}
		if got[bobTok["id"].(string)] {
			t.Errorf("alice's list shows bob's token %s", bobTok["id"])
		}
		bs, _ := e.listAll(bob, "/admin/tokens")
		if len(bs) != 2 || bs[1]["id"] != bobTok["id"] {
			t.Errorf("bob lists %v, want his first token and %s", bs, bobTok["id"])
		}
		if none, _ := e.listAll(testBootstrap, "/admin/tokens"); len(none) != 0 {
			t.Errorf("bootstrap lists %v, want no tokens: it holds none", none)
		}
	})

	t.Run("paging", func(t *testing.T) {
		all, _ := e.listAll(alice, "/admin/tokens")
		paged, pages := e.listAll(alice, "/admin/tokens?limit=2")
		if got, want := pages, (len(all)+1)/2; got != want {
			t.Errorf("pages = %d, want %d", got, want)
		}
		if !reflect.DeepEqual(paged, all) {
			t.Errorf("paged list %v != full list %v", paged, all)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		var id, tok string
		for i, v := range minted {
			id, tok = i, v
			break
		}
		status, h, b := e.callAdminRaw(e.srv.URL, "DELETE", "/admin/tokens/"+id, alice, nil)
		if got, want := status, http.StatusNoContent; got != want {
			t.Fatalf("status %d, want %d; body %s", got, want, b)
		}
		_ = h
		status, _ = e.adminCall("GET", "/admin/integrations", tok, nil)
		if got, want := status, http.StatusUnauthorized; got != want {
			t.Errorf("revoked token: status %d, want %d", got, want)
		}
		e.adminAs(alice, "DELETE", "/admin/tokens/"+id, nil, http.StatusNotFound)
		for _, it := range func() []map[string]any { items, _ := e.listAll(alice, "/admin/tokens"); return items }() {
			if it["id"] == id {
				t.Errorf("revoked token %s still listed", id)
			}
		}
		e.adminAs(alice, "GET", "/admin/integrations", nil, http.StatusOK)
		delete(minted, id)
	})

	t.Run("another admin's token id is not found", func(t *testing.T) {
		bid := bobTok["id"].(string)
		e.adminAs(alice, "DELETE", "/admin/tokens/"+bid, nil, http.StatusNotFound)
		e.adminAs(bobTok["token"].(string), "GET", "/admin/integrations", nil, http.StatusOK)
		for id := range minted {
			e.adminAs(bob, "DELETE", "/admin/tokens/"+id, nil, http.StatusNotFound)
			e.adminAs(minted[id], "GET", "/admin/integrations", nil, http.StatusOK)
		}
	})

	t.Run("revoke own current token", func(t *testing.T) {
		tok := e.mintAdminToken(alice, map[string]any{"description": "self"})
		e.adminAs(tok["token"].(string), "DELETE", "/admin/tokens/"+tok["id"].(string), nil, http.StatusNoContent)
		e.adminAs(tok["token"].(string), "GET", "/admin/tokens", nil, http.StatusUnauthorized)
	})
	e.noServerErrors()
}

// TestAdminTokenExpiredListed: an expired admin token is refused at once,
// but GET /admin/tokens keeps showing it, with its past expires_at and
// expired true, until storage.ExpiredAdminTokenRetention has passed, so
// its admin sees why a script stopped working.
func TestAdminTokenExpiredListed(t *testing.T) {
	e := newEnv(t)
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice", "role": "operator"}, http.StatusCreated)["token"].(string)
	listed := func(id string) map[string]any {
		t.Helper()
		items, _ := e.listAll(alice, "/admin/tokens")
		for _, it := range items {
			if it["id"] == id {
				return it
			}
		}
		return nil
	}
	short := e.mintAdminToken(alice, map[string]any{"description": "nightly job", "expires_in_days": 1})
	id, tok := short["id"].(string), short["token"].(string)
	expiry := e.now().Add(24 * time.Hour)
	if got := listed(id)["expired"]; got != false {
		t.Errorf("a live token: expired = %#v, want false", got)
	}

	e.clock.Advance(24 * time.Hour)
	status, b := e.adminCall("GET", "/admin/me", tok, nil)
	if status != http.StatusUnauthorized {
		t.Errorf("an expired token: GET /admin/me status %d, want 401; body %s", status, b)
	}
	it := listed(id)
	if it == nil {
		t.Fatalf("the expired token %s is not listed", id)
	}
	wantTime(t, "expires_at", it["expires_at"], expiry)
	if it["expired"] != true || it["description"] != "nightly job" {
		t.Errorf("expired token listed as %v, want expired true and its description", it)
	}

	e.clock.Advance(storage.ExpiredAdminTokenRetention - time.Second)
	if listed(id) == nil {
		t.Error("the expired token left the list before its retention ended")
	}
	e.clock.Advance(time.Second)
	if it := listed(id); it != nil {
		t.Errorf("the token expired a retention ago is still listed: %v", it)
	}
	e.noServerErrors()
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestAdminAdmins(t *testing.T) {
	e := newEnv(t)

	e.clock.Advance(time.Second)
	now := e.now()
	out := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice", "role": "owner"}, http.StatusCreated)
	requireKeys(t, "admin", out, "name", "role", "created_at", "token")
	if got, want := out["name"], "alice"; got != want {
		t.Errorf("name = %v, want %v", got, want)
	}
	if got, want := out["role"], "owner"; got != want {
		t.Errorf("role = %v, want %v", got, want)
	}
	wantTime(t, "created_at", out["created_at"], now)
	alice, _ := out["token"].(string)
	if !adminTokenRE.MatchString(alice) {
		t.Errorf("token %q does not match %s", alice, adminTokenRE)
	}

	t.Run("new admin's token works", func(t *testing.T) {
		e.adminAs(alice, "GET", "/admin/integrations", nil, http.StatusOK)
		e.adminAs(alice, "POST", "/admin/integrations", map[string]any{"name": "alices"}, http.StatusCreated)
		bob := e.adminAs(alice, "POST", "/admin/admins", map[string]any{"name": "bob", "role": "owner"}, http.StatusCreated)
		e.adminAs(bob["token"].(string), "GET", "/admin/admins", nil, http.StatusOK)
	})

	t.Run("list", func(t *testing.T) {
		status, raw := e.adminCall("GET", "/admin/admins", testBootstrap, nil)
		if status != http.StatusOK {
			t.Fatalf("status %d; body %s", status, raw)
		}
		if strings.Contains(string(raw), alice) || strings.Contains(string(raw), `"token"`) {
			t.Errorf("admin list shows a token: %s", raw)
		}
		items, _ := e.listAll(testBootstrap, "/admin/admins")
		var got []string
		for _, it := range items {
			requireKeys(t, "admin item", it, "name", "role", "created_at")
			got = append(got, it["name"].(string))
		}
		slices.Sort(got)
		if want := []string{"alice", "bob", "bootstrap"}; !reflect.DeepEqual(got, want) {
			t.Errorf("admins = %v, want %v", got, want)
		}
		paged, pages := e.listAll(testBootstrap, "/admin/admins?limit=1")
		if !reflect.DeepEqual(paged, items) || pages != 3 {
			t.Errorf("limit=1: %d pages %v, want 3 pages %v", pages, paged, items)
		}
	})

	errs := []struct {
		name         string
		method, path string
		body         any
		want         int
	}{
		{"duplicate", "POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusConflict},
		{"bootstrap name", "POST", "/admin/admins", map[string]any{"name": "bootstrap"}, http.StatusConflict},
		{"uppercase name", "POST", "/admin/admins", map[string]any{"name": "Alice"}, http.StatusBadRequest},
		{"unknown role", "POST", "/admin/admins", map[string]any{"name": "carol", "role": "root"}, http.StatusBadRequest},
		{"unknown field", "POST", "/admin/admins", map[string]any{"name": "carol", "email": "c@example.com"}, http.StatusBadRequest},
		{"delete unknown", "DELETE", "/admin/admins/nobody", nil, http.StatusNotFound},
		{"delete bootstrap", "DELETE", "/admin/admins/bootstrap", nil, http.StatusConflict},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			status, b := e.adminCall(tc.method, tc.path, testBootstrap, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %s", status, tc.want, b)
			}
			requireAPIError(t, tc.name, http.Header{"Content-Type": {"application/json"}}, b)
		})
	}

	t.Run("delete revokes every token of the admin", func(t *testing.T) {
		second := e.mintAdminToken(alice, map[string]any{"description": "second", "expires_in_days": -1})["token"].(string)
		status, h, b := e.callAdminRaw(e.srv.URL, "DELETE", "/admin/admins/alice", testBootstrap, nil)
		if got, want := status, http.StatusNoContent; got != want {
			t.Fatalf("status %d, want %d; body %s", got, want, b)
		}
		_ = h
		for i, tok := range []string{alice, second} {
			status, b := e.adminCall("GET", "/admin/integrations", tok, nil)
			if got, want := status, http.StatusUnauthorized; got != want {
				t.Errorf("token %d after delete: status %d, want %d; body %s", i, got, want, b)
			}
		}
		e.mustAdmin("DELETE", "/admin/admins/alice", nil, http.StatusNotFound)
		// What alice made outlives her.
		e.mustAdmin("GET", "/admin/integrations/alices", nil, http.StatusOK)
		// The name is free again, with a fresh token.
		again := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)
		e.adminAs(again, "GET", "/admin/integrations", nil, http.StatusOK)
		if status, _ := e.adminCall("GET", "/admin/integrations", alice, nil); status != http.StatusUnauthorized {
			t.Errorf("old token after the name was reused: status %d, want 401", status)
		}
	})

	t.Run("admin can delete itself", func(t *testing.T) {
		dave := e.newAdmin("dave", storage.RoleOwner)
		e.adminAs(dave, "DELETE", "/admin/admins/dave", nil, http.StatusNoContent)
		e.adminAs(dave, "GET", "/admin/admins", nil, http.StatusUnauthorized)
	})
	e.noServerErrors()
}

func TestAdminAudit(t *testing.T) {
	e := newEnv(t)

	type event struct {
		actor, action, object string
		at                    time.Time
	}
	var want []event // oldest first
	step := func() time.Time {
		e.clock.Advance(time.Second)
		return e.now()
	}

	at := step()
	kp := e.createIntegration(map[string]any{"name": "svc", "scopes": []string{"read"}})
	want = append(want, event{"bootstrap", "integration.create", "svc", at})

	at = step()
	e.mustAdmin("PATCH", "/admin/integrations/svc", map[string]any{"description": "d", "scopes": []string{"read", "write"}}, http.StatusOK)
	want = append(want, event{"bootstrap", "integration.update", "svc", at})

	at = step()
	graced := e.regenerate("svc", 60)
	want = append(want, event{"bootstrap", "key_pair.regenerate", "svc", at})

	at = step()
	e.regenerate("svc", 0)
	want = append(want, event{"bootstrap", "key_pair.regenerate", "svc", at})

	at = step()
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)
	aliceTokens, _ := e.listAll(alice, "/admin/tokens")
	aliceInitial := aliceTokens[0]["id"]
	want = append(want, event{"bootstrap", "admin.create", "alice", at})

	// Failed requests leave no trace in the audit log.
	e.mustAdmin("POST", "/admin/integrations", map[string]any{"name": "svc"}, http.StatusConflict)
	e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusConflict)
	e.mustAdmin("DELETE", "/admin/integrations/nope", nil, http.StatusNotFound)

	at = step()
	minted := e.mintAdminToken(alice, map[string]any{"description": "alice's"})
	want = append(want, event{"alice", "admin_token.create", minted["id"].(string), at})

	at = step()
	e.adminAs(alice, "DELETE", "/admin/tokens/"+minted["id"].(string), nil, http.StatusNoContent)
	want = append(want, event{"alice", "admin_token.revoke", minted["id"].(string), at})

	at = step()
	e.mustAdmin("DELETE", "/admin/integrations/svc", nil, http.StatusNoContent)
	want = append(want, event{"bootstrap", "integration.delete", "svc", at})

	at = step()
	e.mustAdmin("DELETE", "/admin/admins/alice", nil, http.StatusNoContent)
	want = append(want, event{"bootstrap", "admin.delete", "alice", at})

	items, _ := e.listAll(testBootstrap, "/admin/audit")
	// The server audits the creation of the bootstrap admin and its first
	// signing key at start-up, as the system, with no remote address; set
	// them apart.
	var system []map[string]any
	events := slices.DeleteFunc(slices.Clone(items), func(it map[string]any) bool {
		if it["actor_type"] == "system" {
			system = append(system, it)
			return true
		}
		return false
	})
	var systemActions []string
	for _, it := range system {
		systemActions = append(systemActions, fmt.Sprint(it["action"]))
	}
	if got, want := systemActions, []string{"signing_key.rotate", "admin.create"}; !slices.Equal(got, want) {
		t.Fatalf("system events = %v, want %v: the start-up's first signing key and bootstrap admin", got, want)
	}

	t.Run("filtered by integration", func(t *testing.T) {
		svc, _ := e.listAll(testBootstrap, "/admin/audit?integration=svc")
		var got []string
		for _, it := range svc {
			if it["object_type"] != "integration" || it["object"] != "svc" {
				t.Errorf("?integration=svc listed %v", it)
			}
			got = append(got, fmt.Sprint(it["action"]))
		}
		if len(got) < 3 || got[0] != "integration.delete" || got[len(got)-1] != "integration.create" {
			t.Errorf("?integration=svc actions %v, want its life newest first", got)
		}
	})

	t.Run("every change, newest first", func(t *testing.T) {
		// admin.create also mints the admin's first token, audited as an
		// admin_token.create at the same instant: drop it from this check
		// and look at it below.
		var got []event
		var initial []map[string]any
		for _, it := range events {
			if it["action"] == "admin_token.create" && it["actor"] == "bootstrap" {
				initial = append(initial, it)
				continue
			}
			ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(it["time"]))
			got = append(got, event{fmt.Sprint(it["actor"]), fmt.Sprint(it["action"]), fmt.Sprint(it["object"]), ts})
		}
		wantNewest := slices.Clone(want)
		slices.Reverse(wantNewest)
		if len(got) != len(wantNewest) {
			t.Fatalf("got %d events %v, want %d %v", len(got), got, len(wantNewest), wantNewest)
		}
		for i := range got {
			g, w := got[i], wantNewest[i]
			if g.actor != w.actor || g.action != w.action || g.object != w.object || !g.at.Equal(w.at) {
				t.Errorf("event %d = %+v, want %+v", i, g, w)
			}
		}
		if len(initial) != 1 {
			t.Fatalf("initial admin_token.create events = %v, want 1", initial)
		}
		wantTime(t, "initial token event time", initial[0]["time"], want[4].at)
		if got, want := initial[0]["object"], aliceInitial; got != want {
			t.Errorf("initial token event object = %v, want alice's token id %v", got, want)
		}
	})

	t.Run("actor, remote address and shape", func(t *testing.T) {
		for i, it := range events {
			requireKeys(t, fmt.Sprintf("event %d", i), it, "actor", "action", "object", "remote_addr", "time")
			if got, want := it["remote_addr"], "127.0.0.1"; got != want {
				t.Errorf("event %d (%v) remote_addr = %v, want %v", i, it["action"], got, want)
			}
		}
		var prev time.Time
		for i, it := range items {
			ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(it["time"]))
			if err != nil {
				t.Fatalf("event %d time %v: %v", i, it["time"], err)
			}
			if i > 0 && ts.After(prev) {
				t.Errorf("event %d at %v is newer than event %d at %v", i, ts, i-1, prev)
			}
			prev = ts
		}
	})

	t.Run("regenerate details", func(t *testing.T) {
		var regs []map[string]any
		for _, it := range items {
			if it["action"] == "key_pair.regenerate" {
				regs = append(regs, it)
			}
		}
		if len(regs) != 2 {
			t.Fatalf("regenerate events = %d, want 2", len(regs))
		}
		withGrace := regs[1]["details"].(map[string]any) // older one
		if got, want := withGrace["grace_seconds"], float64(60); got != want {
			t.Errorf("grace_seconds = %v, want %v", got, want)
		}
		if got, want := withGrace["client_id"], graced.ID; got != want {
			t.Errorf("client_id = %v, want %v", got, want)
		}
		if got, want := withGrace["previous_client_id"], kp.ID; got != want {
			t.Errorf("previous_client_id = %v, want %v", got, want)
		}
		wantTime(t, "previous_expires_at", withGrace["previous_expires_at"], want[2].at.Add(60*time.Second))
		if got, want := regs[0]["details"].(map[string]any)["grace_seconds"], float64(0); got != want {
			t.Errorf("second regenerate grace_seconds = %v, want %v", got, want)
		}
	})

	t.Run("paging", func(t *testing.T) {
		for _, limit := range []int{1, 3, len(items), len(items) + 1} {
			paged, pages := e.listAll(testBootstrap, fmt.Sprintf("/admin/audit?limit=%d", limit))
			if !reflect.DeepEqual(paged, items) {
				t.Errorf("limit %d: paged events differ from the full list:\n%v\n%v", limit, paged, items)
			}
			if want := (len(items) + limit - 1) / limit; pages != want {
				t.Errorf("limit %d: %d pages, want %d", limit, pages, want)
			}
		}
	})

	t.Run("bad page token", func(t *testing.T) {
		for _, tok := range []string{"!!", "YWJj" /* "abc" */, base64.RawURLEncoding.EncodeToString([]byte("12x"))} {
			e.mustAdmin("GET", "/admin/audit?page_token="+url.QueryEscape(tok), nil, http.StatusBadRequest)
		}
	})
	e.noServerErrors()
}

func TestAdminSeparateListener(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.SeparateAdmin = true })
	if e.admin == nil {
		t.Fatal("SeparateAdmin set but no admin handler")
	}

	// The admin listener serves the admin API.
	kp := e.createIntegration(map[string]any{"name": "svc"})
	e.mustAdmin("GET", "/admin/integrations/svc", nil, http.StatusOK)

	paths := []struct{ method, path, body string }{
		{"GET", "/admin/integrations", ""},
		{"POST", "/admin/integrations", `{"name":"from-public"}`},
		{"GET", "/admin/integrations/svc", ""},
		{"PATCH", "/admin/integrations/svc", `{"description":"x"}`},
		{"DELETE", "/admin/integrations/svc", ""},
		{"POST", "/admin/integrations/svc/key-pair", ""},
		{"GET", "/admin/tokens", ""},
		{"POST", "/admin/tokens", `{}`},
		{"GET", "/admin/admins", ""},
		{"POST", "/admin/admins", `{"name":"eve"}`},
		{"GET", "/admin/audit", ""},
	}
	for _, p := range paths {
		t.Run("public "+p.method+" "+p.path, func(t *testing.T) {
			var body io.Reader
			if p.body != "" {
				body = strings.NewReader(p.body)
			}
			status, h, b := e.callAdminRaw(e.srv.URL, p.method, p.path, testBootstrap, body)
			if got, want := status, http.StatusNotFound; got != want {
				t.Fatalf("status %d, want %d; body %s", got, want, b)
			}
			requireAPIError(t, "public", h, b)
		})
	}

	t.Run("nothing changed through the public listener", func(t *testing.T) {
		items, _ := e.listAll(testBootstrap, "/admin/integrations")
		if len(items) != 1 || items[0]["name"] != "svc" || items[0]["description"] != "" {
			t.Errorf("integrations = %v, want svc unchanged", items)
		}
		e.mustAdmin("GET", "/admin/admins", nil, http.StatusOK)
	})

	t.Run("admin listener answers unknown paths with JSON 404", func(t *testing.T) {
		status, h, b := e.callAdminRaw(e.admin.URL, "GET", "/admin/nope", testBootstrap, nil)
		if got, want := status, http.StatusNotFound; got != want {
			t.Fatalf("status %d, want %d; body %s", got, want, b)
		}
		requireAPIError(t, "admin 404", h, b)
	})

	t.Run("OAuth stays on the public listener", func(t *testing.T) {
		e.token(kp, nil)
	})
	e.noServerErrors()
}

func TestAdminConcurrentCreate(t *testing.T) {
	e := newEnv(t)
	const n = 12
	type result struct {
		status int
		body   string
		err    error
	}
	run := func(path string, body func(i int) string) []result {
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body(i)))
				if err != nil {
					results[i].err = err
					return
				}
				req.Header.Set("Authorization", "Bearer "+testBootstrap)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					results[i].err = err
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				results[i] = result{resp.StatusCode, string(b), err}
			})
		}
		wg.Wait()
		return results
	}
	tests := []struct {
		name, path string
		body       func(i int) string
		listPath   string
	}{
		{"integrations", "/admin/integrations", func(i int) string {
			return fmt.Sprintf(`{"name":"same","description":"writer %d"}`, i)
		}, "/admin/integrations"},
		{"admins", "/admin/admins", func(int) string { return `{"name":"same"}` }, "/admin/admins"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counts := map[int]int{}
			for i, r := range run(tc.path, tc.body) {
				if r.err != nil {
					t.Fatalf("request %d: %v", i, r.err)
				}
				counts[r.status]++
			}
			if want := map[int]int{http.StatusCreated: 1, http.StatusConflict: n - 1}; !reflect.DeepEqual(counts, want) {
				t.Errorf("statuses = %v, want %v", counts, want)
			}
			items, _ := e.listAll(testBootstrap, tc.listPath)
			same := 0
			for _, it := range items {
				if it["name"] == "same" {
					same++
				}
			}
			if same != 1 {
				t.Errorf("%d objects named same, want 1", same)
			}
		})
	}

	t.Run("distinct integrations", func(t *testing.T) {
		for i, r := range run("/admin/integrations", func(i int) string { return fmt.Sprintf(`{"name":"svc-%d"}`, i) }) {
			if r.err != nil || r.status != http.StatusCreated {
				t.Errorf("request %d: status %d err %v body %s", i, r.status, r.err, r.body)
			}
		}
		items, _ := e.listAll(testBootstrap, "/admin/integrations?limit=5")
		if got, want := len(items), n+1; got != want {
			t.Errorf("integrations = %d, want %d", got, want)
		}
	})
	e.noServerErrors()
}
