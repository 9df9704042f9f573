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
	"github.com/latchkey/latchkey/server/oauth/credential"
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
	return keyPair{ID: kp.ID, Secret: credential.NewClientSecret()}
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

// failUntilSlowed sends wrong secrets for kp from c until the pair is
// refused with 429, failing the test if that takes more than the burst
// and one.
func (e *env) failUntilSlowed(c *http.Client, kp keyPair, burst int) {
	e.t.Helper()
	for i := range burst {
		if a := e.post(c, "/oauth2/token", wrongSecret(e.t.(*testing.T), kp), grant); a.status != http.StatusUnauthorized {
			e.t.Fatalf("wrong secret %d: %d %v, want 401 within the burst", i+1, a.status, a.body)
		}
	}
	assertSlowDown(e.t.(*testing.T), e.post(c, "/oauth2/token", wrongSecret(e.t.(*testing.T), kp), grant), "past the burst")
}

// TestSharedAddressAfterRegeneration is the moment after a regeneration:
// old code keeps retrying with the revoked pair from an address it shares
// (a NAT egress, a Kubernetes node) with thirty healthy integrations, a
// resource server and the regenerated integration's new pair. Every one of
// those gets its answer at once; only the stale client is slowed, and it
// is still told invalid_client as often as the limit refills.
func TestSharedAddressAfterRegeneration(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	nat := clientFrom("127.0.0.30")
	stale := e.createIntegration(map[string]any{"name": "billing"})
	rs := e.resourceServer()
	var healthy []keyPair
	for i := range 30 {
		healthy = append(healthy, e.createIntegration(map[string]any{"name": fmt.Sprintf("svc-%02d", i)}))
	}
	fresh := e.regenerate("billing", 0)

	statuses := map[int]int{}
	for round := range 4 {
		for range 10 { // the stale client retries, far past its burst of 5
			a := e.post(nat, "/oauth2/token", stale, grant)
			statuses[a.status]++
			if a.status == http.StatusTooManyRequests {
				assertSlowDown(t, a, "stale client past its burst")
			} else if a.status != http.StatusUnauthorized || a.body["error"] != "invalid_client" {
				t.Fatalf("stale client: %d %v, want 401 invalid_client or 429", a.status, a.body)
			}
		}
		for _, kp := range healthy {
			if a := e.post(nat, "/oauth2/token", kp, grant); a.status != http.StatusOK {
				t.Fatalf("round %d: healthy integration behind the shared address: %d %v", round, a.status, a.body)
			}
		}
		a := e.post(nat, "/oauth2/token", fresh, grant)
		if a.status != http.StatusOK {
			t.Fatalf("round %d: the regenerated pair from the shared address: %d %v", round, a.status, a.body)
		}
		tok := a.body["access_token"].(string)
		if a := e.post(nat, "/oauth2/introspect", rs, url.Values{"token": {tok}}); a.status != http.StatusOK || a.body["active"] != true {
			t.Fatalf("round %d: resource server behind the shared address: %d %v", round, a.status, a.body)
		}
		// A second passes between rounds: one more failure is let
		// through to the stale client, which learns again that its
		// credentials are wrong.
		e.clock.Advance(time.Second)
	}
	if statuses[http.StatusUnauthorized] < 5+3 || statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("stale client's answers %v: want its burst of 401s, one more 401 per refill, and 429s", statuses)
	}
}

// TestRateLimitFailedClientAuth floods one client with wrong secrets from
// one address: that address and client ID pair is slowed, while the right
// secret from the same address, other clients from it, and the client's
// own deployment elsewhere carry on.
func TestRateLimitFailedClientAuth(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	victim := e.createIntegration(map[string]any{"name": "victim"})
	other := e.createIntegration(map[string]any{"name": "other"})
	attacker, deployment, third := clientFrom("127.0.0.2"), clientFrom("127.0.0.3"), clientFrom("127.0.0.4")

	e.failUntilSlowed(attacker, victim, 5)
	a := e.post(attacker, "/oauth2/token", wrongSecret(t, victim), grant)
	assertSlowDown(t, a, "seventh wrong secret")
	if got := a.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (one failure a second refills)", got)
	}
	// Correct credentials from the flooding address are never refused.
	for _, kp := range []keyPair{victim, other} {
		if a := e.post(attacker, "/oauth2/token", kp, grant); a.status != http.StatusOK {
			t.Fatalf("right secret from the flooding address: %d %v", a.status, a.body)
		}
	}
	// The address has spent its own budget: a wrong secret for another
	// client from it is the failure it is (401), but held.
	before := scrape(t, e.srv.URL)[`latchkey_rate_limited_total{limit="address"}`]
	if a := e.post(attacker, "/oauth2/token", wrongSecret(t, other), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("wrong secret for another client from the flooding address: %d %v, want 401", a.status, a.body)
	}
	if after := scrape(t, e.srv.URL)[`latchkey_rate_limited_total{limit="address"}`]; after == before {
		t.Errorf("the failing address's next failure was not held (rate_limited{address} stayed %s)", after)
	}

	// The integration's own deployment elsewhere is not locked out, nor
	// is a new address that fails for the victim once.
	for i := range 20 {
		if a := e.post(deployment, "/oauth2/token", victim, grant); a.status != http.StatusOK {
			t.Fatalf("right secret from another address, request %d: %d %v", i+1, a.status, a.body)
		}
	}
	if a := e.post(third, "/oauth2/token", wrongSecret(t, victim), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("first wrong secret from a clean address: %d %v, want 401", a.status, a.body)
	}
	if a := e.post(third, "/oauth2/token", victim, grant); a.status != http.StatusOK {
		t.Fatalf("right secret after a failure from a clean address: %d %v", a.status, a.body)
	}

	// One failure a second refills the pair: after a second the attacker
	// is told invalid_client once, then slowed again.
	e.clock.Advance(time.Second)
	if a := e.post(attacker, "/oauth2/token", wrongSecret(t, victim), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("after a second: %d %v, want 401", a.status, a.body)
	}
	assertSlowDown(t, e.post(attacker, "/oauth2/token", wrongSecret(t, victim), grant), "after spending the refill")
}

// invented is a well-formed key pair no integration has.
func invented() keyPair {
	return keyPair{ID: credential.NewClientID(), Secret: credential.NewClientSecret()}
}

// TestManyAddressFlood: failures from a fresh address each, with invented
// client IDs, spend only the global budget; once it is spent, every
// further failure is held, from whichever address, while correct
// credentials from new addresses are answered at once.
func TestManyAddressFlood(t *testing.T) {
	e := limited(t) // global budget: ten bursts of 5, refilling 100 a second
	e.failOnServerErrors()
	kp := e.createIntegration(map[string]any{"name": "svc"})
	for i := range 50 {
		c := clientFrom(fmt.Sprintf("127.0.2.%d", i+1))
		if a := e.post(c, "/oauth2/token", invented(), grant); a.status != http.StatusUnauthorized {
			t.Fatalf("failure from address %d: %d %v, want 401", i+1, a.status, a.body)
		}
		c.CloseIdleConnections()
	}
	if got := scrape(t, e.srv.URL)[`latchkey_rate_limited_total{limit="global"}`]; got != "0" {
		t.Fatalf("global budget spent after 50 failures (rate_limited{global} = %s), want 0", got)
	}
	c := clientFrom("127.0.2.100")
	if a := e.post(c, "/oauth2/token", invented(), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("the 51st failure, from a fresh address: %d %v, want 401", a.status, a.body)
	}
	if got := scrape(t, e.srv.URL)[`latchkey_rate_limited_total{limit="global"}`]; got != "1" {
		t.Errorf("the 51st failure was not held by the global budget (rate_limited{global} = %s)", got)
	}
	if a := e.post(clientFrom("127.0.2.101"), "/oauth2/token", kp, grant); a.status != http.StatusOK {
		t.Fatalf("right secret from a fresh address during the flood: %d %v", a.status, a.body)
	}
}

// TestRefusalsAreHeld: a refused request is answered only once its limit
// would let it through, up to MaxDelay, so a flood that retries at once
// sends about one request per connection per delay; the right secret from
// the same address is not held. The bounds are far apart, so that a busy
// machine cannot blur them: a held answer takes at least MaxDelay (a timer
// never fires early), an answer that is not held takes a fraction of it.
func TestRefusalsAreHeld(t *testing.T) {
	const maxDelay = 1500 * time.Millisecond
	e := newEnv(t, func(o *server.Options) {
		o.ClientAuthLimit = server.RateLimit{PerMinute: 6, Burst: 1, MaxDelay: maxDelay}
	})
	kp := e.createIntegration(map[string]any{"name": "svc"})
	c := clientFrom("127.0.0.12")
	e.post(c, "/oauth2/token", wrongSecret(t, kp), grant)
	start := time.Now()
	assertSlowDown(t, e.post(c, "/oauth2/token", wrongSecret(t, kp), grant), "after the burst")
	if d := time.Since(start); d < maxDelay {
		t.Errorf("refusal answered after %v, want it held for MaxDelay (%v)", d, maxDelay)
	}
	for _, from := range []*http.Client{c, clientFrom("127.0.0.13")} {
		start = time.Now()
		if a := e.post(from, "/oauth2/token", kp, grant); a.status != http.StatusOK {
			t.Fatalf("right secret: %d", a.status)
		}
		if d := time.Since(start); d >= maxDelay/2 {
			t.Errorf("a right secret took %v: held like a failure", d)
		}
	}
}

// TestRateLimitCoversIntrospectAndRevoke: every endpoint that authenticates
// a client counts its failures and slows the failing pair, and never
// refuses the right credentials.
func TestRateLimitCoversIntrospectAndRevoke(t *testing.T) {
	e := limited(t)
	rs := e.resourceServer()
	from := clientFrom("127.0.0.5")
	paths := []string{"/oauth2/introspect", "/oauth2/revoke", "/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"}
	for _, p := range paths {
		if a := e.post(from, p, wrongSecret(t, rs), url.Values{"token": {"x"}, "grant_type": {"client_credentials"}}); a.status != http.StatusUnauthorized {
			t.Fatalf("%s: %d %v, want 401", p, a.status, a.body)
		}
	}
	assertSlowDown(t, e.post(from, "/oauth2/introspect", wrongSecret(t, rs), url.Values{"token": {"x"}}), "introspect after five failures")
	assertSlowDown(t, e.post(from, "/oauth2/revoke", wrongSecret(t, rs), url.Values{"token": {"x"}}), "revoke after five failures")
	if a := e.post(from, "/oauth2/introspect", rs, url.Values{"token": {"x"}}); a.status != http.StatusOK {
		t.Fatalf("introspect with the right secret from the same address: %d %v", a.status, a.body)
	}
	if a := e.post(from, "/oauth2/revoke", rs, url.Values{"token": {"x"}}); a.status != http.StatusOK {
		t.Fatalf("revoke with the right secret from the same address: %d %v", a.status, a.body)
	}
}

// mistyped returns secret with its last checksum character changed, so
// that the checksum no longer matches. (Always "x" kept one secret in 62
// valid, and TestUnsupportedAuthMethodsAreFailures failed now and then.)
func mistyped(secret string) string {
	last := "x"
	if strings.HasSuffix(secret, last) {
		last = "y"
	}
	return secret[:len(secret)-1] + last
}

// TestUnsupportedAuthMethodsAreFailures: a client assertion that is no
// JWS (alg none, no signature), two methods at once, no credentials and a secret
// with a bad checksum are each 401 invalid_client, answered alike whether
// the client ID is live or not, and counted like wrong secrets.
func TestUnsupportedAuthMethodsAreFailures(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	live := e.createIntegration(map[string]any{"name": "svc"})
	unknown := keyPair{ID: credential.NewClientID(), Secret: credential.NewClientSecret()}
	assertion := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
	}
	// The assertion comes with a well-formed secret, as a client
	// switching methods might send it: only refusing the assertion
	// itself stands between it and fosite's assertion handling.
	withSecret := func(kp keyPair, v url.Values) url.Values {
		out := url.Values{"client_id": {kp.ID}, "client_secret": {kp.Secret}}
		for k, vs := range v {
			out[k] = vs
		}
		return out
	}
	bodyFor := func(kp keyPair, v url.Values) url.Values {
		out := url.Values{"client_id": {kp.ID}}
		for k, vs := range v {
			out[k] = vs
		}
		return out
	}
	raw := func(c *http.Client, form url.Values, basic *keyPair) answer {
		req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic != nil {
			req.SetBasicAuth(basic.ID, basic.Secret)
		}
		return e.send(c, req)
	}
	cases := []struct {
		name string
		send func(c *http.Client, kp keyPair) answer
	}{
		{"client assertion", func(c *http.Client, kp keyPair) answer { return raw(c, bodyFor(kp, assertion), nil) }},
		{"client assertion and secret", func(c *http.Client, kp keyPair) answer { return raw(c, withSecret(kp, assertion), nil) }},
		{"assertion type alone", func(c *http.Client, kp keyPair) answer {
			return raw(c, withSecret(kp, url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"x"}}), nil)
		}},
		{"basic and body", func(c *http.Client, kp keyPair) answer {
			return raw(c, bodyFor(kp, url.Values{"grant_type": {"client_credentials"}, "client_secret": {kp.Secret}}), &kp)
		}},
		{"bad checksum", func(c *http.Client, kp keyPair) answer {
			return e.post(c, "/oauth2/token", keyPair{ID: kp.ID, Secret: mistyped(kp.Secret)}, grant)
		}},
		{"client_id without secret", func(c *http.Client, kp keyPair) answer {
			return raw(c, bodyFor(kp, grant), nil)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var descriptions []any
			for j, kp := range []keyPair{live, unknown} {
				c := clientFrom(fmt.Sprintf("127.0.3.%d", 2*i+j+1))
				a := tc.send(c, kp)
				if a.status != http.StatusUnauthorized || a.body["error"] != "invalid_client" {
					t.Fatalf("%s: %d %v, want 401 invalid_client", kp.ID, a.status, a.body)
				}
				descriptions = append(descriptions, a.body["error_description"])
				for range 4 {
					tc.send(c, kp)
				}
				// Counted: the sixth from the pair is slowed.
				assertSlowDown(t, tc.send(c, kp), "sixth attempt")
			}
			if descriptions[0] != descriptions[1] {
				t.Errorf("a live and an unknown client ID are told apart: %q vs %q", descriptions[0], descriptions[1])
			}
		})
	}
}

// TestMalformedSecretNeverReachesTheDatabase: with the database gone, a
// secret with a bad checksum is still refused (401): it was refused before
// any lookup. A well-formed one needs the database and gets 503.
func TestMalformedSecretNeverReachesTheDatabase(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	e.store.Close()
	typo := keyPair{ID: kp.ID, Secret: mistyped(kp.Secret)}
	if st, _, body := e.form("/oauth2/token", typo, grant); st != http.StatusUnauthorized {
		t.Fatalf("bad checksum with the database closed: %d %v, want 401", st, body)
	}
	if st, _, body := e.form("/oauth2/token", kp, grant); st != http.StatusServiceUnavailable {
		t.Fatalf("a well-formed secret with the database closed: %d %v, want 503 (it needs the database)", st, body)
	}
}

// TestRevokingAnothersTokenIsAFailure: asking to revoke another
// integration's live token is refused and counted, so it cannot be used
// to test which tokens are live at speed.
func TestRevokingAnothersTokenIsAFailure(t *testing.T) {
	e := limited(t)
	e.failOnServerErrors()
	owner := e.createIntegration(map[string]any{"name": "owner"})
	snoop := e.createIntegration(map[string]any{"name": "snoop"})
	rs := e.resourceServer()
	tok := e.token(owner, nil)
	c := clientFrom("127.0.0.31")
	for i := range 5 {
		if a := e.post(c, "/oauth2/revoke", snoop, url.Values{"token": {tok}}); a.status != http.StatusBadRequest {
			t.Fatalf("revoke another's token %d: %d %v, want 400", i+1, a.status, a.body)
		}
	}
	assertSlowDown(t, e.post(c, "/oauth2/revoke", snoop, url.Values{"token": {tok}}), "sixth try at another's token")
	if got := e.introspect(rs, tok); got["active"] != true {
		t.Errorf("the owner's token after the attempts: %v, want active", got)
	}
	// The snooping integration's own work from that address goes on.
	if a := e.post(c, "/oauth2/token", snoop, grant); a.status != http.StatusOK {
		t.Fatalf("snoop's own token request: %d %v", a.status, a.body)
	}
}

// TestIPv6FailuresCountByPrefix: the addresses of one /64 are one party,
// which could otherwise walk through its 2^64 addresses.
func TestIPv6FailuresCountByPrefix(t *testing.T) {
	e := limited(t, func(o *server.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.40/32")}
	})
	kp := e.createIntegration(map[string]any{"name": "svc"})
	proxy := clientFrom("127.0.0.40")
	via := func(xff string, kp keyPair) answer {
		req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(grant.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", xff)
		req.SetBasicAuth(kp.ID, kp.Secret)
		return e.send(proxy, req)
	}
	for i := range 5 {
		if a := via(fmt.Sprintf("2001:db8:1:2::%x", i+1), wrongSecret(t, kp)); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, a.status)
		}
	}
	assertSlowDown(t, via("2001:db8:1:2:ffff::1", wrongSecret(t, kp)), "another address of the same /64")
	if a := via("2001:db8:1:3::1", wrongSecret(t, kp)); a.status != http.StatusUnauthorized {
		t.Fatalf("the next /64: %d %v, want 401", a.status, a.body)
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

// TestRateLimitAdminToken: wrong admin tokens from an address are slowed
// (held, then 429), while a right admin token from the same address, or
// from anywhere, always works.
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
		if a := call(attacker, credential.NewAdminToken()); a.status != http.StatusUnauthorized {
			t.Fatalf("wrong admin token %d: %d %v", i+1, a.status, a.body)
		}
	}
	a := call(attacker, credential.NewAdminToken())
	if a.status != http.StatusTooManyRequests || a.body["error"] != "too_many_requests" || a.header.Get("Retry-After") == "" {
		t.Fatalf("sixth wrong admin token: %d %v %v, want 429 too_many_requests with Retry-After", a.status, a.header, a.body)
	}
	if a := call(attacker, testBootstrap); a.status != http.StatusOK {
		t.Fatalf("right token from the failing address: %d %v, want 200", a.status, a.body)
	}
	minted := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "carol"}, http.StatusCreated)["token"].(string)
	if a := call(attacker, minted); a.status != http.StatusOK {
		t.Fatalf("another admin's right token from the failing address: %d %v, want 200", a.status, a.body)
	}
	if a := call(admin, testBootstrap); a.status != http.StatusOK {
		t.Fatalf("right token from another address: %d %v", a.status, a.body)
	}
	e.clock.Advance(time.Second)
	if a := call(attacker, credential.NewAdminToken()); a.status != http.StatusUnauthorized {
		t.Fatalf("a wrong token after the refill: %d %v, want 401", a.status, a.body)
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
	assertSlowDown(t, via(proxy, "192.0.2.1", wrongSecret(t, kp)), "192.0.2.1 through the proxy")
	if a := via(proxy, "192.0.2.2", wrongSecret(t, kp)); a.status != http.StatusUnauthorized {
		t.Fatalf("192.0.2.2 through the same proxy: %d %v", a.status, a.body)
	}
	// A peer that is not a trusted proxy cannot choose its address.
	kp2 := e.createIntegration(map[string]any{"name": "svc2"})
	for i := range 5 {
		if a := via(direct, fmt.Sprintf("198.51.100.%d", i), wrongSecret(t, kp2)); a.status != http.StatusUnauthorized {
			t.Fatalf("direct failure %d: %d", i+1, a.status)
		}
	}
	assertSlowDown(t, via(direct, "198.51.100.200", wrongSecret(t, kp2)), "untrusted peer with a fresh X-Forwarded-For")

	// The audit log records the forwarded address for admin changes.
	req, _ := http.NewRequest("POST", e.srv.URL+"/admin/integrations", strings.NewReader(`{"name":"audited"}`))
	req.Header.Set("Authorization", "Bearer "+testBootstrap)
	req.Header.Set("Content-Type", "application/json")
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
