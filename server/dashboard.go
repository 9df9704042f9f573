package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dashboard is a small single-page app embedded in the binary: plain
// HTML, CSS and ES modules, no build step, nothing fetched from elsewhere.
// It has no server side of its own. The page is public and static; the
// browser keeps the admin token the admin pastes in sessionStorage and
// calls the admin API with it, like any other client of that API, so the
// dashboard can do nothing the API does not allow.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardCSP is the Content-Security-Policy of every dashboard response.
// Scripts, styles and images come only from this origin's files, never
// inline or from eval; the page talks only to this origin; strings cannot
// reach HTML sinks (Trusted Types with no policy: the code builds the DOM
// with createElement and textContent); and nothing may frame it.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// assetVersionMark in index.html is replaced by the assets' content hash,
// so that asset URLs change whenever any asset does.
const assetVersionMark = "{{version}}"

var dashboardTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// dashboardFile is one response body, ready to send: its bytes, and a
// gzipped copy when that is smaller.
type dashboardFile struct {
	contentType string
	etag        string
	body        []byte
	gzipped     []byte
}

type dashboardSite struct {
	// version is the hash of every asset: the path segment under
	// /admin/assets/ that makes an asset URL immutable.
	version string
	index   *dashboardFile
	assets  map[string]*dashboardFile
}

// loadDashboard reads the embedded files once. They are part of the
// binary, so an error here is a build mistake, which TestDashboard* catch.
var loadDashboard = sync.OnceValues(func() (*dashboardSite, error) {
	return newDashboardSite(dashboardFiles, "dashboard")
})

func newDashboardSite(fsys fs.FS, dir string) (*dashboardSite, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	site := &dashboardSite{assets: map[string]*dashboardFile{}}
	var index []byte
	all := sha256.New()
	for _, e := range entries {
		if e.IsDir() {
			return nil, fmt.Errorf("dashboard: %s: subdirectories are not served", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if e.Name() == "index.html" {
			index = b
			continue
		}
		ct, ok := dashboardTypes[path.Ext(e.Name())]
		if !ok {
			return nil, fmt.Errorf("dashboard: %s: no content type for this extension", e.Name())
		}
		site.assets[e.Name()] = newDashboardFile(ct, b)
		fmt.Fprintf(all, "%s\x00%d\x00", e.Name(), len(b))
		all.Write(b)
	}
	if index == nil {
		return nil, fmt.Errorf("dashboard: index.html is missing")
	}
	site.version = hex.EncodeToString(all.Sum(nil))[:16]
	if !bytes.Contains(index, []byte(assetVersionMark)) {
		return nil, fmt.Errorf("dashboard: index.html does not use %s in its asset URLs", assetVersionMark)
	}
	site.index = newDashboardFile(dashboardTypes[".html"], bytes.ReplaceAll(index, []byte(assetVersionMark), []byte(site.version)))
	return site, nil
}

func newDashboardFile(contentType string, body []byte) *dashboardFile {
	sum := sha256.Sum256(body)
	f := &dashboardFile{contentType: contentType, body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	if strings.HasPrefix(contentType, "image/png") {
		return f // already compressed
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(body)
	zw.Close()
	if buf.Len() < len(body)*9/10 {
		f.gzipped = buf.Bytes()
	}
	return f
}

// dashboardRoutes serves the dashboard: the page at exactly /admin/ and its
// files under /admin/assets/{version}/. No admin API pattern overlaps
// these, so every API route answers as before (TestDashboardKeepsAdminAPI).
func (s *Server) dashboardRoutes(mux routeMux) {
	site, err := loadDashboard()
	if err != nil {
		panic(err) // the embedded files are broken: a build mistake
	}
	mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	mux.Handle("GET /admin/{$}", site.handleIndex())
	mux.Handle("GET /admin/assets/{version}/{file}", site.handleAsset())
}

// dashboardHeaders replace the API's CSP (which allows nothing) with the
// dashboard's, and keep the page in its own browsing context group.
func dashboardHeaders(h http.Header) {
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// handleIndex serves the page. It is never cached: it names the current
// asset version, and an old copy would load old code after an upgrade.
func (site *dashboardSite) handleIndex() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		dashboardHeaders(h)
		h.Set("Cache-Control", "no-store")
		site.index.serve(w, r)
	})
}

// handleAsset serves one file. Under the current version it may be cached
// for a year: a change to any file changes the version and so every URL.
// Under another version (a page from another replica during a rolling
// upgrade) it is served but must be revalidated, so that one version's
// URL never caches another version's bytes.
func (site *dashboardSite) handleAsset() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := site.assets[r.PathValue("file")]
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "no such dashboard asset")
			return
		}
		h := w.Header()
		dashboardHeaders(h)
		if r.PathValue("version") == site.version {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		f.serve(w, r)
	})
}

// serve writes f, gzipped when the client accepts it. http.ServeContent
// answers HEAD, and If-None-Match with 304 when the client's copy is
// current, from the ETag of the body chosen here.
func (f *dashboardFile) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	body, etag := f.body, f.etag
	if f.gzipped != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			body, etag = f.gzipped, strings.TrimSuffix(f.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
			// ServeContent leaves the length of an encoded body to us.
			h.Set("Content-Length", strconv.Itoa(len(body)))
		}
	}
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", etag)
	// The files are small and served whole: a byte range of a gzipped
	// body would go out with the whole body's Content-Length, and Go
	// 1.26.8's range parser has no limit on the ranges it builds
	// (GO-2026-6609), so ServeContent never sees a Range header.
	r.Header.Del("Range")
	r.Header.Del("If-Range")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding lists gzip (or *) with a
// non-zero quality (RFC 9110 §12.5.3).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(item), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			q := 1.0
			if k, val, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if n, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
					q = n
				}
			}
			return q > 0
		}
	}
	return false
}
