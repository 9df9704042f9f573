package server_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestEndGrace: ending a grace period revokes the previous pair at once and
// leaves the current one working; with no pair in grace it is 404.
func TestEndGrace(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	old := e.createIntegration(map[string]any{"name": "billing"})
	fresh := e.regenerate("billing", 3600)
	grant := url.Values{"grant_type": {"client_credentials"}}
	if status, _, out := e.form("/oauth2/token", old, grant); status != http.StatusOK {
		t.Fatalf("old pair in its grace: status %d %v", status, out)
	}
	e.mustAdmin("DELETE", "/admin/integrations/billing/previous-key-pair", nil, http.StatusNoContent)
	if status, _, out := e.form("/oauth2/token", old, grant); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Errorf("old pair after ending the grace: status %d %v, want 401 invalid_client", status, out)
	}
	if status, _, out := e.form("/oauth2/token", fresh, grant); status != http.StatusOK {
		t.Errorf("current pair after ending the grace: status %d %v", status, out)
	}
	if ig := e.mustAdmin("GET", "/admin/integrations/billing", nil, http.StatusOK); ig["previous_key_pair"] != nil {
		t.Errorf("after ending the grace the integration still has a previous pair: %v", ig["previous_key_pair"])
	}
	e.mustAdmin("DELETE", "/admin/integrations/billing/previous-key-pair", nil, http.StatusNotFound)
	e.mustAdmin("DELETE", "/admin/integrations/nope/previous-key-pair", nil, http.StatusNotFound)
	events := e.mustAdmin("GET", "/admin/audit?action=key_pair.end_grace", nil, http.StatusOK)["items"].([]any)
	if len(events) != 1 || events[0].(map[string]any)["details"].(map[string]any)["previous_client_id"] != old.ID {
		t.Errorf("audit of ending the grace: %v", events)
	}
}
