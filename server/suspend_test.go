package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/storage"
)

// setDisabled suspends (true) or enables (false) the integration called
// name through the admin API and returns the integration object.
func (e *env) setDisabled(name string, disabled bool) map[string]any {
	e.t.Helper()
	out := e.mustAdmin("PATCH", "/admin/integrations/"+name, map[string]any{"disabled": disabled}, http.StatusOK)
	if out["disabled"] != disabled {
		e.t.Fatalf("PATCH disabled %v answered disabled = %v", disabled, out["disabled"])
	}
	return out
}

// refusedAsDisabled checks that a right key pair of a disabled integration
// is refused at path with 401 invalid_client, told why, with either client
// authentication method.
func (e *env) refusedAsDisabled(t *testing.T, path string, kp keyPair, form url.Values) {
	t.Helper()
	for _, send := range []struct {
		name string
		fn   func(string, keyPair, url.Values) (int, http.Header, map[string]any)
	}{{"basic", e.form}, {"post", e.postAuth}} {
		status, h, body := send.fn(path, kp, form)
		checkOAuthError(t, status, h, body, http.StatusUnauthorized, "invalid_client")
		if d, _ := body["error_description"].(string); !strings.Contains(d, "disabled") {
			t.Errorf("%s %s: error_description %q does not say the integration is disabled", path, send.name, d)
		}
		if send.name == "basic" && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s basic: no WWW-Authenticate challenge on a 401", path)
		}
	}
}

// TestSuspendIntegration suspends an integration and resumes it, in both
// token formats: while it is disabled its right key pair is refused at
// every endpoint, told so, and its tokens introspect inactive to a
// resource server; a wrong secret is still only a wrong secret; once it is
// enabled its unexpired tokens are active again and it gets new ones.
func TestSuspendIntegration(t *testing.T) {
	for _, format := range []struct {
		name string
		opts []func(*server.Options)
	}{{"opaque", nil}, {"jwt", []func(*server.Options){withJWT(storage.ES256)}}} {
		t.Run(format.name, func(t *testing.T) {
			e := newOAuthEnv(t, format.opts...)
			rs := e.resourceServer()
			job := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}, "token_lifetime_seconds": 3600})
			if got := e.integrationJSON("job")["disabled"]; got != false {
				t.Fatalf("a new integration has disabled = %v, want false", got)
			}

			early := e.token(job, nil) // expires while the integration is disabled
			e.clock.Advance(50 * time.Minute)
			late := e.token(job, nil) // outlives the suspension
			for _, tok := range []string{early, late} {
				if in := e.introspect(rs, tok); in["active"] != true {
					t.Fatalf("before the suspension a token introspects %v, want active", in)
				}
			}
			// What a wrong secret is told while the integration works.
			_, _, wrongBefore := e.form("/oauth2/token", wrongSecret(t, job), grant)

			e.setDisabled("job", true)
			if got := e.integrationJSON("job")["disabled"]; got != true {
				t.Errorf("GET after disabling: disabled = %v, want true", got)
			}
			list := e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)
			for _, it := range list["items"].([]any) {
				ig := it.(map[string]any)
				if want := ig["name"] == "job"; ig["disabled"] != want {
					t.Errorf("list: %v has disabled = %v, want %v", ig["name"], ig["disabled"], want)
				}
			}

			e.refusedAsDisabled(t, "/oauth2/token", job, grant)
			e.refusedAsDisabled(t, "/oauth2/introspect", job, url.Values{"token": {late}})
			e.refusedAsDisabled(t, "/oauth2/revoke", job, url.Values{"token": {late}})
			for _, tok := range []string{early, late} {
				checkInactive(t, e.introspect(rs, tok))
			}

			// Without the right secret nothing tells the integration is
			// disabled: the answer is a wrong secret's, word for word.
			status, h, wrong := e.form("/oauth2/token", wrongSecret(t, job), grant)
			checkOAuthError(t, status, h, wrong, http.StatusUnauthorized, "invalid_client")
			if wrong["error_description"] != wrongBefore["error_description"] {
				t.Errorf("a wrong secret while disabled is told %q, while enabled %q", wrong["error_description"], wrongBefore["error_description"])
			}

			m := scrape(t, e.srv.URL)
			// Token, introspection and revocation, each by Basic and post.
			wantSample(t, m, `latchkey_client_auth_failures_total{reason="disabled_client"}`, "6")
			wantSample(t, m, `latchkey_client_auth_failures_total{reason="wrong_secret"}`, "2")
			if !strings.Contains(e.logs.String(), `"auth_failure":"disabled_client"`) {
				t.Error("no access log line carries auth_failure disabled_client")
			}

			e.clock.Advance(20 * time.Minute) // early has expired, late has not
			e.setDisabled("job", false)
			if in := e.introspect(rs, late); in["active"] != true || in["sub"] != "job" || in["client_id"] != job.ID {
				t.Errorf("after enabling, the unexpired token introspects %v, want active for job", in)
			}
			checkInactive(t, e.introspect(rs, early))
			if in := e.introspect(rs, e.token(job, nil)); in["active"] != true {
				t.Errorf("after enabling, a new token introspects %v, want active", in)
			}
			// The revocation refused during the suspension revoked nothing.
			if status, _, body := e.form("/oauth2/revoke", job, url.Values{"token": {late}}); status != http.StatusOK {
				t.Fatalf("revoke after enabling: %d %v", status, body)
			}
			checkInactive(t, e.introspect(rs, late))

			// The audit log says which way each change went.
			audit := e.mustAdmin("GET", "/admin/audit?integration=job", nil, http.StatusOK)
			var changes []string
			for _, it := range audit["items"].([]any) {
				ev := it.(map[string]any)
				if ev["action"] != "integration.update" {
					continue
				}
				d, _ := ev["details"].(map[string]any)["changes"].(map[string]any)["disabled"].(map[string]any)
				changes = append(changes, fmt.Sprint(d["old"], "→", d["new"]))
			}
			if want := []string{"true→false", "false→true"}; !slices.Equal(changes, want) { // newest first
				t.Errorf("integration.update changes of disabled = %v, want %v", changes, want)
			}
		})
	}
}

// TestSuspendResourceServer: a disabled resource server cannot introspect,
// and the tokens it was asked about are not its to judge.
func TestSuspendResourceServer(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	tok := e.token(job, nil)
	e.setDisabled("resource-server", true)
	e.refusedAsDisabled(t, "/oauth2/introspect", rs, url.Values{"token": {tok}})
	e.setDisabled("resource-server", false)
	if in := e.introspect(rs, tok); in["active"] != true {
		t.Errorf("after enabling the resource server: %v, want active", in)
	}
}

// TestSuspendDuringIssuance disables the integration after its key pair
// was read and before its token is stored: the guarded insert refuses the
// token, the request authenticates once more and is refused as disabled,
// with 401, never a 500 or a token.
func TestSuspendDuringIssuance(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	disabled := false
	// The next reading of the clock is server/oauth deciding whether the
	// pair it has just read is in term: the suspension lands after the
	// pair was read and before the token is written.
	e.clock.beforeNext(func() {
		yes := true
		_, err := e.store.UpdateIntegration(context.Background(), "svc", storage.IntegrationPatch{Disabled: &yes}, storage.Actor{Type: "admin", Name: "test"})
		if err != nil {
			t.Errorf("disable: %v", err)
		}
		disabled = true
	})
	status, h, out := e.form("/oauth2/token", kp, grant)
	if !disabled {
		t.Fatal("the suspension never ran: the clock was not read during the request")
	}
	checkOAuthError(t, status, h, out, http.StatusUnauthorized, "invalid_client")
	if d, _ := out["error_description"].(string); !strings.Contains(d, "disabled") {
		t.Errorf("error_description %q does not say the integration is disabled", d)
	}
	var n int
	if err := e.rawDB().QueryRow("SELECT COUNT(*) FROM access_tokens").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d tokens stored for a request refused as disabled, want 0", n)
	}
}

// lastUsed returns the last_used_at of name's current key pair, the zero
// time for null.
func (e *env) lastUsed(name string) time.Time {
	e.t.Helper()
	kp := e.integrationJSON(name)["key_pair"].(map[string]any)
	if kp["last_used_at"] == nil {
		return time.Time{}
	}
	return parseRFC3339UTC(e.t, "last_used_at", kp["last_used_at"])
}

// TestLastUsedOnEveryAuthentication: a key pair's last_used_at moves when
// it authenticates at introspection and revocation as at the token
// endpoint, at most once a minute.
func TestLastUsedOnEveryAuthentication(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	check := func(name string, want time.Time, what string) {
		t.Helper()
		if got := e.lastUsed(name); !got.Equal(want) {
			t.Errorf("%s: %s last_used_at = %v, want %v", what, name, got, want)
		}
	}

	check("resource-server", time.Time{}, "never used")
	tok := e.token(job, nil)
	check("job", e.now(), "token")

	e.clock.Advance(time.Second)
	first := e.now()
	e.introspect(rs, tok)
	check("resource-server", first, "first introspection")

	e.clock.Advance(59 * time.Second) // a minute after the first use, less a second
	e.introspect(rs, tok)
	e.introspect(rs, "lk_at_unknown")
	check("resource-server", first, "introspections within the minute")

	e.clock.Advance(time.Second)
	e.introspect(rs, tok)
	check("resource-server", e.now(), "introspection a minute later")

	// Revocation, from a token request a minute after the last.
	e.clock.Advance(time.Minute)
	tok = e.token(job, nil)
	jobUsed := e.now()
	check("job", jobUsed, "token")
	e.clock.Advance(30 * time.Second)
	if status, _, body := e.form("/oauth2/revoke", job, url.Values{"token": {"lk_at_unknown"}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, body)
	}
	check("job", jobUsed, "revocation within the minute of the token request")
	e.clock.Advance(31 * time.Second)
	revoked := e.now()
	if status, _, body := e.postAuth("/oauth2/revoke", job, url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revoke: %d %v", status, body)
	}
	check("job", revoked, "revocation a minute later")
	e.clock.Advance(10 * time.Second)
	e.form("/oauth2/revoke", job, url.Values{"token": {tok}})
	check("job", revoked, "revocation within the minute")

	// A failed authentication, or a suspended integration's, is no use.
	before := e.lastUsed("resource-server")
	e.clock.Advance(time.Hour)
	e.form("/oauth2/introspect", wrongSecret(t, rs), url.Values{"token": {tok}})
	e.setDisabled("resource-server", true)
	e.form("/oauth2/introspect", rs, url.Values{"token": {tok}})
	check("resource-server", before, "failed authentications")
}
