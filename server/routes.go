package server

import (
	"net/http"

	"github.com/latchkey/latchkey/storage"
)

// routes lists latchkey's whole HTTP surface. server/openapi.yaml describes
// each route; TestOpenAPIDescribesEveryRoute keeps the two the same set.
func (s *Server) routes() {
	public := s.newMux()
	public.Handle("POST /oauth2/token", s.oauthForm(s.handleToken()))
	public.Handle("POST /oauth2/introspect", s.oauthForm(s.handleIntrospect()))
	public.Handle("POST /oauth2/revoke", s.oauthForm(s.handleRevoke()))
	// Clients migrating from other servers post with a trailing slash.
	for _, p := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
		public.Handle("POST "+p+"/{$}", sameAs(public.ServeMux, "POST", p))
	}
	public.Handle("GET /.well-known/oauth-authorization-server", s.handleMetadata())
	public.Handle("GET /.well-known/jwks.json", s.handleJWKS())
	public.Handle("GET /{$}", s.handleRoot())
	public.Handle("GET /healthz", s.handleHealthz())
	public.Handle("GET /readyz", s.handleReadyz())

	admin := public
	if s.opts.SeparateAdmin {
		admin = s.newMux()
	}
	// Every admin route names the permission it needs (storage/permissions.go);
	// TestAuthorizationMatrix holds each to the roles that may call it.
	a := s.requireAdmin
	admin.Handle("POST /admin/integrations", a(storage.IntegrationsWrite, s.handleIntegrationCreate()))
	admin.Handle("GET /admin/integrations", a(storage.IntegrationsRead, s.handleIntegrationList()))
	admin.Handle("GET /admin/integrations/{name}", a(storage.IntegrationsRead, s.handleIntegrationGet()))
	admin.Handle("PATCH /admin/integrations/{name}", a(storage.IntegrationsWrite, s.handleIntegrationUpdate()))
	admin.Handle("DELETE /admin/integrations/{name}", a(storage.IntegrationsWrite, s.handleIntegrationDelete()))
	admin.Handle("POST /admin/integrations/{name}/key-pair", a(storage.IntegrationsWrite, s.handleKeyPairRegenerate()))
	admin.Handle("DELETE /admin/integrations/{name}/previous-key-pair", a(storage.IntegrationsWrite, s.handleEndGrace()))
	admin.Handle("GET /admin/integrations/{name}/tokens", a(storage.IntegrationsRead, s.handleIntegrationTokens()))
	admin.Handle("GET /admin/me", a(signedIn, s.handleMe()))
	admin.Handle("POST /admin/tokens", a(storage.AdminTokensWrite, s.handleAdminTokenCreate()))
	admin.Handle("GET /admin/tokens", a(storage.AdminTokensRead, s.handleAdminTokenList()))
	admin.Handle("DELETE /admin/tokens/{id}", a(storage.AdminTokensWrite, s.handleAdminTokenRevoke()))
	admin.Handle("GET /admin/admins", a(storage.AdminsRead, s.handleAdminList()))
	admin.Handle("POST /admin/admins", a(storage.AdminsWrite, s.handleAdminCreate()))
	admin.Handle("PATCH /admin/admins/{name}", a(storage.AdminsWrite, s.handleAdminUpdate()))
	admin.Handle("DELETE /admin/admins/{name}", a(storage.AdminsWrite, s.handleAdminDelete()))
	admin.Handle("GET /admin/audit", a(storage.AuditRead, s.handleAuditList()))
	// A found admin token also needs storage.AdminsWrite, checked once the
	// handler knows what the credential is.
	admin.Handle("POST /admin/credentials/revoke", a(storage.IntegrationsWrite, s.handleCredentialRevoke()))
	admin.Handle("GET /admin/signing-keys", a(storage.SigningKeysRead, s.handleSigningKeyList()))
	admin.Handle("POST /admin/signing-keys/rotate", a(storage.SigningKeysWrite, s.handleSigningKeyRotate()))
	admin.Handle("GET /admin/openapi.json", s.handleOpenAPI())
	s.dashboardRoutes(admin)
	admin.Handle("GET /metrics", s.guardMetrics(s.metrics.handler()))

	s.public = s.wrap(public.ServeMux)
	if s.opts.SeparateAdmin {
		s.admin = s.wrap(admin.ServeMux)
	}
}

// routeMux is a ServeMux that keeps the patterns registered on it in the
// server's list, for the test that holds the routes and the OpenAPI
// document to one set.
type routeMux struct {
	*http.ServeMux
	patterns *[]string
}

func (s *Server) newMux() routeMux { return routeMux{http.NewServeMux(), &s.patterns} }

// Handle registers h for pattern and remembers the pattern.
func (m routeMux) Handle(pattern string, h http.Handler) {
	*m.patterns = append(*m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// wrap adds what every request gets: its ID, deadline, access log, metrics
// and panic guard, the body limit, security headers, the cap on large
// bodies in flight, and JSON answers for unknown paths and methods.
func (s *Server) wrap(mux *http.ServeMux) http.Handler {
	return s.observe(limitBody(s.securityHeaders(s.limitBodies(jsonMuxErrors(mux)))))
}

// securityHeaders are for browsers that find their way to an API made for
// machines: nothing may be sniffed into a script, framed, or (the
// dashboard aside) load anything at all. HSTS goes out only over HTTPS,
// directly or through a trusted proxy, where it is meaningful (RFC 6797
// §7.2) and cannot lock a plain-HTTP development setup out.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if r.TLS != nil || s.forwardedTLS(r) {
			h.Set("Strict-Transport-Security", "max-age=63072000")
		}
		next.ServeHTTP(w, r)
	})
}

// sameAs serves a request as if it had been made to path, under that
// route's name in the logs and metrics.
func sameAs(mux *http.ServeMux, method, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		infoFrom(r.Context()).route = method + " " + path
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = path, ""
		mux.ServeHTTP(w, r2)
	})
}
