package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

type ctxKey int

const adminKey ctxKey = iota

// requireAdmin authenticates the admin token (or the bootstrap token) and
// lets the request through to next if its effective permissions include
// need (signedIn: any valid token), with the caller in the request
// context; an unauthenticated request is 401, an unauthorized one 403. A
// right token is always let through, however many wrong ones came from its
// address; wrong ones are counted and, past the limits, held and answered
// 429 (see failureLimits).
func (s *Server) requireAdmin(need storage.Permission, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		// The scheme is case-insensitive (RFC 9110 §11.1).
		scheme, token, _ := strings.Cut(header, " ")
		switch {
		case header != "" && !strings.EqualFold(scheme, "Bearer"):
			s.unauthorized(w, wrongScheme)
			return
		case token == "":
			s.unauthorized(w, "missing admin token: send Authorization: Bearer <admin token>")
			return
		}
		var c *caller
		var err error
		if s.isBootstrap(token) {
			// Resolved per request: another replica may have deleted
			// and so recreated the bootstrap admin.
			var admin *storage.Admin
			if admin, err = s.store.EnsureAdmin(r.Context(), storage.BootstrapAdmin); err == nil {
				c = bootstrapCaller(admin)
			}
		} else if credential.ValidChecksummed(token, credential.AdminTokenPrefix) {
			var admin *storage.Admin
			var tok *storage.AdminToken
			if admin, tok, err = s.store.AuthenticateAdmin(r.Context(), token); err == nil {
				c = tokenCaller(admin, tok)
			}
		} else {
			// A mistyped or invented token fails on its checksum,
			// without a lookup.
			err = storage.ErrNotFound
		}
		if errors.Is(err, storage.ErrNotFound) {
			s.metrics.adminFailures.Inc()
			s.authFailures.record(infoFrom(r.Context()).addr)
			if v := s.adminLimits.failed(infoFrom(r.Context()).addr, "", false); v.limit != "" {
				s.metrics.limitedBy["admin_"+v.limit].Inc()
				s.hold(w, r.Context(), v.hold)
				if v.refuse {
					writeTooMany(w, "too_many_requests", v.retry,
						"too many failed admin-token attempts from this address; try again in %d s")
					return
				}
			}
			s.unauthorized(w, "invalid, expired or revoked admin token")
			return
		}
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		if !c.may(need) {
			forbid(w, c, need)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), adminKey, c)))
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="latchkey-admin"`)
	writeError(w, http.StatusUnauthorized, "unauthorized", msg)
}

func adminFrom(r *http.Request) *storage.Admin { return callerFrom(r).admin }

func actor(r *http.Request) storage.Actor {
	return storage.Actor{Type: "admin", Name: adminFrom(r).Name, RemoteAddr: infoFrom(r.Context()).addr}
}

// adminError maps storage sentinels to the admin API's status codes and
// logs only what is unexpected.
func (s *Server) adminError(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	var invalid *storage.InvalidError
	switch {
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, "invalid_request", invalid.Reason)
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", msg)
	case errors.Is(err, storage.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", msg)
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "request cancelled")
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", redact(r.URL.Path), "err", redact(err.Error()))
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the database is unavailable; nothing was changed, try again")
	default:
		s.log.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", redact(r.URL.Path), "err", redact(err.Error()))
		writeError(w, http.StatusInternalServerError, "server_error", "internal error; see the server log")
	}
}

// decode reads the JSON body into dst or writes the error and returns false.
func decode(w http.ResponseWriter, r *http.Request, dst any, optional bool) bool {
	if status, err := decodeJSON(r, dst, optional); err != nil {
		writeError(w, status, "invalid_request", err.Error())
		return false
	}
	return true
}

type list[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token"`
}

// handleList serves a listing: fetch reads one page, out turns each item
// into its JSON. A paged listing takes ?page_token= and ?limit= (1 to
// storage.MaxPageLimit; storage's default when absent); an unpaged one,
// always short, ignores them and fetch gets the zero Page.
func handleList[S, T any](s *Server, paged bool, fetch func(r *http.Request, p storage.Page) ([]S, string, error), out func(S) T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p storage.Page
		if paged {
			var ok bool
			if p, ok = readPage(w, r); !ok {
				return
			}
		}
		items, next, err := fetch(r, p)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		body := list[T]{Items: make([]T, len(items)), NextPageToken: next}
		for i, it := range items {
			body.Items[i] = out(it)
		}
		writeJSON(w, http.StatusOK, body)
	})
}

// readPage reads ?page_token= and ?limit= (1 to storage.MaxPageLimit), or
// answers 400 and reports false.
func readPage(w http.ResponseWriter, r *http.Request) (storage.Page, bool) {
	q := r.URL.Query()
	p := storage.Page{Token: q.Get("page_token")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > storage.MaxPageLimit {
			writeError(w, http.StatusBadRequest, "invalid_request",
				"limit must be an integer between 1 and "+strconv.Itoa(storage.MaxPageLimit))
			return p, false
		}
		p.Limit = n
	}
	return p, true
}

type keyPairJSON struct {
	ClientID   string     `json:"client_id"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
}

type integrationJSON struct {
	Name                 string   `json:"name"`
	Description          string   `json:"description"`
	Scopes               []string `json:"scopes"`
	Audience             []string `json:"audience"`
	CanIntrospect        bool     `json:"can_introspect"`
	TokenLifetimeSeconds int64    `json:"token_lifetime_seconds"`
	TokenLifetimeDefault bool     `json:"token_lifetime_default"`
	TokenRatePerMinute   *int64   `json:"token_rate_per_minute"`
	Disabled             bool     `json:"disabled"`
	// How its key pairs authenticate, and with which keys.
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	JWKS                    json.RawMessage `json:"jwks"`
	JWKSURI                 *string         `json:"jwks_uri"`
	RequireDPoP             bool            `json:"require_dpop"`
	IntrospectionAudience   []string        `json:"introspection_audience"`
	CreatedBy               string          `json:"created_by"`
	CreatedAt               time.Time       `json:"created_at"`
	UpdatedAt               time.Time       `json:"updated_at"`
	KeyPair                 *keyPairJSON    `json:"key_pair"`
	PreviousKeyPair         *keyPairJSON    `json:"previous_key_pair,omitempty"`
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func keyPairOut(kp *storage.KeyPair) *keyPairJSON {
	if kp == nil {
		return nil
	}
	return &keyPairJSON{ClientID: kp.ClientID, CreatedAt: kp.CreatedAt.UTC(), LastUsedAt: utc(kp.LastUsedAt), ExpiresAt: utc(kp.ExpiresAt)}
}

// integrationOut shows the lifetime that applies, but the integration's own
// token rate, null when it follows the server's: 0 (no cap) and the
// default must stay told apart.
func (s *Server) integrationOut(ig *storage.Integration) integrationJSON {
	return integrationJSON{
		Name: ig.Name, Description: ig.Description, Scopes: ig.Scopes, Audience: ig.Audience,
		CanIntrospect: ig.CanIntrospect, TokenLifetimeSeconds: int64(s.oauth.Lifetime(ig) / time.Second),
		TokenLifetimeDefault: ig.TokenLifetimeSeconds == nil,
		TokenRatePerMinute:   ig.TokenRatePerMinute, Disabled: ig.Disabled,
		TokenEndpointAuthMethod: ig.TokenEndpointAuthMethod, JWKS: jwksOut(ig), JWKSURI: optional(ig.JWKSURI),
		RequireDPoP: ig.RequireDPoP, IntrospectionAudience: ig.IntrospectionAudience,
		CreatedBy: ig.CreatedBy, CreatedAt: ig.CreatedAt.UTC(), UpdatedAt: ig.UpdatedAt.UTC(),
		KeyPair: keyPairOut(ig.KeyPair), PreviousKeyPair: keyPairOut(ig.PreviousKeyPair),
	}
}

func jwksOut(ig *storage.Integration) json.RawMessage {
	if ig.JWKS == "" {
		return json.RawMessage("null")
	}
	return json.RawMessage(ig.JWKS)
}

// valueOr is *s, or "" for nil.
func valueOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// optional is s, or nil (JSON null) for "".
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// accessTokenJSON is an access token in its integration's listing: whom
// it was issued to and for what, until when it works and whether it does
// now. Never the token, nor the signature it is stored under: auditors
// read this listing, and they never see a secret.
type accessTokenJSON struct {
	ClientID  string    `json:"client_id"`
	Scopes    []string  `json:"scopes"`
	Audience  []string  `json:"audience"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Active    bool      `json:"active"`
}

// handleIntegrationTokens lists the integration's access tokens, newest
// first, expired and revoked ones too until the janitor deletes them.
// expires_at is when a token stops working, its pair's grace deadline if
// that comes first.
func (s *Server) handleIntegrationTokens() http.Handler {
	fetch := func(r *http.Request, p storage.Page) ([]*storage.Token, string, error) {
		return s.store.ListIntegrationTokens(r.Context(), r.PathValue("name"), p)
	}
	return handleList(s, true, fetch, func(t *storage.Token) accessTokenJSON {
		exp, active := s.oauth.Status(t)
		return accessTokenJSON{ClientID: t.Owner.ClientID, Scopes: orEmpty(t.Scopes), Audience: orEmpty(t.Audience),
			IssuedAt: t.IssuedAt.UTC(), ExpiresAt: exp.UTC(), Active: active}
	})
}

// orEmpty keeps an empty list a list in JSON, not null.
func orEmpty(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

// newKeyPairJSON is the one response that carries a client secret; a
// private_key_jwt integration's pairs have none (null).
type newKeyPairJSON struct {
	ClientID          string     `json:"client_id"`
	ClientSecret      *string    `json:"client_secret"`
	CreatedAt         time.Time  `json:"created_at"`
	PreviousExpiresAt *time.Time `json:"previous_expires_at"`
}

func (s *Server) handleIntegrationCreate() http.Handler {
	type request struct {
		Name                    string          `json:"name"`
		Description             string          `json:"description"`
		Scopes                  []string        `json:"scopes"`
		Audience                []string        `json:"audience"`
		CanIntrospect           bool            `json:"can_introspect"`
		TokenLifetimeSeconds    *int64          `json:"token_lifetime_seconds"`
		TokenRatePerMinute      *int64          `json:"token_rate_per_minute"`
		TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
		JWKS                    json.RawMessage `json:"jwks"`
		JWKSURI                 *string         `json:"jwks_uri"`
		RequireDPoP             bool            `json:"require_dpop"`
		IntrospectionAudience   []string        `json:"introspection_audience"`
	}
	type createdKeyPair struct {
		ClientID     string    `json:"client_id"`
		ClientSecret *string   `json:"client_secret"`
		CreatedAt    time.Time `json:"created_at"`
	}
	type response struct {
		integrationJSON
		KeyPair createdKeyPair `json:"key_pair"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, false) {
			return
		}
		ig, nk, err := s.store.CreateIntegration(r.Context(), storage.IntegrationInput{
			Name: req.Name, Description: req.Description, Scopes: req.Scopes, Audience: req.Audience,
			CanIntrospect: req.CanIntrospect, TokenLifetimeSeconds: req.TokenLifetimeSeconds,
			TokenRatePerMinute: req.TokenRatePerMinute, TokenEndpointAuthMethod: req.TokenEndpointAuthMethod,
			JWKS: req.JWKS, JWKSURI: valueOr(req.JWKSURI), RequireDPoP: req.RequireDPoP,
			IntrospectionAudience: req.IntrospectionAudience,
		}, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		out := response{integrationJSON: s.integrationOut(ig)}
		out.KeyPair = createdKeyPair{ClientID: nk.ClientID, ClientSecret: optional(nk.ClientSecret), CreatedAt: nk.CreatedAt.UTC()}
		w.Header().Set("Location", "/admin/integrations/"+ig.Name)
		writeJSON(w, http.StatusCreated, out)
	})
}

// handleIntegrationList is the integrations listing: ?q= keeps those whose
// name, description or scopes contain it (any case) and the one whose
// current or previous client ID it is; ?sort= orders them (name, -name,
// created_at, -created_at); total counts all that q matches, across pages.
func (s *Server) handleIntegrationList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := readPage(w, r)
		if !ok {
			return
		}
		q := storage.IntegrationQuery{Search: r.URL.Query().Get("q"), Sort: r.URL.Query().Get("sort")}
		igs, next, total, err := s.store.FindIntegrations(r.Context(), q, p)
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		body := struct {
			list[integrationJSON]
			Total int64 `json:"total"`
		}{list[integrationJSON]{Items: make([]integrationJSON, len(igs)), NextPageToken: next}, total}
		for i, ig := range igs {
			body.Items[i] = s.integrationOut(ig)
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func (s *Server) handleIntegrationGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ig, err := s.store.GetIntegration(r.Context(), r.PathValue("name"))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.integrationOut(ig))
	})
}

func (s *Server) handleIntegrationUpdate() http.Handler {
	type request struct {
		Name                    *string          `json:"name"`
		Description             *string          `json:"description"`
		Scopes                  *[]string        `json:"scopes"`
		Audience                *[]string        `json:"audience"`
		CanIntrospect           *bool            `json:"can_introspect"`
		TokenLifetimeSeconds    nullable[int64]  `json:"token_lifetime_seconds"`
		TokenRatePerMinute      nullable[int64]  `json:"token_rate_per_minute"`
		Disabled                *bool            `json:"disabled"`
		TokenEndpointAuthMethod *string          `json:"token_endpoint_auth_method"`
		JWKS                    json.RawMessage  `json:"jwks"`
		JWKSURI                 nullable[string] `json:"jwks_uri"`
		RequireDPoP             *bool            `json:"require_dpop"`
		IntrospectionAudience   *[]string        `json:"introspection_audience"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, false) {
			return
		}
		name := r.PathValue("name")
		if req.Name != nil && *req.Name != name {
			writeError(w, http.StatusBadRequest, "invalid_request", "name cannot be changed; create a new integration instead")
			return
		}
		ig, err := s.store.UpdateIntegration(r.Context(), name, storage.IntegrationPatch{
			Description: req.Description, Scopes: req.Scopes, Audience: req.Audience,
			CanIntrospect: req.CanIntrospect, TokenLifetimeSeconds: req.TokenLifetimeSeconds.v,
			ResetTokenLifetime: req.TokenLifetimeSeconds.null,
			TokenRatePerMinute: req.TokenRatePerMinute.v, ResetTokenRate: req.TokenRatePerMinute.null,
			Disabled: req.Disabled, TokenEndpointAuthMethod: req.TokenEndpointAuthMethod,
			JWKS: req.JWKS, JWKSURI: req.JWKSURI.orEmpty(), RequireDPoP: req.RequireDPoP,
			IntrospectionAudience: req.IntrospectionAudience,
		}, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.integrationOut(ig))
	})
}

// nullable is a field of a PATCH body that tells an explicit null (go back
// to the default, or remove, as in JSON Merge Patch, RFC 7396) from a field
// left out (leave it as it is): a plain pointer is nil for both.
type nullable[T any] struct {
	v    *T
	null bool
}

// orEmpty is the patch of a string field stored as "" when unset: nil when
// left out, "" for null.
func (n nullable[T]) orEmpty() *T {
	if n.null {
		return new(T)
	}
	return n.v
}

func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		n.v, n.null = nil, true
		return nil
	}
	// A type error comes back through the decoder, which names the field.
	return json.Unmarshal(b, &n.v)
}

func (s *Server) handleIntegrationDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.DeleteIntegration(r.Context(), r.PathValue("name"), actor(r)); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleKeyPairRegenerate() http.Handler {
	type request struct {
		GraceSeconds int64 `json:"grace_seconds"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, true) {
			return
		}
		if req.GraceSeconds < 0 || req.GraceSeconds > int64(storage.MaxGrace/time.Second) {
			// Checked here too: a huge value would overflow the Duration.
			writeError(w, http.StatusBadRequest, "invalid_request",
				"grace_seconds must be between 0 and "+strconv.FormatInt(int64(storage.MaxGrace/time.Second), 10))
			return
		}
		nk, err := s.store.RegenerateKeyPair(r.Context(), r.PathValue("name"), time.Duration(req.GraceSeconds)*time.Second, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, newKeyPairJSON{
			ClientID: nk.ClientID, ClientSecret: optional(nk.ClientSecret), CreatedAt: nk.CreatedAt.UTC(),
			PreviousExpiresAt: utc(nk.PreviousExpiresAt),
		})
	})
}

// handleEndGrace revokes the pair a regeneration left in its grace period,
// at once.
func (s *Server) handleEndGrace() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.EndGrace(r.Context(), r.PathValue("name"), actor(r)); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type auditJSON struct {
	ID         int64          `json:"id"`
	Time       time.Time      `json:"time"`
	ActorType  string         `json:"actor_type"`
	Actor      string         `json:"actor"`
	Action     string         `json:"action"`
	ObjectType string         `json:"object_type"`
	Object     string         `json:"object"`
	RemoteAddr string         `json:"remote_addr"`
	Details    map[string]any `json:"details"`
}

func (s *Server) handleAuditList() http.Handler {
	return handleList(s, true, func(r *http.Request, p storage.Page) ([]storage.AuditEvent, string, error) {
		return s.findAudit(r, p)
	}, func(e storage.AuditEvent) auditJSON {
		return auditJSON{ID: e.ID, Time: e.Time.UTC(), ActorType: e.ActorType, Actor: e.Actor,
			Action: e.Action, ObjectType: e.ObjectType, Object: e.Object, RemoteAddr: e.RemoteAddr, Details: e.Details}
	})
}

type signingKeyJSON struct {
	Kid       string     `json:"kid"`
	Algorithm string     `json:"algorithm"`
	Status    string     `json:"status"` // "active" or "retired"
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at"`
	// PublishedUntil is when a retired key leaves the JWKS: the expiry of
	// the last live token it signed, and at least ten minutes after its
	// retirement; null for the active key and for a key no longer published.
	PublishedUntil *time.Time      `json:"published_until"`
	PublicKey      jose.JSONWebKey `json:"public_key"`
}

func signingKeyOut(k *storage.SigningKey) signingKeyJSON {
	status := "retired"
	if k.Active {
		status = "active"
	}
	return signingKeyJSON{Kid: k.ID, Algorithm: k.Algorithm, Status: status, CreatedAt: k.CreatedAt.UTC(),
		RetiredAt: utc(k.RetiredAt), PublishedUntil: utc(k.PublishedUntil), PublicKey: k.Public}
}

// handleSigningKeyList lists every signing key, public parts only: a
// private key never leaves the process that decrypts it.
func (s *Server) handleSigningKeyList() http.Handler {
	return handleList(s, false, func(r *http.Request, _ storage.Page) ([]*storage.SigningKey, string, error) {
		keys, err := s.store.SigningKeys(r.Context())
		return keys, "", err
	}, signingKeyOut)
}

// handleSigningKeyRotate makes a new active key with the configured
// algorithm; this replica signs with it at once, others within keyringTTL.
func (s *Server) handleSigningKeyRotate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, err := s.store.RotateSigningKey(r.Context(), s.opts.SigningAlgorithm, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		// reload fails only while the keyring has never loaded, and New
		// loaded it: after that a failed refresh keeps the keys it has and
		// tries again a few seconds later.
		_ = s.oauth.ReloadKeys(r.Context())
		writeJSON(w, http.StatusCreated, signingKeyOut(k))
	})
}
