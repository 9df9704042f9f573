package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
)

// oauthIssuer is the issuer newEnv configures.
const oauthIssuer = "http://127.0.0.1"

// defaultLifetimeSeconds is the server default token lifetime, in seconds, that
// the contract promises in expires_in.
const defaultLifetimeSeconds = 36000

// newOAuthEnv starts a server and fails the test, when it ends, if any
// request was answered with a 5xx or anything was logged at error level:
// no client input may cause a server error.
func newOAuthEnv(t *testing.T, opts ...func(*server.Options)) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.failOnServerErrors()
	return e
}

// oauthSend posts body to path with the given content type and, when basic is
// non-zero, HTTP Basic credentials; it returns status, headers and the
// decoded JSON object (nil for an empty body).
func (e *env) oauthSend(method, path, contentType string, body io.Reader, basic keyPair) (int, http.Header, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if basic.ID != "" {
		req.SetBasicAuth(url.QueryEscape(basic.ID), url.QueryEscape(basic.Secret))
	}
	status, h, b := e.do(req)
	if len(b) == 0 {
		return status, h, nil
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("%s %s: status %d, body is not a JSON object: %q", method, path, status, b)
	}
	return status, h, out
}

// postAuth posts form to path with kp's credentials in the body
// (client_secret_post).
func (e *env) postAuth(path string, kp keyPair, form url.Values) (int, http.Header, map[string]any) {
	e.t.Helper()
	f := url.Values{"client_id": {kp.ID}, "client_secret": {kp.Secret}}
	for k, v := range form {
		f[k] = v
	}
	return e.form(path, keyPair{}, f)
}

// checkOAuthError checks an RFC 6749 §5.2 error response: the status, a
// JSON content type, the error code, and no fields beyond error,
// error_description and error_uri.
func checkOAuthError(t *testing.T, status int, h http.Header, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status = %d, want %d; body %v", status, wantStatus, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if got := body["error"]; got != wantCode {
		t.Errorf("error = %v, want %q; body %v", got, wantCode, body)
	}
	for k, v := range body {
		switch k {
		case "error", "error_description", "error_uri":
			if _, ok := v.(string); !ok {
				t.Errorf("%s = %#v, want a string", k, v)
			}
		default:
			t.Errorf("unexpected field %q in error response %v", k, body)
		}
	}
}

// rfc6749Errors are the error codes of RFC 6749 §5.2, which RFC 7009 §2.2.1
// extends with unsupported_token_type.
var rfc6749Errors = []string{"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
	"unsupported_grant_type", "invalid_scope", "unsupported_token_type"}

// checkInactive checks that an introspection answer is exactly
// {"active": false}.
func checkInactive(t *testing.T, got map[string]any) {
	t.Helper()
	if want := map[string]any{"active": false}; !mapsEqual(got, want) {
		t.Errorf("introspection = %v, want %v", got, want)
	}
}

func mapsEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// keys returns m's keys, sorted.
func jsonKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fields splits a space-separated list and sorts it.
func scopeList(s string) []string {
	f := strings.Fields(s)
	sort.Strings(f)
	return f
}

// flip returns s with the byte at i replaced by a different character of
// the same alphabet (base64url and base62 share "a" and "b").
func flipAt(s string, i int) string {
	c := byte('a')
	if s[i] == 'a' {
		c = 'b'
	}
	return s[:i] + string(c) + s[i+1:]
}

// recorder is an http.RoundTripper that keeps the last response's headers
// and raw body, so a test can check what a real OAuth client received.
type recorder struct {
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	r.header, r.body = resp.Header.Clone(), b
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func TestTokenClientCredentials(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "billing-job", "scopes": []string{"invoices.read", "invoices.write", "customers.read"}})
	short := e.createIntegration(map[string]any{"name": "short-lived", "scopes": []string{"a"}, "token_lifetime_seconds": 600})
	rs := e.resourceServer()

	tests := []struct {
		name        string
		kp          keyPair
		style       oauth2.AuthStyle
		scopes      []string
		wantScope   []string
		wantExpires int64
	}{
		{"basic, no scope asked grants all", kp, oauth2.AuthStyleInHeader, nil, []string{"customers.read", "invoices.read", "invoices.write"}, defaultLifetimeSeconds},
		{"post, no scope asked grants all", kp, oauth2.AuthStyleInParams, nil, []string{"customers.read", "invoices.read", "invoices.write"}, defaultLifetimeSeconds},
		{"basic, subset", kp, oauth2.AuthStyleInHeader, []string{"invoices.read", "customers.read"}, []string{"customers.read", "invoices.read"}, defaultLifetimeSeconds},
		{"post, one scope", kp, oauth2.AuthStyleInParams, []string{"invoices.write"}, []string{"invoices.write"}, defaultLifetimeSeconds},
		{"basic, integration lifetime 600", short, oauth2.AuthStyleInHeader, nil, []string{"a"}, 600},
		{"post, integration lifetime 600", short, oauth2.AuthStyleInParams, nil, []string{"a"}, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: rec})
			cfg := clientcredentials.Config{
				ClientID: tt.kp.ID, ClientSecret: tt.kp.Secret, TokenURL: e.srv.URL + "/oauth2/token",
				Scopes: tt.scopes, AuthStyle: tt.style,
			}
			before := time.Now()
			tok, err := cfg.Token(ctx)
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if !strings.HasPrefix(tok.AccessToken, "lk_at_") {
				t.Errorf("access_token = %q, want prefix lk_at_", tok.AccessToken)
			}
			if got, want := rec.header.Get("Cache-Control"), "no-store"; got != want {
				t.Errorf("Cache-Control = %q, want %q", got, want)
			}
			if ct := rec.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}

			// The raw JSON, not what the client library made of it.
			var raw map[string]any
			dec := json.NewDecoder(bytes.NewReader(rec.body))
			dec.UseNumber()
			if err := dec.Decode(&raw); err != nil {
				t.Fatalf("token response is not JSON: %q", rec.body)
			}
			if got, want := jsonKeys(raw), []string{"access_token", "expires_in", "scope", "token_type"}; !slices.Equal(got, want) {
				t.Errorf("response fields = %v, want %v", got, want)
			}
			if got, want := raw["token_type"], "bearer"; got != want {
				t.Errorf("token_type = %v, want %q", got, want)
			}
			if got, want := raw["expires_in"], json.Number(fmt.Sprint(tt.wantExpires)); got != want {
				t.Errorf("expires_in = %v, want %v", got, want)
			}
			scope, _ := raw["scope"].(string)
			if got := scopeList(scope); !slices.Equal(got, tt.wantScope) {
				t.Errorf("scope = %q, want %v", scope, tt.wantScope)
			}
			wantExpiry := before.Add(time.Duration(tt.wantExpires) * time.Second)
			if tok.Expiry.Before(wantExpiry.Add(-time.Minute)) || tok.Expiry.After(time.Now().Add(time.Duration(tt.wantExpires)*time.Second)) {
				t.Errorf("client Expiry = %v, want about %v", tok.Expiry, wantExpiry)
			}

			in := e.introspect(rs, tok.AccessToken)
			if got, want := in["active"], true; got != want {
				t.Fatalf("introspect active = %v, want true: %v", got, in)
			}
			if got := scopeList(in["scope"].(string)); !slices.Equal(got, tt.wantScope) {
				t.Errorf("introspected scope = %v, want %v", got, tt.wantScope)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read", "write"}})
	other := e.createIntegration(map[string]any{"name": "other-job", "scopes": []string{"read"}})

	cc := url.Values{"grant_type": {"client_credentials"}}
	with := func(base url.Values, kv ...string) url.Values {
		f := url.Values{}
		for k, v := range base {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Add(kv[i], kv[i+1])
		}
		return f
	}
	wrongSecret := keyPair{ID: kp.ID, Secret: credential.NewClientSecret()}
	unknownID := keyPair{ID: credential.NewClientID(), Secret: kp.Secret}
	// The last character belongs to the checksum: changing it keeps the
	// shape and breaks the checksum.
	malformed := keyPair{ID: kp.ID, Secret: flipAt(kp.Secret, len(kp.Secret)-1)}
	crossed := keyPair{ID: kp.ID, Secret: other.Secret}
	const form = "application/x-www-form-urlencoded"

	tests := []struct {
		name        string
		basic       keyPair // sent as HTTP Basic when set
		contentType string
		body        string
		wantStatus  int
		wantCode    string
	}{
		{"wrong secret, basic", wrongSecret, form, cc.Encode(), 401, "invalid_client"},
		{"wrong secret, post", keyPair{}, form, with(cc, "client_id", wrongSecret.ID, "client_secret", wrongSecret.Secret).Encode(), 401, "invalid_client"},
		{"unknown client id, basic", unknownID, form, cc.Encode(), 401, "invalid_client"},
		{"unknown client id, post", keyPair{}, form, with(cc, "client_id", unknownID.ID, "client_secret", unknownID.Secret).Encode(), 401, "invalid_client"},
		{"garbage client id, basic", keyPair{ID: "not-a-client", Secret: kp.Secret}, form, cc.Encode(), 401, "invalid_client"},
		{"malformed secret, basic", malformed, form, cc.Encode(), 401, "invalid_client"},
		{"malformed secret, post", keyPair{}, form, with(cc, "client_id", malformed.ID, "client_secret", malformed.Secret).Encode(), 401, "invalid_client"},
		{"truncated secret, basic", keyPair{ID: kp.ID, Secret: kp.Secret[:20]}, form, cc.Encode(), 401, "invalid_client"},
		{"another integration's secret, basic", crossed, form, cc.Encode(), 401, "invalid_client"},
		{"client_id without secret, post", keyPair{}, form, with(cc, "client_id", kp.ID).Encode(), 401, "invalid_client"},
		{"missing credentials", keyPair{}, form, cc.Encode(), 401, "invalid_client"},
		{"grant_type password", kp, form, url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"p"}}.Encode(), 400, "unsupported_grant_type"},
		{"grant_type authorization_code", kp, form, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}.Encode(), 400, "unsupported_grant_type"},
		{"grant_type refresh_token", kp, form, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}}.Encode(), 400, "unsupported_grant_type"},
		{"missing grant_type", kp, form, url.Values{"scope": {"read"}}.Encode(), 400, "invalid_request"},
		{"empty body", kp, form, "", 400, "invalid_request"},
		{"scope not allowed", kp, form, with(cc, "scope", "admin").Encode(), 400, "invalid_scope"},
		{"one of two scopes not allowed", kp, form, with(cc, "scope", "read admin").Encode(), 400, "invalid_scope"},
		{"scope twice", kp, form, with(cc, "scope", "read", "scope", "write").Encode(), 400, "invalid_request"},
		{"grant_type twice", kp, form, with(cc, "grant_type", "client_credentials").Encode(), 400, "invalid_request"},
		{"basic and client_secret in body", kp, form, with(cc, "client_secret", kp.Secret).Encode(), 401, "invalid_client"},
		{"basic and client_id in body", kp, form, with(cc, "client_id", kp.ID).Encode(), 401, "invalid_client"},
		{"JSON body", kp, "application/json", `{"grant_type":"client_credentials"}`, 400, "invalid_request"},
		{"no content type", kp, "", cc.Encode(), 400, "invalid_request"},
		{"multipart body", kp, "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nclient_credentials\r\n--x--\r\n", 400, "invalid_request"},
		{"invalid form encoding", kp, form, "grant_type=client_credentials&scope=%zz", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.oauthSend("POST", "/oauth2/token", tt.contentType, strings.NewReader(tt.body), tt.basic)
			checkOAuthError(t, status, h, body, tt.wantStatus, tt.wantCode)
			if status == http.StatusUnauthorized && tt.basic.ID != "" {
				if got := h.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("WWW-Authenticate = %q, want a Basic challenge", got)
				}
			}
			if _, ok := body["access_token"]; ok {
				t.Errorf("error response carries an access token: %v", body)
			}
		})
	}
}

func TestOAuthBodyLimit(t *testing.T) {
	e := newOAuthEnv(t)
	kp := e.createIntegration(map[string]any{"name": "job"})
	prefix := "grant_type=client_credentials&token=x&pad="
	// over is one byte beyond the limit; exact is right at it.
	over := prefix + strings.Repeat("a", server.MaxOAuthBodyBytes+1-len(prefix))
	exact := prefix + strings.Repeat("a", server.MaxOAuthBodyBytes-len(prefix))

	for _, path := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
		for _, chunked := range []bool{false, true} {
			name := fmt.Sprintf("%s, declared length", path)
			if chunked {
				name = fmt.Sprintf("%s, chunked", path)
			}
			t.Run(name, func(t *testing.T) {
				var body io.Reader = strings.NewReader(over)
				if chunked {
					// An io.MultiReader hides the length: the client
					// sends the body chunked.
					body = io.MultiReader(strings.NewReader(over))
				}
				status, h, out := e.oauthSend("POST", path, "application/x-www-form-urlencoded", body, kp)
				if got, want := status, http.StatusRequestEntityTooLarge; got != want {
					t.Errorf("status = %d, want %d; body %v", got, want, out)
				}
				if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				if code, _ := out["error"].(string); code == "" {
					t.Errorf("413 body has no error code: %v", out)
				}
			})
		}
	}
	t.Run("token, exactly the limit", func(t *testing.T) {
		status, _, out := e.oauthSend("POST", "/oauth2/token", "application/x-www-form-urlencoded", strings.NewReader(exact), kp)
		if got, want := status, http.StatusOK; got != want {
			t.Errorf("status = %d, want %d; body %v", got, want, out)
		}
	})
}

func TestOAuthWrongMethod(t *testing.T) {
	e := newOAuthEnv(t)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/oauth2/token"},
		{"PUT", "/oauth2/token"},
		{"GET", "/oauth2/introspect"},
		{"GET", "/oauth2/revoke"},
		{"POST", "/.well-known/oauth-authorization-server"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			status, h, body := e.oauthSend(tt.method, tt.path, "", nil, keyPair{})
			if got, want := status, http.StatusMethodNotAllowed; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if code, _ := body["error"].(string); code == "" {
				t.Errorf("405 body has no error code: %v", body)
			}
			if h.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
}

func TestIntrospectActive(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	plain := e.createIntegration(map[string]any{"name": "plain", "scopes": []string{"read", "write"}})
	aimed := e.createIntegration(map[string]any{"name": "aimed", "scopes": []string{"read"}, "audience": []string{"https://api.example.com"}, "token_lifetime_seconds": 600})
	wide := e.createIntegration(map[string]any{"name": "wide", "audience": []string{"https://a.example.com", "https://b.example.com"}})
	iat := e.clock.Now().Unix()

	tests := []struct {
		name     string
		kp       keyPair
		extra    url.Values
		sub      string
		scope    string
		aud      any
		lifetime int64
	}{
		{"no audience: aud is the issuer", plain, nil, "plain", "read write", oauthIssuer, defaultLifetimeSeconds},
		{"scope subset", plain, url.Values{"scope": {"write"}}, "plain", "write", oauthIssuer, defaultLifetimeSeconds},
		{"one audience, own lifetime", aimed, nil, "aimed", "read", "https://api.example.com", 600},
		{"audience asked", wide, url.Values{"audience": {"https://b.example.com"}}, "wide", "", "https://b.example.com", defaultLifetimeSeconds},
		{"two audiences", wide, nil, "wide", "", []any{"https://a.example.com", "https://b.example.com"}, defaultLifetimeSeconds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := e.token(tt.kp, tt.extra)
			for _, style := range []string{"basic", "post"} {
				var status int
				var got map[string]any
				if style == "basic" {
					status, _, got = e.form("/oauth2/introspect", rs, url.Values{"token": {tok}})
				} else {
					status, _, got = e.postAuth("/oauth2/introspect", rs, url.Values{"token": {tok}})
				}
				if status != http.StatusOK {
					t.Fatalf("%s: status %d, want 200: %v", style, status, got)
				}
				want := map[string]any{
					"active": true, "client_id": tt.kp.ID, "sub": tt.sub, "scope": tt.scope, "aud": tt.aud,
					"iss": oauthIssuer, "exp": float64(iat + tt.lifetime), "iat": float64(iat),
					"token_type": "Bearer", "token_use": "access_token",
				}
				jti, _ := got["jti"].(string)
				if jti == "" {
					t.Errorf("%s: jti = %v, want a non-empty string", style, got["jti"])
				}
				delete(got, "jti")
				if !mapsEqual(got, want) {
					t.Errorf("%s: introspection =\n%v\nwant (besides jti)\n%v", style, got, want)
				}
			}
		})
	}

	t.Run("jti differs per token", func(t *testing.T) {
		a := e.introspect(rs, e.token(plain, nil))["jti"]
		b := e.introspect(rs, e.token(plain, nil))["jti"]
		if a == b {
			t.Errorf("two tokens share jti %v", a)
		}
	})
}

func TestIntrospectCaller(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	tok := e.token(job, nil)
	wrong := keyPair{ID: rs.ID, Secret: credential.NewClientSecret()}

	tests := []struct {
		name       string
		basic      keyPair
		form       url.Values
		wantStatus int
		wantCode   string
	}{
		{"caller without can_introspect, basic", job, url.Values{"token": {tok}}, 403, ""},
		{"caller without can_introspect, post", keyPair{}, url.Values{"token": {tok}, "client_id": {job.ID}, "client_secret": {job.Secret}}, 403, ""},
		{"wrong secret, basic", wrong, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"wrong secret, post", keyPair{}, url.Values{"token": {tok}, "client_id": {wrong.ID}, "client_secret": {wrong.Secret}}, 401, "invalid_client"},
		{"malformed secret", keyPair{ID: rs.ID, Secret: flipAt(rs.Secret, len(rs.Secret)-1)}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"unknown client", keyPair{ID: credential.NewClientID(), Secret: rs.Secret}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"no credentials", keyPair{}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"missing token", rs, url.Values{"token_type_hint": {"access_token"}}, 400, "invalid_request"},
		{"token twice", rs, url.Values{"token": {tok, tok}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.form("/oauth2/introspect", tt.basic, tt.form)
			if tt.wantCode == "" {
				if status != tt.wantStatus {
					t.Errorf("status = %d, want %d; body %v", status, tt.wantStatus, body)
				}
				if body["active"] != nil {
					t.Errorf("refused introspection reveals the token: %v", body)
				}
				return
			}
			checkOAuthError(t, status, h, body, tt.wantStatus, tt.wantCode)
			if status == http.StatusUnauthorized && tt.basic.ID != "" && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge", h.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestIntrospectInactive(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job", "scopes": []string{"read"}})
	tok := e.token(job, nil)
	key, sig, ok := strings.Cut(strings.TrimPrefix(tok, "lk_at_"), ".")
	if !ok {
		t.Fatalf("token %q is not lk_at_<key>.<signature>", tok)
	}

	tests := []struct {
		name  string
		token string
	}{
		{"unknown", "lk_at_" + strings.Repeat("A", len(key)) + "." + strings.Repeat("B", len(sig))},
		{"malformed", "not a token at all"},
		{"prefix only", "lk_at_"},
		{"prefix and dot", "lk_at_."},
		{"without prefix", strings.TrimPrefix(tok, "lk_at_")},
		{"other prefix", "lk_rt_" + strings.TrimPrefix(tok, "lk_at_")},
		{"tampered signature", "lk_at_" + key + "." + flipAt(sig, len(sig)/2)},
		{"tampered key", "lk_at_" + flipAt(key, len(key)/2) + "." + sig},
		{"signature only", "lk_at_" + sig},
		{"trailing garbage", tok + "x"},
		{"client secret", job.Secret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkInactive(t, e.introspect(rs, tt.token))
		})
	}
	// The untouched token is still active: the cases above failed for
	// their own reason.
	if got := e.introspect(rs, tok)["active"]; got != true {
		t.Fatalf("original token active = %v, want true", got)
	}
}

func TestIntrospectExpiry(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	short := e.createIntegration(map[string]any{"name": "short", "token_lifetime_seconds": 600})
	tok, shortTok := e.token(job, nil), e.token(short, nil)

	e.clock.Advance(600*time.Second - time.Second)
	if got := e.introspect(rs, shortTok)["active"]; got != true {
		t.Errorf("600 s token 1 s before expiry: active = %v, want true", got)
	}
	e.clock.Advance(2 * time.Second)
	checkInactive(t, e.introspect(rs, shortTok))

	e.clock.Advance(10*time.Hour - 600*time.Second - 2*time.Second)
	if got := e.introspect(rs, tok)["active"]; got != true {
		t.Errorf("10 h token 1 s before expiry: active = %v, want true", got)
	}
	e.clock.Advance(2 * time.Second) // 10h+1s after issue
	checkInactive(t, e.introspect(rs, tok))

	// The pair itself keeps working: a fresh token is active again.
	if got := e.introspect(rs, e.token(job, nil))["active"]; got != true {
		t.Errorf("fresh token after expiry: active = %v, want true", got)
	}
}

// TestOneClock runs the server on a clock two days behind the wall clock,
// where every token's whole life is in the real past: anything that
// compared a token with time.Now instead of the injected clock (fosite's
// own checks do) would call it expired at issue.
func TestOneClock(t *testing.T) {
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			e := newOAuthEnv(t, func(o *server.Options) { o.TokenFormat = format })
			e.clock.Advance(-48 * time.Hour)
			rs := e.resourceServer()
			job := e.createIntegration(map[string]any{"name": "job", "token_lifetime_seconds": 3600})
			issuedAt := e.clock.Now()
			resp := e.tokenResponse(job, nil)
			if got := resp["expires_in"]; got != float64(3600) {
				t.Errorf("expires_in = %v, want 3600", got)
			}
			tok := resp["access_token"].(string)
			got := e.introspect(rs, tok)
			if got["active"] != true {
				t.Fatalf("token issued on the server's clock: %v, want active", got)
			}
			if exp, want := got["exp"], float64(issuedAt.Add(time.Hour).Unix()); exp != want {
				t.Errorf("exp = %v, want %v (issue time on the server's clock + 1 h)", exp, want)
			}
			e.clock.Advance(time.Hour + time.Second)
			checkInactive(t, e.introspect(rs, tok))
		})
	}
}

func TestIntrospectDeletedIntegration(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	toks := []string{e.token(job, nil), e.token(job, url.Values{})}
	e.mustAdmin("DELETE", "/admin/integrations/job", nil, http.StatusNoContent)
	for i, tok := range toks {
		t.Run(fmt.Sprint("token ", i), func(t *testing.T) {
			checkInactive(t, e.introspect(rs, tok))
		})
	}
	status, h, body := e.form("/oauth2/token", job, url.Values{"grant_type": {"client_credentials"}})
	checkOAuthError(t, status, h, body, http.StatusUnauthorized, "invalid_client")
}

func TestRevoke(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	owner := e.createIntegration(map[string]any{"name": "owner"})
	other := e.createIntegration(map[string]any{"name": "other"})

	t.Run("owner revokes, basic", func(t *testing.T) {
		tok := e.token(owner, nil)
		status, h, body := e.form("/oauth2/revoke", owner, url.Values{"token": {tok}})
		if status != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %v", status, body)
		}
		if got := h.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", got)
		}
		checkInactive(t, e.introspect(rs, tok))
	})
	t.Run("owner revokes, post, with hint", func(t *testing.T) {
		tok := e.token(owner, nil)
		status, _, body := e.postAuth("/oauth2/revoke", owner, url.Values{"token": {tok}, "token_type_hint": {"access_token"}})
		if status != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %v", status, body)
		}
		checkInactive(t, e.introspect(rs, tok))
	})
	t.Run("revoking one token leaves the others", func(t *testing.T) {
		a, b := e.token(owner, nil), e.token(owner, nil)
		if status, _, body := e.form("/oauth2/revoke", owner, url.Values{"token": {a}}); status != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %v", status, body)
		}
		if got := e.introspect(rs, b)["active"]; got != true {
			t.Errorf("other token active = %v, want true", got)
		}
	})
	t.Run("revoking twice", func(t *testing.T) {
		tok := e.token(owner, nil)
		for i := range 2 {
			if status, _, body := e.form("/oauth2/revoke", owner, url.Values{"token": {tok}}); status != http.StatusOK {
				t.Fatalf("revoke %d: status = %d, want 200; body %v", i, status, body)
			}
		}
	})

	tok := e.token(owner, nil)
	tests := []struct {
		name       string
		basic      keyPair
		form       url.Values
		wantStatus int
		wantCode   string // "" for a 200; "any" for any RFC 6749 §5.2 error with a 4xx status
	}{
		{"unknown token", owner, url.Values{"token": {"lk_at_unknown.token"}}, 200, ""},
		{"malformed token", owner, url.Values{"token": {"garbage"}}, 200, ""},
		{"another integration's token", other, url.Values{"token": {tok}}, 0, "any"},
		{"wrong secret", keyPair{ID: owner.ID, Secret: credential.NewClientSecret()}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"unknown client", keyPair{ID: credential.NewClientID(), Secret: owner.Secret}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"no credentials", keyPair{}, url.Values{"token": {tok}}, 401, "invalid_client"},
		{"missing token", owner, url.Values{"token_type_hint": {"access_token"}}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.form("/oauth2/revoke", tt.basic, tt.form)
			switch tt.wantCode {
			case "":
				if status != tt.wantStatus {
					t.Errorf("status = %d, want %d; body %v", status, tt.wantStatus, body)
				}
			case "any":
				code, _ := body["error"].(string)
				if !slices.Contains(rfc6749Errors, code) {
					t.Errorf("error = %q, want one of %v; body %v", code, rfc6749Errors, body)
				}
				checkOAuthError(t, status, h, body, status, code)
				if status < 400 || status > 499 {
					t.Errorf("status = %d, want 4xx", status)
				}
			default:
				checkOAuthError(t, status, h, body, tt.wantStatus, tt.wantCode)
			}
			// Whatever was refused, the owner's token is still active.
			if got := e.introspect(rs, tok)["active"]; got != true {
				t.Errorf("owner's token active = %v, want true", got)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	e := newOAuthEnv(t)
	e.createIntegration(map[string]any{"name": "a", "scopes": []string{"read", "write"}})
	e.createIntegration(map[string]any{"name": "b", "scopes": []string{"billing", "read"}})
	e.createIntegration(map[string]any{"name": "c"})

	status, h, md := e.oauthSend("GET", "/.well-known/oauth-authorization-server", "", nil, keyPair{})
	if status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %v", status, md)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	strs := func(v any) []string {
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		out := []string{}
		for _, x := range arr {
			s, _ := x.(string)
			out = append(out, s)
		}
		sort.Strings(out)
		return out
	}
	methods := []string{"client_secret_basic", "client_secret_post", "private_key_jwt"}
	algs := []string{"ES256", "Ed25519", "EdDSA", "PS256", "RS256"}
	tests := []struct {
		field string
		got   any
		want  any
	}{
		{"issuer", md["issuer"], oauthIssuer},
		{"token_endpoint", md["token_endpoint"], oauthIssuer + "/oauth2/token"},
		{"introspection_endpoint", md["introspection_endpoint"], oauthIssuer + "/oauth2/introspect"},
		{"revocation_endpoint", md["revocation_endpoint"], oauthIssuer + "/oauth2/revoke"},
		{"token_endpoint_auth_methods_supported", strs(md["token_endpoint_auth_methods_supported"]), methods},
		{"introspection_endpoint_auth_methods_supported", strs(md["introspection_endpoint_auth_methods_supported"]), methods},
		{"revocation_endpoint_auth_methods_supported", strs(md["revocation_endpoint_auth_methods_supported"]), methods},
		{"token_endpoint_auth_signing_alg_values_supported", strs(md["token_endpoint_auth_signing_alg_values_supported"]), algs},
		{"introspection_endpoint_auth_signing_alg_values_supported", strs(md["introspection_endpoint_auth_signing_alg_values_supported"]), algs},
		{"revocation_endpoint_auth_signing_alg_values_supported", strs(md["revocation_endpoint_auth_signing_alg_values_supported"]), algs},
		{"grant_types_supported", strs(md["grant_types_supported"]), []string{"client_credentials"}},
		{"scopes_supported", strs(md["scopes_supported"]), []string{"billing", "read", "write"}},
		{"response_types_supported is an array", strs(md["response_types_supported"]) != nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
				t.Errorf("%s = %v, want %v", tt.field, tt.got, tt.want)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	e := newOAuthEnv(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		t.Run(path, func(t *testing.T) {
			status, _, body := e.oauthSend("GET", path, "", nil, keyPair{})
			if got, want := status, http.StatusOK; got != want {
				t.Errorf("status = %d, want %d; body %v", got, want, body)
			}
		})
	}
}

// TestTrailingSlash: the OAuth endpoints answer with a trailing slash as
// without one, and nothing below them answers.
func TestTrailingSlash(t *testing.T) {
	e := newOAuthEnv(t)
	rs := e.resourceServer()
	job := e.createIntegration(map[string]any{"name": "job"})
	status, _, out := e.form("/oauth2/token/", job, url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusOK || out["access_token"] == nil {
		t.Fatalf("POST /oauth2/token/: %d %v, want 200 with a token", status, out)
	}
	tok := out["access_token"].(string)
	status, _, out = e.form("/oauth2/introspect/", rs, url.Values{"token": {tok}})
	if status != http.StatusOK || out["active"] != true {
		t.Fatalf("POST /oauth2/introspect/: %d %v, want 200 active", status, out)
	}
	if status, _, out = e.form("/oauth2/revoke/", job, url.Values{"token": {tok}}); status != http.StatusOK {
		t.Fatalf("POST /oauth2/revoke/: %d %v, want 200", status, out)
	}
	checkInactive(t, e.introspect(rs, tok))
	status, h, out := e.form("/oauth2/token/", job, url.Values{"grant_type": {"password"}})
	checkOAuthError(t, status, h, out, http.StatusBadRequest, "unsupported_grant_type")
	for _, p := range []string{"/oauth2/token/x", "/oauth2/introspect/x/", "/oauth2/"} {
		if status, _, _ := e.form(p, job, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", p, status)
		}
	}
}

// TestRoot: the server's address says what it is and where to go.
func TestRoot(t *testing.T) {
	for _, separate := range []bool{false, true} {
		e := newEnv(t, func(o *server.Options) { o.SeparateAdmin = separate })
		resp, err := http.Get(e.srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]string
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /: %d, %v", resp.StatusCode, err)
		}
		if out["service"] != "latchkey" || out["metadata"] != "http://127.0.0.1/.well-known/oauth-authorization-server" {
			t.Errorf("GET /: %v", out)
		}
		if got, want := out["dashboard"] != "", !separate; got != want {
			t.Errorf("separate admin listener %v: dashboard %q", separate, out["dashboard"])
		}
		if status, _, _ := e.form("/nope", keyPair{}, nil); status != http.StatusNotFound {
			t.Errorf("POST /nope: %d, want 404", status)
		}
	}
}
