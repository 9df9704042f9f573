// Package server holds latchkey's HTTP surface: the OAuth 2.0 endpoints
// (over server/oauth), the admin API, the dashboard, health checks and
// metrics, and the middleware that bounds and logs every request.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchkey/latchkey/server/oauth"
	"github.com/latchkey/latchkey/storage"
)

// Options configures a Server. cmd/latchkey fills it from the validated
// configuration; Issuer, TokenLifetime and Secrets are required, the rest
// have the defaults their comments give.
type Options struct {
	// Issuer is the public base URL, without a trailing slash.
	Issuer string
	// TokenLifetime applies to integrations that set no lifetime of their own.
	TokenLifetime time.Duration
	// Secrets are the system secrets, current first; access-token HMAC keys
	// are derived from them.
	Secrets [][]byte
	// BootstrapToken, when set, authenticates as the built-in admin
	// "bootstrap".
	BootstrapToken string
	// TokenFormat is "opaque" (lk_at_ tokens, the default) or "jwt"
	// (RFC 9068).
	TokenFormat string
	// SigningAlgorithm is the algorithm of new signing keys: ES256 (the
	// default), EdDSA or RS256.
	SigningAlgorithm string
	// RequestTimeout bounds each request's wait on the database; past it
	// the request is answered 503. Zero means 10 seconds.
	RequestTimeout time.Duration
	// SeparateAdmin serves /admin/* and /metrics only from AdminHandler.
	SeparateAdmin bool
	// TrustedProxies are the peers whose X-Forwarded-For (and
	// X-Forwarded-Proto) headers are believed.
	TrustedProxies []netip.Prefix
	// ClientAuthLimit limits failed client authentications at the OAuth
	// endpoints, per address and client ID, per address, per client ID and
	// in all; zero is no limit. It never refuses correct credentials.
	ClientAuthLimit RateLimit
	// AdminAuthLimit limits failed admin-token attempts per address and in
	// all; zero is no limit. It never refuses a correct admin token.
	AdminAuthLimit RateLimit
	// MetricsToken, when set, lets a caller that sends it as a bearer
	// token read /metrics from anywhere; without it /metrics answers only
	// loopback callers and the admin listener.
	MetricsToken string
	// IssuanceLimit caps the tokens each integration is issued, in this
	// process; zero caps only integrations with a token_rate_per_minute
	// of their own.
	IssuanceLimit IssuanceLimit
	// MetricsIntegrationLabel labels per-client metrics with the
	// integration's name.
	MetricsIntegrationLabel bool
	// JWKSFetchAllowPrivate lets private_key_jwt integrations' jwks_uri be
	// http and on loopback, private or link-local addresses; off, only
	// https on public addresses is fetched.
	JWKSFetchAllowPrivate bool
	// MaxBodiesInFlight caps the requests receiving a body over 4 KiB at
	// once; zero means DefaultMaxBodiesInFlight.
	MaxBodiesInFlight int
	// Logger receives the access log and unexpected errors; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server answers latchkey's HTTP API. Build it with New.
type Server struct {
	store     *storage.Store
	oauth     *oauth.Provider
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	bootstrap *bootstrapAdmin
	ready     atomic.Bool
	metrics   *metrics
	// clientLimits and adminLimits are nil when their limits are off.
	clientLimits, adminLimits *failureLimits
	tarpit                    chan struct{}
	issuance                  *issuance
	// bodySlots holds a token for each request receiving a large body.
	bodySlots chan struct{}
	// authFailures counts failed admin authentications for the audit log.
	authFailures *authFailures
	// openapi is the OpenAPI document as GET /admin/openapi.json serves it.
	openapi []byte
	// patterns are the routes' patterns, in the order routes registered them.
	patterns []string

	public, admin http.Handler
}

type bootstrapAdmin struct {
	hash [32]byte
}

// New wires the server. Everything that can fail fails here, at start-up,
// not on the first request.
func New(ctx context.Context, store *storage.Store, o Options) (*Server, error) {
	if o.Issuer == "" || o.TokenLifetime <= 0 || len(o.Secrets) == 0 {
		return nil, errors.New("server: issuer, token lifetime and secrets are required")
	}
	if o.TokenFormat == "" {
		o.TokenFormat = "opaque"
	}
	if o.SigningAlgorithm == "" {
		o.SigningAlgorithm = storage.ES256
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.MaxBodiesInFlight <= 0 {
		o.MaxBodiesInFlight = DefaultMaxBodiesInFlight
	}
	if o.TokenFormat != "opaque" && o.TokenFormat != "jwt" {
		return nil, fmt.Errorf("server: token format %q is not opaque or jwt", o.TokenFormat)
	}
	o.Issuer = strings.TrimRight(o.Issuer, "/")
	s := &Server{store: store, opts: o, log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = slog.New(requestIDHandler{s.log.Handler()})
	if s.now == nil {
		s.now = time.Now
	}
	s.metrics = newMetrics(store, o.MetricsIntegrationLabel)
	s.clientLimits = newFailureLimits(o.ClientAuthLimit, true, s.now)
	s.adminLimits = newFailureLimits(o.AdminAuthLimit, false, s.now)
	s.tarpit = make(chan struct{}, tarpitSlots)
	s.issuance = newIssuance(o.IssuanceLimit, s.now)
	s.bodySlots = make(chan struct{}, o.MaxBodiesInFlight)
	s.authFailures = newAuthFailures(s.now, s.log, authFailureAddrs)
	s.metrics.watchBodySlots(s.bodySlots)
	if o.BootstrapToken != "" {
		if _, err := store.EnsureAdmin(ctx, storage.BootstrapAdmin); err != nil {
			return nil, fmt.Errorf("server: bootstrap admin: %w", err)
		}
		s.bootstrap = &bootstrapAdmin{hash: sha256.Sum256([]byte(o.BootstrapToken))}
	}
	var err error
	s.oauth, err = oauth.New(ctx, store, oauth.Options{
		Issuer: o.Issuer, TokenLifetime: o.TokenLifetime, Secrets: o.Secrets,
		IssueJWTs: o.TokenFormat == "jwt", SigningAlgorithm: o.SigningAlgorithm,
		Now: s.now, Logger: s.log,
		OnClient: func(ctx context.Context, c *storage.Client) {
			ri := infoFrom(ctx)
			ri.integration = c.Integration.Name
			if ri.clientID == "" {
				// An assertion names its client inside it.
				ri.clientID = c.ClientID
			}
		},
		OnFailure:             func(ctx context.Context, reason string) { infoFrom(ctx).authFailure = reason },
		JWKSFetchAllowPrivate: o.JWKSFetchAllowPrivate,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.openapi, err = openapiJSON(o.Issuer); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.routes()
	s.ready.Store(true)
	return s, nil
}

// Handler serves the OAuth endpoints, discovery and health checks, and the
// admin API unless it was moved to its own listener.
func (s *Server) Handler() http.Handler { return s.public }

// AdminHandler serves the admin API; it is nil unless SeparateAdmin is set.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// SetReady flips /readyz. serve marks itself not ready as shutdown begins,
// so a health check that races the shutdown on an open connection sees 503
// rather than 200. Shutdown closes the listener at once, so a load balancer
// learns of it from refused connections: to take a replica out of rotation
// before that, delay the stop signal itself (a Kubernetes preStop sleep).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// isBootstrap reports, in constant time, whether token is the bootstrap token.
func (s *Server) isBootstrap(token string) bool {
	if s.bootstrap == nil {
		return false
	}
	h := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h[:], s.bootstrap.hash[:]) == 1
}

// handleRoot tells whoever opens the server's address what it is and where
// to go: the metadata for clients, the dashboard for people (when it is on
// this listener).
func (s *Server) handleRoot() http.Handler {
	body := map[string]string{
		"service":  "latchkey",
		"issuer":   s.opts.Issuer,
		"metadata": s.opts.Issuer + "/.well-known/oauth-authorization-server",
	}
	if !s.opts.SeparateAdmin {
		body["dashboard"] = s.opts.Issuer + "/admin/"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, body)
	})
}

func (s *Server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func (s *Server) handleReadyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			s.log.WarnContext(r.Context(), "readiness check failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}
