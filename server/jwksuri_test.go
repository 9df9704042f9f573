package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
)

// keyHost is a client's JWKS server: it serves the set it holds and
// counts the fetches.
type keyHost struct {
	srv     *httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	body    []byte
	header  string // Cache-Control
	delay   time.Duration
	status  int           // answered instead of the set, when not 0
	entered chan struct{} // when not nil, told of each fetch, which then
	gate    chan struct{} // waits for gate to close
}

func newKeyHost(t *testing.T, ss ...signer) *keyHost {
	t.Helper()
	h := &keyHost{}
	h.set(ss...)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fetches.Add(1)
		h.mu.Lock()
		body, cc, delay, status, entered, gate := h.body, h.header, h.delay, h.status, h.entered, h.gate
		h.mu.Unlock()
		if entered != nil {
			entered <- struct{}{}
			<-gate
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *keyHost) set(ss ...signer) {
	b, _ := json.Marshal(jwksOf(ss...))
	h.mu.Lock()
	h.body = b
	h.mu.Unlock()
}

func (h *keyHost) url() string { return h.srv.URL + "/jwks.json" }

func allowPrivate(o *server.Options) { o.JWKSFetchAllowPrivate = true }

// TestJWKSURIFetchAndCache: the key set at jwks_uri is fetched once and
// cached for its max-age (within bounds), fetched again for an unknown
// kid at most once per 30 s however many such assertions arrive, and a
// key added at the URI is found through that refetch.
func TestJWKSURIFetchAndCache(t *testing.T) {
	e := newEnv(t, allowPrivate)
	e.failOnServerErrors()
	a, b := newSigner(t, "ES256", "a"), newSigner(t, "EdDSA", "b")
	host := newKeyHost(t, a)
	host.header = "public, max-age=120"
	kp := e.createIntegration(map[string]any{"name": "remote", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": host.url()})

	for range 3 {
		if status, out := e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
			t.Fatalf("token: %d %v", status, out)
		}
	}
	if n := host.fetches.Load(); n != 1 {
		t.Fatalf("fetches after three tokens: %d, want 1", n)
	}
	// Made-up kids: one refetch at most per 30 s, the first was the fetch
	// just now.
	for i := range 20 {
		forged := signer{alg: "ES256", kid: "made-up-" + string(rune('a'+i)), key: a.key}
		if status, _ := e.assertionToken(forged.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusUnauthorized {
			t.Fatalf("unknown kid: %d", status)
		}
	}
	if n := host.fetches.Load(); n != 1 {
		t.Fatalf("fetches after 20 unknown kids within 30 s: %d, want 1", n)
	}
	// The client adds key b at its URI and signs with it: once the pace
	// allows, the unknown kid brings one refetch and b works.
	host.set(a, b)
	if status, _ := e.assertionToken(b.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusUnauthorized {
		t.Fatalf("new kid within 30 s of a fetch: %d, want 401 (not refetched yet)", status)
	}
	e.clock.Advance(31 * time.Second)
	for range 5 {
		if status, out := e.assertionToken(b.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
			t.Fatalf("new kid after 30 s: %d %v", status, out)
		}
	}
	if n := host.fetches.Load(); n != 2 {
		t.Fatalf("fetches after the new kid: %d, want 2", n)
	}
	// max-age=120: fresh until then, fetched again after.
	e.clock.Advance(60 * time.Second)
	e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil))
	if n := host.fetches.Load(); n != 2 {
		t.Fatalf("fetches within max-age: %d, want 2", n)
	}
	host.set(b) // a is removed at the URI
	e.clock.Advance(61 * time.Second)
	if status, _ := e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusUnauthorized {
		t.Fatalf("removed key after max-age: %d, want 401", status)
	}
	if n := host.fetches.Load(); n != 3 {
		t.Fatalf("fetches after max-age: %d, want 3", n)
	}

	// Concurrent assertions after expiry share one fetch.
	e.clock.Advance(3 * time.Minute)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if status, out := e.assertionToken(b.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
				t.Errorf("concurrent token: %d %v", status, out)
			}
		})
	}
	wg.Wait()
	if n := host.fetches.Load(); n != 4 {
		t.Errorf("fetches after 8 concurrent assertions on an expired set: %d, want 4", n)
	}
}

// TestJWKSURIBounds: an oversized or slow answer is refused with
// invalid_client, never a 5xx, and a failing URI is not fetched per
// request.
func TestJWKSURIBounds(t *testing.T) {
	e := newEnv(t, allowPrivate)
	e.failOnServerErrors()
	a := newSigner(t, "ES256", "a")

	// An answer that never ends: only the first 16 KiB and a byte are
	// read, well within the timeout.
	var fetches atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write([]byte(`{"keys":[],"pad":"`))
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	kp := e.createIntegration(map[string]any{"name": "big", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": endless.URL + "/jwks.json"})
	start := time.Now()
	status, out := e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil))
	if desc, _ := out["error_description"].(string); status != http.StatusUnauthorized || !strings.Contains(desc, "larger than 16384") || time.Since(start) > 2*time.Second {
		t.Errorf("endless set: %d %v after %v", status, out, time.Since(start))
	}
	e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil))
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetches of a failing URI within 30 s: %d, want 1", n)
	}

	slow := newKeyHost(t, a)
	slow.delay = 8 * time.Second
	kp = e.createIntegration(map[string]any{"name": "slow", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": slow.url()})
	start = time.Now()
	status, out = e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil))
	if took := time.Since(start); status != http.StatusUnauthorized || took > 7*time.Second || took < 4*time.Second {
		t.Errorf("slow set: %d %v after %v, want 401 after the 5 s timeout", status, out, took)
	}
}

// TestJWKSURIPrivateAddress: without jwks_fetch_allow_private, a jwks_uri
// on a loopback address, or over http, is never fetched.
func TestJWKSURIPrivateAddress(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	a := newSigner(t, "ES256", "a")
	host := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fetched %s", r.URL)
	}))
	t.Cleanup(host.Close)
	plain := newKeyHost(t, a)
	for _, tc := range []struct{ name, uri, why string }{
		{"loopback https", host.URL + "/jwks.json", "not a public address"},
		{"localhost name", strings.Replace(host.URL, "127.0.0.1", "localhost", 1) + "/jwks.json", "not a public address"},
		// Refused for its scheme before any address is looked at.
		{"http", plain.url(), "not https"},
	} {
		kp := e.createIntegration(map[string]any{"name": strings.ReplaceAll(tc.name, " ", "-"), "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": tc.uri})
		status, out := e.assertionToken(a.sign(t, e.claimsFor(kp.ID), nil))
		desc, _ := out["error_description"].(string)
		if status != http.StatusUnauthorized || !strings.Contains(desc, "jwks_uri") || !strings.Contains(desc, tc.why) {
			t.Errorf("%s: %d %v, want 401 naming jwks_uri and %q", tc.name, status, out, tc.why)
		}
	}
	if n := plain.fetches.Load(); n != 0 {
		t.Errorf("http jwks_uri fetched %d times", n)
	}
}

// TestPrivateKeyJWTRotation is a zero-downtime key rotation on two
// replicas sharing the database: with two keys registered, both get
// tokens on both; once the old key is removed, assertions signed with it
// fail at once on both, while the new key keeps working; and a jti used
// on one replica is refused on the other.
func TestPrivateKeyJWTRotation(t *testing.T) {
	a := newEnv(t)
	a.failOnServerErrors()
	b := startEnv(t, a.dbPath, a.clock, testSecrets)
	old, next := newSigner(t, "ES256", "2026-11"), newSigner(t, "EdDSA", "2026-12")
	kp := a.keyless("rotating", old)
	for _, e := range []*env{a, b} {
		if status, out := e.assertionToken(old.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
			t.Fatalf("old key before rotation: %d %v", status, out)
		}
	}
	a.mustAdmin("PATCH", "/admin/integrations/rotating", map[string]any{"jwks": jwksOf(old, next)}, http.StatusOK)
	for _, e := range []*env{a, b} {
		for _, s := range []signer{old, next} {
			if status, out := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
				t.Fatalf("%s during rotation: %d %v", s.kid, status, out)
			}
		}
	}
	b.mustAdmin("PATCH", "/admin/integrations/rotating", map[string]any{"jwks": jwksOf(next)}, http.StatusOK)
	for name, e := range map[string]*env{"a": a, "b": b} {
		if status, out := e.assertionToken(old.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusUnauthorized {
			t.Errorf("replica %s: removed key: %d %v, want 401", name, status, out)
		}
		if status, out := e.assertionToken(next.sign(t, e.claimsFor(kp.ID), nil)); status != http.StatusOK {
			t.Errorf("replica %s: new key after rotation: %d %v", name, status, out)
		}
	}
	once := next.sign(t, a.claimsFor(kp.ID), nil)
	if status, _ := a.assertionToken(once); status != http.StatusOK {
		t.Fatal("first use on a")
	}
	status, out := b.assertionToken(once)
	if desc, _ := out["error_description"].(string); status != http.StatusUnauthorized || !strings.Contains(desc, "used already") {
		t.Errorf("replay on b: %d %v", status, out)
	}
}

// TestJWKSURIAvailability: what happens at the client's key host never
// refuses a correct assertion that latchkey could still check. A set whose
// refetch fails is used for an hour past its expiry; a request whose kid
// the fresh set holds never waits for another request's fetch; a key
// rotated in without a kid is found by fetching again.
func TestJWKSURIAvailability(t *testing.T) {
	e := newEnv(t, allowPrivate)
	a := newSigner(t, "ES256", "a")
	host := newKeyHost(t, a)
	kp := e.createIntegration(map[string]any{"name": "remote", "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": host.url()})
	token := func(s signer) int {
		status, _ := e.assertionToken(s.sign(t, e.claimsFor(kp.ID), nil))
		return status
	}
	if got := token(a); got != http.StatusOK {
		t.Fatalf("first token: %d", got)
	}

	// The key host is down past the set's expiry (5 min without max-age).
	host.mu.Lock()
	host.status = http.StatusServiceUnavailable
	host.mu.Unlock()
	e.clock.Advance(6 * time.Minute)
	if got := token(a); got != http.StatusOK {
		t.Errorf("key host down just past the set's expiry: %d, want 200 on the set fetched before", got)
	}
	e.clock.Advance(2 * time.Hour)
	if got := token(a); got != http.StatusUnauthorized {
		t.Errorf("key host down for two hours: %d, want 401", got)
	}
	host.mu.Lock()
	host.status = 0
	host.mu.Unlock()
	e.clock.Advance(31 * time.Second)
	if got := token(a); got != http.StatusOK {
		t.Fatalf("key host back: %d", got)
	}

	// A made-up kid's refetch hangs at the key host; the known kid's
	// request does not wait for it.
	e.clock.Advance(31 * time.Second)
	host.mu.Lock()
	host.entered, host.gate = make(chan struct{}), make(chan struct{})
	entered, gate := host.entered, host.gate
	host.mu.Unlock()
	stranger := make(chan int)
	go func() { stranger <- token(newSigner(t, "ES256", "made-up")) }()
	<-entered
	known := make(chan int)
	go func() { known <- token(a) }()
	select {
	case got := <-known:
		if got != http.StatusOK {
			t.Errorf("known kid during another request's fetch: %d", got)
		}
	case <-time.After(3 * time.Second):
		t.Errorf("a request whose kid the fresh set holds waited for a stranger's fetch")
		<-known
	}
	close(gate)
	if got := <-stranger; got != http.StatusUnauthorized {
		t.Errorf("made-up kid: %d, want 401", got)
	}
	host.mu.Lock()
	host.entered, host.gate = nil, nil
	host.mu.Unlock()

	// Rotation to a key without kid, within the old set's freshness.
	b := newSigner(t, "ES256", "")
	host.set(b)
	e.clock.Advance(31 * time.Second)
	if got := token(b); got != http.StatusOK {
		t.Errorf("a key without kid rotated in at the URI: %d, want 200", got)
	}
}
