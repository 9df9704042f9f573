package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
)

// TestReplicasSeeRegenerationAtOnce runs two servers on one database: a
// regeneration through one is in force on the other as soon as the call
// returns, for new tokens and for introspection.
func TestReplicasSeeRegenerationAtOnce(t *testing.T) {
	a := newEnv(t)
	b := startEnv(t, a.dbPath, a.clock, testSecrets)
	rs := a.resourceServer()
	old := a.createIntegration(map[string]any{"name": "job"})
	tok := b.token(old, nil)
	if got := b.introspect(rs, tok)["active"]; got != true {
		t.Fatalf("token from replica b introspects active = %v on b", got)
	}

	fresh := a.regenerate("job", 0)
	if status, _, body := b.form("/oauth2/token", old, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Errorf("old pair on replica b: status %d, body %v; want 401", status, body)
	}
	if got := b.introspect(rs, tok)["active"]; got != false {
		t.Errorf("old token on replica b: active = %v, want false", got)
	}
	if got := a.introspect(rs, b.token(fresh, nil))["active"]; got != true {
		t.Errorf("new pair's token from b on a: active = %v, want true", got)
	}
}

// TestReadyzReportsDatabase checks /readyz: 200 while the database answers,
// 503 once it does not, while /healthz keeps answering 200.
func TestReadyzReportsDatabase(t *testing.T) {
	e := newEnv(t)
	get := func(path string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		status, _, _ := e.do(req)
		return status
	}
	if got := get("/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200", got)
	}
	e.store.Close()
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database closed = %d, want 503", got)
	}
	if got := get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz with the database closed = %d, want 200", got)
	}
}

// TestListDefaultLimit checks that a list without ?limit= returns 100 items
// and a next_page_token that leads to the rest.
func TestListDefaultLimit(t *testing.T) {
	e := newEnv(t)
	for i := range 101 {
		e.createIntegration(map[string]any{"name": fmt.Sprintf("svc-%03d", i)})
	}
	first := e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)
	if got := len(first["items"].([]any)); got != 100 {
		t.Fatalf("first page has %d items, want 100", got)
	}
	next, _ := first["next_page_token"].(string)
	if next == "" {
		t.Fatal("first page has no next_page_token")
	}
	rest := e.mustAdmin("GET", "/admin/integrations?page_token="+url.QueryEscape(next), nil, http.StatusOK)
	if got := len(rest["items"].([]any)); got != 1 || rest["next_page_token"] != "" {
		t.Fatalf("second page = %d items, next %q; want 1 item and no next page", got, rest["next_page_token"])
	}
}

// TestServerTokenLifetime checks that token_lifetime applies to
// integrations without their own, and expires_in is exactly it.
func TestServerTokenLifetime(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.TokenLifetime = 90 * time.Minute })
	kp := e.createIntegration(map[string]any{"name": "job"})
	if got := e.tokenResponse(kp, nil)["expires_in"]; got != float64(5400) {
		t.Fatalf("expires_in = %v, want 5400", got)
	}
	ig := e.mustAdmin("GET", "/admin/integrations/job", nil, http.StatusOK)
	if got := ig["token_lifetime_seconds"]; got != float64(5400) {
		t.Fatalf("token_lifetime_seconds = %v, want 5400", got)
	}
}

// TestSigningKeyEndpointsNeedAdmin checks that the signing-key endpoints
// refuse requests without a valid admin token and move with the admin API
// to its own listener.
func TestSigningKeyEndpointsNeedAdmin(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.SeparateAdmin = true })
	for _, tc := range []struct{ method, path string }{
		{"GET", "/admin/signing-keys"},
		{"POST", "/admin/signing-keys/rotate"},
	} {
		for _, token := range []string{"", "lk_adm_nope"} {
			if status, body := e.adminCall(tc.method, tc.path, token, nil); status != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: status %d, body %s; want 401", tc.method, tc.path, token, status, body)
			}
		}
		req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+testBootstrap)
		if status, _, _ := e.do(req); status != http.StatusNotFound {
			t.Errorf("%s %s on the public listener: status %d, want 404", tc.method, tc.path, status)
		}
	}
	e.mustAdmin("GET", "/admin/signing-keys", nil, http.StatusOK)
	e.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
}
