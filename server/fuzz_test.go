package server_test

// Native Go fuzz targets for the HTTP surface. Each target builds one
// server on a real SQLite file (through the harness's newEnv) before
// f.Fuzz, with the integrations it needs created once through the admin
// API, and then calls the handler in-process for every input.
//
// Credentials are random per run, so inputs never hold them: an input
// chooses among the real value, a mutation of it and a fuzzed string, and
// how to send it.
//
// Run one target for a bounded time, e.g.:
//
//	go test ./server -run '^$' -fuzz '^FuzzTokenRequest$' -fuzztime 60s -fuzzminimizetime 5s -parallel 1
//
// -fuzzminimizetime bounds the minimization of each new interesting input
// (60 s by default), during which the worker runs nothing else; a
// failing input is written to testdata/fuzz/<FuzzName>/ and, once there,
// runs with every `go test`: fix the bug before checking it in.
//
// `go test ./server -run Fuzz` runs only the seeds (f.Add and
// testdata/fuzz/<FuzzName>/).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// fuzzKnownBugSeeds adds seeds that reproduce known, unfixed bugs in
// non-test code (see the report that came with these targets). With it
// on, `go test ./server -run Fuzz` fails until the bugs are fixed; turn
// it on when fixing them, then delete it and keep the seeds.
const fuzzKnownBugSeeds = true

// fuzzErrors is a slog handler that keeps only error records: the server
// logs at error level exactly when it answers 5xx or recovers a panic, so
// a fuzz iteration fails if the count moves. Discarding everything else
// keeps iterations fast and memory flat.
type fuzzErrors struct {
	mu   sync.Mutex
	n    int
	last string
}

func (h *fuzzErrors) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *fuzzErrors) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&sb, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	h.n++
	h.last = sb.String()
	h.mu.Unlock()
	return nil
}

func (h *fuzzErrors) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *fuzzErrors) WithGroup(string) slog.Handler      { return h }

func (h *fuzzErrors) count() (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, h.last
}

// fuzzServer is one server for one fuzz target, called in-process.
type fuzzServer struct {
	e    *env
	h    http.Handler
	errs *fuzzErrors
	api  *apiSpec // nil while fuzzing
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	errs := &fuzzErrors{}
	e := newEnv(f, func(o *server.Options) {
		o.Logger = slog.New(errs)
		// Failed authentications are most inputs: with limits on, the
		// answers would turn into 429s and say nothing about the input.
		o.ClientAuthLimit = server.RateLimit{}
		o.AdminAuthLimit = server.RateLimit{}
	})
	e.failOnServerErrors() // the store's own log
	fs := &fuzzServer{e: e, h: e.server.Handler(), errs: errs}
	if !fuzzing() {
		fs.api = mustAPISpec(f)
	}
	return fs
}

// fuzzing reports whether go test was given -fuzz. Answers are then not
// checked against the OpenAPI document: kin-openapi compiles a schema on
// every check, about a millisecond, which under the fuzzer's coverage
// instrumentation is most of an iteration's time. The seeds, run as
// ordinary tests, are checked.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}

// fuzzResponse is one in-process answer.
type fuzzResponse struct {
	status int
	header http.Header
	body   []byte
}

// serve runs one request through the whole handler chain. It fails t on
// a recovered panic, anything logged at error level, or, but while
// fuzzing, an answer that the OpenAPI document does not describe
// (apiSpec.check; the request is not checked: fuzz inputs are malformed
// on purpose).
func (fs *fuzzServer) serve(t testing.TB, req *http.Request) fuzzResponse {
	t.Helper()
	req.RemoteAddr = "192.0.2.1:1234"
	before, _ := fs.errs.count()
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, req)
	if after, last := fs.errs.count(); after != before {
		t.Fatalf("%s %s: server logged an error (status %d): %s", req.Method, req.URL.Path, rec.Code, last)
	}
	if fs.api != nil {
		if err := fs.api.check(req, nil, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
			t.Errorf("openapi: %s %s → %d: %v", req.Method, req.URL.Path, rec.Code, err)
		}
	}
	return fuzzResponse{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// newFuzzRequest builds a request for the in-process handler; the URL is
// always well formed, since path is built by the targets.
func newFuzzRequest(t testing.TB, method, path, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("build request %s %s: %v", method, path, err)
	}
	return req
}

// adminDo calls the admin API in-process as the bootstrap admin.
func (fs *fuzzServer) adminDo(t testing.TB, method, path, body string) fuzzResponse {
	t.Helper()
	req := newFuzzRequest(t, method, path, body)
	req.Header.Set("Authorization", "Bearer "+testBootstrap)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return fs.serve(t, req)
}

// oauthPost posts a form to an OAuth endpoint with Basic credentials.
func (fs *fuzzServer) oauthPost(t testing.TB, path string, kp keyPair, form url.Values) fuzzResponse {
	t.Helper()
	req := newFuzzRequest(t, "POST", path, form.Encode())
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
	return fs.serve(t, req)
}

// fuzzSkipLong skips inputs whose strings together exceed max bytes. Big
// inputs add little here (overlong values are built by repetition
// instead), and the fuzzer's minimization of an interesting input tries
// on the order of n² candidates, each a full request: for n near 1 KiB
// that is the whole -fuzzminimizetime (60 s by default), during which
// nothing else runs.
func fuzzSkipLong(t *testing.T, max int, ss ...string) {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	if n > max {
		t.Skip("input too long")
	}
}

// --- shared invariants -----------------------------------------------------

// fuzzTooLarge reports whether body is over the size limit, in which case
// the endpoint must have refused it with 413 and an OAuth error object.
func fuzzTooLarge(t testing.TB, endpoint, body string, r fuzzResponse) bool {
	t.Helper()
	if len(body) <= server.MaxOAuthBodyBytes {
		return false
	}
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d-byte body: status %d, want 413", len(body), r.status)
	}
	checkFuzzOAuthError(t, endpoint, r)
	return true
}

// fuzzJSONObject is r's body, which must be a JSON object served as
// application/json.
func fuzzJSONObject(t testing.TB, what string, r fuzzResponse) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: status %d with Content-Type %q, want application/json; body %q", what, r.status, ct, r.body)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("%s: status %d, body is not a JSON object: %q", what, r.status, r.body)
	}
	return body
}

// checkFuzzOAuthError checks an RFC 6749 §5.2 error: a JSON object whose
// "error" is a non-empty string, whose other fields are strings among
// error_description and error_uri, and that carries no token.
func checkFuzzOAuthError(t testing.TB, what string, r fuzzResponse) map[string]any {
	t.Helper()
	body := fuzzJSONObject(t, what, r)
	if s, ok := body["error"].(string); !ok || s == "" {
		t.Fatalf("%s: status %d, error = %#v, want a non-empty string; body %s", what, r.status, body["error"], r.body)
	}
	for k, v := range body {
		switch k {
		case "error", "error_description", "error_uri":
			if _, ok := v.(string); !ok {
				t.Fatalf("%s: %s = %#v, want a string; body %s", what, k, v, r.body)
			}
		default:
			t.Fatalf("%s: unexpected field %q in error response %s", what, k, r.body)
		}
	}
	return body
}

// checkFuzzTokenOK checks a 200 token response and returns the token and
// its granted scopes.
func checkFuzzTokenOK(t testing.TB, r fuzzResponse, allowedScopes []string) (string, []string) {
	t.Helper()
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("token 200: Cache-Control = %q, want no-store", cc)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("token 200: Content-Type = %q, want application/json", ct)
	}
	var body struct {
		AccessToken *string      `json:"access_token"`
		TokenType   *string      `json:"token_type"`
		ExpiresIn   *json.Number `json:"expires_in"`
		Scope       *string      `json:"scope"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("token 200: body is not a token response: %v: %q", err, r.body)
	}
	if body.AccessToken == nil || !strings.HasPrefix(*body.AccessToken, credential.AccessTokenPrefix) ||
		len(*body.AccessToken) <= len(credential.AccessTokenPrefix) {
		t.Fatalf("token 200: access_token is not an opaque lk_at_ token: %s", r.body)
	}
	if body.TokenType == nil || *body.TokenType != "bearer" {
		t.Fatalf("token 200: token_type is not \"bearer\": %s", r.body)
	}
	if body.ExpiresIn == nil {
		t.Fatalf("token 200: no expires_in: %s", r.body)
	}
	// The integrations here have no lifetime of their own and the clock
	// stands still: expires_in is exactly the server default.
	if n, err := body.ExpiresIn.Int64(); err != nil || n <= 0 || n != defaultLifetimeSeconds {
		t.Fatalf("token 200: expires_in = %s, want %d", *body.ExpiresIn, defaultLifetimeSeconds)
	}
	var granted []string
	if body.Scope != nil && *body.Scope != "" {
		granted = strings.Split(*body.Scope, " ")
	}
	for _, sc := range granted {
		if !slices.Contains(allowedScopes, sc) {
			t.Fatalf("token 200: granted scope %q the integration does not have (%v): %s", sc, allowedScopes, r.body)
		}
	}
	return *body.AccessToken, granted
}

// fuzzBasic parses an Authorization header as RFC 7617 Basic credentials,
// independently of net/http: the scheme is case-insensitive, the rest is
// standard base64, the user ID ends at the first colon.
func fuzzBasic(h string) (user, pass string, ok bool) {
	const prefix = "basic "
	if len(h) < len(prefix) {
		return "", "", false
	}
	for i := 0; i < len(prefix); i++ {
		if c := h[i]; c != prefix[i] && c+'a'-'A' != prefix[i] { // ASCII case folding only
			return "", "", false
		}
	}
	raw, err := base64.StdEncoding.DecodeString(h[len(prefix):])
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// fuzzEffectiveCredentials is the client ID and secret a request
// presents, after the RFC 6749 §2.3.1 form-urlencoding of Basic
// credentials; ok is false when they cannot be decoded.
func fuzzEffectiveCredentials(authz string, form url.Values) (id, secret string, ok bool) {
	if u, p, basic := fuzzBasic(authz); basic {
		id, err1 := url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		return id, secret, err1 == nil && err2 == nil
	}
	return form.Get("client_id"), form.Get("client_secret"), true
}

// fuzzMutate replaces the byte at pos (mod len) with c. The result may
// equal s when c is already there; callers compare, never assume.
func fuzzMutate(s string, pos uint16, c byte) string {
	if s == "" {
		return string(c)
	}
	i := int(pos) % len(s)
	return s[:i] + string(c) + s[i+1:]
}

// fuzzPercentEncode form-urlencodes s: every byte outside the unreserved
// set is percent-encoded (space as '+'), and so is every byte whose bit
// in mask is set, in upper- or lowercase hex as the mask's other half
// says. Decoding gives s back whatever the mask.
func fuzzPercentEncode(s string, mask uint64) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		force := mask>>(i%32)&1 == 1
		unreserved := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~'
		switch {
		case unreserved && !force:
			b.WriteByte(c)
		case c == ' ' && !force:
			b.WriteByte('+')
		case mask>>(32+i%32)&1 == 1:
			fmt.Fprintf(&b, "%%%02x", c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// fuzzFormBody encodes key/value pairs in order, so that an input decides
// the order, and appends suffix as is.
func fuzzFormBody(pairs [][2]string, suffix string) string {
	var parts []string
	for _, p := range pairs {
		parts = append(parts, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
	}
	body := strings.Join(parts, "&")
	if suffix != "" {
		if body != "" {
			body += "&"
		}
		body += suffix
	}
	return body
}

// fuzzParseForm parses a body as the OAuth endpoints do; repeated is true
// when some parameter appears more than once.
func fuzzParseForm(body string) (form url.Values, repeated bool, err error) {
	form, err = url.ParseQuery(body)
	for _, v := range form {
		if len(v) > 1 {
			repeated = true
		}
	}
	return form, repeated, err
}

// --- FuzzTokenRequest ------------------------------------------------------

// tokenFuzzScopes are the scopes of the integration FuzzTokenRequest uses.
var tokenFuzzScopes = []string{"read", "write", "a:b"}

const (
	credReal = iota
	credMutated
	credFuzz
	credEmpty
)

// fuzzPick returns the real value, a mutation of it, the fuzzed string or
// "", as choice says.
func fuzzPick(choice uint32, actual, fuzzed string, pos uint16, c byte) string {
	switch choice % 4 {
	case credReal:
		return actual
	case credMutated:
		return fuzzMutate(actual, pos, c)
	case credFuzz:
		return fuzzed
	}
	return ""
}

// FuzzTokenRequest posts fuzzed requests to /oauth2/token. An input picks
// the client ID and secret (real, mutated, fuzzed or empty), how to send
// them (Basic, form, both, neither, a raw Authorization header), the
// Content-Type, grant_type, scope and audience, and a raw body suffix.
//
// Invariants: the handler never panics nor logs an error; the status is
// 200, 400, 401, 413 or 429; every other answer is an RFC 6749 §5.2 JSON
// error; a 401 to a request with Basic credentials carries a Basic
// challenge; a 200 is an opaque lk_at_ bearer token with the default
// expires_in, Cache-Control: no-store and only the integration's scopes,
// and is given only for exactly the real credentials and grant_type
// client_credentials; and a clean request with the real credentials gets
// its 200.
func FuzzTokenRequest(f *testing.F) {
	fs := newFuzzServer(f)
	kp := fs.e.createIntegration(map[string]any{
		"name": "fuzz-job", "scopes": tokenFuzzScopes, "audience": []string{"https://api.example.com"},
	})

	// sel bits: 0-1 client ID choice, 2-3 secret choice, 4-6 how to send
	// them, 7 grant_type present, 8 scope present, 9 audience present,
	// 10-12 Content-Type choice, 16-23 mutation position, 24-31 mutation
	// byte.
	const (
		sendBasic = iota
		sendForm
		sendBoth
		sendNone
		sendRawHeader
		sendBasicUnencoded
		sendBasicNoForm
		sendFormIDOnly
	)
	seeds := []struct {
		sel                                                     uint32
		contentType, authz, id, secret, grant, scope, aud, tail string
	}{
		// Real credentials, every way of sending them.
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{1<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{2<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{3<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{5<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 1<<8, "", "", "", "", "client_credentials", "read write", "", ""},
		{0<<4 | 1<<7 | 1<<8, "", "", "", "", "client_credentials", "admin", "", ""},
		{0<<4 | 1<<7 | 1<<8, "", "", "", "", "client_credentials", "read  read", "", ""},
		{1<<4 | 1<<7 | 1<<9, "", "", "", "", "client_credentials", "", "https://api.example.com", ""},
		{1<<4 | 1<<7 | 1<<9, "", "", "", "", "client_credentials", "", "https://evil.example.com", ""},
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", "scope=read"},
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", "grant_type=client_credentials"},
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", "scope=%zz"},
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", "a=1;b=2"},
		{0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", "client_secret="},
		// Wrong grants.
		{0<<4 | 1<<7, "", "", "", "", "password", "", "", "username=u&password=p"},
		{0<<4 | 1<<7, "", "", "", "", "", "", "", ""},
		{0 << 4, "", "", "", "", "", "", "", ""},
		{0<<4 | 1<<7, "", "", "", "", "refresh_token", "", "", "refresh_token=x"},
		// Wrong credentials.
		{credMutated | 0<<4 | 1<<7 | 10<<16 | 'x'<<24, "", "", "", "", "client_credentials", "", "", ""},
		{credMutated<<2 | 1<<4 | 1<<7 | 54<<16 | 'A'<<24, "", "", "", "", "client_credentials", "", "", ""},
		{credFuzz | credFuzz<<2 | 0<<4 | 1<<7, "", "", "lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa", "lk_cs_", "client_credentials", "", "", ""},
		{credFuzz | credFuzz<<2 | 0<<4 | 1<<7, "", "", "a:b", "c:d%zz", "client_credentials", "", "", ""},
		{credEmpty | credEmpty<<2 | 0<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{credEmpty<<2 | 1<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		{7<<4 | 1<<7, "", "", "", "", "client_credentials", "", "", ""},
		// Raw Authorization headers.
		{4<<4 | 1<<7, "", "Basic", "", "", "client_credentials", "", "", ""},
		{4<<4 | 1<<7, "", "Basic !!!", "", "", "client_credentials", "", "", ""},
		{4<<4 | 1<<7, "", "Bearer lk_at_x", "", "", "client_credentials", "", "", ""},
		{4<<4 | 1<<7, "", "basic Og==", "", "", "client_credentials", "", "", ""},
		{4<<4 | 1<<7, "", "Basic " + base64.StdEncoding.EncodeToString([]byte("only-user")), "", "", "client_credentials", "", "", ""},
		// Content types.
		{0<<4 | 1<<7 | 1<<10, "", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 2<<10, "application/json", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 2<<10, "multipart/form-data; boundary=x", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 2<<10, "application/x-www-form-urlencoded; charset=\"", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 3<<10, "", "", "", "", "client_credentials", "", "", ""},
		{0<<4 | 1<<7 | 4<<10, "", "", "", "", "client_credentials", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.sel, s.contentType, s.authz, s.id, s.secret, s.grant, s.scope, s.aud, s.tail)
	}

	f.Fuzz(func(t *testing.T, sel uint32, contentType, authz, idIn, secretIn, grant, scope, aud, tail string) {
		fuzzSkipLong(t, 512, contentType, authz, idIn, secretIn, grant, scope, aud, tail)
		pos, c := uint16(sel>>16&0xff), byte(sel>>24)
		id := fuzzPick(sel, kp.ID, idIn, pos, c)
		secret := fuzzPick(sel>>2, kp.Secret, secretIn, pos, c)
		how := sel >> 4 & 7

		var pairs [][2]string
		if sel>>7&1 == 1 {
			pairs = append(pairs, [2]string{"grant_type", grant})
		}
		if sel>>8&1 == 1 {
			pairs = append(pairs, [2]string{"scope", scope})
		}
		if sel>>9&1 == 1 {
			pairs = append(pairs, [2]string{"audience", aud})
		}
		switch how {
		case sendForm, sendBoth:
			pairs = append(pairs, [2]string{"client_id", id}, [2]string{"client_secret", secret})
		case sendFormIDOnly:
			pairs = append(pairs, [2]string{"client_id", id})
		}
		body := fuzzFormBody(pairs, tail)

		req := newFuzzRequest(t, "POST", "/oauth2/token", body)
		switch how {
		case sendBasic, sendBoth, sendBasicNoForm:
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		case sendBasicUnencoded:
			req.SetBasicAuth(id, secret)
		case sendRawHeader:
			req.Header.Set("Authorization", authz)
		}
		const form = "application/x-www-form-urlencoded"
		switch sel >> 10 & 7 {
		case 0, 5, 6, 7:
			req.Header.Set("Content-Type", form)
		case 1:
			req.Header.Set("Content-Type", form+"; charset=utf-8")
		case 2:
			req.Header.Set("Content-Type", contentType)
		case 3: // none
		case 4:
			req.Header.Set("Content-Type", "Application/X-WWW-Form-URLEncoded")
		}
		sentAuthz := req.Header.Get("Authorization")
		sentCT := req.Header.Get("Content-Type")

		r := fs.serve(t, req)
		switch r.status {
		case http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized,
			http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d, want 200, 400, 401, 413 or 429; body %q", r.status, r.body)
		}

		parsed, repeated, perr := fuzzParseForm(body)
		if r.status != http.StatusOK {
			checkFuzzOAuthError(t, "token", r)
			if r.status == http.StatusUnauthorized {
				if _, _, basic := fuzzBasic(sentAuthz); basic && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
					t.Fatalf("401 to Basic credentials without a Basic challenge: WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
				}
			}
		} else {
			checkFuzzTokenOK(t, r, tokenFuzzScopes)
			if perr != nil || repeated {
				t.Fatalf("token issued for a body that is not a valid form (%v, repeated %v): %q", perr, repeated, body)
			}
			if g := parsed.Get("grant_type"); g != "client_credentials" {
				t.Fatalf("token issued for grant_type %q", g)
			}
			gotID, gotSecret, ok := fuzzEffectiveCredentials(sentAuthz, parsed)
			if !ok || gotID != kp.ID || gotSecret != kp.Secret {
				t.Fatalf("token issued for credentials that are not the real pair: Authorization %q, body %q", sentAuthz, body)
			}
		}

		// A clean request with the real pair must succeed.
		clean := id == kp.ID && secret == kp.Secret && (how == sendBasic || how == sendForm || how == sendBasicUnencoded) &&
			sel>>7&1 == 1 && grant == "client_credentials" && sel>>8&3 == 0 && tail == "" &&
			(sentCT == form || sentCT == form+"; charset=utf-8")
		if clean && r.status != http.StatusOK {
			t.Fatalf("clean request with the real credentials: status %d, want 200; body %s", r.status, r.body)
		}
	})
}

// --- FuzzClientAuthentication ----------------------------------------------

// FuzzClientAuthentication fuzzes how a client presents its credentials to
// /oauth2/token: Basic built from parts (form-urlencoded with a fuzzed mix
// of percent-escapes, or not encoded at all), raw Authorization header
// bytes, client_secret_post built from parts, or a raw form body. The ID
// and secret are each the real value, a mutation, a fuzzed string, or the
// real value with a fuzzed suffix.
//
// Invariant: a token is issued exactly when the presented credentials,
// after the RFC 6749 §2.3.1 decoding of Basic credentials, are the real
// pair (and, for raw bodies, nothing else is in the way); every other
// answer is 400 or 401 with an RFC 6749 §5.2 body; never 5xx or a panic.
func FuzzClientAuthentication(f *testing.F) {
	fs := newFuzzServer(f)
	kp := fs.e.createIntegration(map[string]any{"name": "fuzz-client", "scopes": []string{"read"}})

	const (
		modeBasic = iota
		modeRawHeader
		modePost
		modeRawBody
	)
	// sel: bits 0-1 mode, 2-3 ID choice, 4-5 secret choice, 6 Basic
	// without form-encoding, 8-15 mutation position, 16-23 mutation byte,
	// 24-26 repeat the fuzzed ID and secret 2^n times (overlong values, at
	// most 4 KiB each).
	// mask chooses the extra percent-escapes.
	for _, s := range []struct {
		sel            uint32
		mask           uint64
		id, secret, in string
	}{
		{modeBasic, 0, "", "", ""},
		{modeBasic, 0xffffffff, "", "", ""},
		{modeBasic, 0xffffffffffffffff, "", "", ""},
		{modeBasic, 0x5555555500000005, "", "", ""},
		{modeBasic | 1<<6, 0, "", "", ""},
		{modePost, 0, "", "", ""},
		{modePost, 0xf0f0f0f0, "", "", ""},
		{modeBasic | 1<<2 | 5<<8 | 'Z'<<16, 0, "", "", ""},
		{modeBasic | 1<<4 | 60<<8 | '0'<<16, 0, "", "", ""},
		{modeBasic | 3<<2, 0, ":", "", ""},
		{modeBasic | 3<<4, 0, "", " ", ""},
		{modeBasic | 3<<4, 0, "", "%00", ""},
		{modeBasic | 2<<2 | 2<<4 | 1<<6, 0, "a:b", "c", ""},
		{modeBasic | 2<<2 | 2<<4 | 1<<6, 0, "%zz", "x", ""},
		{modeBasic | 2<<2 | 2<<4, 0, "lk_ci_ÿ😀", "lk_cs_\u00e9", ""},
		{modeBasic | 2<<2 | 2<<4 | 6<<24, 0, "lk_ci_", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""},
		{modePost | 3<<2 | 3<<4 | 7<<24, 0, "a", "%41", ""},
		{modePost | 3<<2, 0, "\x00", "", ""},
		{modePost | 2<<2 | 2<<4, 0, "", "", ""},
		{modeRawHeader, 0, "", "", "Basic"},
		{modeRawHeader, 0, "", "", "Basic "},
		{modeRawHeader, 0, "", "", "BASIC Og=="},
		{modeRawHeader, 0, "", "", "Basic Og"},
		{modeRawHeader, 0, "", "", "Basic =="},
		{modeRawHeader, 0, "", "", "Basic\tOg=="},
		{modeRawHeader, 0, "", "", "Digest username=\"x\""},
		{modeRawHeader, 0, "", "", "Basic " + base64.StdEncoding.EncodeToString([]byte("%41:%42"))},
		{modeRawHeader, 0, "", "", "Basic " + base64.StdEncoding.EncodeToString([]byte("lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa:lk_cs_"+strings.Repeat("a", 49)))},
		{modeRawBody, 0, "", "", "client_id=lk_ci_aaaaaaaaaaaaaaaaaaaaaaaaaa&client_secret=x"},
		{modeRawBody, 0, "", "", "client_id=&client_secret="},
		{modeRawBody, 0, "", "", "client_id=a&client_id=b"},
		{modeRawBody, 0, "", "", "client_id=%ZZ"},
		{modeRawBody, 0, "", "", "client_secret=only"},
	} {
		f.Add(s.sel, s.mask, s.id, s.secret, s.in)
	}

	const form = "application/x-www-form-urlencoded"
	f.Fuzz(func(t *testing.T, sel uint32, mask uint64, idIn, secretIn, raw string) {
		fuzzSkipLong(t, 512, idIn, secretIn, raw)
		pos, c := uint16(sel>>8&0xff), byte(sel>>16)
		// Overlong, but cheap: every request of a minimization pays for it.
		rep := 1 << (sel >> 24 & 7)
		idIn, secretIn = strings.Repeat(idIn, rep), strings.Repeat(secretIn, rep)
		idIn, secretIn = idIn[:min(len(idIn), 4<<10)], secretIn[:min(len(secretIn), 4<<10)]
		pick := func(choice uint32, actual, fuzzed string) string {
			switch choice & 3 {
			case 0:
				return actual
			case 1:
				return fuzzMutate(actual, pos, c)
			case 2:
				return fuzzed
			}
			return actual + fuzzed
		}
		id := pick(sel>>2, kp.ID, idIn)
		secret := pick(sel>>4, kp.Secret, secretIn)

		body := "grant_type=client_credentials"
		var authz string
		switch sel & 3 {
		case modeBasic:
			if sel>>6&1 == 1 {
				authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
			} else {
				authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(fuzzPercentEncode(id, mask)+":"+fuzzPercentEncode(secret, mask>>1|mask<<63)))
			}
		case modeRawHeader:
			authz = raw
		case modePost:
			body += "&client_id=" + fuzzPercentEncode(id, mask) + "&client_secret=" + fuzzPercentEncode(secret, mask>>1|mask<<63)
		case modeRawBody:
			body += "&" + raw
		}
		req := newFuzzRequest(t, "POST", "/oauth2/token", body)
		req.Header.Set("Content-Type", form)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		r := fs.serve(t, req)
		if fuzzTooLarge(t, "token", body, r) {
			return
		}

		// What the request presents, decoded independently of the server.
		parsed, repeated, perr := fuzzParseForm(body)
		gotID, gotSecret, decoded := fuzzEffectiveCredentials(authz, parsed)
		_, _, basic := fuzzBasic(authz)
		onlyCredentials := true
		for k := range parsed {
			if k != "grant_type" && k != "client_id" && k != "client_secret" {
				onlyCredentials = false
			}
			if basic && (k == "client_id" || k == "client_secret") {
				onlyCredentials = false // two methods at once
			}
		}
		isRealPair := decoded && gotID == kp.ID && gotSecret == kp.Secret
		wantOK := isRealPair && perr == nil && !repeated && onlyCredentials

		switch {
		case r.status == http.StatusOK:
			checkFuzzTokenOK(t, r, []string{"read"})
			if !isRealPair {
				t.Fatalf("token issued for credentials that are not the real pair: Authorization %q, body %q (decoded ID %q, secret %q)",
					authz, body, gotID, gotSecret)
			}
			if perr != nil || repeated {
				t.Fatalf("token issued for an invalid form (%v, repeated %v): %q", perr, repeated, body)
			}
		case r.status == http.StatusBadRequest || r.status == http.StatusUnauthorized:
			checkFuzzOAuthError(t, "token", r)
			if r.status == http.StatusUnauthorized && basic && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("401 to Basic credentials without a Basic challenge")
			}
		default:
			t.Fatalf("status %d, want 200, 400 or 401; body %q", r.status, r.body)
		}
		if wantOK && r.status != http.StatusOK {
			t.Fatalf("the real credentials were refused: status %d, body %s; Authorization %q, request body %q",
				r.status, r.body, authz, body)
		}
	})
}

// --- FuzzIntrospect --------------------------------------------------------

// fuzzJWTLike builds a three-segment JWT-looking string from fuzzed
// parts: a header with the given alg and kid, a payload, a signature.
func fuzzJWTLike(alg, kid, payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "at+jwt", "kid": kid})
	p, _ := json.Marshal(map[string]any{"sub": payload, "client_id": payload, "exp": 1 << 40, "iss": oauthIssuer})
	return enc(h) + "." + enc(p) + "." + enc([]byte(payload))
}

// fuzzRespellKey returns tok with the last character of its key part
// changed only in the bits base64url leaves unused (43 characters carry
// 32 bytes and two spare bits): a different string for the same key
// bytes. Tokens of another shape come back unchanged.
func fuzzRespellKey(tok string, k byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	body, ok := strings.CutPrefix(tok, credential.AccessTokenPrefix)
	key, _, ok2 := strings.Cut(body, ".")
	if !ok || !ok2 || len(key)%4 != 3 {
		return tok
	}
	i := len(credential.AccessTokenPrefix) + len(key) - 1
	v := strings.IndexByte(alphabet, tok[i])
	if v < 0 {
		return tok
	}
	w := v ^ int(k&3)
	if w == v {
		w = v ^ 1
	}
	return tok[:i] + string(alphabet[w]) + tok[i+1:]
}

// FuzzIntrospect posts fuzzed tokens to /oauth2/introspect as a real
// can_introspect integration. The token is the real active one, a
// mutation, a truncation or extension of it, a JWT-looking string, or
// fuzzed bytes; extra form fields are appended raw.
//
// Invariants: never 5xx or a panic; with a well-formed form, a non-empty
// token and no credentials in the extra fields the answer is 200; a 200
// is exactly {"active": false} unless the token is exactly the real one,
// which is active with its integration's client_id and sub; anything else
// is 400/401 with an RFC 6749 §5.2 body.
func FuzzIntrospect(f *testing.F) {
	fs := newFuzzServer(f)
	subject := fs.e.createIntegration(map[string]any{"name": "fuzz-subject", "scopes": []string{"read", "write"}})
	rs := fs.e.createIntegration(map[string]any{"name": "fuzz-rs", "can_introspect": true})
	tr := fs.oauthPost(f, "/oauth2/token", subject, url.Values{"grant_type": {"client_credentials"}})
	if tr.status != http.StatusOK {
		f.Fatalf("token: status %d: %s", tr.status, tr.body)
	}
	active, _ := checkFuzzTokenOK(f, tr, []string{"read", "write"})

	// sel: bits 0-2 token choice, 3 caller authenticates in the body,
	// 4 respell the key's last character, 8-15 position, 16-23 byte,
	// 24-26 repeat the fuzzed token string 2^n times (at most 4 KiB).
	const (
		tokReal = iota
		tokMutated
		tokJWT
		tokFuzz
		tokTruncated
		tokExtended
		tokUnprefixed
		tokPrefixOnly
	)
	for _, s := range []struct {
		sel        uint32
		tok, extra string
	}{
		{tokReal, "", ""},
		{tokReal | 1<<3, "", ""},
		{tokReal | 1<<4, "", ""},
		{tokReal | 1<<4 | 2<<16, "", ""},
		{tokReal, "", "token_type_hint=access_token"},
		{tokReal, "", "token_type_hint=refresh_token"},
		{tokReal, "", "token=x"},
		{tokReal, "", "client_id=x"},
		{tokReal, "", "%zz"},
		{tokMutated | 0<<8 | 'L'<<16, "", ""},
		{tokMutated | 10<<8 | 'A'<<16, "", ""},
		{tokMutated | 48<<8 | 'A'<<16, "", ""},
		{tokMutated | 49<<8 | '!'<<16, "", ""},
		{tokMutated | 80<<8 | '_'<<16, "", ""},
		{tokJWT, "ES256", ""},
		{tokJWT, "none", ""},
		{tokJWT, "", ""},
		{tokJWT | 7<<24, strings.Repeat("\xff", 128), ""},
		{tokFuzz, "lk_at_", ""},
		{tokFuzz, "lk_at_.", ""},
		{tokFuzz, "lk_at_a.b", ""},
		{tokFuzz, "a.b.c", ""},
		{tokFuzz, "..", ""},
		{tokFuzz, "\x00\xff", ""},
		{tokFuzz, "", ""},
		{tokFuzz | 7<<24, "lk_at_AAAAAAAA.", ""},
		{tokExtended | 7<<24, "A", ""},
		{tokTruncated | 49<<8, "", ""},
		{tokTruncated | 6<<8, "", ""},
		{tokExtended, "=", ""},
		{tokExtended, ".x", ""},
		{tokUnprefixed, "", ""},
		{tokPrefixOnly, "LK_AT_", ""},
	} {
		f.Add(s.sel, s.tok, s.extra)
	}

	f.Fuzz(func(t *testing.T, sel uint32, tokIn, extra string) {
		fuzzSkipLong(t, 256, tokIn, extra)
		pos, c := uint16(sel>>8&0xff), byte(sel>>16)
		// Overlong, but cheap: every request of a minimization pays for it.
		tokIn = strings.Repeat(tokIn, 1<<(sel>>24&7))
		tokIn = tokIn[:min(len(tokIn), 4<<10)]
		var tok string
		switch sel & 7 {
		case tokReal:
			tok = active
		case tokMutated:
			tok = fuzzMutate(active, pos, c)
		case tokJWT:
			tok = fuzzJWTLike(tokIn, tokIn, tokIn)
		case tokFuzz:
			tok = tokIn
		case tokTruncated:
			tok = active[:int(pos)%len(active)]
		case tokExtended:
			tok = active + tokIn
		case tokUnprefixed:
			tok = strings.TrimPrefix(active, credential.AccessTokenPrefix)
		case tokPrefixOnly:
			tok = tokIn + strings.TrimPrefix(active, credential.AccessTokenPrefix)
		}
		if sel>>4&1 == 1 {
			tok = fuzzRespellKey(tok, c)
		}
		pairs := [][2]string{{"token", tok}}
		post := sel>>3&1 == 1
		if post {
			pairs = append(pairs, [2]string{"client_id", rs.ID}, [2]string{"client_secret", rs.Secret})
		}
		body := fuzzFormBody(pairs, extra)
		req := newFuzzRequest(t, "POST", "/oauth2/introspect", body)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if !post {
			req.SetBasicAuth(url.QueryEscape(rs.ID), url.QueryEscape(rs.Secret))
		}
		r := fs.serve(t, req)
		if fuzzTooLarge(t, "introspect", body, r) {
			return
		}

		parsed, repeated, perr := fuzzParseForm(body)
		clean := perr == nil && !repeated && parsed.Get("token") != ""
		for k := range parsed {
			if !post && (k == "client_id" || k == "client_secret") {
				clean = false
			}
		}
		switch r.status {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusUnauthorized:
			checkFuzzOAuthError(t, "introspect", r)
			if clean {
				t.Fatalf("well-formed introspection refused: status %d, body %s; request %q", r.status, r.body, body)
			}
			return
		default:
			t.Fatalf("status %d, want 200 (or 400/401 for a bad form); body %q", r.status, r.body)
		}
		if perr != nil || repeated {
			t.Fatalf("200 for an invalid form (%v, repeated %v): %q", perr, repeated, body)
		}
		var out map[string]any
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatalf("introspection is not a JSON object: %q", r.body)
		}
		sent := parsed.Get("token")
		// Exactly the issued string: a respelling of its key in the bits
		// base64url leaves unused (sel bit 4) is another token.
		if sent != active {
			if len(out) != 1 || out["active"] != false {
				t.Fatalf("token %q (real %q) introspects as %s, want exactly {\"active\":false}", sent, active, r.body)
			}
			return
		}
		if out["active"] != true || out["client_id"] != subject.ID || out["sub"] != "fuzz-subject" ||
			out["token_type"] != "Bearer" || out["iss"] != oauthIssuer {
			t.Fatalf("the real token introspects as %s, want active for %s (fuzz-subject)", r.body, subject.ID)
		}
	})
}

// --- FuzzAdminJSON ---------------------------------------------------------

// fuzzAdminState is what the admin API stores, as it reads back: every
// integration with its key pairs, and the newest audit event.
func (fs *fuzzServer) fuzzAdminState(t testing.TB) string {
	t.Helper()
	var sb strings.Builder
	for _, p := range []string{"/admin/integrations?limit=1000", "/admin/audit?limit=1"} {
		r := fs.adminDo(t, "GET", p, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", p, r.status, r.body)
		}
		sb.Write(r.body)
	}
	return sb.String()
}

// checkFuzzAdminError checks the DESIGN admin error object: exactly
// "error" and "error_description", non-empty strings.
func checkFuzzAdminError(t testing.TB, what string, r fuzzResponse) {
	t.Helper()
	body := fuzzJSONObject(t, what, r)
	for _, k := range []string{"error", "error_description"} {
		if s, ok := body[k].(string); !ok || s == "" {
			t.Fatalf("%s: status %d, %q = %#v, want a non-empty string; body %s", what, r.status, k, body[k], r.body)
		}
	}
	if len(body) != 2 {
		t.Fatalf("%s: status %d, error object has extra fields: %s", what, r.status, r.body)
	}
}

// fuzzAdminBody is every field the three endpoints accept, decoded as
// strictly as the contract asks: one JSON object, no unknown fields, no
// trailing data.
type fuzzAdminBody struct {
	Name                 *string   `json:"name"`
	Description          *string   `json:"description"`
	Scopes               *[]string `json:"scopes"`
	Audience             *[]string `json:"audience"`
	CanIntrospect        *bool     `json:"can_introspect"`
	TokenLifetimeSeconds *int64    `json:"token_lifetime_seconds"`
	TokenRatePerMinute   *int64    `json:"token_rate_per_minute"`
	GraceSeconds         *int64    `json:"grace_seconds"`
	Disabled             *bool     `json:"disabled"`
}

// fuzzDecodeAdmin decodes body; it fails for anything a correct server
// must refuse with 400 before looking at values.
func fuzzDecodeAdmin(body string) (fuzzAdminBody, error) {
	var b fuzzAdminBody
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return b, fmt.Errorf("trailing data after the object")
	}
	return b, nil
}

// FuzzAdminJSON sends fuzzed JSON bodies to POST /admin/integrations,
// PATCH /admin/integrations/{name} and POST
// /admin/integrations/{name}/key-pair, for an existing integration, a
// missing one or a fuzzed name.
//
// Invariants: never 5xx or a panic; the status is 200, 201, 400, 404, 409
// or 413; a non-2xx answer is the admin error object; a rejected request
// changes nothing stored; an accepted request had a body a strict decoder
// accepts, with only the fields its endpoint takes, a valid name, a token
// lifetime and grace in range, and the created integration or key pair
// echoes it with well-formed credentials.
func FuzzAdminJSON(f *testing.F) {
	fs := newFuzzServer(f)
	const target = "fuzz-target"
	fs.e.createIntegration(map[string]any{"name": target, "scopes": []string{"read"}, "audience": []string{"https://api.example.com"}})
	fs.e.createIntegration(map[string]any{"name": "fuzz-other"})
	var mu sync.Mutex
	state := fs.fuzzAdminState(f)

	const (
		opCreate = iota
		opPatch
		opRegenerate
	)
	const (
		nameTarget = iota
		nameMissing
		nameFuzz
	)
	for _, s := range []struct {
		op, nameSel byte
		name, body  string
	}{
		{opCreate, 0, "", `{"name":"fuzz-new"}`},
		{opCreate, 0, "", `{"name":"fuzz-new","description":"d","scopes":["a","b","a"],"audience":["x"],"can_introspect":true,"token_lifetime_seconds":600}`},
		{opCreate, 0, "", `{"name":"fuzz-target"}`},
		{opCreate, 0, "", `{"name":"Fuzz"}`},
		{opCreate, 0, "", `{"name":"fuzz-ü"}`},
		{opCreate, 0, "", `{"name":"fuzz\u002dnew"}`},
		{opCreate, 0, "", `{"name":"a","name":"b"}`},
		{opCreate, 0, "", `{"name":"x","NAME":"y"}`},
		{opCreate, 0, "", `{"Name":"fuzz-case"}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":-1}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":59}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":9223372036854775807}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":9223372036854775808}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":1e3}`},
		{opCreate, 0, "", `{"name":"x","token_lifetime_seconds":600.0}`},
		{opCreate, 0, "", `{"name":"x","scopes":"read"}`},
		{opCreate, 0, "", `{"name":"x","scopes":[1]}`},
		{opCreate, 0, "", `{"name":"x","scopes":null}`},
		{opCreate, 0, "", `{"name":"x","scopes":["a b"]}`},
		{opCreate, 0, "", `{"name":"x","audience":["\u0000"]}`},
		{opCreate, 0, "", `{"name":"x","can_introspect":"true"}`},
		{opCreate, 0, "", `{"name":"x","grace_seconds":1}`},
		{opCreate, 0, "", `{"name":"x","unknown":1}`},
		{opCreate, 0, "", `{"name":"x"} trailing`},
		{opCreate, 0, "", `{"name":"x"}{}`},
		{opCreate, 0, "", `[]`},
		{opCreate, 0, "", `null`},
		{opCreate, 0, "", ``},
		{opCreate, 0, "", `{"name":"x"`},
		{opCreate, 0, "", "\xff\xfe{}"},
		{opCreate, 0, "", `{"name":"` + strings.Repeat("a", 64) + `"}`},
		{opCreate, 0, "", `{"name":"x","description":"` + strings.Repeat("d", 1025) + `"}`},
		{opPatch, nameTarget, "", `{"description":"changed"}`},
		{opPatch, nameTarget, "", `{}`},
		{opPatch, nameTarget, "", `{"name":"fuzz-target","scopes":[]}`},
		{opPatch, nameTarget, "", `{"name":"renamed"}`},
		{opPatch, nameTarget, "", `{"token_lifetime_seconds":0}`},
		{opPatch, nameTarget, "", `{"token_lifetime_seconds":null}`},
		{opPatch, nameTarget, "", `{"token_rate_per_minute":0}`},
		{opPatch, nameTarget, "", `{"token_rate_per_minute":null}`},
		{opPatch, nameTarget, "", `{"token_rate_per_minute":-1}`},
		{opCreate, 0, "", `{"name":"x","token_rate_per_minute":1000001}`},
		{opCreate, 0, "", `{"name":"fuzz-rate","token_rate_per_minute":60}`},
		{opRegenerate, nameTarget, "", `{"token_rate_per_minute":60}`},
		{opPatch, nameTarget, "", `{"description":"ok","token_lifetime_seconds":-5}`},
		{opPatch, nameTarget, "", `{"can_introspect":1}`},
		{opPatch, nameTarget, "", `{"grace_seconds":1}`},
		{opPatch, nameTarget, "", `{"disabled":true}`},
		{opPatch, nameTarget, "", `{"disabled":false}`},
		{opPatch, nameTarget, "", `{"disabled":"true"}`},
		{opCreate, 0, "", `{"name":"x","disabled":true}`},
		{opRegenerate, nameTarget, "", `{"disabled":false}`},
		{opPatch, nameMissing, "", `{"description":"x"}`},
		{opPatch, nameFuzz, "Fuzz Target", `{"description":"x"}`},
		{opPatch, nameFuzz, "a/b", `{"description":"x"}`},
		{opPatch, nameFuzz, "%2e", `{}`},
		{opRegenerate, nameTarget, "", ``},
		{opRegenerate, nameTarget, "", `{}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":60}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":2592000}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":2592001}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":-1}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":1e400}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":"60"}`},
		{opRegenerate, nameTarget, "", `{"grace_seconds":60,"grace_seconds":-1}`},
		{opRegenerate, nameTarget, "", `{"name":"fuzz-target"}`},
		{opRegenerate, nameMissing, "", `{}`},
		{opRegenerate, nameFuzz, "ü", ``},
	} {
		f.Add(s.op, s.nameSel, s.name, s.body)
	}
	if fuzzKnownBugSeeds {
		// A negative grace_seconds whose product with time.Second wraps
		// into 0..MaxGrace passes the handler's upper-bound check and the
		// store's range check: 201 instead of 400.
		f.Add(byte(opRegenerate), byte(nameTarget), "", `{"grace_seconds":-9223372036854775808}`)
		f.Add(byte(opRegenerate), byte(nameTarget), "", `{"grace_seconds":-18446744073}`)
	}

	f.Fuzz(func(t *testing.T, op, nameSel byte, nameIn, body string) {
		fuzzSkipLong(t, 4096, nameIn, body)
		mu.Lock()
		defer mu.Unlock()
		defer func() {
			// A failed input leaves state stale; the next input (a seed
			// run goes on after a failure) compares with what is stored.
			if t.Failed() {
				state = fs.fuzzAdminState(t)
			}
		}()
		name := target
		switch nameSel % 3 {
		case nameMissing:
			name = "fuzz-missing"
		case nameFuzz:
			name = nameIn
		}
		// Path cleaning (a redirect) and an empty segment (no route)
		// are the mux's business, not the handlers'.
		if name == "" || name == "." || name == ".." {
			name = "x" + name
		}
		var method, path string
		switch op % 3 {
		case opCreate:
			method, path = "POST", "/admin/integrations"
		case opPatch:
			method, path = "PATCH", "/admin/integrations/"+url.PathEscape(name)
		case opRegenerate:
			method, path = "POST", "/admin/integrations/"+url.PathEscape(name)+"/key-pair"
		}
		r := fs.adminDo(t, method, path, body)
		what := method + " " + path

		switch r.status {
		case http.StatusOK, http.StatusCreated:
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge:
			checkFuzzAdminError(t, what, r)
			if after := fs.fuzzAdminState(t); after != state {
				t.Fatalf("%s answered %d and changed the stored state:\nbefore %s\nafter  %s\nbody %q",
					what, r.status, state, after, body)
			}
			return
		default:
			t.Fatalf("%s: status %d, want 200, 201, 400, 404, 409 or 413; body %q; request %q", what, r.status, r.body, body)
		}

		// Accepted: the body must have been acceptable.
		in, err := fuzzDecodeAdmin(body)
		if err != nil && !(op%3 == opRegenerate && strings.Trim(body, " \t\r\n") == "") {
			t.Fatalf("%s accepted (%d) a body a strict decoder refuses (%v): %q", what, r.status, err, body)
		}
		var out map[string]any
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatalf("%s: %d with a body that is not a JSON object: %q", what, r.status, r.body)
		}
		lifetimeOK := func() {
			if in.TokenLifetimeSeconds != nil && (*in.TokenLifetimeSeconds < storage.MinTokenLifetimeSeconds || *in.TokenLifetimeSeconds > storage.MaxTokenLifetimeSeconds) {
				t.Fatalf("%s accepted token_lifetime_seconds %d: %q", what, *in.TokenLifetimeSeconds, body)
			}
			if r := in.TokenRatePerMinute; r != nil && (*r < 0 || *r > storage.MaxTokenRatePerMinute || fmt.Sprint(out["token_rate_per_minute"]) != fmt.Sprint(*r)) {
				t.Fatalf("%s accepted token_rate_per_minute %d and answered %v: %q", what, *r, out["token_rate_per_minute"], body)
			}
		}
		switch op % 3 {
		case opCreate:
			if r.status != http.StatusCreated {
				t.Fatalf("%s: status %d, want 201", what, r.status)
			}
			if in.GraceSeconds != nil || in.Disabled != nil {
				t.Fatalf("%s accepted grace_seconds or disabled: %q", what, body)
			}
			if in.Name == nil || !storage.ValidName(*in.Name) || out["name"] != *in.Name {
				t.Fatalf("%s created %v from %q", what, out["name"], body)
			}
			lifetimeOK()
			kp, _ := out["key_pair"].(map[string]any)
			id, _ := kp["client_id"].(string)
			secret, _ := kp["client_secret"].(string)
			if !credential.ValidClientID(id) || !credential.ValidChecksummed(secret, credential.ClientSecretPrefix) {
				t.Fatalf("%s: malformed key pair %v", what, kp)
			}
			// Keep the database small: every created integration goes.
			if d := fs.adminDo(t, "DELETE", "/admin/integrations/"+url.PathEscape(*in.Name), ""); d.status != http.StatusNoContent {
				t.Fatalf("DELETE the created %q: status %d: %s", *in.Name, d.status, d.body)
			}
		case opPatch:
			if r.status != http.StatusOK {
				t.Fatalf("%s: status %d, want 200", what, r.status)
			}
			if in.GraceSeconds != nil {
				t.Fatalf("%s accepted grace_seconds: %q", what, body)
			}
			if in.Name != nil && *in.Name != name || out["name"] != name {
				t.Fatalf("%s: renamed, or answered for another integration (%v): %q", what, out["name"], body)
			}
			if in.Disabled != nil && out["disabled"] != *in.Disabled {
				t.Fatalf("%s: disabled = %v, want %v: %q", what, out["disabled"], *in.Disabled, body)
			}
			lifetimeOK()
		case opRegenerate:
			if r.status != http.StatusCreated {
				t.Fatalf("%s: status %d, want 201", what, r.status)
			}
			if in.Name != nil || in.Description != nil || in.Scopes != nil || in.Audience != nil ||
				in.CanIntrospect != nil || in.TokenLifetimeSeconds != nil || in.TokenRatePerMinute != nil || in.Disabled != nil {
				t.Fatalf("%s accepted integration fields: %q", what, body)
			}
			if g := in.GraceSeconds; g != nil && (*g < 0 || *g > int64(storage.MaxGrace/time.Second)) {
				t.Fatalf("%s accepted grace_seconds %d, outside 0..%d: %q", what, *g, int64(storage.MaxGrace/time.Second), body)
			}
			id, _ := out["client_id"].(string)
			secret, _ := out["client_secret"].(string)
			if !credential.ValidClientID(id) || !credential.ValidChecksummed(secret, credential.ClientSecretPrefix) {
				t.Fatalf("%s: malformed key pair %s", what, r.body)
			}
			var grace int64
			if in.GraceSeconds != nil {
				grace = *in.GraceSeconds
			}
			if grace == 0 && out["previous_expires_at"] != nil {
				t.Fatalf("%s: previous_expires_at %v, want null: the old pair was revoked at once", what, out["previous_expires_at"])
			}
			created, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(out["created_at"]))
			prev, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(out["previous_expires_at"]))
			if grace > 0 && (err1 != nil || err2 != nil || prev.Sub(created) != time.Duration(grace)*time.Second) {
				t.Fatalf("%s: previous_expires_at %v is not created_at %v + %ds", what, out["previous_expires_at"], out["created_at"], grace)
			}
		}
		state = fs.fuzzAdminState(t)
	})
}
