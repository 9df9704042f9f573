package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

var (
	pairIDRE     = regexp.MustCompile(`^lk_ci_[a-z2-7]{26}$`)
	pairSecretRE = regexp.MustCompile(`^lk_cs_[A-Za-z0-9_-]{43}[A-Za-z0-9]{6}$`)
)

// regenerateRaw calls the regenerate endpoint with body (nil: no body) and
// checks the 201 response: exactly the contract fields, a well-formed new
// pair, RFC 3339 UTC times. It returns the pair and previous_expires_at,
// the zero time when that is null.
func (e *env) regenerateRaw(name string, body any) (keyPair, time.Time) {
	e.t.Helper()
	status, b := e.adminCall("POST", "/admin/integrations/"+name+"/key-pair", testBootstrap, body)
	if status != http.StatusCreated {
		e.t.Fatalf("regenerate %s: status %d, want 201; body %s", name, status, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("regenerate %s: body is not a JSON object: %s", name, b)
	}
	if got, want := jsonKeys(out), []string{"client_id", "client_secret", "created_at", "previous_expires_at"}; !slices.Equal(got, want) {
		e.t.Errorf("regenerate fields = %v, want %v", got, want)
	}
	kp := keyPair{}
	kp.ID, _ = out["client_id"].(string)
	kp.Secret, _ = out["client_secret"].(string)
	if !pairIDRE.MatchString(kp.ID) {
		e.t.Errorf("client_id = %q, want %s", kp.ID, pairIDRE)
	}
	if !pairSecretRE.MatchString(kp.Secret) || !credential.ValidChecksummed(kp.Secret, credential.ClientSecretPrefix) {
		e.t.Errorf("client_secret = %q, want %s with a valid checksum", kp.Secret, pairSecretRE)
	}
	created := parseRFC3339UTC(e.t, "created_at", out["created_at"])
	if !created.Equal(e.store.Now()) {
		e.t.Errorf("created_at = %v, want now (%v)", created, e.store.Now())
	}
	if out["previous_expires_at"] == nil {
		return kp, time.Time{}
	}
	prev := parseRFC3339UTC(e.t, "previous_expires_at", out["previous_expires_at"])
	return kp, prev
}

// parseUTC parses an RFC 3339 time that must be in UTC.
func parseRFC3339UTC(t testing.TB, field string, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s = %#v, want an RFC 3339 time", field, v)
	}
	if !strings.HasSuffix(s, "Z") {
		t.Errorf("%s = %q, want UTC", field, s)
	}
	return tm
}

// integrationJSON returns GET /admin/integrations/{name}.
func (e *env) integrationJSON(name string) map[string]any {
	e.t.Helper()
	return e.mustAdmin("GET", "/admin/integrations/"+name, nil, http.StatusOK)
}

// pairID returns the client_id of the key pair object at field, or "" when
// the field is absent or null.
func pairID(ig map[string]any, field string) string {
	kp, _ := ig[field].(map[string]any)
	id, _ := kp["client_id"].(string)
	return id
}

// checkRejected checks that kp can no longer get a token, with either
// client authentication method.
func (e *env) checkRejected(t *testing.T, kp keyPair) {
	t.Helper()
	cc := url.Values{"grant_type": {"client_credentials"}}
	status, h, body := e.form("/oauth2/token", kp, cc)
	checkOAuthError(t, status, h, body, http.StatusUnauthorized, "invalid_client")
	status, h, body = e.postAuth("/oauth2/token", kp, cc)
	checkOAuthError(t, status, h, body, http.StatusUnauthorized, "invalid_client")
}

func TestRegenerateImmediate(t *testing.T) {
	tests := []struct {
		name string
		body any
	}{
		{"no body", nil},
		{"grace_seconds 0", map[string]any{"grace_seconds": 0}},
		{"empty object", map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newOAuthEnv(t)
			rs := e.resourceServer()
			old := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
			var oldTokens []string
			for range 3 {
				oldTokens = append(oldTokens, e.token(old, nil))
			}
			_, _, body := e.postAuth("/oauth2/token", old, url.Values{"grant_type": {"client_credentials"}})
			oldTokens = append(oldTokens, body["access_token"].(string))

			fresh, prev := e.regenerateRaw("job", tt.body)
			if fresh.ID == old.ID || fresh.Secret == old.Secret {
				t.Errorf("new pair %v reuses the old pair %v", fresh, old)
			}
			if !prev.IsZero() {
				t.Errorf("previous_expires_at = %v, want null: the old pair was revoked at once", prev)
			}

			e.checkRejected(t, old)
			for i, tok := range oldTokens {
				t.Run(fmt.Sprint("old token ", i), func(t *testing.T) {
					checkInactive(t, e.introspect(rs, tok))
				})
			}

			in := e.introspect(rs, e.token(fresh, nil))
			if in["active"] != true || in["client_id"] != fresh.ID || in["sub"] != "job" || in["scope"] != "read" {
				t.Errorf("new pair's token introspects %v, want active for %s, sub job, scope read", in, fresh.ID)
			}
			ig := e.integrationJSON("job")
			if got, want := pairID(ig, "key_pair"), fresh.ID; got != want {
				t.Errorf("key_pair.client_id = %q, want %q", got, want)
			}
			if ig["previous_key_pair"] != nil {
				t.Errorf("previous_key_pair = %v, want none after an immediate regeneration", ig["previous_key_pair"])
			}
		})
	}
}

// alignClock moves e's clock to the start of the next whole second, so that
// sub-second truncation in the server is deterministic.
func (e *env) alignClock() {
	e.clock.Advance(time.Second - time.Duration(e.clock.Now().Nanosecond()))
}

func TestRegenerateGrace(t *testing.T) {
	e := newOAuthEnv(t)
	e.alignClock()
	rs := e.resourceServer()
	old := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	before := e.token(old, nil)

	fresh, deadline := e.regenerateRaw("job", map[string]any{"grace_seconds": 3600})
	if want := e.store.Now().Add(3600 * time.Second); !deadline.Equal(want) {
		t.Fatalf("previous_expires_at = %v, want now+3600s = %v", deadline, want)
	}
	oldTokens := []string{before}

	// checkDuringGrace checks, at the current clock, that both pairs work,
	// that every old token is active and dies no later than the deadline,
	// and that a token issued to the old pair now does not outlive it.
	checkDuringGrace := func(t *testing.T) {
		t.Helper()
		left := deadline.Sub(e.store.Now()).Seconds()
		resp := e.tokenResponse(old, nil)
		expiresIn, _ := resp["expires_in"].(float64)
		if expiresIn <= 0 || expiresIn > left {
			t.Errorf("old pair's token: expires_in = %v, want in (0, %v] (seconds left until the deadline)", resp["expires_in"], left)
		}
		oldTokens = append(oldTokens, resp["access_token"].(string))
		for i, tok := range oldTokens {
			in := e.introspect(rs, tok)
			if in["active"] != true {
				t.Errorf("old token %d: active = %v, want true during the grace", i, in["active"])
				continue
			}
			if exp, _ := in["exp"].(float64); int64(exp) > deadline.Unix() {
				t.Errorf("old token %d: exp = %v, after the deadline %d", i, int64(exp), deadline.Unix())
			}
			if in["client_id"] != old.ID {
				t.Errorf("old token %d: client_id = %v, want %s", i, in["client_id"], old.ID)
			}
		}
		// The new pair is unaffected by the grace: full lifetime.
		resp = e.tokenResponse(fresh, nil)
		if got, want := resp["expires_in"], float64(defaultLifetimeSeconds); got != want {
			t.Errorf("new pair's token: expires_in = %v, want %v", got, want)
		}
		ig := e.integrationJSON("job")
		if got, want := pairID(ig, "key_pair"), fresh.ID; got != want {
			t.Errorf("key_pair.client_id = %q, want %q", got, want)
		}
		if got, want := pairID(ig, "previous_key_pair"), old.ID; got != want {
			t.Errorf("previous_key_pair.client_id = %q, want %q during the grace; integration %v", got, want, ig)
		}
	}

	steps := []struct {
		name    string
		advance time.Duration
	}{
		{"right after regenerating", 0},
		{"half way", 1800 * time.Second},
		{"one second before the deadline", 1799 * time.Second},
	}
	for _, st := range steps {
		e.clock.Advance(st.advance)
		t.Run(st.name, checkDuringGrace)
	}

	e.clock.Advance(2 * time.Second) // one second past the deadline
	t.Run("past the deadline", func(t *testing.T) {
		e.checkRejected(t, old)
		for i, tok := range oldTokens {
			t.Run(fmt.Sprint("old token ", i), func(t *testing.T) {
				checkInactive(t, e.introspect(rs, tok))
			})
		}
		ig := e.integrationJSON("job")
		if ig["previous_key_pair"] != nil {
			t.Errorf("previous_key_pair = %v, want none past the deadline", ig["previous_key_pair"])
		}
		if got, want := pairID(ig, "key_pair"), fresh.ID; got != want {
			t.Errorf("key_pair.client_id = %q, want %q", got, want)
		}
		if in := e.introspect(rs, e.token(fresh, nil)); in["active"] != true {
			t.Errorf("new pair's token: %v, want active", in)
		}
	})
}

func TestRegenerateBadRequest(t *testing.T) {
	e := newOAuthEnv(t)
	old := e.createIntegration(map[string]any{"name": "job"})
	maxGrace := int64(storage.MaxGrace / time.Second)

	tests := []struct {
		name       string
		path       string
		body       any
		wantStatus int
	}{
		{"negative", "/admin/integrations/job/key-pair", map[string]any{"grace_seconds": -1}, 400},
		{"one over the maximum", "/admin/integrations/job/key-pair", map[string]any{"grace_seconds": maxGrace + 1}, 400},
		{"ten years", "/admin/integrations/job/key-pair", map[string]any{"grace_seconds": 10 * 365 * 24 * 3600}, 400},
		{"beyond int64", "/admin/integrations/job/key-pair", `{"grace_seconds": 1e30}`, 400},
		{"fraction", "/admin/integrations/job/key-pair", `{"grace_seconds": 1.5}`, 400},
		{"string", "/admin/integrations/job/key-pair", `{"grace_seconds": "60"}`, 400},
		{"boolean", "/admin/integrations/job/key-pair", `{"grace_seconds": true}`, 400},
		{"unknown field", "/admin/integrations/job/key-pair", `{"grace": 60}`, 400},
		{"not JSON", "/admin/integrations/job/key-pair", `grace_seconds=60`, 400},
		{"unknown integration", "/admin/integrations/nope/key-pair", map[string]any{"grace_seconds": 0}, 404},
		{"unknown integration, no body", "/admin/integrations/nope/key-pair", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := e.adminCall("POST", tt.path, testBootstrap, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d; body %s", status, tt.wantStatus, b)
			}
			var out map[string]any
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("body is not a JSON object: %s", b)
			}
			if code, _ := out["error"].(string); code == "" {
				t.Errorf("error response without an error code: %s", b)
			}
			if _, ok := out["client_secret"]; ok {
				t.Errorf("refused regeneration returned a secret: %s", b)
			}
		})
	}
	// Nothing above changed the pair.
	if got, want := pairID(e.integrationJSON("job"), "key_pair"), old.ID; got != want {
		t.Errorf("key_pair.client_id = %q, want %q after refused regenerations", got, want)
	}
	e.token(old, nil)
	t.Run("maximum accepted", func(t *testing.T) {
		_, prev := e.regenerateRaw("job", map[string]any{"grace_seconds": maxGrace})
		if want := e.store.Now().Add(storage.MaxGrace); !prev.Equal(want) {
			t.Errorf("previous_expires_at = %v, want %v", prev, want)
		}
	})
}

// TestRegenerateGraceMidSecond asks for a token with the old pair half a
// second into a second: expires_in must still not reach past the deadline.
func TestRegenerateGraceMidSecond(t *testing.T) {
	e := newOAuthEnv(t)
	e.alignClock()
	old := e.createIntegration(map[string]any{"name": "job"})
	_, deadline := e.regenerateRaw("job", map[string]any{"grace_seconds": 3600})
	e.clock.Advance(1800*time.Second + 500*time.Millisecond)

	left := deadline.Sub(e.store.Now()).Seconds() // 1799.5
	resp := e.tokenResponse(old, nil)
	if got, _ := resp["expires_in"].(float64); got > left {
		t.Errorf("expires_in = %v, want at most %v: a client trusting it uses the token past the grace deadline", got, left)
	}
}

// TestRegenerateRace requests tokens with a pair from several goroutines
// while the pair is regenerated without grace. Once the regenerate call has
// returned, no token request that starts may succeed, and no token the old
// pair ever got may be active.
func TestRegenerateRace(t *testing.T) {
	t.Run("opaque", func(t *testing.T) { testRegenerateRace(t) })
	t.Run("jwt", func(t *testing.T) { testRegenerateRace(t, withJWT("ES256")) })
}

func testRegenerateRace(t *testing.T, opts ...func(*server.Options)) {
	const (
		workers    = 8
		rounds     = 4
		afterEach  = 5  // requests each worker starts after the regeneration returned
		warmTokens = 16 // tokens the old pair gets before the regeneration
	)
	e := newOAuthEnv(t, opts...)
	rs := e.resourceServer()
	tr := &http.Transport{MaxIdleConnsPerHost: workers * 2}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	type result struct {
		afterRegen bool // the request started after regenerate returned
		status     int
		token      string
		err        error
	}
	for round := range rounds {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			name := fmt.Sprint("race-", round)
			old := e.createIntegration(map[string]any{"name": name})

			var (
				regenerated atomic.Bool // set once regenerate has returned
				stop        atomic.Bool // set to end the workers early on failure
				got         atomic.Int64
				warm        = make(chan struct{})
				warmOnce    sync.Once
				wg          sync.WaitGroup
				results     = make([][]result, workers)
			)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < afterEach && !stop.Load(); {
						after := regenerated.Load()
						status, tok, err := requestToken(client, e.srv.URL, old, w%2 == 0)
						results[w] = append(results[w], result{after, status, tok, err})
						if status == http.StatusOK && got.Add(1) >= warmTokens {
							warmOnce.Do(func() { close(warm) })
						}
						if after {
							n++
						}
					}
				}()
			}
			// A failed assertion below must not leave workers running.
			defer func() {
				stop.Store(true)
				wg.Wait()
			}()
			select {
			case <-warm:
			case <-time.After(20 * time.Second):
				stop.Store(true)
				wg.Wait()
				t.Fatalf("the old pair got %d tokens in 20 s, want %d before regenerating", got.Load(), warmTokens)
			}
			fresh := e.regenerate(name, 0)
			regenerated.Store(true)
			wg.Wait()

			var obtained []string
			var late, total int
			for w, res := range results {
				for i, r := range res {
					total++
					switch {
					case r.err != nil:
						t.Errorf("worker %d request %d: %v", w, i, r.err)
					case r.status == http.StatusOK:
						obtained = append(obtained, r.token)
						if r.afterRegen {
							t.Errorf("worker %d request %d started after regenerate returned and got a token", w, i)
						}
					case r.status == http.StatusUnauthorized:
						if !r.afterRegen {
							late++ // started before, answered after the revocation
						}
					default:
						t.Errorf("worker %d request %d: status %d, want 200 or 401", w, i, r.status)
					}
				}
			}
			t.Logf("%d requests, %d tokens, %d in-flight requests refused", total, len(obtained), late)
			for i, tok := range obtained {
				if in := e.introspect(rs, tok); !mapsEqual(in, map[string]any{"active": false}) {
					t.Errorf("token %d of the old pair introspects %v after regeneration, want {\"active\":false}", i, in)
				}
			}
			if in := e.introspect(rs, e.token(fresh, nil)); in["active"] != true {
				t.Errorf("new pair's token: %v, want active", in)
			}
		})
	}
}

// requestToken asks for a client-credentials token, with Basic or body
// credentials. It is safe for concurrent use: it reports failures instead
// of calling t.Fatal.
func requestToken(c *http.Client, base string, kp keyPair, basic bool) (status int, token string, err error) {
	f := url.Values{"grant_type": {"client_credentials"}}
	if !basic {
		f.Set("client_id", kp.ID)
		f.Set("client_secret", kp.Secret)
	}
	req, err := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(f.Encode()))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, "", fmt.Errorf("status %d, body is not JSON: %q", resp.StatusCode, b)
	}
	switch {
	case resp.StatusCode == http.StatusOK && out.AccessToken == "":
		return resp.StatusCode, "", fmt.Errorf("200 without a token: %s", b)
	case resp.StatusCode == http.StatusUnauthorized && out.Error != "invalid_client":
		return resp.StatusCode, "", fmt.Errorf("401 with error %q, want invalid_client", out.Error)
	}
	return resp.StatusCode, out.AccessToken, nil
}

// TestRevokeAcrossRegeneration checks that ownership of a token is the
// integration's: during a grace, the new key pair can revoke a token the
// old pair was issued, and another integration still cannot.
func TestRevokeAcrossRegeneration(t *testing.T) {
	e := newEnv(t)
	rs := e.resourceServer()
	old := e.createIntegration(map[string]any{"name": "job"})
	other := e.createIntegration(map[string]any{"name": "other"})
	tok := e.token(old, nil)
	fresh := e.regenerate("job", 3600)

	if status, _, body := e.form("/oauth2/revoke", other, url.Values{"token": {tok}}); status != http.StatusBadRequest || body["error"] != "unauthorized_client" {
		t.Fatalf("revoke by another integration: status %d, body %v; want 400 unauthorized_client", status, body)
	}
	if got := e.introspect(rs, tok)["active"]; got != true {
		t.Fatalf("after a refused revocation active = %v, want true", got)
	}
	if status, _, body := e.form("/oauth2/revoke", fresh, url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("revoke by the new pair: status %d, body %v; want 200", status, body)
	}
	if got := e.introspect(rs, tok)["active"]; got != false {
		t.Fatalf("after revocation by the new pair active = %v, want false", got)
	}
}

// TestRegenerateGraceRace regenerates with a grace while token requests
// for the old pair are in flight, on a live clock: a token issued after the
// regeneration must not outlive the grace deadline, even one whose request
// authenticated before it. The database is the witness: each stored token
// of the old pair either predates the regeneration or expires by the
// deadline.
func TestRegenerateGraceRace(t *testing.T) {
	t.Run("opaque", func(t *testing.T) { testRegenerateGraceRace(t) })
	t.Run("jwt", func(t *testing.T) { testRegenerateGraceRace(t, withJWT("ES256")) })
}

func testRegenerateGraceRace(t *testing.T, opts ...func(*server.Options)) {
	const grace = 60
	exercised := 0
	for round := range 3 {
		e := newEnv(t, opts...)
		e.clock.Live()
		old := e.createIntegration(map[string]any{"name": "job"})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					e.form("/oauth2/token", old, url.Values{"grant_type": {"client_credentials"}})
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		out := e.mustAdmin("POST", "/admin/integrations/job/key-pair", map[string]any{"grace_seconds": grace}, http.StatusCreated)
		time.Sleep(20 * time.Millisecond)
		close(stop)
		wg.Wait()

		deadline, err := time.Parse(time.RFC3339Nano, out["previous_expires_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		regenerated := deadline.Add(-grace * time.Second)
		db := e.rawDB()
		rows, err := db.Query(`SELECT t.issued_at, t.expires_at FROM access_tokens t
			JOIN key_pairs k ON k.id = t.key_pair_id WHERE k.client_id = $1`, old.ID)
		if err != nil {
			t.Fatal(err)
		}
		var before, after int
		for rows.Next() {
			var issued, expires time.Time
			if err := rows.Scan(&issued, &expires); err != nil {
				t.Fatal(err)
			}
			switch {
			case issued.Before(regenerated):
				before++
			case expires.After(deadline):
				t.Errorf("round %d: token issued at %v, after the regeneration at %v, expires at %v, past the deadline %v",
					round, issued, regenerated, expires, deadline)
			default:
				after++
			}
		}
		rows.Close()
		db.Close()
		if before == 0 || after == 0 {
			t.Logf("round %d: %d tokens before the regeneration, %d after: the race was not exercised", round, before, after)
		} else {
			exercised++
		}
	}
	// A round that issued no token on one side of the regeneration proves
	// nothing; three such rounds mean the test no longer tests the race.
	if exercised == 0 {
		t.Error("no round issued tokens both before and after the regeneration")
	}
}

// TestRegenerationDuringIssuance: a regeneration with grace that commits
// after a token request has authenticated its pair and before the token is
// stored makes the store refuse the token, which would outlive the grace.
// The request authenticates again and gets a token cut to the grace: the
// client's credentials were right all along, and a 401 would be a lie.
func TestRegenerationDuringIssuance(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	kp := e.createIntegration(map[string]any{"name": "svc"})
	regenerated := false
	// The next reading of the clock is server/oauth deciding whether the
	// pair it has just read works: the regeneration lands after the pair
	// was read and before the token is written.
	e.clock.beforeNext(func() {
		_, err := e.store.RegenerateKeyPair(context.Background(), "svc", time.Hour, storage.Actor{Type: "admin", Name: "test"})
		if err != nil {
			t.Errorf("regenerate: %v", err)
		}
		regenerated = true
	})
	status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	if !regenerated {
		t.Fatal("the regeneration never ran: the clock was not read during the request")
	}
	if status != http.StatusOK {
		t.Fatalf("a right pair regenerated mid-request: %d %v, want 200", status, out)
	}
	if got := out["expires_in"].(float64); got > 3600 {
		t.Errorf("expires_in %v: the token outlives the pair's hour of grace", got)
	}
}
