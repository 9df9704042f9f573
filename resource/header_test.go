package resource_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/resource"
)

// TestAuthorizationHeader: a request without a token is told what to send
// (RFC 6750 §3.1: no error code), a malformed header is 400
// invalid_request, and nothing a client sends makes a 500.
func TestAuthorizationHeader(t *testing.T) {
	iss := newIssuer(t)
	srv := api(t, iss.options())
	cases := []struct {
		name    string
		headers []string
		status  int
		want    string
	}{
		{"none", nil, 401, `Bearer | DPoP algs="ES256 EdDSA RS256 PS256"`},
		{"another scheme", []string{"Basic dXNlcjpwYXNz"}, 401, `Bearer | DPoP algs=`},
		{"two headers", []string{"Bearer a.b.c", "Bearer d.e.f"}, 400, `error="invalid_request"`},
		{"oversize", []string{"Bearer " + strings.Repeat("a", resource.MaxAuthorizationLength)}, 400, `error="invalid_request"`},
		{"scheme only", []string{"Bearer"}, 400, `error="invalid_request"`},
		{"empty token", []string{"Bearer "}, 400, `error="invalid_request"`},
		{"two tokens", []string{"Bearer a.b.c d.e.f"}, 400, `error="invalid_request"`},
		{"not a b64token", []string{`Bearer a"b`}, 400, `error="invalid_request"`},
		{"padding inside", []string{"Bearer a=b"}, 400, `error="invalid_request"`},
		{"junk token", []string{"Bearer abc"}, 401, `error="invalid_token"`},
		{"junk JWT", []string{"Bearer a.b.c"}, 401, `error="invalid_token"`},
		{"scheme in capitals", []string{"BEARER a.b.c"}, 401, `error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/", nil)
			for _, h := range tc.headers {
				req.Header.Add("Authorization", h)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
			if resp.StatusCode != tc.status || !strings.Contains(got, tc.want) {
				t.Errorf("%d %q, want %d with %q", resp.StatusCode, got, tc.status, tc.want)
			}
			if tc.status == 401 && tc.name == "none" && strings.Contains(got, "error=") {
				t.Errorf("no credentials, yet an error code: %q", got)
			}
		})
	}
}

// TestNoServerErrorForJunk sends random Authorization and DPoP headers
// straight to the middleware, so that a panic fails the test rather than
// a connection; each gets a 4xx.
func TestNoServerErrorForJunk(t *testing.T) {
	iss := newIssuer(t)
	v, err := resource.New(iss.options())
	if err != nil {
		t.Fatal(err)
	}
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("junk reached the handler: %q", r.Header.Get("Authorization"))
	}))
	alphabet := "ab.-_~+/= \"\\\x01é,lk_at_DPoPBearer"
	pick := func(n int) string {
		var b strings.Builder
		for range n {
			i, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
			b.WriteByte(alphabet[i.Int64()])
		}
		return b.String()
	}
	for i := range 500 {
		auth := []string{"Bearer ", "DPoP ", "bearer ", ""}[i%4] + pick(i%60)
		req := httptest.NewRequest("GET", "/", nil)
		req.Header["Authorization"] = []string{auth}
		if i%3 == 0 {
			req.Header["Dpop"] = []string{pick(i % 40)}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code >= 500 {
			t.Errorf("Authorization %q: status %d", auth, rec.Code)
		}
	}
}

// TestJWKSRefetch: a key latchkey rotates in is picked up on its first
// unknown kid, but made-up kids cost latchkey at most one fetch per
// JWKSMinRefetch.
func TestJWKSRefetch(t *testing.T) {
	s := newSetup(t, "jwt")
	srv := api(t, s.options())
	if a := call(t, srv, "GET", "/", "Bearer "+s.lk.token(s.client), ""); a.status != http.StatusOK {
		t.Fatalf("%d", a.status)
	}
	// Past the minimum interval, so the first made-up kid may fetch.
	s.lk.clock.Advance(resource.DefaultJWKSMinRefetch)
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss := &issuer{URL: s.lk.URL, key: forger, clock: s.lk.clock}
	before := s.lk.jwksFetches.Load()
	for i := range 50 {
		forged := iss.mintWith(t, forger, fmt.Sprintf("made-up-%d", i), "at+jwt", nil)
		refused(t, "made-up kid", call(t, srv, "GET", "/", "Bearer "+forged, ""), http.StatusUnauthorized, `error="invalid_token"`)
	}
	if n := s.lk.jwksFetches.Load() - before; n != 1 {
		t.Errorf("50 made-up kids cost %d JWKS fetches, want 1", n)
	}

	// A rotation: the new key signs at once.
	status, out := s.lk.do("POST", "/admin/signing-keys/rotate", nil, func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+bootstrapToken)
	})
	if status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("rotate: %d %v", status, out)
	}
	rotated := s.lk.token(s.client)
	s.lk.clock.Advance(resource.DefaultJWKSMinRefetch)
	if a := call(t, srv, "GET", "/", "Bearer "+rotated, ""); a.status != http.StatusOK {
		t.Errorf("token of the rotated-in key: %d %s", a.status, a.challenges())
	}

	// Past the cache TTL the set is fetched again, in the background: the
	// request is served from the cached keys meanwhile.
	before = s.lk.jwksFetches.Load()
	s.lk.clock.Advance(resource.DefaultJWKSCacheTTL)
	if a := call(t, srv, "GET", "/", "Bearer "+rotated, ""); a.status != http.StatusOK {
		t.Errorf("after the TTL: %d %s", a.status, a.challenges())
	}
	for deadline := time.Now().Add(5 * time.Second); s.lk.jwksFetches.Load() == before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if s.lk.jwksFetches.Load() == before {
		t.Error("the key set was not fetched again after its TTL")
	}
}
