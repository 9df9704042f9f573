package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
)

// capped is an env whose integrations are issued at most 60 tokens a
// minute (one a second) after a burst of 5, unless they set their own rate.
func capped(t *testing.T, opts ...func(*server.Options)) *env {
	t.Helper()
	return newEnv(t, append([]func(*server.Options){func(o *server.Options) {
		o.IssuanceLimit = server.IssuanceLimit{PerMinute: 60, Burst: 5}
	}}, opts...)...)
}

// issueN asks for n tokens as kp and fails the test unless every one is
// issued.
func (e *env) issueN(kp keyPair, n int, what string) {
	e.t.Helper()
	for i := range n {
		if a := e.post(http.DefaultClient, "/oauth2/token", kp, grant); a.status != http.StatusOK {
			e.t.Fatalf("%s: token %d of %d: %d %v, want 200", what, i+1, n, a.status, a.body)
		}
	}
}

// assertCapped asks for one token as kp and requires the cap's refusal,
// with Retry-After retry.
func (e *env) assertCapped(kp keyPair, retry, what string) {
	e.t.Helper()
	a := e.post(http.DefaultClient, "/oauth2/token", kp, grant)
	// The description tells the cap from the failed-authentication limit,
	// which answers 429 slow_down too.
	if desc, _ := a.body["error_description"].(string); a.status != http.StatusTooManyRequests || a.body["error"] != "slow_down" ||
		!strings.Contains(desc, "Too many tokens for this integration") {
		e.t.Fatalf("%s: %d %v, want 429 slow_down from the integration's cap", what, a.status, a.body)
	}
	if got := a.header.Get("Retry-After"); got != retry {
		e.t.Errorf("%s: Retry-After %q, want %q", what, got, retry)
	}
	if _, ok := a.body["access_token"]; ok {
		e.t.Errorf("%s: a refusal carries a token: %v", what, a.body)
	}
}

// TestIssuanceCap issues one integration tokens past the default cap: the
// burst is issued, the next request is refused with 429 slow_down and
// Retry-After, tokens come back as time passes at the configured rate, and
// other integrations are never affected.
func TestIssuanceCap(t *testing.T) {
	e := capped(t)
	e.failOnServerErrors()
	greedy := e.createIntegration(map[string]any{"name": "greedy"})
	other := e.createIntegration(map[string]any{"name": "other"})

	e.issueN(greedy, 5, "within the burst")
	e.assertCapped(greedy, "1", "past the burst")
	e.assertCapped(greedy, "1", "again at once")
	e.issueN(other, 5, "another integration while the first is capped")

	e.clock.Advance(time.Second)
	e.issueN(greedy, 1, "a second later")
	e.assertCapped(greedy, "1", "past the refill")

	// The bucket never holds more than the burst, however long it rests.
	e.clock.Advance(time.Hour)
	e.issueN(greedy, 5, "after an hour")
	e.assertCapped(greedy, "1", "past the burst after an hour")

	// Half a token refilled: the wait left is rounded up to whole seconds.
	e.clock.Advance(500 * time.Millisecond)
	e.assertCapped(greedy, "1", "half a second later")

	wantSample(t, scrape(t, e.srv.URL), `latchkey_rate_limited_total{limit="issuance"}`, "5")
}

// TestIssuanceCapIsNotAFailure refuses an integration over its cap many
// times with the failed-authentication limit on: its refusals are not
// failures, so neither the client nor its address is held back once the
// cap lets it through again.
func TestIssuanceCapIsNotAFailure(t *testing.T) {
	e := capped(t, func(o *server.Options) {
		o.ClientAuthLimit = server.RateLimit{PerMinute: 60, Burst: 2, MaxDelay: time.Millisecond}
	})
	greedy := e.createIntegration(map[string]any{"name": "greedy"})
	e.issueN(greedy, 5, "within the burst")
	for i := range 10 {
		e.assertCapped(greedy, "1", fmt.Sprint("refusal ", i+1))
	}
	e.clock.Advance(time.Second)
	e.issueN(greedy, 1, "a second later")
}

// TestIssuanceCapOverride gives integrations rates of their own: a lower
// one, 0 (no cap), and back to the server's default with null. A change
// applies from the next request.
func TestIssuanceCapOverride(t *testing.T) {
	e := capped(t)
	e.failOnServerErrors()
	low := e.createIntegration(map[string]any{"name": "low", "token_rate_per_minute": 6})
	bulk := e.createIntegration(map[string]any{"name": "bulk", "token_rate_per_minute": 0})
	plain := e.createIntegration(map[string]any{"name": "plain"})

	for _, tc := range []struct {
		name string
		want any
	}{{"low", float64(6)}, {"bulk", float64(0)}, {"plain", nil}} {
		if got := e.mustAdmin("GET", "/admin/integrations/"+tc.name, nil, http.StatusOK)["token_rate_per_minute"]; got != tc.want {
			t.Errorf("%s: token_rate_per_minute = %#v, want %#v", tc.name, got, tc.want)
		}
	}

	// 6 a minute: the burst is the default's 5 seconds' worth, under one
	// token, so one token at once and then one every 10 s.
	e.issueN(low, 1, "low, first token")
	e.assertCapped(low, "10", "low, second token at once")
	e.clock.Advance(5 * time.Second)
	e.assertCapped(low, "5", "low, five seconds later")
	e.clock.Advance(5 * time.Second)
	e.issueN(low, 1, "low, ten seconds later")

	// No cap: far past the default burst, with no time passing.
	e.issueN(bulk, 50, "bulk, uncapped")

	// null: low follows the server's 60 a minute and burst of 5 again.
	e.mustAdmin("PATCH", "/admin/integrations/low", map[string]any{"token_rate_per_minute": nil}, http.StatusOK)
	e.clock.Advance(5 * time.Second)
	e.issueN(low, 5, "low back on the default")
	e.assertCapped(low, "1", "low past the default burst")

	// A change applies to the very next request: plain, refused at the
	// default, is uncapped at once, and capped again at once.
	e.issueN(plain, 5, "plain within the burst")
	e.assertCapped(plain, "1", "plain past the burst")
	e.mustAdmin("PATCH", "/admin/integrations/plain", map[string]any{"token_rate_per_minute": 0}, http.StatusOK)
	e.issueN(plain, 20, "plain uncapped")
	e.mustAdmin("PATCH", "/admin/integrations/plain", map[string]any{"token_rate_per_minute": 60}, http.StatusOK)
	e.assertCapped(plain, "1", "plain capped again")

	// The default applies also when the server's is off, to those with a
	// rate of their own only.
	off := newEnv(t)
	own := off.createIntegration(map[string]any{"name": "own", "token_rate_per_minute": 1})
	off.issueN(own, 1, "own rate, server default off")
	off.assertCapped(own, "60", "own rate past its burst, server default off")
	off.issueN(off.createIntegration(map[string]any{"name": "free"}), 50, "no rate, server default off")
}
