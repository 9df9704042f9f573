package server_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/storage"
)

// scrape reads base/metrics and returns every sample line by its name and
// labels ("latchkey_x_total{a=\"b\"}") with its value.
func scrape(t *testing.T, base string) map[string]string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	samples := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		samples[line[:i]] = line[i+1:]
	}
	return samples
}

func wantSample(t *testing.T, samples map[string]string, name, want string) {
	t.Helper()
	if got, ok := samples[name]; !ok || got != want {
		t.Errorf("%s = %q (present %v), want %s", name, got, ok, want)
	}
}

// TestMetrics drives each kind of event once or a few times and reads the
// counts back from /metrics.
func TestMetrics(t *testing.T) {
	e := limited(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	rs := e.resourceServer()
	token := e.token(kp, nil)
	e.token(kp, nil)
	e.introspect(rs, token)
	e.introspect(rs, "lk_at_unknown")
	e.introspect(rs, "garbage")
	if st, _, _ := e.form("/oauth2/revoke", kp, url.Values{"token": {token}}); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	from := clientFrom("127.0.0.20")
	e.post(from, "/oauth2/token", wrongSecret(t, kp), grant)
	e.post(from, "/oauth2/token", keyPair{ID: kp.ID, Secret: "lk_cs_typo"}, grant)
	e.post(from, "/oauth2/token", keyPair{ID: "lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa", Secret: kp.Secret}, grant)
	if st, _, _ := e.form("/oauth2/token", keyPair{}, grant); st != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", st)
	}
	e.post(from, "/oauth2/token", wrongSecret(t, kp), grant)
	e.post(from, "/oauth2/token", wrongSecret(t, kp), grant) // the address's fifth failure
	// The pair's fifth failure: answered 401, but held, for the address
	// has spent its budget; the sixth is refused with 429.
	if a := e.post(from, "/oauth2/token", wrongSecret(t, kp), grant); a.status != http.StatusUnauthorized {
		t.Fatalf("the pair's fifth failure: %d", a.status)
	}
	if a := e.post(from, "/oauth2/token", wrongSecret(t, kp), grant); a.status != http.StatusTooManyRequests {
		t.Fatalf("the pair's sixth failure: %d", a.status)
	}
	if a := e.post(from, "/oauth2/token", kp, grant); a.status != http.StatusOK {
		t.Fatalf("the right secret after all that: %d", a.status)
	}
	if st, _ := e.adminCall("GET", "/admin/integrations", "lk_adm_wrong", nil); st != http.StatusUnauthorized {
		t.Fatalf("wrong admin token: %d", st)
	}

	m := scrape(t, e.srv.URL)
	wantSample(t, m, `latchkey_tokens_issued_total{format="opaque"}`, "3")
	wantSample(t, m, `latchkey_introspections_total{result="active"}`, "1")
	wantSample(t, m, `latchkey_introspections_total{result="inactive"}`, "2")
	wantSample(t, m, `latchkey_revocations_total`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="wrong_secret"}`, "5")
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="malformed_secret"}`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="unknown_client"}`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{reason="missing_credentials"}`, "1")
	wantSample(t, m, `latchkey_rate_limited_total{limit="address"}`, "1")
	wantSample(t, m, `latchkey_rate_limited_total{limit="pair"}`, "1")
	wantSample(t, m, `latchkey_rate_limited_total{limit="admin_address"}`, "0")
	wantSample(t, m, `latchkey_admin_auth_failures_total`, "1")
	wantSample(t, m, `latchkey_http_request_duration_seconds_count{code="200",route="POST /oauth2/token"}`, "3")
	wantSample(t, m, `latchkey_http_request_duration_seconds_count{code="429",route="POST /oauth2/token"}`, "1")
	wantSample(t, m, `latchkey_http_request_duration_seconds_count{code="200",route="POST /oauth2/introspect"}`, "3")
	for _, name := range []string{
		`go_sql_open_connections{db_name="writer"}`,
		`go_sql_open_connections{db_name="reader"}`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
		`latchkey_janitor_purged_rows_total`,
	} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s in /metrics", name)
		}
	}
	// Client IDs are never labels: they are the attacker's to choose.
	for name := range m {
		if strings.Contains(name, "lk_ci_") || strings.Contains(name, "svc") {
			t.Errorf("a sample names a client: %s", name)
		}
	}
}

// TestRecordJanitorPass: the janitor's passes are counted by result, and
// the rows they purged add up.
func TestRecordJanitorPass(t *testing.T) {
	e := newEnv(t)
	e.server.RecordJanitorPass(3, nil)
	e.server.RecordJanitorPass(2, nil)
	e.server.RecordJanitorPass(1, errors.New("database gone"))
	m := scrape(t, e.srv.URL)
	wantSample(t, m, `latchkey_janitor_runs_total{result="ok"}`, "2")
	wantSample(t, m, `latchkey_janitor_runs_total{result="error"}`, "1")
	wantSample(t, m, `latchkey_janitor_purged_rows_total`, "6")
}

// TestMetricsIntegrationLabel: on request, per-client counters carry the
// integration's name, for integrations that exist only.
func TestMetricsIntegrationLabel(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.MetricsIntegrationLabel = true })
	kp := e.createIntegration(map[string]any{"name": "svc"})
	e.token(kp, nil)
	e.form("/oauth2/token", wrongSecret(t, kp), grant)
	e.form("/oauth2/token", keyPair{ID: "lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa", Secret: kp.Secret}, grant)
	m := scrape(t, e.srv.URL)
	wantSample(t, m, `latchkey_tokens_issued_total{format="opaque",integration="svc"}`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{integration="svc",reason="wrong_secret"}`, "1")
	wantSample(t, m, `latchkey_client_auth_failures_total{integration="",reason="unknown_client"}`, "1")
}

// TestMetricsOnAdminListener: with the admin API on its own listener,
// /metrics moves there too, off the port integrations reach.
func TestMetricsOnAdminListener(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.SeparateAdmin = true })
	scrape(t, e.admin.URL)
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the public listener: %d, want 404", resp.StatusCode)
	}
}

type logLine struct {
	Level       string  `json:"level"`
	Msg         string  `json:"msg"`
	RequestID   string  `json:"request_id"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Status      int     `json:"status"`
	DurationMS  float64 `json:"duration_ms"`
	Remote      string  `json:"remote"`
	Integration string  `json:"integration"`
	AuthFailure string  `json:"auth_failure"`
}

func accessLog(t *testing.T, e *env) []logLine {
	t.Helper()
	var out []logLine
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "request" {
			out = append(out, l)
		}
	}
	return out
}

// TestAccessLogAndRequestIDs: one line per request with its ID, status
// and duration; a client's well-formed X-Request-ID is kept and echoed, a
// malformed one replaced.
func TestAccessLogAndRequestIDs(t *testing.T) {
	e := newEnv(t)
	kp := e.createIntegration(map[string]any{"name": "svc"})
	send := func(id string) http.Header {
		req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(grant.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(kp.ID, kp.Secret)
		if id != "" {
			req.Header.Set("X-Request-ID", id)
		}
		_, h, _ := e.do(req)
		return h
	}
	before := len(accessLog(t, e))
	if got := send("trace-abc.123:x"); got.Get("X-Request-ID") != "trace-abc.123:x" {
		t.Errorf("X-Request-ID echoed as %q, want the client's", got.Get("X-Request-ID"))
	}
	generated := send("").Get("X-Request-ID")
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(generated) {
		t.Errorf("generated X-Request-ID %q, want 16 hex digits", generated)
	}
	injected := send(`bad id "with" stuff`).Get("X-Request-ID")
	if injected == "" || strings.ContainsAny(injected, ` "`) {
		t.Errorf("malformed X-Request-ID came back as %q, want a fresh one", injected)
	}
	lines := accessLog(t, e)[before:]
	if len(lines) != 3 {
		t.Fatalf("%d access-log lines for 3 requests: %+v", len(lines), lines)
	}
	for i, id := range []string{"trace-abc.123:x", generated, injected} {
		l := lines[i]
		if l.RequestID != id || l.Status != 200 || l.Method != "POST" || l.Path != "/oauth2/token" ||
			l.DurationMS <= 0 || l.Remote != "127.0.0.1" || l.Integration != "svc" || l.Level != "INFO" {
			t.Errorf("line %d: %+v, want request %s, 200, svc", i, l, id)
		}
	}
	// A wrong secret is logged with its reason.
	e.form("/oauth2/token", wrongSecret(t, kp), grant)
	lines = accessLog(t, e)
	if l := lines[len(lines)-1]; l.Status != 401 || l.AuthFailure != "wrong_secret" {
		t.Errorf("failed authentication logged as %+v", l)
	}
}

// TestLogsNeverHoldSecrets runs every kind of request that carries a
// secret or a token, including the careless kind that puts them in the
// query string, and searches the whole log for them.
func TestLogsNeverHoldSecrets(t *testing.T) {
	e := newEnv(t)
	created := e.mustAdmin("POST", "/admin/integrations", map[string]any{"name": "svc", "can_introspect": true}, http.StatusCreated)
	pair := created["key_pair"].(map[string]any)
	kp := keyPair{ID: pair["client_id"].(string), Secret: pair["client_secret"].(string)}
	token := e.token(kp, nil)
	e.introspect(kp, token)
	wrong := wrongSecret(t, kp)
	e.form("/oauth2/token", wrong, grant)
	// Credentials in the query string, and in the body of a bad request.
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token?client_secret="+url.QueryEscape(kp.Secret)+"&access_token="+token,
		strings.NewReader("client_id="+kp.ID+"&client_secret="+kp.Secret+"&client_secret="+kp.Secret))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	e.do(req)
	e.form("/oauth2/revoke", kp, url.Values{"token": {token}})
	adminTok := e.mintAdminToken(e.newAdmin("ci", storage.RoleOperator), map[string]any{"description": "ci"})["token"].(string)
	regen := e.regenerate("svc", 0)
	e.adminCall("GET", "/admin/integrations?access_token="+adminTok, adminTok, nil)
	e.adminCall("GET", "/admin/integrations", adminTok+"x", nil)

	logs := e.logs.String()
	if len(accessLog(t, e)) < 8 {
		t.Fatalf("expected a log line per request, got:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"client secret": kp.Secret, "wrong secret": wrong.Secret, "access token": token,
		"admin token": adminTok, "bootstrap token": testBootstrap, "regenerated secret": regen.Secret,
		"token signature": strings.TrimPrefix(token, "lk_at_")[strings.Index(strings.TrimPrefix(token, "lk_at_"), ".")+1:],
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the %s", name)
		}
	}
}

// TestSecurityHeaders: nosniff and friends on every answer, errors
// included; HSTS only over HTTPS, directly or through a trusted proxy.
func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, func(o *server.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.30/32")}
	})
	for _, path := range []string{"/healthz", "/.well-known/jwks.json", "/nope", "/admin/integrations"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET %s (%d): security headers missing: %v", path, resp.StatusCode, h)
		}
		if h.Get("Strict-Transport-Security") != "" {
			t.Errorf("GET %s over plain HTTP sent HSTS", path)
		}
	}
	hsts := func(c *http.Client, base, proto string) string {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Strict-Transport-Security")
	}
	if got := hsts(clientFrom("127.0.0.30"), e.srv.URL, "https"); !strings.HasPrefix(got, "max-age=") {
		t.Errorf("through a trusted TLS proxy: HSTS %q", got)
	}
	if got := hsts(clientFrom("127.0.0.31"), e.srv.URL, "https"); got != "" {
		t.Errorf("an untrusted peer claiming https got HSTS %q", got)
	}

	tlsSrv := httptest.NewTLSServer(e.srv.Config.Handler)
	defer tlsSrv.Close()
	if got := hsts(tlsSrv.Client(), tlsSrv.URL, ""); !strings.HasPrefix(got, "max-age=") {
		t.Errorf("over TLS: HSTS %q", got)
	}
}
