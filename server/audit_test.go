package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAuditFilters checks each filter of GET /admin/audit, and every
// combination of them, against the whole log filtered here, a page of two
// at a time.
func TestAuditFilters(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	var at []time.Time // when each step happened
	step := func() { e.clock.Advance(time.Second); at = append(at, e.now()) }

	step()
	e.createIntegration(map[string]any{"name": "billing", "scopes": []string{"read"}})
	step()
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)
	step()
	e.adminAs(alice, "PATCH", "/admin/integrations/billing", map[string]any{"description": "invoices"}, http.StatusOK)
	step()
	e.mustAdmin("PATCH", "/admin/integrations/billing", map[string]any{"scopes": []string{"read", "write"}}, http.StatusOK)
	step()
	e.adminAs(alice, "POST", "/admin/integrations", map[string]any{"name": "reports"}, http.StatusCreated)
	step()
	e.adminAs(alice, "POST", "/admin/integrations/billing/key-pair", nil, http.StatusCreated)
	step()
	e.adminAs(alice, "PATCH", "/admin/integrations/reports", map[string]any{"can_introspect": true}, http.StatusOK)

	all, _ := e.listAll(testBootstrap, "/admin/audit")
	type filter struct{ integration, actor, action, since, until string }
	matches := func(f filter, ev map[string]any) bool {
		ts, _ := time.Parse(time.RFC3339Nano, ev["time"].(string))
		since, _ := time.Parse(time.RFC3339Nano, f.since)
		until, _ := time.Parse(time.RFC3339Nano, f.until)
		return (f.integration == "" || ev["object_type"] == "integration" && ev["object"] == f.integration) &&
			(f.actor == "" || ev["actor"] == f.actor) &&
			(f.action == "" || ev["action"] == f.action) &&
			(f.since == "" || !ts.Before(since)) &&
			(f.until == "" || ts.Before(until))
	}
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	var filters []filter
	for _, ig := range []string{"", "billing", "nothing"} {
		for _, actor := range []string{"", "alice", "bootstrap"} {
			for _, action := range []string{"", "integration.update", "integration.create"} {
				for _, window := range [][2]string{{"", ""}, {rfc(at[2]), ""}, {"", rfc(at[3])}, {rfc(at[2]), rfc(at[5])}} {
					filters = append(filters, filter{ig, actor, action, window[0], window[1]})
				}
			}
		}
	}
	nonEmpty := 0
	for _, f := range filters {
		q := url.Values{"limit": {"2"}}
		for k, v := range map[string]string{"integration": f.integration, "actor": f.actor, "action": f.action, "since": f.since, "until": f.until} {
			if v != "" {
				q.Set(k, v)
			}
		}
		got, pages := e.listAll(testBootstrap, "/admin/audit?"+q.Encode())
		var want []any
		for _, ev := range all {
			if matches(f, ev) {
				want = append(want, ev["id"])
			}
		}
		var gotIDs []any
		for _, ev := range got {
			gotIDs = append(gotIDs, ev["id"])
		}
		if !slices.Equal(gotIDs, want) {
			t.Errorf("?%s: event ids %v, want %v", q.Encode(), gotIDs, want)
		}
		if wantPages := max(1, (len(want)+1)/2); pages != wantPages {
			t.Errorf("?%s: %d pages for %d events, want %d", q.Encode(), pages, len(want), wantPages)
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < len(filters)/3 {
		t.Errorf("only %d of %d filters match anything: the log is too thin to test them", nonEmpty, len(filters))
	}

	// Spot checks that do not lean on the filter above.
	byAlice, _ := e.listAll(testBootstrap, "/admin/audit?actor=alice")
	var actions []string
	for _, ev := range byAlice {
		actions = append(actions, fmt.Sprint(ev["action"], " ", ev["object"]))
	}
	wantActions := []string{"integration.update reports", "key_pair.regenerate billing", "integration.create reports", "integration.update billing"}
	if !slices.Equal(actions, wantActions) {
		t.Errorf("?actor=alice: %q, want %q", actions, wantActions)
	}
	offset := url.QueryEscape(at[3].In(time.FixedZone("", 5*3600)).Format(time.RFC3339Nano))
	window, _ := e.listAll(testBootstrap, "/admin/audit?since="+url.QueryEscape(rfc(at[2]))+"&until="+offset)
	if len(window) != 1 || window[0]["actor"] != "alice" || window[0]["action"] != "integration.update" {
		t.Errorf("?since=step 3&until=step 4 (as +05:00): %v, want alice's update alone", window)
	}
}

func TestAuditFilterErrors(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	e.createIntegration(map[string]any{"name": "billing"})
	e.createIntegration(map[string]any{"name": "reports"})
	now := e.now().Format(time.RFC3339)
	for name, query := range map[string]string{
		"since not a time":          "since=yesterday",
		"until a date alone":        "until=2024-05-01",
		"since with a raw +":        "since=2024-05-01T12:00:00+02:00",
		"until equal to since":      "since=" + now + "&until=" + now,
		"until before since":        "since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z",
		"page token not ours":       "page_token=bm90IG91cnM",
		"page token of another API": "page_token=" + url.QueryEscape(e.listPageToken("/admin/integrations?limit=1")),
		"limit zero":                "limit=0",
	} {
		status, h, b := e.callAdminRaw(e.adminURL(), "GET", "/admin/audit?"+query, testBootstrap, nil)
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400; body %s", name, status, b)
			continue
		}
		requireAPIError(t, name, h, b)
		if strings.HasPrefix(query, "since") || strings.HasPrefix(query, "until") {
			var body map[string]string
			_ = json.Unmarshal(b, &body)
			if d := body["error_description"]; !strings.Contains(d, "since") && !strings.Contains(d, "until") {
				t.Errorf("%s: description %q names neither since nor until", name, d)
			}
		}
	}
}

// listPageToken returns the next_page_token of the first page of path.
func (e *env) listPageToken(path string) string {
	e.t.Helper()
	tok, _ := e.mustAdmin("GET", path, nil, http.StatusOK)["next_page_token"].(string)
	if tok == "" {
		e.t.Fatalf("GET %s: no next page", path)
	}
	return tok
}

// TestAuditUpdateChanges checks that a PATCH records the old and the new
// value of each field it changed, and nothing for a PATCH that changes
// nothing.
func TestAuditUpdateChanges(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	e.createIntegration(map[string]any{"name": "billing", "description": "old", "scopes": []string{"read"},
		"token_lifetime_seconds": 600, "token_rate_per_minute": 0})
	updates := func() []map[string]any {
		items, _ := e.listAll(testBootstrap, "/admin/audit?action=integration.update")
		return items
	}

	e.mustAdmin("PATCH", "/admin/integrations/billing", map[string]any{
		"description": "new", "scopes": []string{"read", "write"}, "audience": []string{},
		"token_lifetime_seconds": nil, "token_rate_per_minute": 60, "can_introspect": false,
	}, http.StatusOK)
	got := updates()
	if len(got) != 1 {
		t.Fatalf("%d integration.update events, want 1", len(got))
	}
	changes, _ := json.Marshal(got[0]["details"])
	want := `{"changes":{"description":{"new":"new","old":"old"},"scopes":{"new":["read","write"],"old":["read"]},` +
		`"token_lifetime_seconds":{"new":null,"old":600},"token_rate_per_minute":{"new":60,"old":0}}}`
	if string(changes) != want {
		t.Errorf("details = %s, want %s (audience and can_introspect did not change)", changes, want)
	}

	before := e.mustAdmin("GET", "/admin/integrations/billing", nil, http.StatusOK)["updated_at"]
	e.clock.Advance(time.Minute)
	after := e.mustAdmin("PATCH", "/admin/integrations/billing", map[string]any{"description": "new", "token_rate_per_minute": 60}, http.StatusOK)
	if n := len(updates()); n != 1 || after["updated_at"] != before {
		t.Errorf("a PATCH to the values already set: %d update events (want 1), updated_at %v (want %v)", n, after["updated_at"], before)
	}
}
