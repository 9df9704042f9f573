package server_test

import (
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIntegrationTokens: GET /admin/integrations/{name}/tokens lists the
// tokens issued to each of the integration's pairs, newest first and
// paged, with the pair's client ID, what each was granted, until when it
// works and whether it is active, and never a token or its signature.
func TestIntegrationTokens(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	old := e.createIntegration(map[string]any{"name": "billing", "scopes": []string{"read", "write"}, "audience": []string{"https://api.example"}})
	other := e.createIntegration(map[string]any{"name": "other"})
	var tokens []string
	tokens = append(tokens, e.token(old, url.Values{"scope": {"read"}}))
	e.clock.Advance(time.Second)
	tokens = append(tokens, e.token(old, nil))
	e.clock.Advance(time.Second)
	e.token(other, nil)
	fresh := e.regenerate("billing", 600)
	graceEnd := e.now().Add(600 * time.Second)
	e.clock.Advance(time.Second)
	tokens = append(tokens, e.token(fresh, nil))

	items, _ := e.listAll(testBootstrap, "/admin/integrations/billing/tokens")
	type row struct {
		client, scopes, audience string
		active                   bool
	}
	var got []row
	for _, it := range items {
		requireKeys(t, "token item", it, "client_id", "scopes", "audience", "issued_at", "expires_at", "active")
		got = append(got, row{it["client_id"].(string), join(it["scopes"]), join(it["audience"]), it["active"] == true})
	}
	want := []row{
		{fresh.ID, "read write", "https://api.example", true},
		{old.ID, "read write", "https://api.example", true},
		{old.ID, "read", "https://api.example", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("billing's tokens = %+v, want newest first %+v", got, want)
	}
	var issued []string
	for _, it := range items {
		issued = append(issued, it["issued_at"].(string))
	}
	if !slices.IsSortedFunc(issued, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Errorf("issued_at %v, want newest first", issued)
	}
	// A token of the pair in grace stops with the pair.
	for _, it := range items[1:] {
		wantTime(t, "expires_at of a token of the pair in grace", it["expires_at"], graceEnd)
	}

	status, h, body := e.callAdminRaw(e.srv.URL, "GET", "/admin/integrations/billing/tokens", testBootstrap, nil)
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", status, h.Get("Content-Type"))
	}
	for _, tok := range tokens {
		_, signature, _ := strings.Cut(tok, ".")
		if strings.Contains(string(body), tok) || signature == "" || strings.Contains(string(body), signature) {
			t.Errorf("the listing shows a token or its signature: %s", body)
		}
	}

	paged, pages := e.listAll(testBootstrap, "/admin/integrations/billing/tokens?limit=1")
	if pages != 3 || !reflect.DeepEqual(paged, items) {
		t.Errorf("paged by one: %d pages %v, want 3 pages of %v", pages, paged, items)
	}

	// Past the grace the old pair's tokens are listed, inactive, until
	// the janitor deletes them.
	e.clock.Advance(600 * time.Second)
	items, _ = e.listAll(testBootstrap, "/admin/integrations/billing/tokens")
	var active []bool
	for _, it := range items {
		active = append(active, it["active"] == true)
	}
	if !slices.Equal(active, []bool{true, false, false}) {
		t.Errorf("after the grace, active = %v, want [true false false]", active)
	}

	e.mustAdmin("GET", "/admin/integrations/nope/tokens", nil, http.StatusNotFound)
	e.mustAdmin("GET", "/admin/integrations/billing/tokens?limit=0", nil, http.StatusBadRequest)
	e.mustAdmin("GET", "/admin/integrations/billing/tokens?page_token=nonsense", nil, http.StatusBadRequest)
	e.mustAdmin("DELETE", "/admin/integrations/billing", nil, http.StatusNoContent)
	e.mustAdmin("GET", "/admin/integrations/billing/tokens", nil, http.StatusNotFound)
}

// join shows a JSON list of strings as one space-separated string.
func join(v any) string {
	xs, _ := v.([]any)
	var out []string
	for _, x := range xs {
		out = append(out, x.(string))
	}
	return strings.Join(out, " ")
}
