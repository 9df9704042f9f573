package server

import (
	"context"
	"net/http"
	"time"
)

// routes lists latchkey's whole HTTP surface.
func (s *Server) routes() {
	public := http.NewServeMux()
	public.Handle("POST /oauth2/token", s.oauthForm(s.handleToken()))
	public.Handle("POST /oauth2/introspect", s.oauthForm(s.handleIntrospect()))
	public.Handle("POST /oauth2/revoke", s.oauthForm(s.handleRevoke()))
	public.Handle("GET /.well-known/oauth-authorization-server", s.handleMetadata())
	public.Handle("GET /.well-known/jwks.json", s.handleJWKS())
	public.Handle("GET /healthz", s.handleHealthz())
	public.Handle("GET /readyz", s.handleReadyz())

	admin := public
	if s.opts.SeparateAdmin {
		admin = http.NewServeMux()
	}
	a := s.requireAdmin
	admin.Handle("POST /admin/integrations", a(s.handleIntegrationCreate()))
	admin.Handle("GET /admin/integrations", a(s.handleIntegrationList()))
	admin.Handle("GET /admin/integrations/{name}", a(s.handleIntegrationGet()))
	admin.Handle("PATCH /admin/integrations/{name}", a(s.handleIntegrationUpdate()))
	admin.Handle("DELETE /admin/integrations/{name}", a(s.handleIntegrationDelete()))
	admin.Handle("POST /admin/integrations/{name}/key-pair", a(s.handleKeyPairRegenerate()))
	admin.Handle("POST /admin/tokens", a(s.handleAdminTokenCreate()))
	admin.Handle("GET /admin/tokens", a(s.handleAdminTokenList()))
	admin.Handle("DELETE /admin/tokens/{id}", a(s.handleAdminTokenRevoke()))
	admin.Handle("GET /admin/admins", a(s.handleAdminList()))
	admin.Handle("POST /admin/admins", a(s.handleAdminCreate()))
	admin.Handle("DELETE /admin/admins/{name}", a(s.handleAdminDelete()))
	admin.Handle("GET /admin/audit", a(s.handleAuditList()))
	admin.Handle("GET /admin/signing-keys", a(s.handleSigningKeyList()))
	admin.Handle("POST /admin/signing-keys/rotate", a(s.handleSigningKeyRotate()))

	s.public = s.wrap(public)
	if s.opts.SeparateAdmin {
		s.admin = s.wrap(admin)
	}
}

// wrap adds what every request gets: the access log and panic guard, the
// body limit, the deadline, and JSON answers for unknown paths and methods.
func (s *Server) wrap(mux *http.ServeMux) http.Handler {
	return logRequests(s.log, limitBody(securityHeaders(deadline(s.opts.RequestTimeout, jsonMuxErrors(mux)))))
}

// deadline gives each request's context a deadline, so a database that
// stops answering turns into a 503 within d instead of a hung client.
func deadline(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}
