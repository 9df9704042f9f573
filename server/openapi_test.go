package server_test

// The OpenAPI document (server/openapi.yaml) is kept true by the tests
// themselves: every env's test server validates, with kin-openapi, each
// request it answered 2xx and every answer it gave against the document
// (apiSpec.check, wired in by openEnv), so every HTTP test is also a
// schema test; and the document's operations and the routes are held to
// one set (TestOpenAPIDescribesEveryRoute).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/storage"
)

// TestMain prints, under -v, how many exchanges the tests validated
// against the OpenAPI document.
func TestMain(m *testing.M) {
	code := m.Run()
	if testing.Verbose() {
		if a, err := loadAPISpec(); err == nil {
			fmt.Printf("openapi: validated %d requests (answered 2xx) and %d responses\n", a.requests.Load(), a.responses.Load())
		}
	}
	os.Exit(code)
}

// notYetRouted are operations the document describes, as DESIGN.md has
// them, that this branch does not serve yet: they come with the admin
// roles, the credential revocation and the suspension branches. Empty it
// as they are merged; an entry that is routed fails the test.
var notYetRouted = []string{}

// notAPI are the routes the document leaves out, and why. Their
// exchanges are not checked.
var notAPI = map[string]string{
	"GET /admin":                         "the dashboard, a page for browsers",
	"GET /admin/":                        "the dashboard, a page for browsers (and a path with a trailing slash, which openapi-typescript refuses)",
	"GET /admin/assets/{version}/{file}": "the dashboard, a page for browsers",
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// dashboardPath reports whether a request for path is served by one of
// notAPI's routes.
func dashboardPath(path string) bool {
	return path == "/admin" || path == "/admin/" || strings.HasPrefix(path, "/admin/assets/")
}

// apiSpec is the OpenAPI document, loaded once for every test.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
	// aliases maps each path an operation also answers at (its
	// x-latchkey-aliases) to the operation's own path.
	aliases map[string]string
	// requests and responses count what was validated, for the summary
	// TestMain prints under -v.
	requests, responses atomic.Int64
}

var loadAPISpec = sync.OnceValues(func() (*apiSpec, error) {
	// The document as the server serves it, JSON with servers set.
	b, err := server.OpenAPIJSON("http://127.0.0.1")
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	a := &apiSpec{doc: doc, aliases: map[string]string{}}
	for path, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, alias := range operationAliases(op) {
				a.aliases[alias] = path
			}
		}
	}
	closeResponseObjects(doc)
	// Test servers listen on random ports: route on the path alone.
	doc.Servers = nil
	if a.router, err = gorillamux.NewRouter(doc); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
	return a, nil
})

// mustAPISpec returns the loaded document or fails t.
func mustAPISpec(t testing.TB) *apiSpec {
	t.Helper()
	a, err := loadAPISpec()
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return a
}

func operationAliases(op *openapi3.Operation) []string {
	var out []string
	if v, ok := op.Extensions["x-latchkey-aliases"].([]any); ok {
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// closeResponseObjects makes every object schema with properties that a
// response uses refuse properties it does not list, unless it says
// otherwise. The published document leaves them open, so that clients
// generated from it accept fields a later server adds; the tests hold the
// server to the fields the document lists.
func closeResponseObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(*openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = openapi3.Ptr(false)
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		for _, list := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf, s.AllOf} {
			for _, r := range list {
				walk(r)
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				for _, mt := range resp.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

// authenticate checks that a request the server accepted carried the
// credentials one of its operation's security requirements names.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, _, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if want := in.SecurityScheme.Scheme; !strings.EqualFold(scheme, want) {
		return fmt.Errorf("no %s credentials", want)
	}
	return nil
}

// check validates one exchange, but the dashboard's: the request (with the body the server
// read, reqBody) only when the server answered 2xx, as tests send
// malformed requests on purpose; the answer always, against the responses
// its operation declares, an undeclared status included. A path or method
// the document does not have is fine when the server answered 404 or 405.
// A nil reqBody skips the request: fuzz inputs that the server tolerates
// (a key in capitals, a null for an absent field) are not what the
// document describes, and need not be.
func (a *apiSpec) check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	if dashboardPath(req.URL.Path) {
		return nil
	}
	r := req.Clone(context.Background())
	if canonical, ok := a.aliases[r.URL.Path]; ok {
		r.URL.Path, r.URL.RawPath = canonical, ""
	}
	head := r.Method == http.MethodHead
	if head {
		// ServeMux routes HEAD to GET's handler.
		r.Method = http.MethodGet
	}
	route, params, err := a.router.FindRoute(r)
	switch {
	case errors.Is(err, routers.ErrPathNotFound), errors.Is(err, routers.ErrMethodNotAllowed):
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			return nil
		}
		return fmt.Errorf("no operation in openapi.yaml, yet answered %d", status)
	case err != nil:
		return fmt.Errorf("find operation: %w", err)
	}
	if route.Operation.Responses.Status(status) == nil {
		return fmt.Errorf("status %d is not among the responses openapi.yaml declares for %s %s", status, r.Method, route.Path)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: authenticate, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if status >= 200 && status < 300 && reqBody != nil {
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			return fmt.Errorf("request: %w", err)
		}
		a.requests.Add(1)
	}
	if head {
		return nil
	}
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
	}); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	a.responses.Add(1)
	return nil
}

// validated serves next and checks each exchange against the document,
// reporting a mismatch on t. The check runs after the handler has
// returned, in its own goroutine, so that the answer leaves as soon as it
// would without it: a millisecond's delay is enough to change how a
// client sending an oversize body sees the server close the connection.
// t's cleanup waits for the checks; t must outlive the handler's last
// request, as an env's does, whose server closes (waiting for requests
// in flight) before the test ends. serves, when not nil, tells the paths
// next serves: a 404 for any other is not checked.
func validated(t testing.TB, next http.Handler, serves func(path string) bool) http.Handler {
	a := mustAPISpec(t)
	var checks sync.WaitGroup
	t.Cleanup(checks.Wait)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if serves != nil && !serves(r.URL.Path) {
			cw := &captureWriter{ResponseWriter: w}
			next.ServeHTTP(cw, r)
			if cw.status != http.StatusNotFound {
				t.Errorf("openapi: %s %s → %d: this listener should not serve the path", r.Method, r.URL.Path, cw.status)
			}
			return
		}
		// The body is read through a copy of r: net/http looks at the
		// request it made, after the handler, to decide what to do
		// with a body left unread, and must find its own there.
		var reqBody bytes.Buffer
		in := r
		if r.Body != nil && r.Body != http.NoBody {
			in = r.WithContext(r.Context())
			in.Body = teeBody{io.TeeReader(r.Body, &reqBody), r.Body}
		}
		cw := &captureWriter{ResponseWriter: w}
		next.ServeHTTP(cw, in)
		if cw.status == 0 {
			cw.status = http.StatusOK
		}
		req, read, header := r.Clone(context.Background()), bytes.Clone(reqBody.Bytes()), w.Header().Clone()
		if read == nil {
			read = []byte{}
		}
		checks.Go(func() {
			if err := a.check(req, read, cw.status, header, cw.body.Bytes()); err != nil {
				t.Errorf("openapi: %s %s → %d: %v", req.Method, req.URL.Path, cw.status, err)
			}
		})
	})
}

type teeBody struct {
	io.Reader
	io.Closer
}

// captureWriter keeps a copy of the status and body a handler writes.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// TestOpenAPIDescribesEveryRoute fails when a route has no operation in
// the document (unless notAPI names it), or an operation (or one of its
// x-latchkey-aliases) has no route (unless notYetRouted names it).
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	a := mustAPISpec(t)
	e := newEnv(t)
	routed := map[string]bool{}
	for _, p := range e.server.Patterns() {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: every route names one", p)
			continue
		}
		// ServeMux's {$} ends a pattern that matches only what it spells.
		routed[method+" "+strings.TrimSuffix(path, "{$}")] = true
	}
	documented := map[string]bool{}
	for path, item := range a.doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+path] = true
			for _, alias := range operationAliases(op) {
				documented[method+" "+alias] = true
			}
		}
	}
	for r := range routed {
		_, left := notAPI[r]
		switch {
		case left && documented[r]:
			t.Errorf("route %s is in server/openapi.yaml: take it off notAPI", r)
		case !left && !documented[r]:
			t.Errorf("route %s has no operation in server/openapi.yaml", r)
		}
	}
	for r := range notAPI {
		if !routed[r] {
			t.Errorf("notAPI names %s, which is not routed", r)
		}
		_, path, _ := strings.Cut(r, " ")
		if example := wildcard.ReplaceAllString(path, "x"); !dashboardPath(example) {
			t.Errorf("notAPI names %s, but dashboardPath(%q) is false: its exchanges would be checked", r, example)
		}
	}
	for d := range documented {
		switch {
		case routed[d] && slices.Contains(notYetRouted, d):
			t.Errorf("%s is routed now: take it off notYetRouted", d)
		case !routed[d] && !slices.Contains(notYetRouted, d):
			t.Errorf("operation %s in server/openapi.yaml has no route", d)
		}
	}
	for _, d := range notYetRouted {
		if !documented[d] {
			t.Errorf("notYetRouted names %s, which server/openapi.yaml does not describe", d)
		}
	}
}

// TestOpenAPIServed checks GET /admin/openapi.json: the document as
// written, as JSON, with servers naming the issuer, and without
// authentication.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	req, err := http.NewRequest("GET", e.srv.URL+"/admin/openapi.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	status, h, b := e.do(req)
	if status != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 200 application/json", status, h.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Servers []struct {
			URL string `json:"url"`
		} `json:"servers"`
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || len(doc.Servers) != 1 || doc.Servers[0].URL != "http://127.0.0.1" {
		t.Errorf("openapi %q, servers %+v; want 3.1.0 and the issuer", doc.OpenAPI, doc.Servers)
	}
	if got, want := len(doc.Paths), len(mustAPISpec(t).doc.Paths.Map()); got != want {
		t.Errorf("%d paths served, %d in openapi.yaml", got, want)
	}
}

// TestOpenAPIEnumsMatchStorage holds the document's lists of roles,
// permissions and signing algorithms, and its name pattern and page
// limit, to storage's.
func TestOpenAPIEnumsMatchStorage(t *testing.T) {
	a := mustAPISpec(t)
	schema := func(name string) *openapi3.Schema {
		t.Helper()
		s := a.doc.Components.Schemas[name]
		if s == nil || s.Value == nil {
			t.Fatalf("no schema %s", name)
		}
		return s.Value
	}
	strs := func(vs []any) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = fmt.Sprint(v)
		}
		return out
	}
	var roles, perms []string
	for _, r := range storage.Roles {
		roles = append(roles, string(r))
	}
	for _, p := range storage.Permissions {
		perms = append(perms, string(p.Permission))
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"Role", strs(schema("Role").Enum), roles},
		{"Permission", strs(schema("Permission").Enum), perms},
		{"SigningKey.algorithm", strs(schema("SigningKey").Properties["algorithm"].Value.Enum), storage.SigningAlgorithms},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: openapi.yaml has %v, storage %v", c.name, c.got, c.want)
		}
	}
	for _, name := range []string{"valid-name", "a", "9.x_y-z", "Bad", "-x", "", strings.Repeat("a", 64)} {
		if got, want := schema("Name").VisitJSON(name) == nil, storage.ValidName(name); got != want {
			t.Errorf("name %q: Name accepts it: %v; storage.ValidName: %v", name, got, want)
		}
	}
	limit := a.doc.Components.Parameters["Limit"].Value.Schema.Value
	if limit.Max == nil || *limit.Max != storage.MaxPageLimit {
		t.Errorf("limit's maximum is %v, storage.MaxPageLimit %d", limit.Max, storage.MaxPageLimit)
	}
}

// TestOpenAPICheckCatchesMismatches makes sure the validation the harness
// relies on fails when it should: an undeclared status, a missing
// required field, an undocumented field, a bad request body answered 2xx.
func TestOpenAPICheckCatchesMismatches(t *testing.T) {
	a := mustAPISpec(t)
	get := httptest.NewRequest("GET", "/healthz", nil)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	patch := httptest.NewRequest("PATCH", "/admin/integrations/x", nil)
	patch.Header.Set("Authorization", "Bearer t")
	patch.Header.Set("Content-Type", "application/json")
	getIntegration := httptest.NewRequest("GET", "/admin/integrations/x", nil)
	getIntegration.Header.Set("Authorization", "Bearer t")
	integration := func(extra string) string {
		return `{` + extra + `"name":"x","description":"","scopes":[],"audience":[],"can_introspect":false,` +
			`"token_lifetime_seconds":36000,"token_lifetime_default":true,"token_rate_per_minute":null,"disabled":false,"token_endpoint_auth_method":"client_secret_basic","jwks":null,"jwks_uri":null,"require_dpop":false,"introspection_audience":[],"created_by":"bootstrap",` +
			`"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z",` +
			`"key_pair":{"client_id":"lk_ci_abcdefghijklmnopqrstuvwxyz","created_at":"2026-01-02T03:04:05Z","last_used_at":null}}`
	}
	introspect := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader("token=x"))
	introspect.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range []struct {
		name    string
		req     *http.Request
		reqBody string
		status  int
		body    string
		ok      bool
	}{
		{"healthy", get, "", 200, `{"status":"ok"}`, true},
		{"undeclared status", get, "", 418, `{"error":"x"}`, false},
		{"missing field", get, "", 200, `{}`, false},
		{"undocumented field", get, "", 200, `{"status":"ok","extra":1}`, false},
		{"unknown path answered 404", httptest.NewRequest("GET", "/nope", nil), "", 404, `{"error":"not_found"}`, true},
		{"unknown path answered 200", httptest.NewRequest("GET", "/nope", nil), "", 200, `{}`, false},
		{"integration", getIntegration, "", 200, integration(""), true},
		{"integration with an undocumented field", getIntegration, "", 200, integration(`"secret":"x",`), false},
		{"key pair with an undocumented field", getIntegration, "", 200,
			strings.Replace(integration(""), `"last_used_at":null`, `"last_used_at":null,"client_secret":"x"`, 1), false},
		{"time that is not RFC 3339", getIntegration, "", 200, strings.Replace(integration(""), `"2026-01-02T03:04:05Z"`, `"yesterday"`, 1), false},
		{"null list", getIntegration, "", 200, strings.Replace(integration(""), `"scopes":[]`, `"scopes":null`, 1), false},
		{"active token without its fields", introspect, "token=x", 200, `{"active":true}`, false},
		{"inactive token with a field", introspect, "token=x", 200, `{"active":false,"sub":"x"}`, false},
		{"inactive token", introspect, "token=x", 200, `{"active":false}`, true},
		{"429 without Retry-After", introspect, "", 429, `{"error":"slow_down"}`, false},
		{"bad body refused", patch, `{"scopes":"x"}`, 400, `{"error":"invalid_request"}`, true},
		{"bad body accepted", patch, `{"scopes":"x"}`, 200, `{}`, false},
	} {
		err := a.check(c.req, []byte(c.reqBody), c.status, jsonHeader, []byte(c.body))
		if (err == nil) != c.ok {
			t.Errorf("%s: check says %v, want ok=%v", c.name, err, c.ok)
		}
	}
}
