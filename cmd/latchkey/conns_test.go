package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// capTimeout bounds every wait in the connection tests; none of them
// needs more than milliseconds.
const capTimeout = 5 * time.Second

// oneShot makes every request on a connection of its own, as a client
// arriving at a full server does.
var oneShot = &http.Client{Timeout: capTimeout, Transport: &http.Transport{DisableKeepAlives: true}}

// metric reads one series from the /metrics at base; -1 when absent.
func metric(t *testing.T, base, series string) int {
	t.Helper()
	resp, err := oneShot.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %q is not a number", series, m[1])
	}
	return int(n)
}

// waitMetric waits until series at base reads want.
func waitMetric(t *testing.T, base, series string, want int) {
	t.Helper()
	got := -1
	for deadline := time.Now().Add(capTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = metric(t, base, series); got == want {
			return
		}
	}
	t.Fatalf("%s is %d, want %d", series, got, want)
}

// keepAlive opens a connection, has one request answered on it and
// leaves it open and idle, as an HTTP client's connection pool does.
func keepAlive(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), capTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(capTimeout))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: latchkey\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("keep-alive connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("keep-alive connection: %d, close %v; want 200 and the connection kept", resp.StatusCode, resp.Close)
	}
	return c
}

// stalled opens a connection whose token request stops halfway through
// its body, so that the server holds it active, reading.
func stalled(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), capTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, "POST /oauth2/token HTTP/1.1\r\nHost: latchkey\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reports whether the server has closed c.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(capTimeout))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(fmt.Sprint(err), "reset")
}

// TestConnectionCap runs serve with max_connections 3. With the public
// listener full of idle keep-alive connections, a new client is served
// and the longest-idle connection is closed to make room. With it full of
// connections in the middle of a request, a new token request is answered
// 503 with Retry-After, while /healthz and /readyz on new connections
// still answer 200 and the admin listener is untouched.
func TestConnectionCap(t *testing.T) {
	db := "sqlite://" + filepath.Join(t.TempDir(), "latchkey.db")
	const boot = "conns-bootstrap-token-0123456789abcdef"
	base, admin, _ := startServeAdmin(t, environ("LATCHKEY_BOOTSTRAP_TOKEN", boot),
		"--database", db, "--max-connections", "3", "--admin-listen", "localhost:0")
	ig := decodeJSON(t, mustCLI(t, environ("LATCHKEY_ENDPOINT", admin, "LATCHKEY_ADMIN_TOKEN", boot), "integration", "create", "svc"))
	kp := ig["key_pair"].(map[string]any)
	token := func() (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(kp["client_id"].(string)), url.QueryEscape(kp["client_secret"].(string)))
		resp, err := oneShot.Do(req)
		if err != nil {
			t.Fatalf("token request: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	get := func(path string) {
		t.Helper()
		resp, err := oneShot.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, resp.StatusCode)
		}
	}
	const (
		open    = `latchkey_connections_open{listener="public"}`
		idle    = `latchkey_connections_idle{listener="public"}`
		evicted = `latchkey_connections_evicted_total{listener="public"}`
		shed    = `latchkey_connections_shed_total{listener="public"}`
	)
	http.DefaultClient.CloseIdleConnections() // startServe's, on the public listener
	waitMetric(t, admin, open, 0)

	var idleConns []net.Conn
	for i := 1; i <= 3; i++ {
		idleConns = append(idleConns, keepAlive(t, base))
		waitMetric(t, admin, idle, i)
	}
	if resp, body := token(); resp.StatusCode != http.StatusOK {
		t.Fatalf("token request with the listener full of idle connections: %d %s, want 200", resp.StatusCode, body)
	}
	if got := metric(t, admin, evicted); got != 1 {
		t.Errorf("%s = %d, want 1", evicted, got)
	}
	if !closedByServer(idleConns[0]) {
		t.Error("the longest-idle connection was not closed")
	}
	get("/healthz")

	for _, c := range idleConns[1:] {
		c.Close()
	}
	waitMetric(t, admin, open, 0)
	for range 3 {
		stalled(t, base)
	}
	waitMetric(t, admin, open, 3)
	resp, body := token()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `"error":"temporarily_unavailable"`) {
		t.Errorf("token request with the listener full of busy connections: %d %s, Retry-After %q; want 503 temporarily_unavailable with Retry-After",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	get("/healthz")
	get("/readyz")
	if got := metric(t, admin, shed); got != 3 {
		t.Errorf("%s = %d, want 3 (the token request and the two health checks)", shed, got)
	}
	if got := metric(t, admin, open); got != 3 {
		t.Errorf("%s = %d after refusing, want 3", open, got)
	}
}

func TestConnectionCapFromLimit(t *testing.T) {
	tests := []struct {
		name    string
		setting int
		nofile  uint64
		want    int
		wantErr bool
	}{
		{name: "default, generous limit", nofile: 1 << 20, want: 10000},
		{name: "default, 20000", nofile: 20000, want: 10000},
		{name: "default, 4096", nofile: 4096, want: 3072},
		{name: "default, 1024 keeps half", nofile: 1024, want: 512},
		{name: "default, unknown limit", nofile: 0, want: 10000},
		{name: "explicit within the limit", setting: 18976, nofile: 20000, want: 18976},
		{name: "explicit into the reserve", setting: 18977, nofile: 20000, wantErr: true},
		{name: "explicit, unknown limit", setting: 50000, nofile: 0, want: 50000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := connectionCap(tt.setting, tt.nofile)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "max_connections: ") || !strings.Contains(err.Error(), "accepted values: ") {
					t.Errorf("connectionCap(%d, %d) = %d, %v; want an error naming max_connections and the accepted values", tt.setting, tt.nofile, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("connectionCap(%d, %d) = %d, %v; want %d", tt.setting, tt.nofile, got, err, tt.want)
			}
		})
	}
}

// TestConnectionCapTLS runs serve over TLS with max_connections 1: a new
// client is served in the place of an idle HTTP/2 connection (the states
// of a TLS connection reach the cap through its *tls.Conn), and with a
// connection in the middle of its handshake taking the only place, a new
// connection is closed without an answer, which over TLS costs no
// handshake.
func TestConnectionCapTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert := writeCert(t, certFile, keyFile, "latchkey")
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tlsConfig := &tls.Config{RootCAs: pool}

	base, admin, _ := startServeAdmin(t, environ(), "--database", "sqlite://"+filepath.Join(dir, "latchkey.db"),
		"--issuer", "https://127.0.0.1", "--tls-cert", certFile, "--tls-key", keyFile,
		"--max-connections", "1", "--admin-listen", "localhost:0")
	// Each transport gets its own copy: an HTTP/2 transport adds "h2" to
	// the config's protocols.
	oneShotTLS := &http.Client{Timeout: capTimeout, Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), DisableKeepAlives: true}}
	adminMetric := func(series string) int {
		t.Helper()
		resp, err := oneShotTLS.Get(admin + "/metrics")
		if err != nil {
			t.Fatalf("GET %s/metrics for %s: %v", admin, series, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\d+)$`).FindSubmatch(b)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	waitFor := func(series string, want int) {
		t.Helper()
		got := -1
		for deadline := time.Now().Add(capTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got = adminMetric(series); got == want {
				return
			}
		}
		t.Fatalf("%s is %d, want %d", series, got, want)
	}
	const (
		open = `latchkey_connections_open{listener="public"}`
		idle = `latchkey_connections_idle{listener="public"}`
	)
	// startServe's readiness checks, each on a connection of its own.
	waitFor(open, 0)

	pooled := &http.Client{Timeout: capTimeout, Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}}
	resp, err := pooled.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("pooled client spoke %s, want HTTP/2", resp.Proto)
	}
	waitFor(idle, 1)
	resp, err = oneShotTLS.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("a new client with the only place taken by an idle connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a new client with the only place taken by an idle connection: %d", resp.StatusCode)
	}
	waitFor(`latchkey_connections_evicted_total{listener="public"}`, 1)

	waitFor(open, 0)
	silent, err := net.Dial("tcp", strings.TrimPrefix(base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(open, 1)
	resp, err = oneShotTLS.Get(base + "/healthz")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a new client with the only place taken by a handshake: %d, want the connection closed", resp.StatusCode)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("a new client with the only place taken by a handshake: %v, want the connection closed unanswered", err)
	}
	waitFor(`latchkey_connections_shed_total{listener="public"}`, 1)
}
