package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

const testBootstrap = "bootstrap-token-for-bench-tests-0123456789"

var testSecrets = [][]byte{[]byte("test-system-secret-0123456789abcdef")}

func noEnv(string) string { return "" }

// latchkey is an in-process latchkey on a fresh SQLite file.
type latchkey struct {
	url, db string
	store   *storage.Store
}

func startLatchkey(t *testing.T) *latchkey {
	t.Helper()
	return startLatchkeyWith(t, server.Options{})
}

// startLatchkeyWith starts a latchkey with o's limits on top of what
// startLatchkey sets.
func startLatchkeyWith(t *testing.T, o server.Options) *latchkey {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "latchkey.db")
	st, err := storage.Open(ctx, storage.Options{Driver: "sqlite", DSN: db,
		Credentials: credential.NewMinter(testSecrets), SealingKeys: credential.SealingKeys(testSecrets)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	o.Issuer, o.TokenLifetime, o.Secrets, o.BootstrapToken = "http://127.0.0.1", 10*time.Hour, testSecrets, testBootstrap
	s, err := server.New(ctx, st, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &latchkey{url: srv.URL, db: db, store: st}
}

// admin calls the admin API as the bootstrap admin and decodes the answer.
func (l *latchkey) admin(t *testing.T, method, path, body string, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, l.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testBootstrap)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	out := map[string]any{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// load runs the load command with -json for about a second and decodes
// its report.
func load(t *testing.T, args ...string) report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"latchkey-bench", "load", "-c", "4", "-d", "1s", "-warmup", "100ms", "-json"}, args...)
	if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("load %v: %v\n%s", args, err, stderr.String())
	}
	var r report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("load: output is not a report: %v\n%s", err, stdout.String())
	}
	t.Logf("%s: %d requests, %.0f/s, p99 %.3fms, status %v, errors %v", r.Mode, r.Requests, r.RPS, r.Latency.P99, r.Status, r.Errors)
	return r
}

func TestLoadModes(t *testing.T) {
	l := startLatchkey(t)
	tests := []struct {
		mode   string
		extra  []string
		status string // the only status expected
		kinds  []string
	}{
		{mode: "token", status: "200"},
		{mode: "introspect", status: "200"},
		{mode: "mixed", extra: []string{"-mix", "5"}, status: "200", kinds: []string{"token", "introspect"}},
		{mode: "badsecret", status: "401"},
		{mode: "badsecret", extra: []string{"-malformed"}, status: "401"},
		// The portable engine, and the epoll engine with two loops.
		{mode: "mixed", extra: []string{"-engine", "goroutines", "-mix", "5"}, status: "200", kinds: []string{"token", "introspect"}},
		{mode: "badsecret", extra: []string{"-engine", "goroutines"}, status: "401"},
		{mode: "token", extra: []string{"-t", "2"}, status: "200"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(append([]string{tc.mode}, tc.extra...), ""), func(t *testing.T) {
			args := append([]string{"-url", l.url, "-admin-token", testBootstrap, "-mode", tc.mode}, tc.extra...)
			r := load(t, args...)
			if r.Requests == 0 || r.RPS <= 0 {
				t.Fatalf("no requests counted: %+v", r)
			}
			if got := r.Status[tc.status]; got != r.Requests || len(r.Status) != 1 {
				t.Errorf("status %v, want all %d requests %s", r.Status, r.Requests, tc.status)
			}
			if r.TransportErrors != 0 || r.Stalled != 0 {
				t.Errorf("transport errors %v, stalled %d", r.Errors, r.Stalled)
			}
			if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Errorf("latency percentiles out of order: %+v", r.Latency)
			}
			for _, k := range tc.kinds {
				if r.Kinds[k].Requests == 0 {
					t.Errorf("no %s requests in %+v", k, r.Kinds)
				}
			}
			if tc.mode == "mixed" && r.Kinds["introspect"].Requests < 2*r.Kinds["token"].Requests {
				t.Errorf("mixed with -mix 5: %d introspections for %d tokens", r.Kinds["introspect"].Requests, r.Kinds["token"].Requests)
			}
		})
	}
	// Every run deletes what it created.
	items := l.admin(t, "GET", "/admin/integrations", "", http.StatusOK)["items"].([]any)
	if len(items) != 0 {
		t.Errorf("integrations left behind: %v", items)
	}
}

// syncBuffer collects the output of a command running in a goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFloor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"latchkey-bench", "floor", "-listen", "127.0.0.1:0"}, noEnv, &stdout, &stderr)
	}()
	addr := ""
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); {
		if m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		cancel()
		t.Fatalf("floor did not start: %s %s", stdout.String(), stderr.String())
	}

	resp, err := http.Post("http://"+addr+"/anything", "application/x-www-form-urlencoded", strings.NewReader("a=b"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !json.Valid(b) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("floor answered %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}

	// No admin token: floor mode needs no setup.
	for _, engine := range []string{defaultEngine, "goroutines"} {
		r := load(t, "-url", "http://"+addr, "-mode", "floor", "-engine", engine)
		if r.Requests == 0 || r.Status["200"] != r.Requests || r.TransportErrors != 0 {
			t.Errorf("floor run, %s engine: %+v", engine, r)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("floor: %v", err)
	}
}

func TestSeed(t *testing.T) {
	l := startLatchkey(t)
	kp := l.admin(t, "POST", "/admin/integrations", `{"name":"owner","scopes":["read"]}`, http.StatusCreated)["key_pair"].(map[string]any)
	clientID, secret := kp["client_id"].(string), kp["client_secret"].(string)
	// A token latchkey wrote itself, to compare the seeded rows with.
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", l.url+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("token: %v %v", resp, err)
	}
	resp.Body.Close()

	dsn := "sqlite://" + l.db
	seed := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append([]string{"latchkey-bench", "seed", "-database", dsn, "-batch", "3000"}, args...)
		if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
			t.Fatalf("seed %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String()
	}
	seed("-tokens", "10000", "-client-id", clientID)
	out := seed("-tokens", "4000", "-expired")
	if want := "access_tokens: 14001 rows (10001 live, 4000 expired)"; !strings.Contains(out, want) {
		t.Errorf("seed printed %q, want %q", out, want)
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"latchkey-bench", "count", "-database", dsn}, noEnv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "access_tokens: 14001 rows (10001 live, 4000 expired)\n"; stdout.String() != want {
		t.Errorf("count printed %q, want %q", stdout.String(), want)
	}

	// The seeded times have the shape of latchkey's own, so its janitor,
	// which compares them as text on SQLite, purges exactly the expired.
	db, err := sql.Open("sqlite3", "file:"+l.db+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	shapes := map[string]int{}
	// Concatenated, so the driver returns the stored text and does not
	// parse it into a time.Time.
	rows, err := db.Query(`SELECT issued_at || '', expires_at || '' FROM access_tokens`)
	if err != nil {
		t.Fatal(err)
	}
	shape := regexp.MustCompile(`[0-9]`)
	for rows.Next() {
		var issued, expires string
		if err := rows.Scan(&issued, &expires); err != nil {
			t.Fatal(err)
		}
		shapes[shape.ReplaceAllString(issued, "9")+" "+shape.ReplaceAllString(expires, "9")]++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	// One shape, or two when a time happens to end in a zero that the
	// driver trims; never a different layout.
	for s := range shapes {
		if !regexp.MustCompile(`^9999-99-99 99:99:99(\.9+)?\+99:99 9999-99-99 99:99:99(\.9+)?\+99:99$`).MatchString(s) {
			t.Errorf("a time is stored as %q", s)
		}
	}
	n, err := l.store.Purge(context.Background(), 1000)
	if err != nil || n != 4000 {
		t.Errorf("purge deleted %d rows (%v), want the 4000 expired", n, err)
	}
	var left int
	if err := db.QueryRow(`SELECT count(*) FROM access_tokens`).Scan(&left); err != nil || left != 10001 {
		t.Errorf("%d rows left (%v), want 10001", left, err)
	}
}

// hosts records the remote host of every request a handler serves.
type hosts struct {
	mu   sync.Mutex
	seen map[string]int
}

func (h *hosts) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		h.mu.Lock()
		if h.seen == nil {
			h.seen = map[string]int{}
		}
		h.seen[host]++
		h.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// only reports whether every request came from host, and there were some.
func (h *hosts) only(host string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen) == 1 && h.seen[host] > 0
}

func (h *hosts) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, _ := json.Marshal(h.seen)
	return string(b)
}

// needSource skips the test unless addr can be a source address here (on
// Linux every 127.0.0.0/8 address can; elsewhere often only 127.0.0.1).
func needSource(t *testing.T, addr string) {
	t.Helper()
	if err := checkSource(net.ParseIP(addr)); err != nil {
		t.Skipf("%s cannot be a source address here: %v", addr, err)
	}
}

func TestLoadSource(t *testing.T) {
	needSource(t, "127.0.0.2")
	for _, engine := range []string{defaultEngine, "goroutines"} {
		for _, source := range []string{"", "127.0.0.2"} {
			// A server per run: Close waits for the requests still in
			// flight, so every request of the run is recorded, and no
			// other's.
			var h hosts
			srv := httptest.NewServer(h.wrap(floorHandler()))
			args := []string{"-url", srv.URL, "-mode", "floor", "-engine", engine}
			want := "127.0.0.1"
			if source != "" {
				args, want = append(args, "-source", source), source
			}
			r := load(t, args...)
			srv.Close()
			if r.Requests == 0 || r.Status["200"] != r.Requests || r.TransportErrors != 0 {
				t.Errorf("%s engine, -source %q: %+v", engine, source, r)
			}
			if !h.only(want) {
				t.Errorf("%s engine, -source %q: the server saw requests from %s, want all from %s", engine, source, h.String(), want)
			}
			if r.Source != source {
				t.Errorf("%s engine: the report gives source %q, want %q", engine, r.Source, source)
			}
		}
	}

	// Mistakes fail the run before any load: an address that is not one
	// (usage, exit 2), one this machine does not have (exit 1), one of the
	// other IP version than the server's (usage).
	for _, tc := range []struct {
		source, engine string
		code           int
	}{
		{"not-an-ip", "goroutines", 2},
		{"192.0.2.1", "goroutines", 1}, // TEST-NET-1: nobody's
		{"::1", "epoll", 2},
		{"::1", "goroutines", 2},
	} {
		if tc.engine != defaultEngine && tc.engine != "goroutines" {
			continue
		}
		if tc.source == "::1" && checkSource(net.ParseIP("::1")) != nil {
			continue
		}
		var h hosts
		srv := httptest.NewServer(h.wrap(floorHandler()))
		args := []string{"latchkey-bench", "load", "-url", srv.URL, "-mode", "floor", "-d", "1s", "-engine", tc.engine, "-source", tc.source}
		err := run(context.Background(), args, noEnv, io.Discard, io.Discard)
		srv.Close()
		if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), "-source") {
			t.Errorf("-source %s, %s engine: %v (exit %d), want exit %d about -source", tc.source, tc.engine, err, exitCode(err), tc.code)
		}
		if h.String() != "null" {
			t.Errorf("-source %s: requests sent anyway: %s", tc.source, h.String())
		}
	}
}

// A many-address flood sends each request on a connection of its own from
// the next address of the range, and leaves nothing in TIME_WAIT.
func TestLoadSources(t *testing.T) {
	needSource(t, "127.77.0.1")
	for _, engine := range []string{defaultEngine, "goroutines"} {
		var h hosts
		srv := httptest.NewServer(h.wrap(floorHandler()))
		// An earlier run's can still be there for a minute.
		before := timeWait(t, "127.77.")
		r := load(t, "-url", srv.URL, "-mode", "floor", "-engine", engine, "-sources", "127.77.0.0/16")
		srv.Close() // waits for the requests in flight
		if r.Requests == 0 || r.Status["200"] != r.Requests || r.TransportErrors != 0 {
			t.Errorf("%s engine: %+v", engine, r)
		}
		if r.Sources != "127.77.0.0/16" {
			t.Errorf("%s engine: the report gives sources %q", engine, r.Sources)
		}
		h.mu.Lock()
		var total int
		for host, n := range h.seen {
			total += n
			if n != 1 || !strings.HasPrefix(host, "127.77.") || host == "127.77.0.0" || host == "127.77.255.255" {
				t.Errorf("%s engine: %d requests from %s, want one from each address of 127.77.0.0/16 but its first and last", engine, n, host)
				break
			}
		}
		h.mu.Unlock()
		// The warm-up's requests reach the server too.
		if total < int(r.Requests) {
			t.Errorf("%s engine: the server saw %d requests, the tool counted %d", engine, total, r.Requests)
		}
		left := 0
		for tuple := range timeWait(t, "127.77.") {
			if !before[tuple] {
				left++
			}
		}
		if left > 0 {
			t.Errorf("%s engine: %d connections of the run in TIME_WAIT", engine, left)
		}
	}

	// Wrong secrets from everywhere: each reaches the secret check.
	l := startLatchkey(t)
	for _, extra := range [][]string{{"-engine", defaultEngine}, {"-engine", "goroutines", "-malformed"}} {
		args := append([]string{"-url", l.url, "-admin-token", testBootstrap, "-mode", "badsecret", "-sources", "127.78.0.0/16"}, extra...)
		r := load(t, args...)
		if r.Requests == 0 || r.Status["401"] != r.Requests || r.TransportErrors != 0 {
			t.Errorf("badsecret %v: %+v", extra, r)
		}
	}

	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-sources", "127.77.0.0/16", "-source", "127.0.0.2"}, 2},
		{[]string{"-sources", "127.77.0.0"}, 2},
		{[]string{"-sources", "::1/128"}, 2},
		{[]string{"-sources", "192.0.2.0/24"}, 1}, // TEST-NET-1: nobody's
	} {
		args := append([]string{"latchkey-bench", "load", "-url", "http://127.0.0.1:1", "-mode", "floor", "-d", "1s"}, tc.args...)
		err := run(context.Background(), args, noEnv, io.Discard, io.Discard)
		if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), "-source") {
			t.Errorf("%v: %v (exit %d), want exit %d about -sources", tc.args, err, exitCode(err), tc.code)
		}
	}
}

// timeWait returns the TCP connections in TIME_WAIT whose local or remote
// IPv4 address starts with prefix, as "local remote" in the kernel's hex,
// on Linux (elsewhere, none).
func timeWait(t *testing.T, prefix string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return found
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "06" { // TCP_TIME_WAIT
			continue
		}
		for _, hostPort := range f[1:3] {
			// The kernel prints the address as a host-order integer.
			hex, _, _ := strings.Cut(hostPort, ":")
			v, err := strconv.ParseUint(hex, 16, 32)
			if err != nil {
				continue
			}
			var a [4]byte
			binary.NativeEndian.PutUint32(a[:], uint32(v))
			if strings.HasPrefix(net.IP(a[:]).String(), prefix) {
				found[f[1]+" "+f[2]] = true
				break
			}
		}
	}
	return found
}

// fakeRateLimited starts enough of latchkey for badsecret mode: the admin
// API hands out a key pair, and the token endpoint refuses every request
// as a rate-limited latchkey does: 401 at first, then 429 with a
// Retry-After of an hour, and 401 again for one request in 100 (the
// bucket refilling).
func fakeRateLimited(t *testing.T, h *hosts) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /admin/integrations", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"key_pair":{"client_id":"lk_ci_fake","client_secret":"lk_cs_fake"}}`)
	})
	mux.HandleFunc("DELETE /admin/integrations/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if i := n.Add(1); i <= 20 || i%100 == 0 {
			w.Header().Set("WWW-Authenticate", `Basic realm="latchkey"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":"slow_down"}`)
	})
	srv := httptest.NewServer(h.wrap(mux))
	t.Cleanup(srv.Close) // Close may be called again
	return srv
}

// A flood that the server rate-limits: the 429s are answers, counted in
// the status breakdown and not as errors, and the tool ignores Retry-After
// and keeps going. From -source, the setup included.
func TestBadSecretRateLimited(t *testing.T) {
	needSource(t, "127.0.0.2")
	for _, engine := range []string{defaultEngine, "goroutines"} {
		var h hosts
		srv := fakeRateLimited(t, &h)
		r := load(t, "-url", srv.URL, "-admin-token", "x", "-mode", "badsecret", "-engine", engine, "-source", "127.0.0.2")
		srv.Close() // waits for the requests in flight
		limited, refused := r.Status["429"], r.Status["401"]
		if limited == 0 || refused == 0 || limited+refused != r.Requests || r.Non2xx != r.Requests {
			t.Errorf("%s engine: status %v (non-2xx %d) of %d requests, want only 401s and 429s, both", engine, r.Status, r.Non2xx, r.Requests)
		}
		if r.TransportErrors != 0 || r.Stalled != 0 {
			t.Errorf("%s engine: transport errors %v, stalled %d", engine, r.Errors, r.Stalled)
		}
		// Honouring Retry-After: 3600 would leave each of the 4
		// connections one request in the measured second, at most; the
		// tool makes thousands even under -race on a busy machine.
		if limited < 100 {
			t.Errorf("%s engine: only %d requests answered 429 in 1s: the tool slowed down", engine, limited)
		}
		if !h.only("127.0.0.2") {
			t.Errorf("%s engine: the server saw requests from %s, want all from 127.0.0.2", engine, h.String())
		}
	}
}

// nat runs the nat command, scaled down to about a second, with -json
// and decodes its report.
func nat(t *testing.T, url string, extra ...string) natReport {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args := append([]string{"latchkey-bench", "nat", "-url", url, "-admin-token", testBootstrap, "-json",
		"-clients", "3", "-requests", "3", "-d", "600ms", "-lead", "300ms", "-stale-rate", "40", "-introspect-rate", "10"}, extra...)
	if err := run(context.Background(), args, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("nat: %v\n%s", err, stderr.String())
	}
	var r natReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("nat: output is not a report: %v\n%s", err, stdout.String())
	}
	t.Logf("healthy %d/%d %v, new pair %d/%d %v, introspect %d/%d %v, stale %v (lead %v), mean %.1fms",
		r.Healthy.OK, r.Healthy.Attempts, r.Healthy.Status, r.NewPair.OK, r.NewPair.Attempts, r.NewPair.Status,
		r.Introspect.OK, r.Introspect.Attempts, r.Introspect.Status, r.Stale.Status, r.StaleLead.Status, r.Stale.Latency.Mean)
	return r
}

// sum adds up the answers of the given statuses.
func sum(status map[string]int, keys ...string) int {
	n := 0
	for _, k := range keys {
		n += status[k]
	}
	return n
}

func TestNAT(t *testing.T) {
	// Without a failure limit nobody is refused: every count is exact.
	l := startLatchkey(t)
	r := nat(t, l.url)
	if r.Healthy.Attempts != 9 || r.Healthy.OK != 9 || r.Healthy.Status["200"] != 9 {
		t.Errorf("healthy: %+v, want 9 of 9 tokens", r.Healthy)
	}
	if r.NewPair.Attempts != 3 || r.NewPair.OK != 3 {
		t.Errorf("new pair: %+v, want 3 of 3 tokens", r.NewPair)
	}
	if r.Introspect.Attempts != 6 || r.Introspect.OK != 6 {
		t.Errorf("introspection: %+v, want 6 of 6 active", r.Introspect)
	}
	// The old pair is revoked: all the stale client hears is 401.
	for _, c := range []*natCounts{r.Stale, r.StaleLead} {
		if c.Attempts < 3 || c.Status["401"] != c.Attempts || c.OK != 0 {
			t.Errorf("stale client: %+v, want a few requests, all 401", c)
		}
	}
	if r.Stale.Latency.Mean <= 0 || r.Stale.Latency.Mean > r.Stale.Latency.Max {
		t.Errorf("stale client's latency: %+v", r.Stale.Latency)
	}
	items := l.admin(t, "GET", "/admin/integrations", "", http.StatusOK)["items"].([]any)
	if len(items) != 0 {
		t.Errorf("integrations left behind: %v", items)
	}

	// With one, whatever the server decides, every request is accounted
	// for, as an answer the report names.
	l = startLatchkeyWith(t, server.Options{ClientAuthLimit: server.RateLimit{PerMinute: 60, Burst: 3, MaxDelay: 50 * time.Millisecond}})
	r = nat(t, l.url)
	for name, tc := range map[string]struct {
		c        *natCounts
		attempts int
		statuses []string
	}{
		"healthy":    {r.Healthy, 9, []string{"200", "429"}},
		"new pair":   {r.NewPair, 3, []string{"200", "429"}},
		"introspect": {r.Introspect, 6, []string{"200", "429"}},
		"stale":      {r.Stale, -1, []string{"401", "429"}},
		"stale lead": {r.StaleLead, -1, []string{"401", "429"}},
	} {
		c := tc.c
		if tc.attempts >= 0 && c.Attempts != tc.attempts || c.Attempts == 0 || sum(c.Status, tc.statuses...) != c.Attempts || c.OK > c.Status["200"] {
			t.Errorf("%s: %+v, want %d attempts answered %v", name, c, tc.attempts, tc.statuses)
		}
	}
	if r.StaleLead.Status["401"] == 0 {
		t.Errorf("the stale client never heard 401: %v", r.StaleLead.Status)
	}
}

func TestNoTokenCap(t *testing.T) {
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		bodies = append(bodies, body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"key_pair":{"client_id":"lk_ci_fake","client_secret":"lk_cs_fake"}}`)
	}))
	defer srv.Close()
	for _, capped := range []bool{true, false} {
		bodies = nil
		s := newSetup(srv.URL, "x", srv.URL, nil, io.Discard)
		s.noTokenCap = !capped
		if _, err := s.integration(context.Background(), "bench", nil); err != nil {
			t.Fatal(err)
		}
		rate, has := bodies[0]["token_rate_per_minute"]
		if capped && has || !capped && rate != 0.0 {
			t.Errorf("noTokenCap %v: the integration was created with %v", !capped, bodies[0])
		}
	}
}

func TestWrongSecretIsWellFormed(t *testing.T) {
	for range 100 {
		s := wrongSecret()
		if !credential.ValidChecksummed(s, credential.ClientSecretPrefix) {
			t.Fatalf("%q does not pass latchkey's checksum test", s)
		}
		if b := breakChecksum(s); credential.ValidChecksummed(b, credential.ClientSecretPrefix) || len(b) != len(s) {
			t.Fatalf("%q (from %q) passes latchkey's checksum test", b, s)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	h := newHist()
	// 1µs .. 100ms, uniformly: the q-quantile is q*100ms.
	const n = 100000
	for i := 1; i <= n; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		got, want := float64(h.quantile(q)), q*float64(n*time.Microsecond)
		if math.Abs(got-want)/want > 0.005 {
			t.Errorf("p%v = %v, want %v within 0.5%%", q*100, time.Duration(got), time.Duration(want))
		}
	}
	if h.max != int64(n*time.Microsecond) || h.quantile(1) != n*time.Microsecond {
		t.Errorf("max %v, p100 %v", time.Duration(h.max), h.quantile(1))
	}
	for v := int64(0); v < 1<<20; v += 7 {
		if got := histValue(histIndex(v)); math.Abs(float64(got-v)) > float64(v)/histHalf+1 {
			t.Fatalf("value %d is reported as %d", v, got)
		}
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name, raw string
		status    int
		keep      bool
		err       error // at the end of the stream
		closeEnds bool  // only the end of the stream completes it
	}{
		{name: "content length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, keep: true},
		{name: "chunked", raw: "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: Chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nTrailer: t\r\n\r\n", status: 401, keep: true},
		{name: "connection close", raw: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno", status: 503},
		{name: "until eof", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, closeEnds: true},
		{name: "no content", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, keep: true},
		{name: "interim", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, keep: true},
		{name: "http/1.0", raw: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200},
		{name: "garbage", raw: "SSH-2.0-OpenSSH\r\n\r\n", err: errMalformed},
		{name: "bad length", raw: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: errMalformed},
		{name: "truncated", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", err: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte, as a slow connection delivers it: incomplete
			// until the last byte (or the end of the stream).
			next := "HTTP/1.1 200 OK\r\n"
			b := []byte(tc.raw + next)
			for i := 0; i < len(tc.raw); i++ {
				_, _, n, err := parseResponse(b[:i], false)
				if err != nil && !errors.Is(err, tc.err) || n != 0 {
					t.Fatalf("after %d of %d bytes: n %d, %v; want incomplete", i, len(tc.raw), n, err)
				}
			}
			if tc.err != nil {
				if _, _, _, err := parseResponse([]byte(tc.raw), true); !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			raw, eof := b, false
			if tc.closeEnds {
				raw, eof = []byte(tc.raw), true
			}
			status, keep, n, err := parseResponse(raw, eof)
			if err != nil || status != tc.status || keep != tc.keep || n != len(tc.raw) {
				t.Errorf("got %d, keep %v, %d bytes, %v; want %d, keep %v, %d bytes", status, keep, n, err, tc.status, tc.keep, len(tc.raw))
			}
			if testing.AllocsPerRun(100, func() { parseResponse(raw, eof) }) != 0 {
				t.Errorf("parseResponse allocates")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"load", "-h"}, 0},
		{[]string{"seed", "-h"}, 0},
		{[]string{"load", "-mode", "nope", "-admin-token", "x"}, 2},
		{[]string{"load", "-mode", "token"}, 2}, // no admin token
		{[]string{"load", "-url", "https://example.com", "-mode", "floor"}, 2},
		{[]string{"load", "-mode", "floor", "-source", "127.0.0.300"}, 2},
		{[]string{"seed", "-database", "mysql://x", "-tokens", "1"}, 2},
		{[]string{"slow", "-h"}, 0},
		{[]string{"idle", "-h"}, 0},
		{[]string{"slow", "-rate", "0"}, 2},
		{[]string{"idle", "-c", "0"}, 2},
		{[]string{"slow", "-header", "no colon"}, 2},
		{[]string{"nat", "-h"}, 0},
		{[]string{"nat"}, 2}, // no admin token
		{[]string{"nat", "-admin-token", "x", "-clients", "0"}, 2},
		{[]string{"nat", "-admin-token", "x", "-source", "127.0.0.300"}, 2},
		{[]string{"frobnicate"}, 2},
	}
	for _, tc := range tests {
		err := run(context.Background(), append([]string{"latchkey-bench"}, tc.args...), noEnv, io.Discard, io.Discard)
		if got := exitCode(err); err == nil || got != tc.code {
			t.Errorf("%v: %v, exit code %d; want %d", tc.args, err, got, tc.code)
		}
		if tc.code == 0 && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: %v, want flag.ErrHelp", tc.args, err)
		}
	}
	// The admin token may come from the environment.
	env := func(k string) string { return map[string]string{"LATCHKEY_ADMIN_TOKEN": "x"}[k] }
	err := run(context.Background(), []string{"latchkey-bench", "load", "-mode", "token", "-url", "http://127.0.0.1:1", "-d", "1ms"}, env, io.Discard, io.Discard)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "create integration") {
		t.Errorf("with LATCHKEY_ADMIN_TOKEN set: %v, want a failure to reach the admin API", err)
	}
}
