package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests run real `latchkey serve` processes against the PostgreSQL
// named by LATCHKEY_TEST_POSTGRES_DSN: what replicas share lives only in the
// database, so only separate processes show whether it really is shared.

const (
	replicaSecret    = "replica-test-system-secret-0123456789abcdef"
	replicaBootstrap = "replica-test-bootstrap-token-0123456789abcdef"
	// replicaPropagation is the DESIGN's bound on how long a change made
	// through one replica may take to show on another.
	replicaPropagation = time.Second
)

// replicaHTTP's own timeout lies well past every bound the tests assert, so
// that a hang shows up as a slow answer that names its duration.
var replicaHTTP = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
}

// replicaProc is one `latchkey serve` process.
type replicaProc struct {
	name           string
	base           string // set by waitReady
	stdout, stderr *syncBuffer
	done           chan struct{} // closed once the process has exited
	exitErr        error         // valid once done is closed
	exitCode       int           // valid once done is closed
}

// replicaEnv is a complete environment: nothing leaks in from the
// developer's shell.
func replicaEnv(dsn string, extra ...string) []string {
	return append([]string{
		"LATCHKEY_DATABASE=" + dsn,
		"LATCHKEY_SECRET=" + replicaSecret,
		// The tests keep using revoked pairs on purpose, from one address.
		"LATCHKEY_RATE_LIMIT_FAILURES=0",
		"LATCHKEY_BOOTSTRAP_TOKEN=" + replicaBootstrap,
		"LATCHKEY_LISTEN=127.0.0.1:0",
		"LATCHKEY_ISSUER=http://127.0.0.1",
	}, extra...)
}

// startReplica starts the process and returns at once, so that callers can
// start several and have them race through migration together.
func startReplica(t *testing.T, name string, env []string) *replicaProc {
	t.Helper()
	r := &replicaProc{name: name, stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	cmd := exec.CommandContext(t.Context(), latchkeyBinary(t), "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = r.stdout, r.stderr
	// SIGTERM is how an orchestrator stops a replica; if serve does not
	// stop on it, WaitDelay kills it anyway.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start replica %s: %v", name, err)
	}
	go func() {
		r.exitErr = cmd.Wait()
		r.exitCode = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	t.Cleanup(func() {
		// t.Context() is done by now, so cmd.Cancel has sent SIGTERM, and
		// Wait reports the cancellation even when serve exited 0.
		<-r.done
		if r.exitCode != 0 {
			t.Errorf("replica %s did not stop cleanly on SIGTERM: exit code %d, %v\n%s", r.name, r.exitCode, r.exitErr, tail(r.stderr.String()))
		}
		s := r.stderr.String()
		if strings.Contains(s, "panic") {
			t.Errorf("replica %s logged a panic:\n%s", r.name, s)
		}
		if t.Failed() {
			t.Logf("replica %s warnings and errors:\n%s", r.name, tail(problemLines(s)))
		}
	})
	return r
}

// waitReady parses the listening address from stdout and waits for /readyz.
func (r *replicaProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			t.Fatalf("replica %s exited before it was ready: %v\n%s", r.name, r.exitErr, tail(r.stderr.String()))
		default:
		}
		if r.base == "" {
			if m := listening.FindStringSubmatch(r.stdout.String()); m != nil {
				r.base = "http://" + m[1]
			}
		}
		if r.base != "" {
			if resp := replicaDo(t.Context(), "GET", r.base+"/readyz", nil, nil); resp.status == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("replica %s not ready after 20s\n%s", r.name, tail(r.stderr.String()))
}

// stillRunning fails the test if the process is gone: recovering from an
// outage must not need a restart.
func (r *replicaProc) stillRunning(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("replica %s exited: %v\n%s", r.name, r.exitErr, tail(r.stderr.String()))
	default:
	}
}

// startReplicaPair starts two replicas on one schema at the same moment.
func startReplicaPair(t *testing.T, dsn string) (*replicaProc, *replicaProc) {
	t.Helper()
	a := startReplica(t, "A", replicaEnv(dsn))
	b := startReplica(t, "B", replicaEnv(dsn))
	a.waitReady(t)
	b.waitReady(t)
	return a, b
}

// problemLines keeps the log lines above info: the access log would bury
// the database errors that explain a failure.
func problemLines(log string) string {
	var out []string
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "level=INFO") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func tail(s string) string {
	const n = 4000
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// replicaResp is one HTTP exchange; err is set when no answer came at all.
type replicaResp struct {
	status int
	body   []byte
	took   time.Duration
	err    error
}

func (r replicaResp) String() string {
	if r.err != nil {
		return fmt.Sprintf("no answer after %v: %v", r.took.Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("%d after %v: %s", r.status, r.took.Round(time.Millisecond), bytes.TrimSpace(r.body))
}

// object is the body as a JSON object, or nil when it is not one.
func (r replicaResp) object() map[string]any {
	var m map[string]any
	if r.err != nil || json.Unmarshal(r.body, &m) != nil {
		return nil
	}
	return m
}

func replicaDo(ctx context.Context, method, u string, body io.Reader, prepare func(*http.Request)) replicaResp {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return replicaResp{err: err}
	}
	if prepare != nil {
		prepare(req)
	}
	resp, err := replicaHTTP.Do(req)
	if err != nil {
		return replicaResp{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return replicaResp{status: resp.StatusCode, body: b, took: time.Since(start), err: err}
}

type replicaKeyPair struct{ id, secret string }

func replicaForm(ctx context.Context, base, path string, kp replicaKeyPair, form url.Values) replicaResp {
	return replicaDo(ctx, "POST", base+path, strings.NewReader(form.Encode()), func(r *http.Request) {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth(kp.id, kp.secret)
	})
}

func replicaToken(ctx context.Context, base string, kp replicaKeyPair) replicaResp {
	return replicaForm(ctx, base, "/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
}

func replicaIntrospect(ctx context.Context, base string, kp replicaKeyPair, token string) replicaResp {
	return replicaForm(ctx, base, "/oauth2/introspect", kp, url.Values{"token": {token}})
}

func replicaAdmin(ctx context.Context, base, bearer, method, path string, body any) replicaResp {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return replicaResp{err: err}
		}
		rd = bytes.NewReader(b)
	}
	return replicaDo(ctx, method, base+path, rd, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+bearer)
		if body != nil {
			r.Header.Set("Content-Type", "application/json")
		}
	})
}

// replicaExpect fails the test unless r has status want, and returns the
// JSON body (nil for 204).
func replicaExpect(t *testing.T, what string, want int, r replicaResp) map[string]any {
	t.Helper()
	if r.err != nil || r.status != want {
		t.Fatalf("%s: got %v, want status %d", what, r, want)
	}
	m := r.object()
	if want != http.StatusNoContent && m == nil {
		t.Fatalf("%s: body is not a JSON object: %v", what, r)
	}
	return m
}

// parseKeyPair reads {client_id, client_secret} as created or regenerated.
func parseKeyPair(v any) (replicaKeyPair, bool) {
	m, _ := v.(map[string]any)
	id, _ := m["client_id"].(string)
	secret, _ := m["client_secret"].(string)
	ok := strings.HasPrefix(id, "lk_ci_") && strings.HasPrefix(secret, "lk_cs_")
	return replicaKeyPair{id, secret}, ok
}

func mustKeyPair(t *testing.T, what string, v any) replicaKeyPair {
	t.Helper()
	kp, ok := parseKeyPair(v)
	if !ok {
		t.Fatalf("%s: no key pair in %v", what, v)
	}
	return kp
}

// validToken reports whether m is a successful token response.
func validToken(m map[string]any) (string, bool) {
	tok, _ := m["access_token"].(string)
	return tok, strings.HasPrefix(tok, "lk_at_") && m["token_type"] == "bearer" && m["expires_in"] == float64(36000)
}

func mustToken(t *testing.T, what string, r replicaResp) string {
	t.Helper()
	m := replicaExpect(t, what, http.StatusOK, r)
	tok, ok := validToken(m)
	if !ok {
		t.Fatalf("%s: not a token response: %v", what, r)
	}
	return tok
}

// inactive is the exact RFC 7662 answer for a token that is not active.
func inactive(m map[string]any) bool { return len(m) == 1 && m["active"] == false }

// cappedErrors reports the first few failures from any goroutine; a
// systematic fault would otherwise bury the log in thousands of lines.
type cappedErrors struct {
	t *testing.T
	n atomic.Int32
}

func (c *cappedErrors) Errorf(format string, args ...any) {
	if c.n.Add(1) <= 20 {
		c.t.Errorf(format, args...)
	} else {
		c.t.Fail()
	}
}

// forEachParallel runs f for 0..n-1 on a few workers; the server is a
// separate process, so this only shortens the test.
func forEachParallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// TestReplicasShareState checks that replicas keep no state of their own:
// what one replica creates, issues, regenerates or revokes is seen by the
// other within the DESIGN's 1 s.
func TestReplicasShareState(t *testing.T) {
	dsn := postgresDSN(t)
	a, b := startReplicaPair(t, dsn)
	ctx := t.Context()

	created := replicaExpect(t, "create integration on A", http.StatusCreated,
		replicaAdmin(ctx, a.base, replicaBootstrap, "POST", "/admin/integrations",
			map[string]any{"name": "svc", "can_introspect": true}))
	old := mustKeyPair(t, "create integration on A", created["key_pair"])

	oldToken := mustToken(t, "token from B with the pair created on A", replicaToken(ctx, b.base, old))
	for _, r := range []*replicaProc{a, b} {
		m := replicaExpect(t, "introspect on "+r.name, http.StatusOK, replicaIntrospect(ctx, r.base, old, oldToken))
		if m["active"] != true || m["sub"] != "svc" || m["client_id"] != old.id {
			t.Fatalf("introspect the token from B on %s = %v, want active for svc/%s", r.name, m, old.id)
		}
	}

	regen := replicaExpect(t, "regenerate on B", http.StatusCreated,
		replicaAdmin(ctx, b.base, replicaBootstrap, "POST", "/admin/integrations/svc/key-pair",
			map[string]any{"grace_seconds": 0}))
	regenerated := time.Now()
	fresh := mustKeyPair(t, "regenerate on B", regen)

	// Polled rather than asserted at once because the DESIGN allows up
	// to 1 s; the time taken is what the replicas really do.
	oldSecretDelay := eventually(t, "old secret refused on A", regenerated, replicaPropagation, func() bool {
		refused := replicaToken(ctx, a.base, old)
		if refused.status == http.StatusOK {
			return false
		}
		if refused.status != http.StatusUnauthorized || refused.object()["error"] != "invalid_client" {
			t.Fatalf("token on A with the regenerated pair: %v, want 401 invalid_client", refused)
		}
		return true
	})
	oldTokenDelay := eventually(t, "old token inactive on A", regenerated, replicaPropagation, func() bool {
		seen := replicaExpect(t, "introspect the old token on A", http.StatusOK, replicaIntrospect(ctx, a.base, fresh, oldToken))
		if seen["active"] == true {
			return false
		}
		if !inactive(seen) {
			t.Fatalf("introspect the old token on A = %v, want exactly {\"active\":false}", seen)
		}
		return true
	})
	t.Logf("regeneration on B seen on A: old secret refused after %v, old token inactive after %v",
		oldSecretDelay, oldTokenDelay)
	// The replica that made the change must not lag behind itself.
	if r := replicaToken(ctx, b.base, old); r.status != http.StatusUnauthorized {
		t.Fatalf("token on B with the pair B just regenerated: %v, want 401", r)
	}
	newToken := mustToken(t, "token on A with the new pair from B", replicaToken(ctx, a.base, fresh))
	if m := replicaExpect(t, "introspect the new token on B", http.StatusOK, replicaIntrospect(ctx, b.base, fresh, newToken)); m["active"] != true {
		t.Fatalf("introspect the new token on B = %v, want active", m)
	}

	carol := replicaExpect(t, "create admin carol on A", http.StatusCreated,
		replicaAdmin(ctx, a.base, replicaBootstrap, "POST", "/admin/admins", map[string]any{"name": "carol"}))
	carolToken, _ := carol["token"].(string)
	if carol["name"] != "carol" || !strings.HasPrefix(carolToken, "lk_adm_") {
		t.Fatalf("create admin on A = %v, want carol with an lk_adm_ token", carol)
	}
	list := replicaExpect(t, "carol lists integrations on B", http.StatusOK,
		replicaAdmin(ctx, b.base, carolToken, "GET", "/admin/integrations", nil))
	items, _ := list["items"].([]any)
	if len(items) != 1 {
		t.Fatalf("integrations on B = %v, want svc alone", list)
	}
	if got, _ := items[0].(map[string]any)["key_pair"].(map[string]any); got["client_id"] != fresh.id {
		t.Fatalf("integration on B has key pair %v, want %s", got, fresh.id)
	}
	tokens := replicaExpect(t, "carol lists her admin tokens on B", http.StatusOK,
		replicaAdmin(ctx, b.base, carolToken, "GET", "/admin/tokens", nil))
	titems, _ := tokens["items"].([]any)
	if len(titems) != 1 {
		t.Fatalf("carol's admin tokens = %v, want one", tokens)
	}
	id, _ := titems[0].(map[string]any)["id"].(string)
	if id == "" {
		t.Fatalf("carol's admin token has no id: %v", tokens)
	}
	replicaExpect(t, "carol revokes her token on B", http.StatusNoContent,
		replicaAdmin(ctx, b.base, carolToken, "DELETE", "/admin/tokens/"+url.PathEscape(id), nil))
	revoked := time.Now()
	adminDelay := eventually(t, "revoked admin token refused on A", revoked, replicaPropagation, func() bool {
		r := replicaAdmin(ctx, a.base, carolToken, "GET", "/admin/integrations", nil)
		switch {
		case r.status == http.StatusOK:
			return false
		case r.status != http.StatusUnauthorized || r.object()["error"] == nil:
			t.Fatalf("revoked admin token on A: %v, want 401 with a JSON error", r)
		}
		return true
	})
	t.Logf("admin token revoked on B refused on A after %v", adminDelay)
	if r := replicaAdmin(ctx, b.base, carolToken, "GET", "/admin/integrations", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("revoked admin token on B: %v, want 401", r)
	}
}

// eventually calls probe until it returns true, failing the test if that
// takes more than limit after start; it returns the time since start. The
// probe fails the test itself on an answer that is wrong at any time.
func eventually(t *testing.T, what string, start time.Time, limit time.Duration, probe func() bool) time.Duration {
	t.Helper()
	for {
		if probe() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still not so %v after the change returned; the DESIGN allows %v", what, time.Since(start), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReplicasConcurrentRegenerate regenerates one integration from several
// clients on both replicas at once while others keep requesting tokens with
// every secret seen so far. The audit log gives the order in which the
// regenerations committed, so each secret's replacement is known exactly.
func TestReplicasConcurrentRegenerate(t *testing.T) {
	dsn := postgresDSN(t)
	a, b := startReplicaPair(t, dsn)
	replicas := []*replicaProc{a, b}
	ctx := t.Context()
	errs := &cappedErrors{t: t}

	first := mustKeyPair(t, "create svc", replicaExpect(t, "create svc", http.StatusCreated,
		// Uncapped: both replicas are asked for tokens in a loop.
		replicaAdmin(ctx, a.base, replicaBootstrap, "POST", "/admin/integrations", map[string]any{"name": "svc", "token_rate_per_minute": 0}))["key_pair"])
	rs := mustKeyPair(t, "create rs", replicaExpect(t, "create rs", http.StatusCreated,
		replicaAdmin(ctx, b.base, replicaBootstrap, "POST", "/admin/integrations",
			map[string]any{"name": "rs", "can_introspect": true}))["key_pair"])

	type secret struct {
		kp       replicaKeyPair
		returned time.Time // when the response carrying it arrived
	}
	type attempt struct {
		kp             replicaKeyPair
		started, ended time.Time
		token          string // set on 200
	}
	var (
		mu       sync.Mutex
		secrets  = []secret{{first, time.Now()}}
		attempts []attempt
	)

	const runFor = 2 * time.Second
	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for i := range 6 {
		r := replicas[i%2]
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp := replicaAdmin(ctx, r.base, replicaBootstrap, "POST", "/admin/integrations/svc/key-pair",
					map[string]any{"grace_seconds": 0})
				arrived := time.Now()
				if resp.err != nil || resp.status != http.StatusCreated {
					errs.Errorf("regenerate on %s: %v, want 201", r.name, resp)
					continue
				}
				kp, ok := parseKeyPair(resp.object())
				if !ok {
					errs.Errorf("regenerate on %s: no key pair in %v", r.name, resp)
					continue
				}
				mu.Lock()
				secrets = append(secrets, secret{kp, arrived})
				mu.Unlock()
			}
		})
	}
	for i := range 4 {
		r := replicas[i%2]
		wg.Go(func() {
			for n := 0; time.Now().Before(stop); n++ {
				// Mostly the newest secrets, which are the ones being
				// replaced right now, so requests race regenerations.
				mu.Lock()
				var kp replicaKeyPair
				switch k := len(secrets); n % 4 {
				case 0, 1:
					kp = secrets[k-1].kp
				case 2:
					kp = secrets[max(0, k-2)].kp
				default:
					kp = secrets[(n*7919)%k].kp
				}
				mu.Unlock()
				at := attempt{kp: kp, started: time.Now()}
				resp := replicaToken(ctx, r.base, kp)
				at.ended = time.Now()
				switch m := resp.object(); {
				case resp.err == nil && resp.status == http.StatusOK:
					tok, ok := validToken(m)
					if !ok {
						errs.Errorf("token on %s: bad 200 body %v", r.name, resp)
						continue
					}
					at.token = tok
				case resp.err == nil && resp.status == http.StatusUnauthorized && m["error"] == "invalid_client":
				default:
					errs.Errorf("token on %s with %s: %v, want 200 or 401 invalid_client", r.name, kp.id, resp)
					continue
				}
				mu.Lock()
				attempts = append(attempts, at)
				mu.Unlock()
			}
		})
	}
	// No stop on failures so far: a regeneration refused with 503 must
	// have changed nothing, which the audit log below checks.
	wg.Wait()
	returned := map[string]time.Time{}
	for _, s := range secrets {
		returned[s.kp.id] = s.returned
	}
	if len(secrets) < 20 {
		t.Fatalf("only %d regenerations in %v: too few to race anything", len(secrets)-1, runFor)
	}

	// The audit log is written in the regeneration's transaction, so it
	// holds the commit order: each key pair and the one it replaced.
	type regenEvent struct{ clientID, previous string }
	var events []regenEvent
	for page := ""; ; {
		path := "/admin/audit?limit=1000"
		if page != "" {
			path += "&page_token=" + url.QueryEscape(page)
		}
		m := replicaExpect(t, "audit log on A", http.StatusOK, replicaAdmin(ctx, a.base, replicaBootstrap, "GET", path, nil))
		items, _ := m["items"].([]any)
		for _, it := range items {
			ev, _ := it.(map[string]any)
			if ev["action"] != "key_pair.regenerate" || ev["object"] != "svc" {
				continue
			}
			d, _ := ev["details"].(map[string]any)
			id, _ := d["client_id"].(string)
			prev, _ := d["previous_client_id"].(string)
			events = append(events, regenEvent{id, prev})
		}
		if page, _ = m["next_page_token"].(string); page == "" {
			break
		}
	}
	if len(events) != len(secrets)-1 {
		t.Fatalf("audit log has %d regenerations of svc, the clients got %d answers", len(events), len(secrets)-1)
	}
	next := map[string]string{}
	for _, ev := range events {
		if _, ok := returned[ev.clientID]; !ok {
			t.Fatalf("audit log names key pair %s, which no regeneration returned", ev.clientID)
		}
		if other, dup := next[ev.previous]; dup {
			t.Fatalf("key pair %q was replaced twice, by %s and by %s", ev.previous, other, ev.clientID)
		}
		next[ev.previous] = ev.clientID
	}
	current, chain := first.id, 1
	for {
		n, ok := next[current]
		if !ok {
			break
		}
		current, chain = n, chain+1
		if chain > len(secrets) {
			t.Fatal("the audit log's chain of key pairs has a cycle")
		}
	}
	if chain != len(secrets) {
		t.Fatalf("the chain of replacements from the first key pair covers %d of %d key pairs", chain, len(secrets))
	}

	for _, r := range replicas {
		m := replicaExpect(t, "get svc on "+r.name, http.StatusOK,
			replicaAdmin(ctx, r.base, replicaBootstrap, "GET", "/admin/integrations/svc", nil))
		kp, _ := m["key_pair"].(map[string]any)
		if kp["client_id"] != current || m["previous_key_pair"] != nil {
			t.Errorf("svc on %s has key_pair %v and previous_key_pair %v; want only %s", r.name, kp, m["previous_key_pair"], current)
		}
	}

	// Exactly the last secret in commit order still works, everywhere.
	forEachParallel(len(secrets)*2, 4, func(i int) {
		s, r := secrets[i/2], replicas[i%2]
		resp := replicaToken(ctx, r.base, s.kp)
		switch {
		case s.kp.id == current && resp.status != http.StatusOK:
			errs.Errorf("token on %s with the current pair %s: %v, want 200", r.name, s.kp.id, resp)
		case s.kp.id != current && (resp.status != http.StatusUnauthorized || resp.object()["error"] != "invalid_client"):
			errs.Errorf("token on %s with replaced pair %s: %v, want 401 invalid_client", r.name, s.kp.id, resp)
		}
	})

	var issued []attempt
	ok, refused, lateButFine := 0, 0, 0
	for _, at := range attempts {
		if at.token == "" {
			refused++
			continue
		}
		ok++
		issued = append(issued, at)
		by, replaced := next[at.kp.id]
		if !replaced {
			continue
		}
		if done := returned[by]; at.started.After(done) {
			errs.Errorf("a token request with %s started %v after the regeneration that replaced it had returned, and got a token",
				at.kp.id, at.started.Sub(done))
		} else if at.ended.After(done) {
			lateButFine++
		}
	}
	if ok == 0 || refused == 0 {
		t.Fatalf("token requests: %d issued, %d refused; the race needs both", ok, refused)
	}
	forEachParallel(len(issued), 4, func(i int) {
		at, r := issued[i], replicas[i%2]
		m := replicaIntrospect(ctx, r.base, rs, at.token).object()
		if want := at.kp.id == current; m["active"] != want || (!want && !inactive(m)) {
			errs.Errorf("introspect on %s a token of %s (current %v): %v", r.name, at.kp.id, want, m)
		}
	})
	t.Logf("%d regenerations and %d token requests (%d issued, %d refused) in %v; %d tokens were issued to a pair whose replacement returned while the request was in flight",
		len(secrets)-1, len(attempts), ok, refused, runFor, lateButFine)
}

// pgProxyMode is what the proxy does to the traffic between a replica and
// PostgreSQL.
type pgProxyMode int

const (
	proxyUp pgProxyMode = iota
	// proxyRefuse is a database that is down: connecting is refused and
	// established connections are closed.
	proxyRefuse
	// proxyBlackhole is a network that drops packets: connections are
	// accepted and stay open but nothing gets through, so only timeouts
	// end a wait. Bytes are held, not lost, as TCP would retransmit them.
	proxyBlackhole
)

// pgProxy is a TCP proxy on a fixed local port in front of PostgreSQL.
type pgProxy struct {
	addr, upstream string

	mu     sync.Mutex
	cond   *sync.Cond
	mode   pgProxyMode
	ln     net.Listener // nil while refusing
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
	// onCommit, when set, is closed as the proxy turns into a black hole
	// on passing the server's acknowledgement of a COMMIT.
	onCommit chan struct{}
}

func startPGProxy(t *testing.T, upstream string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{addr: ln.Addr().String(), upstream: upstream, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.serveListener(ln)
	t.Cleanup(p.close)
	return p
}

func (p *pgProxy) serveListener(ln net.Listener) {
	p.ln = ln
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.track(c) {
				c.Close()
				continue
			}
			p.wg.Go(func() { p.serveConn(c) })
		}
	})
}

func (p *pgProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == proxyRefuse {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *pgProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// forward blocks while the proxy is a black hole and reports whether
// traffic may flow.
func (p *pgProxy) forward() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == proxyBlackhole && !p.closed {
		p.cond.Wait()
	}
	return p.mode == proxyUp && !p.closed
}

func (p *pgProxy) serveConn(client net.Conn) {
	// The upstream connection waits for traffic to flow, so a black
	// hole never shows PostgreSQL a half-open session.
	if !p.forward() {
		p.untrack(client)
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		p.untrack(client)
		return
	}
	if !p.track(server) {
		server.Close()
		p.untrack(client)
		return
	}
	p.wg.Go(func() { p.pipe(server, client, false) })
	p.pipe(client, server, true)
}

func (p *pgProxy) pipe(dst, src net.Conn, fromServer bool) {
	defer p.untrack(dst, src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !(fromServer && p.tripOnCommit(buf[:n])) && !p.forward() {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// commandCompleteCommit is the tag of PostgreSQL's CommandComplete message
// for a COMMIT, which no other message carries.
var commandCompleteCommit = []byte("COMMIT\x00")

// tripOnCommit turns the proxy into a black hole if it is waiting for a
// COMMIT and chunk acknowledges one; the chunk itself still goes through,
// so the client learns its transaction committed and nothing after that.
func (p *pgProxy) tripOnCommit(chunk []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.onCommit == nil || p.mode != proxyUp || !bytes.Contains(chunk, commandCompleteCommit) {
		return false
	}
	p.mode = proxyBlackhole
	close(p.onCommit)
	p.onCommit = nil
	return true
}

// blackholeAfterCommit arms the proxy to become a black hole right after
// the next COMMIT it sees acknowledged; the channel closes when it does.
func (p *pgProxy) blackholeAfterCommit() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onCommit = make(chan struct{})
	return p.onCommit
}

func (p *pgProxy) set(t *testing.T, m pgProxyMode) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	p.onCommit = nil
	switch {
	case m == proxyRefuse:
		if p.ln != nil {
			p.ln.Close()
			p.ln = nil
		}
		for c := range p.conns {
			c.Close()
		}
	case p.ln == nil:
		// The same port: the replica's DSN names it.
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
		}
		p.serveListener(ln)
	}
	p.cond.Broadcast()
}

func (p *pgProxy) close() {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// outageEndpoint is one endpoint as the outage test judges it.
type outageEndpoint struct {
	name string
	call func(ctx context.Context) replicaResp
	// healthy judges a 200 body, down a 503 body.
	healthy, down func(m map[string]any) bool
}

const (
	answerUp = iota + 1
	answerDown
)

// judge classifies an answer as up or down, or explains why it is neither:
// no answer, too slow, another status, or a body the contract does not
// allow for its status.
func (e outageEndpoint) judge(r replicaResp, slowest time.Duration) (int, string) {
	if r.err != nil {
		return 0, fmt.Sprintf("%s: %v", e.name, r)
	}
	if r.took > slowest {
		return 0, fmt.Sprintf("%s: %v; more than request_timeout + 2s", e.name, r)
	}
	m := r.object()
	switch {
	case r.status == http.StatusOK && m != nil && e.healthy(m):
		return answerUp, ""
	case r.status == http.StatusServiceUnavailable && m != nil && e.down(m):
		return answerDown, ""
	}
	return 0, fmt.Sprintf("%s: %v; want a valid 200 or a 503 as the contract says", e.name, r)
}

// TestReplicaDatabaseOutage puts a proxy between a replica and PostgreSQL
// and takes the database away, first refusing connections, then dropping
// traffic. Throughout, under a small load, every answer must be a correct
// 200 or a 503 that says temporarily_unavailable, within request_timeout +
// 2 s; and once the database is back the replica serves again unaided.
func TestReplicaDatabaseOutage(t *testing.T) {
	dsn := postgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil || u.Host == "" {
		t.Skip("the proxy needs a host:port in LATCHKEY_TEST_POSTGRES_DSN")
	}
	upstream := u.Host
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		upstream = net.JoinHostPort(upstream, "5432")
	}
	proxy := startPGProxy(t, upstream)
	u.Host = proxy.addr
	const requestTimeout = 2 * time.Second
	slowest := requestTimeout + 2*time.Second
	r := startReplica(t, "A", replicaEnv(u.String(), "LATCHKEY_REQUEST_TIMEOUT="+requestTimeout.String(),
		"LATCHKEY_JANITOR_INTERVAL=1s"))
	r.waitReady(t)
	ctx := t.Context()
	errs := &cappedErrors{t: t}

	kp := mustKeyPair(t, "create svc", replicaExpect(t, "create svc", http.StatusCreated,
		replicaAdmin(ctx, r.base, replicaBootstrap, "POST", "/admin/integrations",
			map[string]any{"name": "svc", "can_introspect": true, "token_rate_per_minute": 0}))["key_pair"])
	before := mustToken(t, "token before the outage", replicaToken(ctx, r.base, kp))
	replicaExpect(t, "create spare", http.StatusCreated, replicaAdmin(ctx, r.base, replicaBootstrap, "POST",
		"/admin/integrations", map[string]any{"name": "spare"}))

	oauthDown := func(m map[string]any) bool { return m["error"] == "temporarily_unavailable" }
	endpoints := []outageEndpoint{{
		name:    "token",
		call:    func(ctx context.Context) replicaResp { return replicaToken(ctx, r.base, kp) },
		healthy: func(m map[string]any) bool { _, ok := validToken(m); return ok },
		down:    oauthDown,
	}, {
		name: "introspect",
		call: func(ctx context.Context) replicaResp { return replicaIntrospect(ctx, r.base, kp, before) },
		// An outage is no reason to call a live token inactive.
		healthy: func(m map[string]any) bool { return m["active"] == true && m["sub"] == "svc" },
		down:    oauthDown,
	}, {
		name: "admin",
		call: func(ctx context.Context) replicaResp {
			return replicaAdmin(ctx, r.base, replicaBootstrap, "GET", "/admin/integrations", nil)
		},
		healthy: func(m map[string]any) bool {
			items, _ := m["items"].([]any)
			return slices.ContainsFunc(items, func(it any) bool { ig, _ := it.(map[string]any); return ig["name"] == "svc" })
		},
		down: func(m map[string]any) bool {
			e, _ := m["error"].(string)
			d, _ := m["error_description"].(string)
			return e != "" && d != ""
		},
	}, {
		name:    "readyz",
		call:    func(ctx context.Context) replicaResp { return replicaDo(ctx, "GET", r.base+"/readyz", nil, nil) },
		healthy: func(m map[string]any) bool { return m["status"] == "ready" },
		down:    func(m map[string]any) bool { return m["status"] != nil },
	}}

	// The load runs through every phase. Each answer is judged at once
	// like the probes', and kept, so that afterwards the answers to
	// requests made wholly within an outage can be held to 503.
	type answer struct {
		start, end time.Time
		state      int
	}
	var (
		stopLoad atomic.Bool
		mu       sync.Mutex
		answers  []answer
		issued   []string
		load     sync.WaitGroup
	)
	// Deferred so that a failing phase, which ends the test at once,
	// does not leave the load running past it.
	defer func() {
		stopLoad.Store(true)
		load.Wait()
	}()
	for i := range 3 {
		load.Go(func() {
			for !stopLoad.Load() {
				for _, e := range endpoints[:2] {
					start := time.Now()
					resp := e.call(ctx)
					state, problem := e.judge(resp, slowest)
					if problem != "" {
						errs.Errorf("load %d: %s", i, problem)
					}
					mu.Lock()
					answers = append(answers, answer{start, time.Now(), state})
					if tok, ok := validToken(resp.object()); ok && state == answerUp {
						issued = append(issued, tok)
					}
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	// A phase runs from just after the proxy switched to it until just
	// before it switches to the next one.
	type phase struct {
		name       string
		outage     bool
		from, upto time.Time
	}
	var phases []*phase
	begin := func(name string, outage bool, change func()) *phase {
		if n := len(phases); n > 0 {
			phases[n-1].upto = time.Now()
		}
		change()
		ph := &phase{name: name, outage: outage, from: time.Now()}
		phases = append(phases, ph)
		return ph
	}
	switchTo := func(name string, m pgProxyMode) *phase {
		return begin(name, m != proxyUp, func() { proxy.set(t, m) })
	}
	// The black hole opens the moment a transaction's COMMIT has been
	// acknowledged, the worst moment for a write: it has succeeded, and
	// its answer must still come within request_timeout + 2 s.
	write := make(chan replicaResp, 1)
	blackholeAfterWrite := func() *phase {
		return begin("blackholed", true, func() {
			tripped := proxy.blackholeAfterCommit()
			go func() {
				write <- replicaAdmin(ctx, r.base, replicaBootstrap, "POST", "/admin/integrations/spare/key-pair",
					map[string]any{"grace_seconds": 0})
			}()
			select {
			case <-tripped:
			case w := <-write:
				t.Logf("the regeneration answered %v without a COMMIT crossing the proxy", w)
				proxy.set(t, proxyBlackhole)
				write <- w
			}
		})
	}

	// await probes every endpoint concurrently. In an outage every answer
	// must be a 503 (no request made after the switch can reach the
	// database) and probing goes on for hold. Otherwise each endpoint must
	// answer 200 three times in a row within limit.
	await := func(ph *phase, limit, hold time.Duration) {
		t.Helper()
		failuresBefore := errs.n.Load()
		want := answerUp
		if ph.outage {
			want = answerDown
		}
		var wg sync.WaitGroup
		report := make([]string, len(endpoints))
		for i, e := range endpoints {
			wg.Go(func() {
				var reached, slow time.Duration
				var last replicaResp
				for run := 0; ; {
					last = e.call(ctx)
					slow = max(slow, last.took)
					state, problem := e.judge(last, slowest)
					switch {
					case problem != "":
						errs.Errorf("%s: %s", ph.name, problem)
					case ph.outage && state != answerDown:
						errs.Errorf("%s: %s answered %v though it cannot have reached the database", ph.name, e.name, last)
					}
					if state == want {
						if run++; run == 1 {
							reached = time.Since(ph.from)
						}
					} else {
						run = 0
					}
					since := time.Since(ph.from)
					if ph.outage && run > 0 && since >= hold || !ph.outage && run == 3 {
						break
					}
					if run == 0 && since > limit {
						errs.Errorf("%s: %s did not settle within %v; last answer %v", ph.name, e.name, limit, last)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				report[i] = fmt.Sprintf("%s after %v (slowest %v)", e.name,
					reached.Round(time.Millisecond), slow.Round(time.Millisecond))
			})
		}
		wg.Wait()
		t.Logf("%s: %s", ph.name, strings.Join(report, ", "))
		// The later phases make no sense after a broken one; a failure
		// reported elsewhere, though, should not hide what they find.
		if errs.n.Load() > failuresBefore {
			t.FailNow()
		}
	}

	await(switchTo("up", proxyUp), 10*time.Second, 0)
	time.Sleep(300 * time.Millisecond)
	await(switchTo("refused", proxyRefuse), 5*time.Second, time.Second)
	// Back up before the black hole, so that the pool holds live
	// connections when traffic stops, as in a real partition.
	await(switchTo("up after refused", proxyUp), 10*time.Second, 0)
	time.Sleep(300 * time.Millisecond)
	// Held past the 5 s connect_timeout the store adds to the DSN, so
	// that connection attempts begun in the black hole also time out.
	await(blackholeAfterWrite(), 3*slowest, 6*time.Second)
	if w := <-write; w.err != nil || w.took > slowest || w.status != http.StatusCreated && w.status != http.StatusServiceUnavailable {
		t.Errorf("regeneration whose COMMIT was the last thing through before the black hole: %v; want 201 or 503 within request_timeout + 2s (%v)", w, slowest)
	} else {
		t.Logf("regeneration whose COMMIT was the last thing through before the black hole: %d after %v", w.status, w.took.Round(time.Millisecond))
	}
	await(switchTo("up after blackholed", proxyUp), 10*time.Second, 0)
	time.Sleep(300 * time.Millisecond)
	phases[len(phases)-1].upto = time.Now()
	stopLoad.Store(true)
	load.Wait()
	r.stillRunning(t)

	for _, ph := range phases {
		var up, down int
		for _, a := range answers {
			if a.start.Before(ph.from) || a.end.After(ph.upto) {
				continue
			}
			switch {
			case a.state == answerUp:
				up++
			case a.state == answerDown:
				down++
			}
		}
		t.Logf("load wholly within %s: %d answered 200, %d answered 503", ph.name, up, down)
		switch {
		case ph.outage && up > 0:
			t.Errorf("%s: %d requests made during the outage were answered 200", ph.name, up)
		case ph.outage && down == 0, !ph.outage && up == 0:
			t.Errorf("%s: the load got no answer typical of the phase; it checked nothing there", ph.name)
		}
	}

	fresh := mustToken(t, "token after the outage", replicaToken(ctx, r.base, kp))
	for _, tok := range []string{before, fresh} {
		if m := replicaExpect(t, "introspect after the outage", http.StatusOK, replicaIntrospect(ctx, r.base, kp, tok)); m["active"] != true {
			t.Errorf("introspect after the outage = %v, want active", m)
		}
	}
	// Every token the replica handed out, however close to a failure,
	// must have been stored: its client is using it.
	forEachParallel(len(issued), 4, func(i int) {
		if m := replicaIntrospect(ctx, r.base, kp, issued[i]).object(); m["active"] != true {
			errs.Errorf("a token issued under load introspects %v after the outage, want active", m)
		}
	})
	if s := r.stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("replica logged a panic:\n%s", s)
	}
}
