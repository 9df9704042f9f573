package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"golang.org/x/net/html"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/storage"
)

// wantDashboardCSP is the policy the dashboard must send: scripts, styles
// and connections to this origin only, nothing inline, no framing.
const wantDashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// get sends a GET (or HEAD) with optional headers and returns the response
// with its body read.
func get(t *testing.T, method, u string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// No automatic redirects or gzip: the test looks at what the server sent.
	c := &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableCompression: true},
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// dashboardAssets returns the asset URLs the page references (scripts,
// styles, icons), resolved against /admin/.
func dashboardAssets(t *testing.T, base string, page []byte) []string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		for _, a := range n.Attr {
			if (a.Key == "src" || a.Key == "href") && strings.HasPrefix(a.Val, "assets/") {
				if u := base + "/admin/" + a.Val; !slices.Contains(urls, u) {
					urls = append(urls, u)
				}
			}
		}
	}
	if len(urls) < 3 {
		t.Fatalf("page references %d assets, want the stylesheet, the script and the icon at least: %v", len(urls), urls)
	}
	return urls
}

func TestDashboardPage(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	for _, method := range []string{"GET", "HEAD"} {
		resp, body := get(t, method, e.srv.URL+"/admin/", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /admin/: status %d: %s", method, resp.StatusCode, body)
		}
		h := resp.Header
		for k, want := range map[string]string{
			"Content-Type":            "text/html; charset=utf-8",
			"Content-Security-Policy": wantDashboardCSP,
			"Cache-Control":           "no-store",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s /admin/: %s = %q, want %q", method, k, got, want)
			}
		}
		if n := len(h.Values("Content-Security-Policy")); n != 1 {
			t.Errorf("%s /admin/: %d CSP headers, want exactly 1 (a second, stricter one would also apply)", method, n)
		}
		if method == "HEAD" {
			if len(body) != 0 {
				t.Errorf("HEAD /admin/ has a body")
			}
			continue
		}
		if !bytes.Contains(body, []byte(`<script type="module" src="assets/`)) {
			t.Errorf("page does not load its module script: %s", body)
		}
		if bytes.Contains(body, []byte("{{version}}")) {
			t.Errorf("page still has the {{version}} placeholder")
		}
	}
	// The page holds no secret, so it needs no token; /admin redirects to it.
	resp, _ := get(t, "GET", e.srv.URL+"/admin", nil)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/admin/" {
		t.Errorf("GET /admin: status %d, Location %q; want 301 to /admin/", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The gzipped page is the same page.
	_, plain := get(t, "GET", e.srv.URL+"/admin/", nil)
	resp, zipped := get(t, "GET", e.srv.URL+"/admin/", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if got := gunzip(t, zipped); !bytes.Equal(got, plain) {
			t.Errorf("gzipped page differs from the page")
		}
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDashboardAssets(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	_, page := get(t, "GET", e.srv.URL+"/admin/", nil)
	wantType := map[string]string{
		".css": "text/css; charset=utf-8",
		".js":  "text/javascript; charset=utf-8",
		".svg": "image/svg+xml",
	}
	importRE := regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^'"]*?from\s+'(\./[^']+)'`)
	seen := map[string]bool{}
	queue := dashboardAssets(t, e.srv.URL, page)
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if seen[u] {
			continue
		}
		seen[u] = true
		resp, body := get(t, "GET", u, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d: %s", u, resp.StatusCode, body)
			continue
		}
		ext := path.Ext(u)
		if got := resp.Header.Get("Content-Type"); got != wantType[ext] {
			t.Errorf("GET %s: Content-Type %q, want %q", u, got, wantType[ext])
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control %q, want a year, immutable", u, got)
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != wantDashboardCSP {
			t.Errorf("GET %s: CSP %q", u, got)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", u)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", u)
		} else if r2, b2 := get(t, "GET", u, map[string]string{"If-None-Match": etag}); r2.StatusCode != http.StatusNotModified || len(b2) != 0 {
			t.Errorf("GET %s with If-None-Match: status %d, %d bytes; want 304, empty", u, r2.StatusCode, len(b2))
		}
		if rz, bz := get(t, "GET", u, map[string]string{"Accept-Encoding": "gzip"}); rz.Header.Get("Content-Encoding") == "gzip" {
			if !bytes.Equal(gunzip(t, bz), body) {
				t.Errorf("GET %s: gzipped body differs", u)
			}
			if rz.Header.Get("ETag") == etag {
				t.Errorf("GET %s: gzipped and plain bodies share the ETag %s", u, etag)
			}
		}
		// Follow the module graph: a missing module breaks the page.
		if ext == ".js" {
			for _, m := range importRE.FindAllSubmatch(body, -1) {
				queue = append(queue, u[:strings.LastIndexByte(u, '/')+1]+strings.TrimPrefix(string(m[1]), "./"))
			}
		}
	}
	if n := len(seen); n < 8 {
		t.Errorf("found %d assets, want the stylesheet, the icon and every module", n)
	}

	// Another version's URL (a page from another replica mid-upgrade) is
	// served but not cached as immutable.
	for u := range seen {
		old := regexp.MustCompile(`/assets/[^/]+/`).ReplaceAllString(u, "/assets/0000000000000000/")
		resp, _ := get(t, "GET", old, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: status %d, Cache-Control %q; want 200, no-cache", old, resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		break
	}
}

// TestDashboardConditional: for the page and an asset, plain and gzipped,
// HEAD answers GET's headers without the body, If-None-Match (weak
// comparison, lists, *) answers 304 without a body when the client's copy
// is the one it would get, and a Range is answered with the whole body.
func TestDashboardConditional(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	_, page := get(t, "GET", e.srv.URL+"/admin/", nil)
	var css string
	for _, u := range dashboardAssets(t, e.srv.URL, page) {
		if path.Ext(u) == ".css" {
			css = u
		}
	}
	for _, u := range []string{e.srv.URL + "/admin/", css} {
		for _, enc := range []string{"", "gzip"} {
			where := fmt.Sprintf("%s (Accept-Encoding %q)", u, enc)
			hdr := func(kv ...string) map[string]string {
				m := map[string]string{"Accept-Encoding": enc}
				for i := 0; i < len(kv); i += 2 {
					m[kv[i]] = kv[i+1]
				}
				return m
			}
			resp, body := get(t, "GET", u, hdr())
			etag := resp.Header.Get("ETag")
			if resp.StatusCode != http.StatusOK || etag == "" || len(body) == 0 {
				t.Fatalf("GET %s: status %d, ETag %q, %d bytes", where, resp.StatusCode, etag, len(body))
			}
			if got, want := resp.Header.Get("Content-Length"), fmt.Sprint(len(body)); got != want {
				t.Errorf("GET %s: Content-Length %q, want %s", where, got, want)
			}
			if enc == "gzip" && resp.Header.Get("Content-Encoding") != "gzip" {
				t.Errorf("GET %s: not gzipped", where)
			}

			head, hbody := get(t, "HEAD", u, hdr())
			if head.StatusCode != http.StatusOK || len(hbody) != 0 {
				t.Errorf("HEAD %s: status %d, %d bytes; want 200, no body", where, head.StatusCode, len(hbody))
			}
			for _, k := range []string{"ETag", "Content-Type", "Content-Length", "Content-Encoding", "Cache-Control", "Vary", "Content-Security-Policy"} {
				if got, want := head.Header.Get(k), resp.Header.Get(k); got != want {
					t.Errorf("HEAD %s: %s %q, GET's %q", where, k, got, want)
				}
			}

			for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
				for _, method := range []string{"GET", "HEAD"} {
					r, b := get(t, method, u, hdr("If-None-Match", inm))
					if r.StatusCode != http.StatusNotModified || len(b) != 0 {
						t.Errorf("%s %s, If-None-Match %s: status %d, %d bytes; want 304, no body", method, where, inm, r.StatusCode, len(b))
						continue
					}
					for _, k := range []string{"ETag", "Cache-Control"} {
						if got, want := r.Header.Get(k), resp.Header.Get(k); got != want {
							t.Errorf("%s %s, If-None-Match %s: 304 with %s %q, want %q", method, where, inm, k, got, want)
						}
					}
				}
			}
			if r, b := get(t, "GET", u, hdr("If-None-Match", `"other"`)); r.StatusCode != http.StatusOK || !bytes.Equal(b, body) {
				t.Errorf("GET %s, If-None-Match another tag: status %d, %d bytes; want 200 and the body", where, r.StatusCode, len(b))
			}
			// Ranges are not served: the whole body, with its own length.
			for _, rng := range []string{"bytes=0-9", "bytes=0-0,2-2,4-4", "bytes=" + strings.Repeat("0-0,", 2000) + "0-0"} {
				r, b := get(t, "GET", u, hdr("Range", rng, "If-Range", etag))
				if r.StatusCode != http.StatusOK || !bytes.Equal(b, body) || r.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
					t.Errorf("GET %s, Range %.30s: status %d, %d bytes, Content-Length %q; want 200 and the whole body",
						where, rng, r.StatusCode, len(b), r.Header.Get("Content-Length"))
				}
			}
		}
	}
	// A plain copy is not the gzipped one: a client that now accepts gzip
	// gets the gzipped body.
	plain, _ := get(t, "GET", css, nil)
	r, b := get(t, "GET", css, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": plain.Header.Get("ETag")})
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Encoding") != "gzip" || len(b) == 0 {
		t.Errorf("GET %s with gzip and the plain ETag: status %d, Content-Encoding %q; want 200 gzipped", css, r.StatusCode, r.Header.Get("Content-Encoding"))
	}
}

func TestDashboardUnknownAsset(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{
		"/admin/assets/0000000000000000/nope.js",
		"/admin/assets/app.js",
		"/admin/assets/",
		"/admin/nope",
	} {
		resp, body := get(t, "GET", e.srv.URL+p, nil)
		var out struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &out) != nil || out.Error != "not_found" {
			t.Errorf("GET %s: status %d, body %s; want 404 with a JSON error object", p, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q, want application/json", p, ct)
		}
	}
	resp, body := get(t, "POST", e.srv.URL+"/admin/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || !bytes.Contains(body, []byte(`"method_not_allowed"`)) {
		t.Errorf("POST /admin/: status %d, body %s; want 405 JSON", resp.StatusCode, body)
	}
}

// TestDashboardNoInlineScriptOrStyle keeps the page within its CSP and
// usable by keyboard and screen reader: no inline script or style, no
// event-handler attributes, a label for every field, a type for every
// button; and the scripts never turn strings into HTML or code.
func TestDashboardNoInlineScriptOrStyle(t *testing.T) {
	e := newEnv(t)
	_, page := get(t, "GET", e.srv.URL+"/admin/", nil)
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(n *html.Node, key string) (string, bool) {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val, true
			}
		}
		return "", false
	}
	labelled := map[string]bool{}
	var fields []*html.Node
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		where := "<" + n.Data + ">"
		if id, ok := attr(n, "id"); ok {
			where = fmt.Sprintf("<%s id=%q>", n.Data, id)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("%s has an inline event handler %s", where, a.Key)
			}
			if a.Key == "style" {
				t.Errorf("%s has a style attribute", where)
			}
			if strings.HasPrefix(strings.TrimSpace(strings.ToLower(a.Val)), "javascript:") {
				t.Errorf("%s has a javascript: URL", where)
			}
		}
		switch n.Data {
		case "style":
			t.Errorf("the page has a <style> element")
		case "script":
			src, ok := attr(n, "src")
			if !ok || !strings.HasPrefix(src, "assets/") {
				t.Errorf("%s is not an external script of the dashboard (src %q)", where, src)
			}
			if n.FirstChild != nil {
				t.Errorf("%s has inline content", where)
			}
		case "link":
			if href, _ := attr(n, "href"); !strings.HasPrefix(href, "assets/") {
				t.Errorf("%s loads %q from outside the dashboard", where, href)
			}
		case "img":
			if src, _ := attr(n, "src"); !strings.HasPrefix(src, "assets/") {
				t.Errorf("%s loads %q from outside the dashboard", where, src)
			}
			if _, ok := attr(n, "alt"); !ok {
				t.Errorf("%s has no alt", where)
			}
		case "label":
			if f, ok := attr(n, "for"); ok {
				labelled[f] = true
			}
		case "input", "select", "textarea":
			fields = append(fields, n)
		case "button":
			if _, ok := attr(n, "type"); !ok {
				t.Errorf("%s has no type (it would submit its form)", where)
			}
		}
	}
	for _, n := range fields {
		id, _ := attr(n, "id")
		_, aria := attr(n, "aria-label")
		if typ, _ := attr(n, "type"); typ == "hidden" {
			continue
		}
		if !labelled[id] && !aria {
			t.Errorf("<%s id=%q> has no label", n.Data, id)
		}
	}

	// The scripts build the DOM with createElement and textContent. The
	// CSP (Trusted Types) would stop the rest in the browser; this finds
	// it before a browser does.
	banned := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"](style|on)|\.style\.|cssText`)
	for _, u := range dashboardAssets(t, e.srv.URL, page) {
		if !strings.HasSuffix(u, ".js") {
			continue
		}
		_, js := get(t, "GET", u, nil)
		if m := banned.Find(js); m != nil {
			t.Errorf("%s uses %q", path.Base(u), m)
		}
	}
}

// TestDashboardKeepsAdminAPI checks that the dashboard's routes shadow
// none of the admin API's: they answer JSON, with the API's own CSP.
func TestDashboardKeepsAdminAPI(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	e.createIntegration(map[string]any{"name": "billing"})
	for _, p := range []string{"/admin/integrations", "/admin/integrations/billing", "/admin/tokens", "/admin/admins", "/admin/audit", "/admin/signing-keys"} {
		resp, body := get(t, "GET", e.srv.URL+p, map[string]string{"Authorization": "Bearer " + testBootstrap})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !json.Valid(body) {
			t.Errorf("GET %s: status %d, Content-Type %q; want 200 JSON", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != "default-src 'none'; frame-ancestors 'none'" {
			t.Errorf("GET %s: CSP %q, want the API's", p, got)
		}
		resp, _ = get(t, "GET", e.srv.URL+p, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: status %d, want 401", p, resp.StatusCode)
		}
	}

	// With the admin API on its own listener, the dashboard moves with it.
	s := newEnv(t, func(o *server.Options) { o.SeparateAdmin = true })
	if resp, _ := get(t, "GET", s.admin.URL+"/admin/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("admin listener: GET /admin/: status %d, want 200", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", s.srv.URL+"/admin/", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("public listener: GET /admin/: status %d, want 404", resp.StatusCode)
	}
}

// Browser tests

// chromiumPath finds Chromium for the browser tests, or skips: the tests
// need a real browser, which a developer machine may not have. CI sets
// LATCHKEY_TEST_BROWSER=1 so that a missing browser fails instead.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("LATCHKEY_TEST_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("no Chromium at %s (%v): install it (apt-get install -y chromium) or set LATCHKEY_TEST_CHROMIUM", p, err)
		if os.Getenv("LATCHKEY_TEST_BROWSER") == "1" {
			t.Fatalf("LATCHKEY_TEST_BROWSER=1 but %s", msg)
		}
		t.Skipf("browser test skipped: %s; set LATCHKEY_TEST_BROWSER=1 to make this a failure", msg)
	}
	return p
}

// browser is a headless Chromium tab with a record of everything the page
// logged: console calls, uncaught exceptions, browser log entries (CSP
// violations among them) and securitypolicyviolation events.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	messages []string
}

func newBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	exe := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	)
	// A bound on the whole test: a hung browser fails it instead of
	// hanging go test.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)
	b := &browser{ctx: bctx}
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(bctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, fmt.Sprintf("%s %s (%s:%d)", m.Type, m.Text, m.URL, m.Line+1))
			b.mu.Unlock()
		}
	}()
	const watch = `document.addEventListener('securitypolicyviolation', (e) => {
		console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + e.blockedURI);
	});`
	if _, err := chromedp.Call(bctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch}); err != nil {
		t.Fatal(err)
	}
	return b
}

// do runs actions, failing the test with step in the message.
func (b *browser) do(t *testing.T, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("%s: %v\npage messages:\n%s", step, err, strings.Join(b.problems(), "\n"))
	}
}

func (b *browser) value(t *testing.T, sel string) string {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return v
}

func (b *browser) eval(t *testing.T, js string) string {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// problems is every console message at warning level or above.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		if !strings.HasPrefix(m, "log ") && !strings.HasPrefix(m, "info ") && !strings.HasPrefix(m, "debug ") {
			out = append(out, m)
		}
	}
	return out
}

// signIn opens the dashboard and signs in with token.
func (b *browser) signIn(t *testing.T, base, token string) {
	t.Helper()
	b.do(t, "sign in",
		chromedp.Navigate(base+"/admin/"),
		chromedp.WaitVisible(chromedp.CSS("#signin-token")),
		chromedp.SendKeys(chromedp.CSS("#signin-token"), token),
		chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#shell")),
	)
}

// secrets waits for the one-time dialog and reads the fields it shows,
// then closes it.
func (b *browser) secrets(t *testing.T, ids ...string) []string {
	t.Helper()
	b.do(t, "wait for the one-time secret dialog", chromedp.WaitVisible(chromedp.CSS("#"+ids[0])))
	if text := b.eval(t, `document.querySelector('#secret-dialog').textContent`); !strings.Contains(text, "You will not see this secret again") {
		t.Errorf("secret dialog lacks the one-time notice: %q", text)
	}
	var out []string
	for _, id := range ids {
		out = append(out, b.value(t, "#"+id))
	}
	// Neither Escape nor the close button nor Done dismiss it before the
	// admin confirms the secret is stored (issue 17, defect 2).
	open := func() bool {
		return b.eval(t, `String(document.querySelector('#secret-dialog').open)`) == "true"
	}
	b.do(t, "press Escape on the secret dialog", chromedp.KeyEvent(kb.Escape))
	if !open() {
		t.Errorf("Escape closed the one-time secret dialog before the admin confirmed storing the secret")
	} else {
		b.do(t, "try the close button and Done", chromedp.Click(chromedp.CSS("#secret-close")), chromedp.Click(chromedp.CSS("#secret-done")))
		if !open() {
			t.Errorf("the close button or Done closed the one-time secret dialog before the admin confirmed storing the secret")
		} else if b.eval(t, `String(document.querySelector('#secret-guard').checkVisibility())`) != "true" {
			t.Errorf("the secret dialog refused to close without saying why")
		}
	}
	if open() {
		b.do(t, "close the secret dialog",
			chromedp.Click(chromedp.CSS("#secret-stored")),
			chromedp.Click(chromedp.CSS("#secret-done")),
			chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")),
		)
	}
	// The close event runs as a task of its own: give it a moment.
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.querySelector('#secret-fields').childElementCount === 0`,
		chromedp.WithPollingTimeout(5*time.Second)))
	if err != nil {
		t.Errorf("secrets stay in the page after the dialog closed: %v", err)
	}
	return out
}

// toastSays waits for the page's status region to show a visible message
// containing want.
func (b *browser) toastSays(t *testing.T, want string) {
	t.Helper()
	js := fmt.Sprintf(`[...document.querySelectorAll('#toasts .toast')].some((e) => e.checkVisibility() && e.textContent.includes(%q))`, want)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("no visible toast says %q (the status region says %q)", want, b.eval(t, `document.querySelector('#toasts').textContent`))
	}
}

// timesExplained checks every time shown in sel (issue 17: relative times
// with the absolute UTC time on hover/focus, a zone label everywhere): it
// can be focused; focus shows its UTC time beside it, which is hidden
// until then; an absolute (local) time names its zone. It returns how
// many times it saw and how many of them are relative.
func (b *browser) timesExplained(t *testing.T, where, sel string) (n, relative int) {
	t.Helper()
	js := fmt.Sprintf(`(() => {
		const times = [...document.querySelectorAll(%q + ' time')].filter((e) => e.checkVisibility());
		const bad = [];
		for (const el of times) {
			const utc = el.querySelector('.utc');
			const own = [...el.childNodes].filter((c) => c !== utc).map((c) => c.textContent).join('');
			const shown = () => utc && utc.getBoundingClientRect().width > 40 && getComputedStyle(utc).clipPath === 'none';
			if (el.tabIndex !== 0) bad.push(own + ': cannot be focused');
			if (!utc || !/^(, )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(utc.textContent)) bad.push(own + ': no UTC time');
			else if (shown()) bad.push(own + ': its UTC time shows before hover or focus');
			el.focus();
			if (utc && !shown()) bad.push(own + ': focus does not show its UTC time');
			el.blur();
			if (!el.classList.contains('rel') && !el.querySelector('.tz')?.textContent.trim()) bad.push(own + ': a local time without its zone');
			if (el.classList.contains('rel') && /\d:\d\d/.test(own)) bad.push(own + ': a relative time that is not');
		}
		return JSON.stringify({ n: times.length, rel: times.filter((e) => e.classList.contains('rel')).length, bad });
	})()`, sel)
	var got struct {
		N, Rel int
		Bad    []string
	}
	if err := json.Unmarshal([]byte(b.eval(t, js)), &got); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, bad := range got.Bad {
		t.Errorf("%s: %s", where, bad)
	}
	return got.N, got.Rel
}

// TestDashboardBrowser drives the dashboard in headless Chromium and
// checks each step's effect from Go over real HTTP.
func TestDashboardBrowser(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	b := newBrowser(t, 1280, 800)
	start := time.Now()

	root := e.newAdmin("root", storage.RoleOwner)
	b.signIn(t, e.srv.URL, root)
	if got := b.eval(t, `sessionStorage.getItem('latchkey.admin-token')`); got != root {
		t.Errorf("sessionStorage holds %q, want the token", got)
	}
	if got := b.eval(t, `document.cookie + location.href`); strings.Contains(got, root) {
		t.Errorf("the token is in a cookie or the URL: %q", got)
	}
	if got := b.eval(t, `document.querySelector('#session-who').textContent`); got != "root · owner" {
		t.Errorf("the page says %q is signed in, want root · owner", got)
	}

	// Escape closes a dialog and focus returns to what opened it.
	b.do(t, "open and dismiss the create dialog",
		chromedp.Click(chromedp.CSS("#new-integration")),
		chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotVisible(chromedp.CSS("#integration-dialog")),
	)
	if got := b.eval(t, `document.activeElement.id`); got != "new-integration" {
		t.Errorf("after Escape, focus is on %q, want the New integration button", got)
	}

	// Create an integration; the page shows its pair once.
	b.do(t, "create an integration",
		chromedp.Click(chromedp.CSS("#new-integration")),
		chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.SendKeys(chromedp.CSS("#ig-name"), "billing-sync"),
		chromedp.SendKeys(chromedp.CSS("#ig-description"), "Nightly invoice export"),
		chromedp.SendKeys(chromedp.CSS("#ig-scopes"), "invoices:read invoices:write"),
		chromedp.Click(chromedp.CSS("#integration-submit")),
	)
	b.do(t, "wait for the new pair", chromedp.WaitVisible(chromedp.CSS("#secret-client-secret")))
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if _, body := get(t, "GET", e.srv.URL+"/.well-known/oauth-authorization-server", nil); json.Unmarshal(body, &meta) != nil || meta.TokenEndpoint == "" {
		t.Fatalf("no token endpoint in the metadata: %s", body)
	}
	if got := b.eval(t, `document.querySelector('#secret-token-endpoint')?.value ?? ''`); got != meta.TokenEndpoint {
		t.Errorf("the new pair is shown with the token endpoint %q, want the metadata's %s", got, meta.TokenEndpoint)
	}
	curl := b.eval(t, `document.querySelector('#secret-curl')?.value ?? ''`)
	pair := b.secrets(t, "secret-client-id", "secret-client-secret")
	old := keyPair{ID: pair[0], Secret: pair[1]}
	if !strings.HasPrefix(curl, "curl ") || !strings.Contains(curl, old.ID) || !strings.Contains(curl, "/oauth2/token") || !strings.Contains(curl, "grant_type=client_credentials") {
		t.Errorf("the new pair is not shown with a ready curl line: %q", curl)
	}
	if !strings.HasPrefix(old.ID, "lk_ci_") || !strings.HasPrefix(old.Secret, "lk_cs_") {
		t.Fatalf("dialog shows %q / %q, want a client ID and secret", old.ID, old.Secret)
	}
	if status, _, out := e.form("/oauth2/token", old, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
		t.Fatalf("token with the pair from the page: status %d: %v", status, out)
	} else if out["scope"] != "invoices:read invoices:write" {
		t.Errorf("token scope %q, want the scopes typed in the page", out["scope"])
	}
	b.do(t, "see the new integration in the list",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"]`)),
	)
	if text := b.eval(t, `document.querySelector('tr[data-name="billing-sync"]').textContent`); !strings.Contains(text, old.ID) {
		t.Errorf("the list row does not show the client ID: %q", text)
	}

	// Limits are checked in the page, in the units the admin typed, and
	// the error is tied to its field (defects 9, 13); a server error keeps
	// focus in the dialog (defect 10); an error goes once the value changes
	// (defect 13).
	b.do(t, "a lifetime over the limit",
		chromedp.Click(chromedp.CSS("#new-integration")),
		chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.SendKeys(chromedp.CSS("#ig-name"), "billing-sync"),
		chromedp.SendKeys(chromedp.CSS("#ig-lifetime"), "31"),
	)
	b.eval(t, `(document.querySelector('#ig-lifetime-unit').value = '86400', '')`)
	b.do(t, "submit it", chromedp.Click(chromedp.CSS("#integration-submit")))
	fieldErr := `(() => { const f = document.querySelector('#ig-lifetime'); const d = (f.getAttribute('aria-describedby') ?? '').split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' '); return f.getAttribute('aria-invalid') + '|' + d; })()`
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`document.querySelector('#ig-lifetime').getAttribute('aria-invalid') === 'true'`, chromedp.WithPollingTimeout(3*time.Second))); err != nil {
		t.Errorf("a 31-day lifetime is not flagged on its field: %s", b.eval(t, fieldErr))
	} else if got := b.eval(t, fieldErr); !strings.Contains(got, "between 1 minute and 30 days") {
		t.Errorf("the lifetime error says %q, want it in the admin's units", got)
	}
	if got := b.eval(t, `document.activeElement.id`); got != "ig-lifetime" {
		t.Errorf("after the lifetime error, focus is on %q, want the field", got)
	}
	b.eval(t, `(document.querySelector('#ig-lifetime').value = '', '')`)
	b.do(t, "change it", chromedp.SendKeys(chromedp.CSS("#ig-lifetime"), "2"))
	if got := b.eval(t, fieldErr); strings.HasPrefix(got, "true") || strings.Contains(got, "between 1 minute and 30 days") {
		t.Errorf("the lifetime error stays after the value changed: %q", got)
	}
	b.do(t, "a name already taken", chromedp.Click(chromedp.CSS("#integration-submit")),
		chromedp.WaitVisible(chromedp.CSS("#integration-dialog [data-form-error]")))
	if got := b.eval(t, `document.activeElement === document.body ? 'body' : String(document.querySelector('#integration-dialog').contains(document.activeElement))`); got != "true" {
		t.Errorf("after a server error in the dialog, focus is on %s, want inside the dialog", got)
	}
	b.do(t, "change the name", chromedp.SendKeys(chromedp.CSS("#ig-name"), "-2"))
	if b.eval(t, `String(document.querySelector('#integration-dialog [data-form-error]').checkVisibility())`) == "true" {
		t.Errorf("the server's error stays after the name changed")
	}
	b.do(t, "close the dialog", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#integration-dialog")))

	// listIdle waits for the list to be drawn after a change.
	listIdle := chromedp.WaitNotPresent(chromedp.CSS("#integrations-table[aria-busy]"))

	// Edit: the page says it saved, where it can be seen (defect 4).
	b.do(t, "edit the description",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(`button[data-action="edit"][data-key="billing-sync"]`)),
		chromedp.WaitVisible(chromedp.CSS("#ig-description")),
		chromedp.SendKeys(chromedp.CSS("#ig-description"), " to the ledger"),
		chromedp.Click(chromedp.CSS("#integration-submit")),
		chromedp.WaitNotVisible(chromedp.CSS("#integration-dialog")),
	)
	b.toastSays(t, "billing-sync saved")

	// The lifetime: empty while it follows the server's default, set in the
	// page, then emptied back to the default (defect 5).
	lifetime := func() (any, any) {
		out := e.mustAdmin("GET", "/admin/integrations/billing-sync", nil, http.StatusOK)
		return out["token_lifetime_seconds"], out["token_lifetime_default"]
	}
	editLifetime := func(value, unit string) string {
		t.Helper()
		b.do(t, "edit the lifetime",
			listIdle, // a redraw of the list would replace the button clicked
			chromedp.Click(chromedp.CSS(`button[data-action="edit"][data-key="billing-sync"]`)),
			chromedp.WaitVisible(chromedp.CSS("#ig-lifetime")))
		was := b.value(t, "#ig-lifetime")
		b.eval(t, fmt.Sprintf(`(document.querySelector('#ig-lifetime').value = %q, document.querySelector('#ig-lifetime-unit').value = %q, '')`, value, unit))
		b.do(t, "save the lifetime", chromedp.Click(chromedp.CSS("#integration-submit")), chromedp.WaitNotVisible(chromedp.CSS("#integration-dialog")))
		return was
	}
	if was := editLifetime("2", "3600"); was != "" {
		t.Errorf("Edit shows the lifetime of an integration that follows the default as %q, want it empty", was)
	}
	b.toastSays(t, "billing-sync saved")
	if secs, def := lifetime(); secs != float64(7200) || def != false {
		t.Errorf("after setting 2 hours in the page: lifetime %v, default %v", secs, def)
	}
	if was := editLifetime("", "3600"); was != "2" {
		t.Errorf("Edit shows a 2-hour lifetime as %q", was)
	}
	b.toastSays(t, "billing-sync saved")
	if _, def := lifetime(); def != true {
		t.Errorf("after emptying the lifetime in the page, it does not follow the server's default")
	}

	// Regenerate with a grace period: the page names the old pair's deadline.
	b.do(t, "regenerate the key pair with a grace period",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(`button[data-action="regenerate"][data-key="billing-sync"]`)),
		chromedp.WaitVisible(chromedp.CSS("#regenerate-confirm")),
	)
	if got := b.eval(t, `document.querySelector('#regenerate-warning').textContent`); strings.Contains(got, "null") {
		t.Errorf("the regenerate warning shows a null: %q", got)
	}
	if grace := b.value(t, "#regenerate-grace"); grace != "0" {
		t.Errorf("grace defaults to %q, want 0", grace)
	}
	b.eval(t, `(() => {
		const s = document.querySelector('#regenerate-grace');
		s.value = '3600';
		s.dispatchEvent(new Event('change', { bubbles: true }));
		return '';
	})()`)
	b.do(t, "confirm regeneration with grace", chromedp.Click(chromedp.CSS("#regenerate-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#secret-client-secret")))
	if lede := b.eval(t, `document.querySelector('#secret-lede').textContent`); !strings.Contains(lede, "keeps working until") || !strings.Contains(lede, old.ID) {
		t.Errorf("after a regeneration with grace, the page says %q; want the old pair %s and its deadline", lede, old.ID)
	}
	pair = b.secrets(t, "secret-client-id", "secret-client-secret")
	mid := keyPair{ID: pair[0], Secret: pair[1]}
	// The audit log filtered by actor and action from the row's audit
	// button, the filters in the address (it survives a reload), the time
	// zone named (defect 15).
	b.do(t, "the audit log of billing-sync",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(`button[data-action="audit"][data-key="billing-sync"]`)),
		chromedp.WaitVisible(chromedp.CSS("#audit-body tr")))
	if got := b.eval(t, `location.hash`); got != "#audit?integration=billing-sync" {
		t.Errorf("the audit log of billing-sync is at %q, want its filter in the address", got)
	}
	b.do(t, "filter by actor and action",
		chromedp.Navigate(e.srv.URL+"/admin/#audit?actor=root&action=integration.update"),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#audit-body tr")),
		chromedp.WaitNotPresent(chromedp.CSS("#audit-body .loading-row")))
	if got := b.eval(t, `[...document.querySelectorAll('#audit-body tr')].map((r) => r.textContent.includes('root') && r.textContent.includes('integration.update')).every(Boolean) + '|' + (document.querySelector('#audit-actor')?.value ?? '') + '|' + (document.querySelector('#audit-action')?.value ?? '')`); got != "true|root|integration.update" {
		t.Errorf("filtered by actor root and action integration.update from the address, the page says %q", got)
	}
	if got := b.eval(t, `document.querySelector('#view-audit thead th').textContent`); !strings.Contains(got, "(") {
		t.Errorf("the audit log's time column %q names no time zone", got)
	}
	if n, rel := b.timesExplained(t, "the audit log", "#view-audit"); n == 0 || rel != 0 {
		t.Errorf("the audit log shows %d times, %d relative; want absolute ones, in order", n, rel)
	}
	b.do(t, "back to the integrations", chromedp.Click(chromedp.CSS(`.nav a[href="#integrations"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"]`)))
	if n, rel := b.timesExplained(t, "the integrations", "#view-integrations"); n == 0 || rel == 0 {
		t.Errorf("the integrations list shows %d times, %d relative; want relative ones", n, rel)
	}

	// Tokens issued to both pairs, the newest last, for the detail view's
	// recent tokens: more than it shows at first.
	var issued []string
	issued = append(issued, e.token(old, url.Values{"scope": {"invoices:read"}}))
	for range 10 {
		issued = append(issued, e.token(mid, url.Values{"scope": {"invoices:write"}}))
	}
	e.clock.Advance(time.Second)
	issued = append(issued, e.token(mid, nil))

	// The detail view, at an address that can be shared: both pairs, the
	// settings, the tokens issued recently, the recent changes.
	b.do(t, "open the detail view",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(`tr[data-name="billing-sync"] a.name-link`)),
		chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
	for range 2 {
		if got := b.eval(t, `location.hash`); got != "#integration/billing-sync" {
			t.Errorf("the detail view's address is %q", got)
		}
		text := b.eval(t, `document.querySelector('#view-integration').textContent`)
		for _, want := range []string{mid.ID, old.ID, "Works until", "Last used", "Recent changes", "integration.update", "the server’s default"} {
			if !strings.Contains(text, want) {
				t.Errorf("the detail view lacks %q: %q", want, text)
			}
		}
		var rows []string
		if err := json.Unmarshal([]byte(b.eval(t, `JSON.stringify([...document.querySelectorAll('#detail-tokens tbody tr')].map((r) =>
			['Key pair', 'Scopes', 'Status'].map((l) => r.querySelector('td[data-label="' + l + '"]').textContent).join('|')))`)), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 10 || rows[0] != mid.ID+" current|invoices:readinvoices:write|Active" {
			t.Errorf("the detail view's recent tokens are %q; want ten, the current pair's newest first", rows)
		}
		for _, tok := range issued {
			if _, sig, _ := strings.Cut(tok, "."); strings.Contains(text, tok) || strings.Contains(text, sig) {
				t.Errorf("the detail view shows an access token or its signature")
			}
		}
		if n, rel := b.timesExplained(t, "the detail view", "#view-integration"); n == 0 || rel == 0 {
			t.Errorf("the detail view shows %d times, %d relative; want relative ones", n, rel)
		}
		b.do(t, "reload the detail view", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
	}
	// Older tokens are a click away, until there are none.
	stored, _ := e.listAll(root, "/admin/integrations/billing-sync/tokens")
	more := `#detail-tokens button[data-action="more-tokens"]`
	for i := 0; b.eval(t, `String(document.querySelector('`+more+`').checkVisibility())`) == "true"; i++ {
		if i > len(stored) {
			t.Fatal("Show older tokens never runs out")
		}
		n := b.eval(t, `String(document.querySelectorAll('#detail-tokens tbody tr').length)`)
		b.do(t, "show older tokens", chromedp.Click(chromedp.CSS(more)))
		grown := `String(document.querySelectorAll('#detail-tokens tbody tr').length) !== '` + n + `'`
		if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](grown, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Fatalf("Show older tokens added none: %v", err)
		}
	}
	rows := b.eval(t, `[...document.querySelectorAll('#detail-tokens tbody tr')].map((r) => r.textContent).join('\n')`)
	if got := strings.Count(rows, "\n") + 1; got != len(stored) || !strings.Contains(rows, old.ID+" in grace") {
		t.Errorf("after showing every older token the detail view lists %d, want the %d stored, the pair in grace's among them", got, len(stored))
	}

	// Hovering a time shows its UTC time too.
	var at []float64
	if err := json.Unmarshal([]byte(b.eval(t, `(() => {
		const el = document.querySelector('#detail-tokens time');
		el.scrollIntoView({ block: 'center' });
		const r = el.getBoundingClientRect();
		return JSON.stringify([r.x + r.width / 2, r.y + r.height / 2]);
	})()`)), &at); err != nil {
		t.Fatal(err)
	}
	b.do(t, "hover a time", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, at[0], at[1]))
	if got := b.eval(t, `String(document.querySelector('#detail-tokens time .utc').getBoundingClientRect().width > 40)`); got != "true" {
		t.Error("hovering a time does not show its UTC time")
	}
	b.do(t, "move the mouse away", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 1, 1))
	b.do(t, "back to the list", chromedp.Click(chromedp.CSS(`#view-integration .crumbs a`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"]`)))

	// During the grace the row names the old pair and its last use
	// (defect 8).
	b.do(t, "the row during the grace", chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"] .grace`)))
	if got := b.eval(t, `document.querySelector('tr[data-name="billing-sync"] .grace').textContent`); !strings.Contains(got, old.ID) || !strings.Contains(got, "last used") {
		t.Errorf("during the grace the row says %q; want the old client ID %s and its last use", got, old.ID)
	}

	// Regenerate with no grace during the grace: the dialog warns that the
	// pair still in grace is revoked at once too, by its client ID
	// (defect 1), and afterwards the page says the old pair is revoked now
	// (defect 3).
	b.do(t, "regenerate the key pair during the grace",
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"] .grace`)),
		chromedp.Click(chromedp.CSS(`button[data-action="regenerate"][data-key="billing-sync"]`)),
		chromedp.WaitVisible(chromedp.CSS("#regenerate-confirm")),
	)
	warning := b.eval(t, `document.querySelector('#regenerate-warning').textContent`)
	if !strings.Contains(warning, "stops working now") {
		t.Errorf("regenerate dialog does not warn that the current pair stops working: %q", warning)
	}
	if !strings.Contains(warning, old.ID) || !strings.Contains(warning, "revoked at once") {
		t.Errorf("regenerating during a grace, the dialog does not warn that the pair in grace (%s) is revoked at once: %q", old.ID, warning)
	}
	b.do(t, "confirm regeneration", chromedp.Click(chromedp.CSS("#regenerate-confirm")),
		chromedp.WaitVisible(chromedp.CSS("#secret-client-secret")))
	if lede := b.eval(t, `document.querySelector('#secret-lede').textContent`); !strings.Contains(lede, "revoked now") {
		t.Errorf("after a regeneration without grace, the page says %q; want the old pair revoked now", lede)
	}
	pair = b.secrets(t, "secret-client-id", "secret-client-secret")
	fresh := keyPair{ID: pair[0], Secret: pair[1]}
	if fresh == old || fresh == mid {
		t.Fatalf("the page shows an old pair after regenerating")
	}
	for _, kp := range []keyPair{old, mid} {
		status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
		if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Errorf("old pair %s after regeneration: status %d %v, want 401 invalid_client", kp.ID, status, out)
		}
	}
	if status, _, out := e.form("/oauth2/token", fresh, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
		t.Errorf("new pair from the page: status %d %v, want 200", status, out)
	}

	// Coming back to the tab shows the last use that happened meanwhile
	// (defect 16).
	lastUsed := `document.querySelector('tr[data-name="billing-sync"] td[data-label="Last used"]').textContent`
	b.eval(t, `(document.dispatchEvent(new Event('visibilitychange')), '')`)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](lastUsed+` !== 'never'`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("back on the tab, billing-sync's last use still says %q", b.eval(t, lastUsed))
	}

	// Suspend and resume from the list's switch: suspending asks first.
	sw := `button[data-action="enabled"][data-key="billing-sync"]`
	b.do(t, "suspend billing-sync",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(sw)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.CSS(sw+`[aria-checked="false"]`)),
	)
	b.toastSays(t, "billing-sync suspended")
	if out := e.mustAdmin("GET", "/admin/integrations/billing-sync", nil, http.StatusOK); out["disabled"] != true {
		t.Errorf("after suspending in the page, disabled = %v", out["disabled"])
	}
	if status, _, out := e.form("/oauth2/token", fresh, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusUnauthorized {
		t.Errorf("suspended integration's pair: status %d %v, want 401", status, out)
	}
	b.do(t, "resume billing-sync",
		chromedp.Click(chromedp.CSS(sw)),
		chromedp.WaitVisible(chromedp.CSS(sw+`[aria-checked="true"]`)),
	)
	b.toastSays(t, "billing-sync resumed")
	if status, _, out := e.form("/oauth2/token", fresh, url.Values{"grant_type": {"client_credentials"}}); status != http.StatusOK {
		t.Errorf("resumed integration's pair: status %d %v, want 200", status, out)
	}

	// An expired admin token is shown as expired, not left out (defect
	// 16). The server's clock moves past its expiry and then back; the
	// page takes the server's word for it, not its own clock's.
	expiring := e.mintAdminToken(root, map[string]any{"description": "nightly job", "expires_in_days": 1})
	e.clock.Advance(24*time.Hour + time.Second)
	expiredRow := fmt.Sprintf(`tr[data-id=%q]`, expiring["id"])
	b.do(t, "the tokens view with an expired token",
		chromedp.Click(chromedp.CSS(`.nav a[href="#tokens"]`)),
		chromedp.WaitVisible(chromedp.CSS(expiredRow)))
	if got := b.eval(t, `document.querySelector('`+expiredRow+` td[data-label="Expires"]').textContent`); !strings.Contains(got, "Expired") {
		t.Errorf("an expired admin token's Expires cell says %q, want the Expired badge", got)
	}
	if got := b.eval(t, `document.querySelector('`+expiredRow+` td[data-label="Expires"] time')?.getAttribute('datetime') ?? ''`); got != expiring["expires_at"] {
		t.Errorf("an expired admin token shows the expiry %q, want %v", got, expiring["expires_at"])
	}
	if got := b.eval(t, `document.querySelector('#tokens-body').textContent`); strings.Count(got, "Expired") != 1 {
		t.Errorf("the tokens view shows %d Expired badges, want 1 (the nightly job's): %q", strings.Count(got, "Expired"), got)
	}
	if n, rel := b.timesExplained(t, "the admin tokens", "#view-tokens"); n == 0 || rel == 0 {
		t.Errorf("the admin tokens show %d times, %d relative; want relative ones", n, rel)
	}
	e.clock.Advance(-24*time.Hour - time.Second)

	// An admin token: generate, use from Go, revoke in the page.
	b.do(t, "generate an admin token",
		chromedp.Click(chromedp.CSS(`.nav a[href="#integrations"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"]`)),
		chromedp.Click(chromedp.CSS(`.nav a[href="#tokens"]`)),
		chromedp.WaitVisible(chromedp.CSS("#new-token")),
		chromedp.Click(chromedp.CSS("#new-token")),
		chromedp.WaitVisible(chromedp.CSS("#token-description")),
		chromedp.SendKeys(chromedp.CSS("#token-description"), "browser test"),
		chromedp.Click(chromedp.CSS("#token-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-admin-token")),
	)
	if n, _ := b.timesExplained(t, "the new admin token's dialog", "#secret-dialog"); n == 0 {
		t.Error("the new admin token's dialog does not say when it expires")
	}
	adminToken := b.secrets(t, "secret-admin-token")[0]
	status, body := e.adminCall("GET", "/admin/tokens", adminToken, nil)
	if status != http.StatusOK {
		t.Fatalf("admin token from the page: GET /admin/tokens: status %d %s", status, body)
	}
	var list struct {
		Items []struct{ ID, Description string }
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, it := range list.Items {
		if it.Description == "browser test" {
			id = it.ID
		}
	}
	if id == "" {
		t.Fatalf("the new token is not listed: %s", body)
	}
	row := fmt.Sprintf(`tr[data-id=%q]`, id)
	b.do(t, "revoke the admin token",
		chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.Click(chromedp.CSS(row+` button[data-action="revoke"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
	)
	if got := b.eval(t, `document.activeElement.textContent`); got != "Cancel" {
		t.Errorf("a confirmation dialog opens with focus on %q, want Cancel (the safe choice)", got)
	}
	b.do(t, "confirm revoking the admin token",
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(row)),
	)
	b.toastSays(t, "revoked")
	if status, body := e.adminCall("GET", "/admin/integrations", adminToken, nil); status != http.StatusUnauthorized {
		t.Errorf("revoked admin token: status %d %s, want 401", status, body)
	}

	// Sign out forgets the token.
	b.do(t, "sign out",
		chromedp.Click(chromedp.CSS("#signout")),
		chromedp.WaitVisible(chromedp.CSS("#signin-token")),
	)
	if n := b.eval(t, `String(sessionStorage.length)`); n != "0" {
		t.Errorf("after sign-out sessionStorage has %s items", n)
	}

	for _, p := range b.problems() {
		if !strings.Contains(p, "status of 409") { // the browser logs the name taken above itself
			t.Errorf("the page reported a problem: %s", p)
		}
	}
	seen := len(b.problems())

	// A token that stops working mid-session sends the page back to
	// sign-in, with the API's reason.
	out := e.mintAdminToken(root, map[string]any{"description": "short-lived"})
	b.signIn(t, e.srv.URL, out["token"].(string))
	// The page says which token is signed in, not only whose (defect 7).
	if got := b.eval(t, `document.querySelector('#session-token')?.textContent ?? ''`); !strings.Contains(got, "short-lived") {
		t.Errorf("the page names the signed-in token %q, want its description short-lived", got)
	}
	e.adminAs(root, "DELETE", "/admin/tokens/"+out["id"].(string), nil, http.StatusNoContent)
	b.do(t, "use a revoked token",
		chromedp.Click(chromedp.CSS(`.nav a[href="#admins"]`)),
		chromedp.WaitVisible(chromedp.CSS("#signin-message")),
	)
	if msg := b.eval(t, `document.querySelector('#signin-message').textContent`); !strings.Contains(msg, "invalid, expired or revoked admin token") {
		t.Errorf("sign-in message %q does not give the API's reason", msg)
	}
	if n := b.eval(t, `String(sessionStorage.length)`); n != "0" {
		t.Errorf("after a 401 sessionStorage has %s items", n)
	}
	for _, p := range b.problems()[seen:] {
		if !strings.Contains(p, "status of 401") { // the browser logs the failed fetch itself
			t.Errorf("the page reported a problem: %s", p)
		}
	}
	seen = len(b.problems())

	// The page offers only what the signed-in token may do.
	visible := func(sel string) bool {
		t.Helper()
		return b.eval(t, `String(Boolean(document.querySelector('`+sel+`')?.checkVisibility()))`) == "true"
	}
	auditor := e.newAdmin("audrey", storage.RoleAuditor)
	b.signIn(t, e.srv.URL, auditor)
	b.do(t, "an auditor's integrations", chromedp.WaitVisible(chromedp.CSS(`tr[data-name="billing-sync"]`)))
	if got := b.eval(t, `document.querySelector('#session-who').textContent`); got != "audrey · auditor" {
		t.Errorf("the page says %q is signed in, want audrey · auditor", got)
	}
	for sel, want := range map[string]bool{
		"#new-integration": false, `button[data-action="edit"]`: false, `button[data-action="delete"]`: false,
		`button[data-action="enabled"]`: false, `button[data-action="regenerate"]`: false,
		`button[data-action="audit"]`: true, `.nav a[href="#admins"]`: true, `.nav a[href="#keys"]`: true,
		"#new-token": false,
	} {
		if got := visible(sel); got != want {
			t.Errorf("signed in as an auditor, %s visible = %v, want %v", sel, got, want)
		}
	}
	b.do(t, "an auditor's detail view", chromedp.Click(chromedp.CSS(`tr[data-name="billing-sync"] a.name-link`)),
		chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
	if got := b.eval(t, `document.querySelector('#view-integration').textContent`); strings.Contains(got, "null") {
		t.Errorf("an auditor's detail view shows a null: %q", got)
	}
	for _, action := range []string{"enabled", "edit", "regenerate", "delete"} {
		if visible(`#detail-actions button[data-action="` + action + `"]`) {
			t.Errorf("an auditor is offered %s in the detail view", action)
		}
	}
	if !visible(`#detail-actions button[data-action="audit"]`) {
		t.Error("an auditor is not offered the audit log in the detail view")
	}
	b.do(t, "an auditor's admins", chromedp.Click(chromedp.CSS(`.nav a[href="#admins"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="root"]`)))
	if visible("#new-admin") || visible(`select[data-action="role"]`) || visible(`button[data-action="remove"]`) {
		t.Error("an auditor is offered to add, change or remove admins")
	}
	signOut := func() {
		t.Helper()
		b.do(t, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-token")))
	}
	signOut()
	operator := e.newAdmin("oscar", storage.RoleOperator)
	b.signIn(t, e.srv.URL, operator)
	b.do(t, "an operator's integrations", chromedp.WaitVisible(chromedp.CSS(`button[data-action="edit"][data-key="billing-sync"]`)))
	if visible(`.nav a[href="#admins"]`) || visible(`.nav a[href="#keys"]`) {
		t.Error("an operator is shown the admins or signing keys")
	}
	// A refused call names the missing permission in an admin's words:
	// an owner demotes oscar to auditor while his page is open, and the
	// page still offers to suspend. Then it offers what an auditor may.
	e.mustAdmin("PATCH", "/admin/admins/oscar", map[string]any{"role": "auditor"}, http.StatusOK)
	refused := `#confirm-dialog [data-form-error]`
	b.do(t, "suspend billing-sync after being demoted",
		listIdle, // a redraw of the list would replace the button clicked
		chromedp.Click(chromedp.CSS(sw)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitVisible(chromedp.CSS(refused)))
	if got := b.eval(t, `document.querySelector('`+refused+`').textContent`); !strings.Contains(got, "may not change integrations") ||
		!strings.Contains(got, "integrations:write") || !strings.Contains(got, "role auditor") {
		t.Errorf("refused for lack of integrations:write, the page says %q; want what the admin may not do, the permission and why", got)
	}
	b.do(t, "close the refused dialog", chromedp.Click(chromedp.CSS("#confirm-cancel")), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")))
	demoted := `document.querySelector('#session-who').textContent === 'oscar · auditor' && !document.querySelector('` + sw + `')?.checkVisibility()`
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](demoted, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		t.Errorf("after the refusal the page says %q is signed in and offers the switch: %v", b.eval(t, `document.querySelector('#session-who').textContent`), visible(sw))
	}
	if out := e.mustAdmin("GET", "/admin/integrations/billing-sync", nil, http.StatusOK); out["disabled"] != false {
		t.Errorf("a refused suspension suspended billing-sync: disabled = %v", out["disabled"])
	}
	e.mustAdmin("PATCH", "/admin/admins/oscar", map[string]any{"role": "operator"}, http.StatusOK)
	for _, p := range b.problems()[seen:] {
		if !strings.Contains(p, "status of 403") { // the browser logs the refused fetch itself
			t.Errorf("the page reported a problem: %s", p)
		}
	}
	seen = len(b.problems())
	signOut()
	b.signIn(t, e.srv.URL, testBootstrap)
	b.do(t, "the bootstrap token's tokens", chromedp.Click(chromedp.CSS(`.nav a[href="#tokens"]`)),
		chromedp.WaitVisible(chromedp.CSS("#tokens-empty")))
	if got := b.eval(t, `document.querySelector('#session-who').textContent`); got != "Bootstrap token · owner" {
		t.Errorf("signed in with the bootstrap token, the page says %q", got)
	}
	if visible("#new-token") {
		t.Error("the bootstrap token is offered to generate an admin token, which it may not")
	}
	// An owner changes a role in the page.
	b.do(t, "the bootstrap token's admins", chromedp.Click(chromedp.CSS(`.nav a[href="#admins"]`)),
		chromedp.WaitVisible(chromedp.CSS(`select[data-action="role"][data-key="oscar"]`)))
	if n, rel := b.timesExplained(t, "the admins", "#view-admins"); n == 0 || rel == 0 {
		t.Errorf("the admins view shows %d times, %d relative; want relative ones", n, rel)
	}
	// The built-in bootstrap admin cannot be removed: no button offers it
	// (defect 12).
	if visible(`tr[data-name="bootstrap"]`) && visible(`button[data-action="remove"][data-key="bootstrap"]`) {
		t.Error("the bootstrap admin has a Remove button, which always fails")
	}
	if !visible(`tr[data-name="bootstrap"]`) {
		t.Error("the bootstrap admin is not listed")
	}
	b.eval(t, `(() => {
		const s = document.querySelector('select[data-action="role"][data-key="oscar"]');
		s.value = 'auditor';
		s.dispatchEvent(new Event('change', { bubbles: true }));
		return '';
	})()`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		items, _ := e.listAll(testBootstrap, "/admin/admins")
		role := ""
		for _, it := range items {
			if it["name"] == "oscar" {
				role, _ = it["role"].(string)
			}
		}
		if role == "auditor" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("oscar is %q after the page changed the role, want auditor", role)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every destructive action says it is done where it can be seen
	// (defect 4): delete an integration, remove an admin, rotate the
	// signing key.
	e.createIntegration(map[string]any{"name": "old-job"})
	e.newAdmin("temp", storage.RoleAuditor)
	b.do(t, "delete an integration",
		chromedp.Click(chromedp.CSS(`.nav a[href="#integrations"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-action="delete"][data-key="old-job"]`)),
		chromedp.Click(chromedp.CSS(`button[data-action="delete"][data-key="old-job"]`)),
		chromedp.WaitVisible(chromedp.CSS("#delete-confirm-name")),
		chromedp.SendKeys(chromedp.CSS("#delete-confirm-name"), "old-job"),
		chromedp.Click(chromedp.CSS("#delete-confirm")),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-name="old-job"]`)),
	)
	b.toastSays(t, "old-job deleted")
	b.do(t, "remove an admin",
		chromedp.Click(chromedp.CSS(`.nav a[href="#admins"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[data-action="remove"][data-key="temp"]`)),
		chromedp.Click(chromedp.CSS(`button[data-action="remove"][data-key="temp"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(`tr[data-name="temp"]`)),
	)
	b.toastSays(t, "temp removed")
	b.do(t, "rotate the signing key",
		chromedp.Click(chromedp.CSS(`.nav a[href="#keys"]`)),
		chromedp.WaitVisible(chromedp.CSS("#rotate-key")),
		chromedp.Click(chromedp.CSS("#rotate-key")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog")),
	)
	b.toastSays(t, "is active")
	if n, rel := b.timesExplained(t, "the signing keys", "#view-keys"); n == 0 || rel == 0 {
		t.Errorf("the signing keys view shows %d times, %d relative; want relative ones", n, rel)
	}

	for _, p := range b.problems()[seen:] {
		t.Errorf("the page reported a problem: %s", p)
	}
	t.Logf("browser steps took %v", time.Since(start).Round(time.Millisecond))
}

// TestDashboardScreenshots writes the README's screenshots into the
// directory LATCHKEY_SCREENSHOTS names (docs/ in the repository):
//
//	LATCHKEY_SCREENSHOTS=$PWD/docs go test ./server -run DashboardScreenshots
func TestDashboardScreenshots(t *testing.T) {
	dir := os.Getenv("LATCHKEY_SCREENSHOTS")
	if dir == "" {
		t.Skip("set LATCHKEY_SCREENSHOTS=DIR to write the dashboard screenshots into DIR")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A server whose integrations were made over the past weeks.
	clk := &clock{t: time.Now().UTC().Add(-41 * 24 * time.Hour).Truncate(time.Minute)}
	e, err := openEnv(t, newDatabase(t), clk, testSecrets)
	if err != nil {
		t.Fatal(err)
	}
	seed := []struct {
		body map[string]any
		age  time.Duration
		use  bool
	}{
		{map[string]any{"name": "billing-sync", "description": "Nightly export of invoices to the ledger", "scopes": []string{"invoices:read", "ledger:write"}}, 0, true},
		{map[string]any{"name": "orders-api", "description": "Order service: checks tokens on every request", "scopes": []string{"orders:read"}, "can_introspect": true, "audience": []string{"https://orders.internal"}}, 3 * 24 * time.Hour, true},
		{map[string]any{"name": "inventory-worker", "description": "Reserves stock for new orders", "scopes": []string{"orders:read", "stock:write"}}, 9 * 24 * time.Hour, true},
		{map[string]any{"name": "mobile-backend", "description": "BFF for the iOS and Android apps", "scopes": []string{"profile:read", "orders:read", "orders:write"}, "token_lifetime_seconds": 3600}, 6 * 24 * time.Hour, true},
		{map[string]any{"name": "reporting", "description": "Weekly revenue reports", "scopes": []string{"invoices:read"}}, 12 * 24 * time.Hour, false},
		{map[string]any{"name": "data-warehouse", "description": "Nightly copy of every service's data", "scopes": []string{
			"invoices:read", "ledger:read", "orders:read", "stock:read", "profile:read", "payments:read", "events:read", "reports:read", "audit:read"}}, 2 * 24 * time.Hour, true},
	}
	pairs := map[string]keyPair{}
	for _, s := range seed {
		clk.Advance(s.age)
		pairs[s.body["name"].(string)] = e.createIntegration(s.body)
	}
	clk.Advance(7*24*time.Hour + 3*time.Hour)
	for _, s := range seed {
		if s.use {
			clk.Advance(17 * time.Minute)
			e.token(pairs[s.body["name"].(string)], nil)
		}
	}
	e.regenerate("inventory-worker", 7*24*3600)
	ada := e.newAdmin("ada", storage.RoleOwner)
	e.newAdmin("grace", storage.RoleOperator)
	e.mintAdminToken(ada, map[string]any{"description": "Deploy pipeline", "expires_in_days": 90})
	e.mintAdminToken(ada, map[string]any{"description": "Terraform", "expires_in_days": -1})
	e.mintAdminToken(ada, map[string]any{"description": "Metrics exporter", "expires_in_days": 30,
		"permissions": []storage.Permission{storage.IntegrationsRead, storage.AuditRead}})
	e.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
	clk.Live()

	shoot := func(b *browser, name string) {
		t.Helper()
		// No hover highlight; let the dialog animations settle.
		b.do(t, "move the mouse away", chromedp.MouseEvent("mouseMoved", 0, 0))
		time.Sleep(400 * time.Millisecond)
		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d KB)", p, len(png)/1024)
	}
	b := newBrowser(t, 1280, 800)
	b.do(t, "viewport", chromedp.EmulateViewport(1280, 800))
	if scheme := os.Getenv("LATCHKEY_SCREENSHOTS_SCHEME"); scheme != "" {
		_, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	suffix := ""
	if s := os.Getenv("LATCHKEY_SCREENSHOTS_SCHEME"); s == "dark" {
		suffix = "-dark"
	}
	b.signIn(t, e.srv.URL, ada)
	b.do(t, "list", chromedp.WaitVisible(chromedp.CSS(`tr[data-name="reporting"]`)))
	shoot(b, "dashboard-integrations"+suffix+".png")

	b.do(t, "create through the page",
		chromedp.Click(chromedp.CSS("#new-integration")),
		chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.SendKeys(chromedp.CSS("#ig-name"), "payments-webhooks"),
		chromedp.SendKeys(chromedp.CSS("#ig-description"), "Forwards payment events to billing"),
		chromedp.SendKeys(chromedp.CSS("#ig-scopes"), "payments:read events:write"),
		chromedp.Click(chromedp.CSS("#integration-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-client-secret")),
	)
	shoot(b, "dashboard-secret"+suffix+".png")
	b.do(t, "close", chromedp.Click(chromedp.CSS("#secret-stored")), chromedp.Click(chromedp.CSS("#secret-done")),
		chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")))

	b.do(t, "detail view",
		chromedp.Click(chromedp.CSS(`tr[data-name="inventory-worker"] a.name-link`)),
		chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
	shoot(b, "dashboard-detail"+suffix+".png")
	b.do(t, "phone detail",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")),
	)
	shoot(b, "dashboard-detail-phone"+suffix+".png")
	if w := b.eval(t, `String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("at phone width the detail view is %s px wide, want 390: something overflows", w)
	}
	b.do(t, "back to the list", chromedp.Navigate(e.srv.URL+"/admin/#integrations"))

	b.do(t, "phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="reporting"]`)),
	)
	shoot(b, "dashboard-phone"+suffix+".png")
	if w := b.eval(t, `String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("at phone width the page is %s px wide, want 390: something overflows", w)
	}

	// Every other view and dialog, for design review (not committed).
	if os.Getenv("LATCHKEY_SCREENSHOTS_ALL") == "1" {
		for _, width := range []int64{1280, 390} {
			prefix := fmt.Sprintf("review-%d%s-", width, suffix)
			if width == 1280 {
				b.do(t, "laptop", chromedp.EmulateViewport(1280, 800))
			}
			b.do(t, "regenerate dialog",
				chromedp.Navigate(e.srv.URL+"/admin/#integrations"),
				chromedp.WaitVisible(chromedp.CSS(`tr[data-name="orders-api"]`)),
				chromedp.Click(chromedp.CSS(`button[data-action="regenerate"][data-key="orders-api"]`)),
				chromedp.WaitVisible(chromedp.CSS("#regenerate-confirm")))
			shoot(b, prefix+"regenerate.png")
			b.do(t, "edit dialog", chromedp.KeyEvent(kb.Escape),
				chromedp.Click(chromedp.CSS(`button[data-action="edit"][data-key="orders-api"]`)),
				chromedp.WaitVisible(chromedp.CSS("#ig-description")))
			shoot(b, prefix+"edit.png")
			b.do(t, "delete dialog", chromedp.KeyEvent(kb.Escape),
				chromedp.Click(chromedp.CSS(`button[data-action="delete"][data-key="orders-api"]`)),
				chromedp.WaitVisible(chromedp.CSS("#delete-confirm-name")))
			shoot(b, prefix+"delete.png")
			b.do(t, "close", chromedp.KeyEvent(kb.Escape))
			for _, v := range []string{"tokens", "admins", "audit", "keys"} {
				b.do(t, v, chromedp.Navigate(e.srv.URL+"/admin/#"+v), chromedp.Reload(),
					chromedp.WaitVisible(chromedp.CSS("#view-"+v+" h1")), chromedp.WaitNotPresent(chromedp.CSS("#view-"+v+" .loading-row")))
				shoot(b, prefix+v+".png")
			}
			b.do(t, "the detail view's recent tokens", chromedp.Navigate(e.srv.URL+"/admin/#integration/inventory-worker"), chromedp.Reload(),
				chromedp.WaitVisible(chromedp.CSS("#detail-tokens")))
			b.eval(t, `(document.querySelector('#detail-tokens').scrollIntoView(), document.querySelector('#detail-tokens time').focus(), '')`)
			shoot(b, prefix+"detail-tokens.png")
			b.do(t, "token dialog", chromedp.Navigate(e.srv.URL+"/admin/#tokens"),
				chromedp.Click(chromedp.CSS("#new-token")), chromedp.WaitVisible(chromedp.CSS("#token-description")))
			shoot(b, prefix+"token-dialog.png")
			b.do(t, "close", chromedp.KeyEvent(kb.Escape))
			b.do(t, "sign-in", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-token")))
			shoot(b, prefix+"signin.png")
			b.signIn(t, e.srv.URL, ada)
			if width == 1280 {
				b.do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
			}
		}
	}

	if p := b.problems(); len(p) > 0 {
		t.Errorf("the page reported problems:\n%s", strings.Join(p, "\n"))
	}
}

// TestDashboardAtScale: an admin of 152 integrations pages through them,
// sorts them, finds one by a client ID pasted from a log (its previous
// pair's too), keeps the column headers in sight, and sees a row with 25
// scopes folded; at phone width no view scrolls sideways (issue 17,
// defects 6 and 14).
func TestDashboardAtScale(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	const n = 152
	var wanted, previous keyPair
	for i := range n {
		body := map[string]any{"name": fmt.Sprintf("svc-%03d", i), "description": fmt.Sprintf("Service number %d", i), "scopes": []string{"orders:read"}}
		if i == 7 {
			var many []string
			for j := range 25 {
				many = append(many, fmt.Sprintf("resource-%02d:read", j))
			}
			body["scopes"] = many
		}
		kp := e.createIntegration(body)
		if i == 123 {
			wanted = kp
		}
		if i == 99 {
			previous = kp
		}
	}
	e.regenerate("svc-099", 3600)
	b := newBrowser(t, 1280, 800)
	root := e.newAdmin("root", storage.RoleOwner)
	b.signIn(t, e.srv.URL, root)
	b.do(t, "the first page", chromedp.WaitVisible(chromedp.CSS(`tr[data-name="svc-000"]`)))
	names := func() []string {
		t.Helper()
		v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#integrations-body tr[data-name]')].map((r) => r.dataset.name)`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := b.eval(t, `document.querySelector('#integration-count').textContent`); !strings.Contains(got, fmt.Sprint(n)+" integrations") {
		t.Errorf("the count says %q, want %d integrations", got, n)
	}
	first := names()
	if len(first) == 0 || len(first) > 100 {
		t.Fatalf("the first page shows %d rows, want a page of them", len(first))
	}
	num := func(js string) int {
		t.Helper()
		v, err := chromedp.Run(b.ctx, chromedp.Evaluate[float64](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return int(v)
	}
	if h := num(`document.documentElement.scrollHeight`); h > 9000 {
		t.Errorf("the first page is %d px tall", h)
	}

	// The column headers stay in sight when the list scrolls.
	b.eval(t, `(window.scrollTo(0, document.querySelector('#integrations-body tr:nth-child(20)').getBoundingClientRect().top + scrollY), '')`)
	if top := num(`document.querySelector('#integrations-table thead th').getBoundingClientRect().top`); top < 0 || top > 120 {
		t.Errorf("scrolled down the list, the column headers are at %d px", top)
	}
	b.eval(t, `(window.scrollTo(0, 0), '')`)

	// The row with 25 scopes is folded.
	if ht := num(`document.querySelector('tr[data-name="svc-007"]').getBoundingClientRect().height`); ht > 160 {
		t.Errorf("the row with 25 scopes is %d px tall", ht)
	}

	// Next to the end, each page new, every integration seen once, by name.
	seen := first
	for page := 2; len(seen) < n; page++ {
		if page > 20 {
			t.Fatalf("after 20 pages, %d of %d integrations seen", len(seen), n)
		}
		last := seen[len(seen)-1]
		b.do(t, "next page", chromedp.Click(chromedp.CSS("#integrations-next")),
			chromedp.WaitNotPresent(chromedp.CSS(fmt.Sprintf(`tr[data-name=%q]`, last))))
		seen = append(seen, names()...)
	}
	if !slices.IsSorted(seen) || len(seen) != n {
		t.Errorf("paging showed %d integrations, sorted %v; want %d by name", len(seen), slices.IsSorted(seen), n)
	}
	if b.eval(t, `String(document.querySelector('#integrations-next').disabled)`) != "true" {
		t.Errorf("Next is enabled on the last page")
	}
	b.do(t, "previous page", chromedp.Click(chromedp.CSS("#integrations-prev")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-name=%q]`, seen[len(seen)-len(names())-1]))))

	// Newest first.
	b.eval(t, `(() => {
		const s = document.querySelector('#integration-sort');
		s.value = '-created_at';
		s.dispatchEvent(new Event('change', { bubbles: true }));
		return '';
	})()`)
	b.do(t, "newest first", chromedp.WaitVisible(chromedp.CSS(`#integrations-body tr:first-child[data-name="svc-151"]`)))

	// A client ID pasted from a log finds its integration; so does the
	// previous pair's.
	poll := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	for _, c := range []struct{ id, name string }{{wanted.ID, "svc-123"}, {previous.ID, "svc-099"}} {
		b.eval(t, `document.querySelector('#integration-search').value = ''`)
		b.do(t, "search by client ID",
			chromedp.SendKeys(chromedp.CSS("#integration-search"), c.id),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-name=%q]`, c.name))),
		)
		poll("only "+c.name+" is listed", `document.querySelectorAll('#integrations-body tr[data-name]').length === 1`)
		if got := b.eval(t, `document.querySelector('#integration-count').textContent`); !strings.Contains(got, "1 integration") {
			t.Errorf("searching %s, the count says %q", c.id, got)
		}
	}
	b.eval(t, `document.querySelector('#integration-search').value = ''`)
	b.do(t, "search by description",
		chromedp.SendKeys(chromedp.CSS("#integration-search"), "NUMBER 12"),
	)
	poll("searching a description", `document.querySelector('#integration-count').textContent.includes('11 integrations')`)

	// The server out of reach: the list says so, keeps no stale count, and
	// offers to try again, which works once the server answers (defect 11).
	offline := func(off bool) {
		t.Helper()
		if _, err := chromedp.Call(b.ctx, network.EmulateNetworkConditionsByRule, network.EmulateNetworkConditionsByRuleParams{
			MatchedNetworkConditions: []*network.Conditions{{Offline: off, DownloadThroughput: -1, UploadThroughput: -1}},
		}); err != nil {
			t.Fatalf("emulate the network: %v", err)
		}
	}
	seenProblems := len(b.problems())
	if _, err := chromedp.Call(b.ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	offline(true)
	b.eval(t, `(() => {
		const s = document.querySelector('#integration-sort');
		s.value = 'name';
		s.dispatchEvent(new Event('change', { bubbles: true }));
		return '';
	})()`)
	b.do(t, "the server out of reach", chromedp.WaitVisible(chromedp.CSS("#integrations-error")))
	if got := b.eval(t, `document.querySelector('#integration-count').textContent`); strings.Contains(got, "integrations") {
		t.Errorf("with the server out of reach, the count still says %q", got)
	}
	offline(false)
	b.do(t, "try again", chromedp.Click(chromedp.CSS("#integrations-error button[data-action=retry]")),
		chromedp.WaitNotVisible(chromedp.CSS("#integrations-error")), chromedp.WaitVisible(chromedp.CSS("#integrations-body tr[data-name]")))
	for _, p := range b.problems()[seenProblems:] {
		if !strings.Contains(p, "ERR_INTERNET_DISCONNECTED") {
			t.Errorf("the page reported a problem: %s", p)
		}
	}

	// End the grace of svc-099's previous pair from its detail view
	// (defect 8).
	b.do(t, "end the grace",
		chromedp.Navigate(e.srv.URL+"/admin/#integration/svc-099"),
		chromedp.WaitVisible(chromedp.CSS(`#detail-body button[data-action="end-grace"]`)),
		chromedp.Click(chromedp.CSS(`#detail-body button[data-action="end-grace"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotPresent(chromedp.CSS(`#detail-body button[data-action="end-grace"]`)),
	)
	b.toastSays(t, "revoked")
	if ig := e.mustAdmin("GET", "/admin/integrations/svc-099", nil, http.StatusOK); ig["previous_key_pair"] != nil {
		t.Errorf("after ending the grace in the page, svc-099 still has a previous pair")
	}
	b.do(t, "back to the list", chromedp.Click(chromedp.CSS(`#view-integration .crumbs a`)),
		chromedp.WaitVisible(chromedp.CSS(`#integrations-body tr[data-name]`)))

	// The search does not outlive the session (defect 16).
	b.do(t, "sign out and in again, in the same page",
		chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-token")),
		chromedp.SendKeys(chromedp.CSS("#signin-token"), root), chromedp.Click(chromedp.CSS("#signin-submit")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-name="svc-000"]`)))
	if got := b.eval(t, `document.querySelector('#integration-search').value + '|' + document.querySelector('#integration-count').textContent`); !strings.HasPrefix(got, "|"+fmt.Sprint(n)+" integrations") {
		t.Errorf("signed in again, the search box and count say %q; want them fresh", got)
	}

	// At phone width, no view scrolls sideways, with a retired signing key
	// listed too, and the active tab is in sight (defect 14).
	e.mustAdmin("POST", "/admin/signing-keys/rotate", nil, http.StatusCreated)
	e.mintAdminToken(root, map[string]any{"description": "A deploy pipeline with a rather long description", "expires_in_days": 30})
	b.do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	for _, v := range []string{"integrations", "integration/svc-099", "tokens", "admins", "audit", "keys"} {
		b.do(t, v, chromedp.Navigate("about:blank"), chromedp.Navigate(e.srv.URL+"/admin/#"+v), // a full load, cancelling no request in flight
			chromedp.WaitVisible(chromedp.CSS("#view-"+strings.Split(v, "/")[0]+" h1")), chromedp.WaitNotPresent(chromedp.CSS(".view .loading-row")))
		if strings.Contains(v, "/") {
			b.do(t, "the detail view", chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
		}
		if got := b.eval(t, `(() => { const r = document.querySelector('.nav a[aria-current=page]').getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth ? 'yes' : r.left + '..' + r.right; })()`); got != "yes" {
			t.Errorf("at phone width on the %s view, the active tab is at %s px, out of sight", v, got)
		}
		// Something clipped is cut off as surely as something that scrolls.
		if got := b.eval(t, `[...document.querySelectorAll('#main *')].filter((e) => !e.closest('thead, .visually-hidden') && e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().right > innerWidth + 0.5).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 3).join(', ')`); got != "" {
			t.Errorf("at phone width on the %s view, these reach past the screen's right edge: %s", v, got)
		}
		if got := b.eval(t, `document.documentElement.scrollWidth + ' ' + innerWidth`); func() bool {
			var w, iw int
			fmt.Sscan(got, &w, &iw)
			return w > iw
		}() {
			t.Errorf("at phone width the %s view is %s px wide (scrollWidth, innerWidth)", v, got)
		}
	}
	// At phone width the whole secret is in sight, not cut by its field.
	b.do(t, "create at phone width",
		chromedp.Navigate(e.srv.URL+"/admin/#integrations"), chromedp.WaitVisible(chromedp.CSS("#new-integration")),
		chromedp.Click(chromedp.CSS("#new-integration")), chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.SendKeys(chromedp.CSS("#ig-name"), "phone-made"),
		chromedp.Click(chromedp.CSS("#integration-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-client-secret")),
	)
	for _, id := range []string{"secret-client-id", "secret-client-secret"} {
		if got := b.eval(t, `(() => { const f = document.querySelector('#`+id+`'); return f.scrollWidth <= f.clientWidth ? 'yes' : f.scrollWidth + ' > ' + f.clientWidth; })()`); got != "yes" {
			t.Errorf("at phone width #%s cuts its value: %s px", id, got)
		}
	}
	for _, p := range b.problems()[seenProblems:] {
		if !strings.Contains(p, "ERR_INTERNET_DISCONNECTED") {
			t.Errorf("the page reported a problem: %s", p)
		}
	}
}
