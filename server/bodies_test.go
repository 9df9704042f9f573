package server_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
)

// bodyCapTimeout bounds every wait in the body-cap test: a refusal is
// immediate, so anything near it means the request was held instead.
const bodyCapTimeout = 5 * time.Second

// upload starts a request on a connection of its own that declares a body
// of n bytes and sends only the first of them, as a slow client does.
func (e *env) upload(path, contentType, auth string, n int) net.Conn {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.srv.Listener.Addr().String(), bodyCapTimeout)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: latchkey\r\nContent-Type: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n{",
		path, contentType, auth, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// answerOn reads the answer to the request sent on c.
func answerOn(t *testing.T, c net.Conn) (*http.Response, map[string]any) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bodyCapTimeout))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the body is still unsent: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("answer %d is not a JSON object: %q", resp.StatusCode, b)
	}
	return resp, out
}

// waitBodiesInFlight waits until the server reports n large bodies being
// received.
func (e *env) waitBodiesInFlight(n int) {
	e.t.Helper()
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^latchkey_request_bodies_in_flight %d$`, n))
	var got []byte
	for deadline := time.Now().Add(bodyCapTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		_, _, got = e.do(mustRequest(e.t, "GET", e.srv.URL+"/metrics", nil))
		if want.Match(got) {
			return
		}
	}
	e.t.Fatalf("bodies in flight never reached %d:\n%s", n, regexp.MustCompile(`(?m)^latchkey_request_bodies.*$`).FindAll(got, -1))
}

func mustRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestBodiesInFlightCap fills both body slots with uploads that stall (an
// admin JSON body and an OAuth form, each over 4 KiB) and checks that a
// third large body is refused at once with 503 temporarily_unavailable and
// Retry-After before any of it is sent, while a token request, /healthz
// and /readyz still succeed; and that the slots come back when the stalled
// uploads go.
func TestBodiesInFlightCap(t *testing.T) {
	e := newEnv(t, func(o *server.Options) { o.MaxBodiesInFlight = 2 })
	kp := e.createIntegration(map[string]any{"name": "svc"})
	const large = 12 << 10 // over the 4 KiB that needs no slot, under every body limit
	form := "application/x-www-form-urlencoded"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(kp.ID)+":"+url.QueryEscape(kp.Secret)))

	stalled := []net.Conn{
		e.upload("/admin/integrations", "application/json", "Bearer "+testBootstrap, large),
		e.upload("/oauth2/token", form, basic, large),
	}
	e.waitBodiesInFlight(2)

	for _, tt := range []struct{ path, contentType, auth string }{
		{"/oauth2/token", form, basic},
		{"/admin/integrations", "application/json", "Bearer " + testBootstrap},
	} {
		resp, out := answerOn(t, e.upload(tt.path, tt.contentType, tt.auth, large))
		if resp.StatusCode != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s with both slots taken: %d %v, Retry-After %q; want 503 temporarily_unavailable with Retry-After",
				tt.path, resp.StatusCode, out, resp.Header.Get("Retry-After"))
		}
	}

	// An OAuth upload declaring more than its 16 KiB is refused for its
	// size at once, without waiting for a slot it could never use.
	if resp, out := answerOn(t, e.upload("/oauth2/token", form, basic, 1<<20)); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 1 MiB token request with both slots taken: %d %v, want 413", resp.StatusCode, out)
	}

	e.token(kp, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, b := e.do(mustRequest(t, "GET", e.srv.URL+path, nil)); status != http.StatusOK {
			t.Errorf("GET %s with both slots taken: %d %s, want 200", path, status, b)
		}
	}

	for _, c := range stalled {
		c.Close()
	}
	e.waitBodiesInFlight(0)
	c := e.upload("/admin/integrations", "application/json", "Bearer "+testBootstrap, large)
	body := `"name":"big","description":"` + strings.Repeat("x", large-len(`{"name":"big","description":""}`)) + `"}`
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	if resp, out := answerOn(t, c); resp.StatusCode == http.StatusServiceUnavailable {
		t.Errorf("a large body once the slots are free: %d %v, want it admitted", resp.StatusCode, out)
	}
}
