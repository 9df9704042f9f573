package server_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
)

// TestRequestCostBounds: what a stranger can put in a request is refused
// before anything expensive looks at it. Only the answers are asserted
// here; BenchmarkWorstRequest measures what each costs.
func TestRequestCostBounds(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	values := func(prefix string, n int) string {
		vs := make([]string, n)
		for i := range vs {
			vs[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return strings.Join(vs, " ")
	}
	// The contract's cap, written out: the test must not follow the
	// constant if it moves.
	const bodyCap = 16 << 10
	var full strings.Builder
	full.WriteString("grant_type=client_credentials&scope=")
	for i := 0; full.Len() < bodyCap-8; i++ {
		fmt.Fprintf(&full, "s%d+", i)
	}
	fullOfScopes := full.String()
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"100 scopes reach the scope check", "/oauth2/token",
			url.Values{"grant_type": {"client_credentials"}, "scope": {values("s", 100)}}.Encode(), 400, "invalid_scope"},
		{"101 scopes", "/oauth2/token",
			url.Values{"grant_type": {"client_credentials"}, "scope": {values("s", 101)}}.Encode(), 400, "invalid_scope"},
		{"a form full of scopes", "/oauth2/token", fullOfScopes, 400, "invalid_scope"},
		{"20 audiences reach the audience check", "/oauth2/token",
			url.Values{"grant_type": {"client_credentials"}, "audience": {values("https://a/", 20)}}.Encode(), 400, "invalid_request"},
		{"21 audiences", "/oauth2/token",
			url.Values{"grant_type": {"client_credentials"}, "audience": {values("https://a/", 21)}}.Encode(), 400, "invalid_request"},
		{"11 audiences and 10 resources", "/oauth2/token",
			url.Values{"grant_type": {"client_credentials"}, "audience": {values("https://a/", 11)}, "resource": {values("https://r/", 10)}}.Encode(), 400, "invalid_request"},
		{"one byte over the body cap", "/oauth2/token",
			"grant_type=client_credentials&pad=" + strings.Repeat("a", bodyCap+1-len("grant_type=client_credentials&pad=")), 413, "invalid_request"},
		{"a megabyte at introspection", "/oauth2/introspect", "token=" + strings.Repeat("a", 1<<20), 413, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, out := e.oauthSend("POST", tt.path, "application/x-www-form-urlencoded", strings.NewReader(tt.body), kp)
			if status != tt.status || out["error"] != tt.code {
				t.Fatalf("%d %v, want %d %s", status, out, tt.status, tt.code)
			}
			desc, _ := out["error_description"].(string)
			if strings.Contains(tt.name, "reach") {
				if strings.Contains(desc, "At most") {
					t.Errorf("within the cap, refused by the cap: %q", desc)
				}
			} else if tt.status == 400 && !strings.Contains(desc, "At most") {
				t.Errorf("refused, but not by the cap: %q", desc)
			}
		})
	}
}

// TestIntrospectEmptyToken: a token parameter that is present but empty
// is one more inactive token (RFC 7662 §2.2); only a missing one is an
// invalid request.
func TestIntrospectEmptyToken(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	status, _, out := e.form("/oauth2/introspect", rs, url.Values{"token": {""}})
	if status != http.StatusOK || len(out) != 1 || out["active"] != false {
		t.Fatalf("empty token: %d %v, want 200 {\"active\":false}", status, out)
	}
	status, _, out = e.form("/oauth2/introspect", rs, url.Values{})
	if status != http.StatusBadRequest || out["error"] != "invalid_request" {
		t.Fatalf("no token parameter: %d %v, want 400 invalid_request", status, out)
	}
}

// TestMetricsNotPublic: /metrics tells who fails and why, so a remote
// caller needs the metrics token; a local one (no proxy in between) and
// the admin listener need nothing.
func TestMetricsNotPublic(t *testing.T) {
	const token = "metrics-token-0123456789abcdef0123456789"
	e := newEnv(t, func(o *server.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.50/32")}
		o.MetricsToken = token
	})
	get := func(c *http.Client, xff, bearer string) int {
		req, _ := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	proxy := clientFrom("127.0.0.50")
	for _, tt := range []struct {
		name        string
		c           *http.Client
		xff, bearer string
		want        int
	}{
		{"loopback", http.DefaultClient, "", "", 200},
		{"remote through a proxy", proxy, "203.0.113.9", "", 401},
		{"remote with a wrong token", proxy, "203.0.113.9", "wrong", 401},
		{"remote with the token", proxy, "203.0.113.9", token, 200},
		{"loopback client through a proxy", proxy, "127.0.0.1", "", 401},
	} {
		if got := get(tt.c, tt.xff, tt.bearer); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	// Without a metrics token, a remote caller is refused outright.
	e = newEnv(t, func(o *server.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.50/32")}
	})
	if got := get(proxy, "203.0.113.9", ""); got != http.StatusForbidden {
		t.Errorf("remote caller, no metrics token configured: %d, want 403", got)
	}
	if got := get(http.DefaultClient, "", ""); got != http.StatusOK {
		t.Errorf("loopback caller, no metrics token configured: %d, want 200", got)
	}
	// On its own admin listener, /metrics is the operator's.
	e3 := newEnv(t, func(o *server.Options) { o.SeparateAdmin = true })
	resp, err := http.Get(e3.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin listener: %d, want 200", resp.StatusCode)
	}
}

// TestCredentialsInPathsAreRedacted: an admin who pastes a leaked
// credential into a URL path (revoking a leaked admin token by its value)
// finds it neither in the access log nor echoed in the error body.
func TestCredentialsInPathsAreRedacted(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	kp := e.createIntegration(map[string]any{"name": "svc"})
	leaked := []string{
		credential.NewAdminToken(),
		kp.Secret,
		e.token(kp, nil),
		"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJzdmMifQ.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLXRva2Vu",
	}
	set := newSecretSet(t)
	for _, v := range leaked {
		set.fragment(v, "a credential in a path", false)
		for _, path := range []string{"/admin/tokens/" + v, "/admin/integrations/" + v, "/no/such/" + v} {
			status, body := e.adminCall("DELETE", path, testBootstrap, nil)
			if status < 400 || status >= 500 {
				t.Fatalf("DELETE %s: %d, want a 4xx", path[:20], status)
			}
			scan(t, "the error body of DELETE "+path[:20], string(body), set.logged)
		}
	}
	scan(t, "the log", e.logs.String(), set.logged)
	if !strings.Contains(e.logs.String(), "lk_adm_[redacted]") {
		t.Errorf("the access log does not show what was redacted")
	}
}
