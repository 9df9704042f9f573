package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
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
	hasher := notingHasher{s.store.ClientSecretHasher()}
	cfg := &fosite.Config{
		AccessTokenLifespan:      s.opts.TokenLifetime,
		AccessTokenIssuer:        s.opts.Issuer,
		TokenURL:                 s.opts.Issuer + "/oauth2/token",
		GlobalSecret:             storage.DeriveKey(s.opts.Secrets[0], "access-token-hmac"),
		RotatedGlobalSecrets:     rotated,
		TokenEntropy:             32,
		ClientSecretsHasher:      hasher,
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
	return fosite.NewOAuth2Provider(notingStore{Store: s.store, hasher: s.store.ClientSecretHasher()}, cfg)
}

// notingStore is the store as fosite's client authentication sees it: it
// notes in the request which integration the client ID names, or that it
// names none, for the access log, the metrics and the failure limits.
type notingStore struct {
	*storage.Store
	hasher fosite.Hasher
}

// dummySecretHash stands in for the hash of a client ID that names no
// working key pair.
var dummySecretHash = make([]byte, 32)

func (n notingStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := n.Store.GetClient(ctx, id)
	ri := infoFrom(ctx)
	switch {
	case err == nil:
		ri.integration = c.(*storage.Client).Integration.Name
	case errors.Is(err, fosite.ErrNotFound):
		ri.authFailure = "unknown_client"
		// fosite answers an unknown client without comparing its
		// secret; comparing one anyway makes an unknown client ID cost
		// what a known one does, so timing tells no one which client
		// IDs exist.
		_ = n.hasher.Compare(ctx, dummySecretHash, dummySecret)
	}
	return c, err
}

// dummySecret is compared against dummySecretHash: well formed, so it costs
// the full HMAC, and never a match.
var dummySecret = []byte(storage.NewClientSecret())

// notingHasher notes that a client secret was refused; its shape was
// checked before the client was looked up (checkClientCredentials).
type notingHasher struct{ fosite.Hasher }

func (n notingHasher) Compare(ctx context.Context, hash, data []byte) error {
	err := n.Hasher.Compare(ctx, hash, data)
	if err != nil {
		infoFrom(ctx).authFailure = "wrong_secret"
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

// MaxOAuthBodyBytes caps the body of an OAuth request. The largest
// legitimate one, a token request with a client assertion, a DPoP proof and
// a hundred scopes, fits in a few kilobytes; anything more is only work
// for the server before the client is known.
const MaxOAuthBodyBytes = 16 << 10

// Caps on the values one request may ask for, checked before anything
// else looks at them (fosite de-duplicates both in quadratic time).
const (
	maxScopeValues    = 100
	maxAudienceValues = 20
)

// oauthForm checks what fosite leaves to its caller before an OAuth
// endpoint runs: the body is a form (RFC 6749 §4.4.2, RFC 7662 §2.1,
// RFC 7009 §2.1) within MaxOAuthBodyBytes (which limitBody applies), asking for a bounded number of
// scopes and audiences, with no parameter repeated (§3.2) and exactly one
// supported client authentication method (§2.3). Everything here is
// linear in the body's size and touches no database; a secret whose
// checksum is wrong is refused here too, so a mistyped or invented secret
// never costs a lookup.
func (s *Server) oauthForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The request body must be application/x-www-form-urlencoded."))
			return
		}
		if err := r.ParseForm(); err != nil {
			if errTooLarge(err) {
				writeBodyTooLarge(w, MaxOAuthBodyBytes)
				return
			}
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The request body is not valid form encoding."))
			return
		}
		if n := countValues(r.PostForm["scope"]); n > maxScopeValues {
			s.writeOAuthError(w, r, fosite.ErrInvalidScope.WithHintf("At most %d scope values may be asked for at once, not %d.", maxScopeValues, n))
			return
		}
		if n := countValues(r.PostForm["audience"]) + countValues(r.PostForm["resource"]); n > maxAudienceValues {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHintf("At most %d audience and resource values may be asked for at once, not %d.", maxAudienceValues, n))
			return
		}
		for k, v := range r.PostForm {
			if len(v) > 1 {
				s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHintf("The parameter %q is repeated.", k))
				return
			}
		}
		if err := checkClientCredentials(r); err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// countValues counts the space-separated values in vs.
func countValues(vs []string) int {
	n := 0
	for _, v := range vs {
		inValue := false
		for i := 0; i < len(v); i++ {
			if v[i] == ' ' {
				inValue = false
			} else if !inValue {
				inValue = true
				n++
			}
		}
	}
	return n
}

// checkClientCredentials refuses, with invalid_client, every way of
// presenting client credentials latchkey does not take: none at all, two
// methods at once (§2.3), a client assertion (RFC 7523 §2.2; no client has
// private_key_jwt), and a secret that is not even shaped like one of ours.
// Each counts as a failed authentication, so none of them is a side door
// around the failure limits.
func checkClientCredentials(r *http.Request) error {
	ri := infoFrom(r.Context())
	if r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type") {
		ri.authFailure = "unsupported_method"
		return fosite.ErrInvalidClient.WithHint("Client assertions are not accepted: authenticate with the client ID and secret (client_secret_basic or client_secret_post).")
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") || r.PostForm.Has("client_id") {
			ri.authFailure = "unsupported_method"
			return fosite.ErrInvalidClient.WithHint("Use one client authentication method: HTTP Basic or client_id/client_secret in the body, not both.")
		}
		// RFC 6749 §2.3.1 form-encodes both halves, as fosite decodes them.
		var errID, errSecret error
		id, errID = url.QueryUnescape(id)
		secret, errSecret = url.QueryUnescape(secret)
		if errID != nil || errSecret != nil {
			ri.authFailure = "malformed_secret"
			return fosite.ErrInvalidClient.WithHint("The HTTP Basic credentials are not form-encoded correctly (RFC 6749 §2.3.1).")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		ri.authFailure = "missing_credentials"
		return fosite.ErrInvalidClient.WithHint("No client credentials: use HTTP Basic or client_id and client_secret in the body.")
	}
	ri.clientID = id
	if !storage.ValidChecksummed(secret, storage.ClientSecretPrefix) {
		ri.authFailure = "malformed_secret"
		return fosite.ErrInvalidClient.WithHint("Client authentication failed: the client ID or secret is wrong.")
	}
	return nil
}

// clientFailed counts a failed client authentication in the metrics and
// the failure limits, and holds the answer as long as the limits say. It
// reports whether it has answered the request itself, with 429 slow_down;
// otherwise the caller writes the failure.
func (s *Server) clientFailed(w http.ResponseWriter, r *http.Request) bool {
	ri := infoFrom(r.Context())
	if ri.authFailure == "" {
		ri.authFailure = "invalid_client"
	}
	// A wrong secret for a working key pair is what guessing looks like;
	// only those count against the client ID itself.
	known := ri.authFailure == "wrong_secret"
	integration := ""
	if known {
		integration = ri.integration
	}
	s.metrics.authFailed(ri.authFailure, integration)
	id := ri.clientID
	if !storage.ValidClientID(id) {
		// Never a right credential: one key stands for all such.
		id = "-"
	}
	v := s.clientLimits.failed(ri.addr, id, known)
	if v.limit == "" {
		return false
	}
	s.metrics.limitedBy[v.limit].Inc()
	s.hold(w, r.Context(), v.hold)
	if !v.refuse {
		return false
	}
	writeTooMany(w, "slow_down", v.retry,
		"Too many failed client authentications from this address with this client ID: the credentials are wrong. Try again in %d s.")
	return true
}

// writeOAuthError writes an RFC 6749 §5.2 error. A 401 is a failed client
// authentication: it is counted and may be held or become 429 (see
// clientFailed), and it carries a Basic challenge when the client tried
// Basic (§5.2). Database failures become 503 temporarily_unavailable and
// are logged; nothing else is.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.Canceled):
		err = fosite.ErrTemporarilyUnavailable // the client went away
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", redact(r.URL.Path), "err", storageCause(err))
		err = fosite.ErrTemporarilyUnavailable
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.CodeField >= 500 && !errors.Is(err, fosite.ErrTemporarilyUnavailable) {
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", redact(r.URL.Path), "err", rfc.WithExposeDebug(true).GetDescription())
	}
	if rfc.CodeField == http.StatusUnauthorized {
		if s.clientFailed(w, r) {
			return
		}
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
			s.metrics.limitedBy["issuance"].Inc()
			writeTooMany(w, "slow_down", limited.wait, limited.description())
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
		if !r.PostForm.Has("token") {
			s.writeOAuthError(w, r, fosite.ErrInvalidRequest.WithHint("The 'token' parameter is required."))
			return
		}
		// An empty token is one more token that is not active (§2.2).
		token := r.PostForm.Get("token")
		var ar fosite.AccessRequester
		if token != "" {
			_, ar, err = s.oauth.IntrospectToken(ctx, token, fosite.AccessToken, new(fosite.DefaultSession))
		}
		if token == "" || err != nil {
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
			// Another integration's token: whether it is live is no
			// business of the caller's, and trying it counts as a failure
			// (see revocationHandler).
			if errors.Is(err, fosite.ErrUnauthorizedClient) {
				infoFrom(r.Context()).authFailure = "foreign_token"
				if s.clientFailed(w, r) {
					return
				}
			}
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
