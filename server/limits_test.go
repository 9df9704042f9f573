package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/storage"
)

// limited is an env with failed-authentication limits: burst 5, then 60 a
// minute (one a second), for clients and for admins.
func limited(t *testing.T, opts ...func(*server.Options)) *env {
	t.Helper()
	return newEnv(t, append([]func(*server.Options){func(o *server.Options) {
		// Refusals are held a millisecond here; TestRefusalsAreHeld
		// checks the hold itself.
		o.ClientAuthLimit = server.RateLimit{PerMinute: 60, Burst: 5, MaxDelay: time.Millisecond}
		o.AdminAuthLimit = server.RateLimit{PerMinute: 60, Burst: 5, MaxDelay: time.Millisecond}
	}}, opts...)...)
}

// clientFrom returns an HTTP client whose connections come from source, an
// address in 127.0.0.0/8: on loopback every such address is this machine,
// so one test can be several remote addresses.
func clientFrom(source string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// post sends form to path with Basic credentials from client c.
func (e *env) post(c *http.Client, path string, kp keyPair, form url.Values) answer {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	return e.send(c, req)
}

func (e *env) send(c *http.Client, req *http.Request) answer {
	e.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &a.body); err != nil {
			e.t.Fatalf("%s %s: body is not JSON: %q", req.Method, req.URL.Path, b)
		}
	}
	return a
}

var grant = url.Values{"grant_type": {"client_credentials"}}

// wrongSecret is well formed, checksum included, and wrong.
func wrongSecret(t *testing.T, kp keyPair) keyPair {
	t.Helper()
	return keyPair{ID: kp.ID, Secret: storage.NewClientSecret()}
}

func assertSlowDown(t *testing.T, a answer, what string) {
	t.Helper()
	if a.status != http.StatusTooManyRequests || a.body["error"] != "slow_down" || a.body["error_description"] == "" {
		t.Fatalf("%s: %d %v, want 429 slow_down with a description", what, a.status, a.body)
	}
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("%s: Retry-After %q, want whole seconds ≥ 1", what, a.header.Get("Retry-After"))
	}
}

// TestRateLimitFailedClientAuth floods one client with wrong secrets from
// one address: that address is refused, while the same client with its right
// secret from another address, and other clients, carry on.
func TestRateLimitFailedClientAuth(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	victim := e.createIntegration(map[string]any{"name": "victim"})
	other := e.createIntegration(map[string]any{"name": "other"})
	attacker, deployment, third := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")

	for i := range 5 {
		if a := e.post(attacker, "/oauth2/token", wrongSecret(t, victim), grant); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %d %v, want 401 within the burst", i+1, a.status, a.body)
		}
	}
	a := e.post(attacker, "/oauth2/token", wrongSecret(t, victim), grant)
	assertSlowDown(t, a, "sixth wrong secret")
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (one failure a second refills)", got)
	}
	// The limited address is refused before anything is checked, right
	// secret or not, and for any client.
	assertSlowDown(t, e.post(attacker, "/oauth2/token", victim, grant), "right secret from the flooding address")
	assertSlowDown(t, e.post(attacker, "/oauth2/token", other, grant), "another client from the flooding address")

	// The integration's own deployment elsewhere is not locked out.
	for i := range 20 {
		if a := e.post(deployment, "/oauth2/token", victim, grant); a.status != http.StatusOK {
			t.Fatalf("right secret from another address, request %d: %d %v", i+1, a.status, a.body)
		}
	}
	// The victim's own bucket is empty too: a new address with a clean
	// record still gets an answer (401), but once it has failed for the
	// victim, it is refused for the victim — and only for the victim.
	if a := e.post(third, "/oauth2/token", wrongSecret(t, victim), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("first wrong secret from a clean address: %d %v, want 401", a.status, a.body)
	}
	assertSlowDown(t, e.post(third, "/oauth2/token", victim, grant), "victim from an address that has failed for it")
	if a := e.post(third, "/oauth2/token", other, grant); a.status != http.StatusOK {
		t.Fatalf("another client from that address: %d %v, want 200", a.status, a.body)
	}
	if a := e.post(deployment, "/oauth2/token", victim, grant); a.status != http.StatusOK {
		t.Fatalf("the deployment after all that: %d %v, want 200", a.status, a.body)
	}

	// One failure a second refills: after 1 s the flooding address has one
	// attempt again, after 5 s a full burst.
	e.clock.Advance(time.Second)
	if a := e.post(attacker, "/oauth2/token", other, grant); a.status != http.StatusOK {
		t.Fatalf("after a second: %d %v, want 200", a.status, a.body)
	}
	if a := e.post(attacker, "/oauth2/token", wrongSecret(t, other), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("after a second, a wrong secret for another client: %d %v, want 401", a.status, a.body)
	}
	assertSlowDown(t, e.post(attacker, "/oauth2/token", other, grant), "after spending the refill")
}

// TestRefusalsAreHeld: a refused request is answered only once its limit
// would let it through, up to MaxDelay, so a flood that retries at once
// sends about one request per connection per delay; a request whose client
// gives up is let go at once.
func TestRefusalsAreHeld(t *testing.T) {
	e := newEnv(t, func(o *server.Options) {
		o.ClientAuthLimit = server.RateLimit{PerMinute: 60, Burst: 1, MaxDelay: 300 * time.Millisecond}
	})
	kp := e.createIntegration(map[string]any{"name": "svc"})
	c := clientFrom("127.0.0.12")
	e.post(c, "/oauth2/token", wrongSecret(t, kp), grant)
	start := time.Now()
	assertSlowDown(t, e.post(c, "/oauth2/token", kp, grant), "after the burst")
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("refusal answered after %v, want about MaxDelay (300ms)", d)
	}
	// Another client elsewhere is not held.
	start = time.Now()
	if a := e.post(clientFrom("127.0.0.13"), "/oauth2/token", kp, grant); a.status != http.StatusOK {
		t.Fatalf("another address: %d", a.status)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("a request from a clean address took %v", d)
	}
}

// TestRateLimitCoversIntrospectAndRevoke: every endpoint that authenticates
// a client counts its failures and honours the limit, and 401s for missing
// credentials or unknown clients count against the address.
func TestRateLimitCoversIntrospectAndRevoke(t *testing.T) {
	e := limited(t)
	rs := e.resourceServer()
	from := clientFrom("127.0.0.5")
	unknown := keyPair{ID: "lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa", Secret: wrongSecret(t, rs).Secret}
	attempts := []struct {
		path string
		kp   keyPair
		form url.Values
	}{
		{"/oauth2/introspect", wrongSecret(t, rs), url.Values{"token": {"x"}}},
		{"/oauth2/revoke", wrongSecret(t, rs), url.Values{"token": {"x"}}},
		{"/oauth2/token", unknown, grant},
		{"/oauth2/introspect", keyPair{ID: rs.ID, Secret: "not-a-secret"}, url.Values{"token": {"x"}}},
		{"/oauth2/revoke", unknown, url.Values{"token": {"x"}}},
	}
	for _, at := range attempts {
		if a := e.post(from, at.path, at.kp, at.form); a.status != http.StatusUnauthorized {
			t.Fatalf("%s: %d %v, want 401", at.path, a.status, a.body)
		}
	}
	assertSlowDown(t, e.post(from, "/oauth2/introspect", rs, url.Values{"token": {"x"}}), "introspect after five failures")
	assertSlowDown(t, e.post(from, "/oauth2/revoke", rs, url.Values{"token": {"x"}}), "revoke after five failures")
	if a := e.post(clientFrom("127.0.0.6"), "/oauth2/introspect", rs, url.Values{"token": {"x"}}); a.status != http.StatusOK {
		t.Fatalf("introspect from elsewhere: %d %v", a.status, a.body)
	}
}

// TestRateLimitOff: with no limit configured, no number of failures is
// answered 429.
func TestRateLimitOff(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	c := clientFrom("127.0.0.7")
	for i := range 50 {
		if a := e.post(c, "/oauth2/token", wrongSecret(t, kp), grant); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, a.status)
		}
	}
	if a := e.post(c, "/oauth2/token", kp, grant); a.status != http.StatusOK {
		t.Fatalf("right secret: %d %v", a.status, a.body)
	}
}

// TestRateLimitAdminToken: wrong admin tokens are limited per address; a
// right token from elsewhere still works.
func TestRateLimitAdminToken(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	attacker, admin := clientFrom("127.0.0.8"), clientFrom("127.0.0.9")
	call := func(c *http.Client, token string) answer {
		req, _ := http.NewRequest("GET", e.srv.URL+"/admin/integrations", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return e.send(c, req)
	}
	for i := range 5 {
		if a := call(attacker, fmt.Sprintf("lk_adm_wrong%d", i)); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong admin token %d: %d %v", i+1, a.status, a.body)
		}
	}
	a := call(attacker, "lk_adm_wrong")
	if a.status != http.StatusTooManyRequests || a.body["error"] != "too_many_requests" || a.header.Get("Retry-After") == "" {
		t.Fatalf("sixth wrong admin token: %d %v %v, want 429 too_many_requests with Retry-After", a.status, a.header, a.body)
	}
	if a := call(attacker, testBootstrap); a.status != http.StatusTooManyRequests {
		t.Fatalf("right token from the limited address: %d, want 429", a.status)
	}
	if a := call(admin, testBootstrap); a.status != http.StatusOK {
		t.Fatalf("right token from another address: %d %v", a.status, a.body)
	}
	e.clock.Advance(5 * time.Second)
	if a := call(attacker, testBootstrap); a.status != http.StatusOK {
		t.Fatalf("after the refill: %d %v", a.status, a.body)
	}
}

// TestTrustedProxies: X-Forwarded-For decides the client's address only
// when the peer is a trusted proxy, and then the rightmost untrusted entry
// counts, whatever the client wrote to its left.
func TestTrustedProxies(t *testing.T) {
	e := limited(t, func(o *server.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.10/32"), netip.MustParsePrefix("10.0.0.0/8")}
	})
	kp := e.createIntegration(map[string]any{"name": "svc"})
	proxy, direct := clientFrom("127.0.0.10"), clientFrom("127.0.0.11")
	via := func(c *http.Client, xff string, kp keyPair) answer {
		req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(grant.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", xff)
		req.SetBasicAuth(kp.ID, kp.Secret)
		return e.send(c, req)
	}
	// Through the proxy, the client 192.0.2.1 (behind another trusted hop
	// 10.1.1.1) fails five times, spoofing a different leftmost entry
	// each time: all five count against 192.0.2.1.
	for i := range 5 {
		xff := fmt.Sprintf("203.0.113.%d, 192.0.2.1, 10.1.1.1", i)
		if a := via(proxy, xff, wrongSecret(t, kp)); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, a.status)
		}
	}
	assertSlowDown(t, via(proxy, "192.0.2.1", kp), "192.0.2.1 through the proxy")
	if a := via(proxy, "192.0.2.2", kp); a.status != http.StatusOK {
		t.Fatalf("192.0.2.2 through the same proxy: %d %v", a.status, a.body)
	}
	// A peer that is not a trusted proxy cannot choose its address.
	kp2 := e.createIntegration(map[string]any{"name": "svc2"})
	for i := range 5 {
		if a := via(direct, fmt.Sprintf("198.51.100.%d", i), wrongSecret(t, kp2)); a.status != http.StatusUnauthorized {
			t.Fatalf("direct failure %d: %d", i+1, a.status)
		}
	}
	assertSlowDown(t, via(direct, "198.51.100.200", kp2), "untrusted peer with a fresh X-Forwarded-For")

	// The audit log records the forwarded address for admin changes.
	req, _ := http.NewRequest("POST", e.srv.URL+"/admin/integrations", strings.NewReader(`{"name":"audited"}`))
	req.Header.Set("Authorization", "Bearer "+testBootstrap)
	req.Header.Set("X-Forwarded-For", "192.0.2.77")
	if a := e.send(proxy, req); a.status != http.StatusCreated {
		t.Fatalf("create through the proxy: %d %v", a.status, a.body)
	}
	audit := e.mustAdmin("GET", "/admin/audit?limit=1", nil, http.StatusOK)
	ev := audit["items"].([]any)[0].(map[string]any)
	if !strings.Contains(fmt.Sprint(ev), "192.0.2.77") {
		t.Errorf("newest audit event %v does not record 192.0.2.77", ev)
	}
}
