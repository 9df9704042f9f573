package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// TestIntegrationSearch: the listing an admin of many integrations uses,
// over HTTP: found by a client ID pasted from a log, ordered newest first,
// counted across pages, and a sort it does not know refused.
func TestIntegrationSearch(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	var last keyPair
	for i := range 12 {
		last = e.createIntegration(map[string]any{"name": fmt.Sprintf("job-%02d", i), "description": "Nightly export"})
	}
	e.createIntegration(map[string]any{"name": "other", "scopes": []string{"reports:read"}})

	page := e.mustAdmin("GET", "/admin/integrations?q="+url.QueryEscape(last.ID), nil, http.StatusOK)
	if items := page["items"].([]any); len(items) != 1 || items[0].(map[string]any)["name"] != "job-11" || page["total"] != float64(1) {
		t.Errorf("q=<job-11's client ID>: %v", page)
	}
	page = e.mustAdmin("GET", "/admin/integrations?q=NIGHTLY&sort=-created_at&limit=5", nil, http.StatusOK)
	if items := page["items"].([]any); len(items) != 5 || items[0].(map[string]any)["name"] != "job-11" ||
		page["total"] != float64(12) || page["next_page_token"] == "" {
		t.Errorf("q=NIGHTLY, newest first, 5 a page: %v", page)
	}
	page = e.mustAdmin("GET", "/admin/integrations?q=reports:read", nil, http.StatusOK)
	if page["total"] != float64(1) {
		t.Errorf("q=reports:read: %v", page)
	}
	out := e.mustAdmin("GET", "/admin/integrations?sort=color", nil, http.StatusBadRequest)
	if out["error_description"] != "sort must be one of name, -name, created_at, -created_at" {
		t.Errorf("sort=color: %v", out)
	}
}
