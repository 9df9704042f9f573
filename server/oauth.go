package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/x/errorsx"

	"github.com/latchkey/latchkey/storage"
)

// composeOAuth builds the fosite provider with only what latchkey serves:
// the client-credentials grant, introspection and revocation.
func (s *Server) composeOAuth() *fosite.Fosite {
	var rotated [][]byte
	for _, sec := range s.opts.Secrets[1:] {
		rotated = append(rotated, storage.DeriveKey(sec, "access-token-hmac"))
	}
	cfg := &fosite.Config{
		AccessTokenLifespan:      s.opts.TokenLifetime,
		AccessTokenIssuer:        s.opts.Issuer,
		TokenURL:                 s.opts.Issuer + "/oauth2/token",
		GlobalSecret:             storage.DeriveKey(s.opts.Secrets[0], "access-token-hmac"),
		RotatedGlobalSecrets:     rotated,
		TokenEntropy:             32,
		ClientSecretsHasher:      notingHasher{s.store.ClientSecretHasher()},
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		// Only access tokens exist; never look a token up as a refresh token.
		DisableRefreshTokenValidation: true,
	}
	strategy := &tokenStrategy{
		prefixedHMACStrategy: &prefixedHMACStrategy{
			HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: cfg}, cfg),
		},
		keys: s.keys, issuer: s.opts.Issuer, issueJWTs: s.opts.TokenFormat == "jwt", now: s.now,
	}
	// The handlers are wired by hand rather than through fosite/compose,
	// which would link in OpenID Connect, PKCE, PAR and JWT-bearer code
	// latchkey never runs.
	cfg.TokenEndpointHandlers.Append(&oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: strategy, AccessTokenStorage: s.store, Config: cfg},
		Config:       cfg,
	})
	cfg.TokenIntrospectionHandlers.Append(&oauth2.CoreValidator{CoreStrategy: strategy, CoreStorage: s.store, Config: cfg})
	cfg.RevocationHandlers.Append(&revocationHandler{store: s.store, strategy: strategy})
	// NewOAuth2Provider returns the concrete *fosite.Fosite, whose
	// AuthenticateClient introspection needs for client_secret_post.
	return fosite.NewOAuth2Provider(notingStore{s.store}, cfg)
}

// notingStore is the store as fosite's client authentication sees it: it
// notes in the request which integration the client ID names, or that it
// names none, for the access log, the metrics and the rate limits.
type notingStore struct{ *storage.Store }

func (n notingStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := n.Store.GetClient(ctx, id)
	ri := infoFrom(ctx)
	switch {
	case err == nil:
		ri.integration = c.(*storage.Client).Integration.Name
	case errors.Is(err, fosite.ErrNotFound):
		ri.authFailure = "unknown_client"
	}
	return c, err
}

// notingHasher notes why a client secret was refused: not even shaped like
// a secret (a typo, or someone guessing blindly), or simply wrong.
type notingHasher struct{ fosite.Hasher }

func (n notingHasher) Compare(ctx context.Context, hash, data []byte) error {
	err := n.Hasher.Compare(ctx, hash, data)
	if err != nil {
		reason := "wrong_secret"
		if !storage.ValidChecksummed(string(data), storage.ClientSecretPrefix) {
			reason = "malformed_secret"
		}
		infoFrom(ctx).authFailure = reason
	}
	return err
}

// revocationHandler is RFC 7009 revocation where the integration, not the
// key pair, owns a token: during a grace period the new pair can revoke
// tokens the old pair was issued. fosite's own handler compares client IDs,
// which change with every regeneration.
type revocationHandler struct {
	store    *storage.Store
	strategy oauth2.AccessTokenStrategy
}

var _ fosite.RevocationHandler = (*revocationHandler)(nil)

// RevokeToken revokes token if caller's integration owns it. Unknown,
// invalid and inactive tokens succeed (§2.2): there is nothing to revoke.
func (h *revocationHandler) RevokeToken(ctx context.Context, token string, _ fosite.TokenType, caller fosite.Client) error {
	signature := h.strategy.AccessTokenSignature(ctx, token)
	ar, err := h.store.GetAccessTokenSession(ctx, signature, nil)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if h.strategy.ValidateAccessToken(ctx, ar, token) != nil {
		return nil
	}
	if ar.GetClient().(*storage.Client).Integration.ID != caller.(*storage.Client).Integration.ID {
		return errorsx.WithStack(fosite.ErrUnauthorizedClient.WithHint("The token was issued to another integration."))
	}
	// By signature, the table's key: a client-credentials request issues
	// one token, so this is all RFC 7009 §2.1 asks to revoke.
	return h.store.DeleteAccessTokenSession(ctx, signature)
}

// prefixedHMACStrategy is fosite's HMAC token strategy with latchkey's
// "lk_at_" prefix on access tokens, so scanners recognise a leaked token.
// A token without the prefix is not one of ours and never validates.
type prefixedHMACStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
}

func (h *prefixedHMACStrategy) AccessTokenSignature(ctx context.Context, token string) string {
	body, ok := strings.CutPrefix(token, storage.AccessTokenPrefix)
	if !ok || !canonicalHMACToken(body) {
		return ""
	}
	return h.HMACSHAStrategyUnPrefixed.AccessTokenSignature(ctx, body)
}

// canonicalHMACToken reports whether body is key.signature, each in the
// one base64url spelling latchkey issues. fosite decodes leniently, so a
// token whose last character differs only in the bits base64 leaves unused
// would otherwise pass for the token it was made from: one token, several
// strings, which a client or cache keying on the string would not expect.
func canonicalHMACToken(body string) bool {
	key, sig, ok := strings.Cut(body, ".")
	if !ok {
		return false
	}
	enc := base64.RawURLEncoding.Strict()
	_, errKey := enc.DecodeString(key)
	_, errSig := enc.DecodeString(sig)
	return errKey == nil && errSig == nil
}

func (h *prefixedHMACStrategy) GenerateAccessToken(ctx context.Context, r fosite.Requester) (string, string, error) {
	token, sig, err := h.HMACSHAStrategyUnPrefixed.GenerateAccessToken(ctx, r)
	if err != nil {
		return "", "", err
	}
	return storage.AccessTokenPrefix + token, sig, nil
}

func (h *prefixedHMACStrategy) ValidateAccessToken(ctx context.Context, r fosite.Requester, token string) error {
	body, ok := strings.CutPrefix(token, storage.AccessTokenPrefix)
	if !ok || !canonicalHMACToken(body) {
		return errorsx.WithStack(fosite.ErrInvalidTokenFormat)
	}
	return h.HMACSHAStrategyUnPrefixed.ValidateAccessToken(ctx, r, body)
}

// oauthForm checks what fosite leaves to its caller before an OAuth
// endpoint runs: the body is a form (RFC 6749 §4.4.2, RFC 7662 §2.1,
// RFC 7009 §2.1), within the size limit, with no parameter repeated
// (§3.2) and at most one client authentication method (§2.3).
func (s *Server) oauthForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The request body must be application/x-www-form-urlencoded."))
			return
		}
		if err := r.ParseForm(); err != nil {
			if errTooLarge(err) {
				writeError(w, http.StatusRequestEntityTooLarge, "invalid_request",
					fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
				return
			}
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The request body is not valid form encoding."))
			return
		}
		for k, v := range r.PostForm {
			if len(v) > 1 {
				s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHintf("The parameter %q is repeated.", k))
				return
			}
		}
		_, _, basic := r.BasicAuth()
		switch {
		case basic && (r.PostForm.Has("client_secret") || r.PostForm.Has("client_id")):
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("Use one client authentication method: HTTP Basic or client_id/client_secret in the body, not both."))
			return
		case !basic && r.PostForm.Get("client_id") == "":
			// Every endpoint here needs an authenticated client; a request
			// without credentials is an authentication failure (§5.2).
			infoFrom(r.Context()).authFailure = "missing_credentials"
			s.writeOAuthError(w, r, fosite.ErrInvalidClient.WithHint("No client credentials: use HTTP Basic or client_id and client_secret in the body."))
			s.authFailed(r, "")
			return
		}
		clientID := requestClientID(r)
		if s.authLimits != nil {
			if limit, wait := s.authLimits.check(infoFrom(r.Context()).addr, clientID); limit != "" {
				s.metrics.limitedBy[limit].Inc()
				s.holdRefused(r.Context(), wait, s.opts.ClientAuthLimit.MaxDelay)
				secs := retryAfter(wait)
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				writeError(w, http.StatusTooManyRequests, "slow_down",
					fmt.Sprintf("Too many failed client authentications from this address or for this client; try again in %d s.", secs))
				return
			}
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			s.authFailed(r, clientID)
		}
	})
}

// requestClientID is the client ID a request presents, decoded as fosite
// decodes it (RFC 6749 §2.3.1 form-encodes Basic credentials).
func requestClientID(r *http.Request) string {
	id, _, basic := r.BasicAuth()
	if !basic {
		return r.PostForm.Get("client_id")
	}
	if dec, err := url.QueryUnescape(id); err == nil {
		return dec
	}
	return id
}

// authFailed counts a failed client authentication against the limits
// and in the metrics.
func (s *Server) authFailed(r *http.Request, clientID string) {
	ri := infoFrom(r.Context())
	if ri.authFailure == "" {
		ri.authFailure = "invalid_client"
	}
	// A wrong secret for a real client ID is what guessing looks like; the
	// ID's own limit counts only those.
	known := ri.authFailure == "wrong_secret" || ri.authFailure == "malformed_secret"
	if s.authLimits != nil {
		s.authLimits.failed(ri.addr, clientID, known)
	}
	integration := ""
	if known {
		integration = ri.integration
	}
	s.metrics.authFailed(ri.authFailure, integration)
}

// writeOAuthError writes an RFC 6749 §5.2 error. A 401 carries a Basic
// challenge when the client tried Basic (§5.2). Database failures become
// 503 temporarily_unavailable and are logged; nothing else is.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.Canceled):
		err = fosite.ErrTemporarilyUnavailable // the client went away
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", r.URL.Path, "err", storageCause(err))
		err = fosite.ErrTemporarilyUnavailable
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 && !errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", r.URL.Path, "err", rfc.WithExposeDebug(true).GetDescription())
	}
	if rfc.CodeField == http.StatusUnauthorized {
		if _, _, basic := r.BasicAuth(); basic || !r.PostForm.Has("client_id") {
			w.Header().Set("WWW-Authenticate", `Basic realm="latchkey", charset="UTF-8"`)
		}
	}
	writeError(w, rfc.CodeField, rfc.ErrorField, rfc.GetDescription())
}

// storageCause digs the storage error out of fosite's wrapping, whose own
// message is only an error code. Storage errors join their context and
// ErrUnavailable with two %w verbs, so single unwrapping stops at them.
func storageCause(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// handleToken is the client-credentials grant (RFC 6749 §4.4). Asking for
// no scope grants every scope the integration has; asking for no audience
// grants its whole audience. The token lives the integration's lifetime,
// cut short by its key pair's grace deadline, and expires_in says exactly
// that.
func (s *Server) handleToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The 'grant_type' parameter is required."))
			return
		default:
			s.writeOAuthError(w, r, fosite.ErrUnsupportedGrantType.WithHintf("Only grant_type 'client_credentials' is supported, not %q.", gt))
			return
		}
		// A regeneration that commits between authentication and the
		// token's write makes the write fail; authenticating again sees
		// the pair's new state (revoked, or a grace deadline to respect).
		req, resp, err := s.issue(ctx, r)
		if errors.Is(err, storage.ErrKeyPairChanged) {
			req, resp, err = s.issue(ctx, r)
		}
		var limited *issuanceLimited
		if errors.As(err, &limited) {
			s.writeIssuanceLimited(w, limited)
			return
		}
		if err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		s.oauth.WriteAccessResponse(ctx, w, req, resp)
		s.metrics.tokenIssued(s.opts.TokenFormat, infoFrom(ctx).integration)
	})
}

// issue authenticates the client and issues one access token.
func (s *Server) issue(ctx context.Context, r *http.Request) (fosite.AccessRequester, fosite.AccessResponder, error) {
	session := new(fosite.DefaultSession)
	req, err := s.oauth.NewAccessRequest(ctx, r, session)
	if err != nil {
		return nil, nil, err
	}
	client := req.GetClient().(*storage.Client)
	// After authentication, so only the integration's own requests count,
	// and before the token is made and stored, which is what the cap
	// bounds. The rare retry after ErrKeyPairChanged counts twice.
	rate := s.issuance.rate(client.Integration.TokenRatePerMinute)
	if wait, ok := s.issuance.take(client.Integration.ID, rate); !ok {
		return nil, nil, &issuanceLimited{perMinute: rate, wait: wait}
	}
	scopes := req.GetRequestedScopes()
	if len(scopes) == 0 {
		scopes = client.Integration.Scopes
	}
	for _, sc := range scopes {
		req.GrantScope(sc)
	}
	aud := req.GetRequestedAudience()
	if len(aud) == 0 {
		aud = client.Integration.Audience
	}
	for _, a := range aud {
		req.GrantAudience(a)
	}
	// Full precision, not whole seconds: expires_in is floored, and must
	// never promise more than the grace deadline leaves.
	now := s.now().UTC().Truncate(time.Microsecond)
	exp := now.Add(s.lifetime(&client.Integration))
	if client.ExpiresAt != nil && client.ExpiresAt.Before(exp) {
		exp = *client.ExpiresAt
	}
	if ar, ok := req.(*fosite.AccessRequest); ok {
		ar.RequestedAt = now
	}
	session.Subject = client.Integration.Name
	session.SetExpiresAt(fosite.AccessToken, exp)

	resp, err := s.oauth.NewAccessResponse(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	resp.SetExpiresIn(exp.Sub(now))
	resp.SetScopes(req.GetGrantedScopes())
	return req, resp, nil
}

// lifetime is the integration's own token lifetime or the server default.
func (s *Server) lifetime(ig *storage.Integration) time.Duration {
	if ig.TokenLifetimeSeconds != nil {
		return time.Duration(*ig.TokenLifetimeSeconds) * time.Second
	}
	return s.opts.TokenLifetime
}

// introspection is the RFC 7662 §2.2 response for an active token.
type introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id"`
	Sub       string `json:"sub"`
	Scope     string `json:"scope"`
	Aud       any    `json:"aud"`
	Iss       string `json:"iss"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	Jti       string `json:"jti"`
	TokenType string `json:"token_type"`
	TokenUse  string `json:"token_use"`
}

// handleIntrospect is RFC 7662. Only an integration with can_introspect
// may call it (401 invalid_client for bad credentials, 403 when not
// allowed). Any token that is not active, for whatever reason, is
// {"active": false} with 200, so a caller learns nothing more.
func (s *Server) handleIntrospect() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		caller, err := s.oauth.AuthenticateClient(ctx, r, r.PostForm)
		if err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		if !caller.(*storage.Client).Integration.CanIntrospect {
			writeError(w, http.StatusForbidden, "unauthorized_client",
				"This integration may not introspect tokens: its can_introspect is false.")
			return
		}
		token := r.PostForm.Get("token")
		if token == "" {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is required."))
			return
		}
		_, ar, err := s.oauth.IntrospectToken(ctx, token, fosite.AccessToken, new(fosite.DefaultSession))
		if err != nil {
			if errors.Is(err, storage.ErrUnavailable) {
				s.writeOAuthError(w, r, err)
				return
			}
			s.metrics.introspectedInactive.Inc()
			writeJSON(w, http.StatusOK, map[string]bool{"active": false})
			return
		}
		s.metrics.introspectedActive.Inc()
		writeJSON(w, http.StatusOK, s.describeToken(ar))
	})
}

func (s *Server) describeToken(ar fosite.AccessRequester) introspection {
	client := ar.GetClient().(*storage.Client)
	var aud any = s.opts.Issuer
	switch g := ar.GetGrantedAudience(); len(g) {
	case 0:
	case 1:
		aud = g[0]
	default:
		aud = []string(g)
	}
	return introspection{
		Active:    true,
		ClientID:  client.ClientID,
		Sub:       client.Integration.Name,
		Scope:     strings.Join(ar.GetGrantedScopes(), " "),
		Aud:       aud,
		Iss:       s.opts.Issuer,
		Exp:       ar.GetSession().GetExpiresAt(fosite.AccessToken).Unix(),
		Iat:       ar.GetRequestedAt().Unix(),
		Jti:       ar.GetID(),
		TokenType: "Bearer",
		TokenUse:  "access_token",
	}
}

// handleRevoke is RFC 7009. Unknown, expired and already revoked tokens
// answer 200 (§2.2); another integration's token is refused with
// unauthorized_client and stays active.
func (s *Server) handleRevoke() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostForm.Get("token") == "" {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is required."))
			return
		}
		if err := s.oauth.NewRevocationRequest(r.Context(), r); err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		s.metrics.revocations.Inc()
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	})
}

// metadata is the RFC 8414 authorization server metadata.
type metadata struct {
	Issuer                          string   `json:"issuer"`
	TokenEndpoint                   string   `json:"token_endpoint"`
	TokenEndpointAuthMethods        []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionEndpoint           string   `json:"introspection_endpoint"`
	IntrospectionEndpointAuthMethod []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationEndpoint              string   `json:"revocation_endpoint"`
	RevocationEndpointAuthMethods   []string `json:"revocation_endpoint_auth_methods_supported"`
	GrantTypesSupported             []string `json:"grant_types_supported"`
	// ResponseTypesSupported is REQUIRED by RFC 8414 §2; latchkey has no
	// authorization endpoint, so it supports none.
	ResponseTypesSupported []string `json:"response_types_supported"`
	ScopesSupported        []string `json:"scopes_supported"`
	JWKSURI                string   `json:"jwks_uri"`
}

func (s *Server) handleMetadata() http.Handler {
	methods := []string{"client_secret_basic", "client_secret_post"}
	base := metadata{
		Issuer:                          s.opts.Issuer,
		TokenEndpoint:                   s.opts.Issuer + "/oauth2/token",
		TokenEndpointAuthMethods:        methods,
		IntrospectionEndpoint:           s.opts.Issuer + "/oauth2/introspect",
		IntrospectionEndpointAuthMethod: methods,
		RevocationEndpoint:              s.opts.Issuer + "/oauth2/revoke",
		RevocationEndpointAuthMethods:   methods,
		GrantTypesSupported:             []string{"client_credentials"},
		ResponseTypesSupported:          []string{},
		JWKSURI:                         s.opts.Issuer + "/.well-known/jwks.json",
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scopes, err := s.store.Scopes(r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "metadata: list scopes", "err", err)
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the database is unavailable")
			return
		}
		md := base
		md.ScopesSupported = scopes
		w.Header().Set("Cache-Control", "public, max-age=60")
		writeJSON(w, http.StatusOK, md)
	})
}

// jwksMaxAge lets verifiers cache the key set for five minutes. A token
// signed by a key they have not seen yet carries an unknown kid, which JWKS
// libraries answer by fetching the set again.
const jwksMaxAge = 5 * time.Minute

// handleJWKS publishes the public signing keys (RFC 7517): the active key
// and every retired key that may still have live tokens.
func (s *Server) handleJWKS() http.Handler {
	cacheControl := fmt.Sprintf("public, max-age=%d", int(jwksMaxAge/time.Second))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap, err := s.keys.current(r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "jwks: load signing keys", "err", err)
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the signing keys are unavailable")
			return
		}
		w.Header().Set("Cache-Control", cacheControl)
		writeJSON(w, http.StatusOK, snap.jwks)
	})
}
