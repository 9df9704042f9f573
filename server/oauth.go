package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/latchkey/latchkey/server/oauth"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

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
// scopes and audiences, with no parameter but resource repeated (§3.2) and exactly one
// supported client authentication method (§2.3). Everything here is
// linear in the body's size and touches no database; a secret whose
// checksum is wrong is refused here too, so a mistyped or invented secret
// never costs a lookup.
func (s *Server) oauthForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			s.writeOAuthError(w, r, oauth.InvalidRequest("The request body must be application/x-www-form-urlencoded."))
			return
		}
		if err := r.ParseForm(); err != nil {
			if errTooLarge(err) {
				writeBodyTooLarge(w, MaxOAuthBodyBytes)
				return
			}
			s.writeOAuthError(w, r, oauth.InvalidRequest("The request body is not valid form encoding."))
			return
		}
		if n := countValues(r.PostForm["scope"]); n > maxScopeValues {
			s.writeOAuthError(w, r, oauth.InvalidScope("At most %d scope values may be asked for at once, not %d.", maxScopeValues, n))
			return
		}
		if n := countValues(r.PostForm["audience"]) + countValues(r.PostForm["resource"]); n > maxAudienceValues {
			s.writeOAuthError(w, r, oauth.InvalidRequest("At most %d audience and resource values may be asked for at once, not %d.", maxAudienceValues, n))
			return
		}
		for k, v := range r.PostForm {
			// resource is the one parameter RFC 8707 §2 lets a client repeat.
			if len(v) > 1 && k != "resource" {
				s.writeOAuthError(w, r, oauth.InvalidRequest("The parameter %q is repeated.", k))
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
// methods at once (§2.3), an assertion of another type than RFC 7523's or
// too large to be one, and a secret that is not even shaped like one of
// ours. Each counts as a failed authentication, so none of them is a side
// door around the failure limits.
func checkClientCredentials(r *http.Request) error {
	ri := infoFrom(r.Context())
	if r.PostForm.Has("client_assertion") || r.PostForm.Has("client_assertion_type") {
		return checkClientAssertion(r)
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") || r.PostForm.Has("client_id") {
			ri.authFailure = "unsupported_method"
			return oauth.InvalidClient("Use one client authentication method: HTTP Basic or client_id/client_secret in the body, not both.")
		}
		// RFC 6749 §2.3.1 form-encodes both halves, as fosite decodes them.
		var errID, errSecret error
		id, errID = url.QueryUnescape(id)
		secret, errSecret = url.QueryUnescape(secret)
		if errID != nil || errSecret != nil {
			ri.authFailure = "malformed_secret"
			return oauth.InvalidClient("The HTTP Basic credentials are not form-encoded correctly (RFC 6749 §2.3.1).")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		ri.authFailure = "missing_credentials"
		return oauth.InvalidClient("No client credentials: use HTTP Basic or client_id and client_secret in the body.")
	}
	ri.clientID = id
	if !credential.ValidChecksummed(secret, credential.ClientSecretPrefix) {
		ri.authFailure = "malformed_secret"
		return oauth.InvalidClient("Client authentication failed: the client ID or secret is wrong.")
	}
	return nil
}

// checkClientAssertion is checkClientCredentials for a request carrying a
// client assertion (RFC 7523 §2.2); server/oauth checks the assertion.
func checkClientAssertion(r *http.Request) error {
	ri := infoFrom(r.Context())
	if _, _, basic := r.BasicAuth(); basic || r.PostForm.Has("client_secret") {
		ri.authFailure = "unsupported_method"
		return oauth.InvalidClient("Use one client authentication method: a client assertion, HTTP Basic or client_secret, not several.")
	}
	if typ := r.PostForm.Get("client_assertion_type"); typ != oauth.ClientAssertionType {
		ri.authFailure = "unsupported_method"
		return oauth.InvalidClient("client_assertion_type must be %q (RFC 7523 §2.2).", oauth.ClientAssertionType)
	}
	assertion := r.PostForm.Get("client_assertion")
	if assertion == "" {
		return oauth.InvalidRequest("client_assertion_type is set but client_assertion is missing.")
	}
	if len(assertion) > oauth.MaxAssertionBytes {
		ri.authFailure = oauth.FailureMalformedAssertion
		return oauth.InvalidClient("The client assertion is not valid: it is larger than %d bytes.", oauth.MaxAssertionBytes)
	}
	ri.clientID = r.PostForm.Get("client_id")
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
	// A wrong secret or a bad assertion for a working key pair is what
	// guessing looks like; only those count against the client ID itself.
	// A suspended integration's own requests are no guesses, nor is a
	// replayed assertion, which was right once (the address replaying it
	// pays for it), but whose they are is known.
	known := false
	switch ri.authFailure {
	case oauth.FailureWrongSecret, oauth.FailureBadAssertion, oauth.FailureWrongMethod:
		known = true
	}
	integration := ""
	if known || ri.authFailure == oauth.FailureDisabledClient || ri.authFailure == oauth.FailureReplayedAssertion {
		integration = ri.integration
	}
	s.metrics.authFailed(ri.authFailure, integration)
	id := ri.clientID
	if !credential.ValidClientID(id) {
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
// Basic (§5.2). The server's own failures are logged; nothing else is.
func (s *Server) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	e := oauth.Describe(err)
	if e.Cause != nil {
		s.log.ErrorContext(r.Context(), "oauth request failed", "path", redact(r.URL.Path), "err", e.Cause)
	}
	if e.Status == http.StatusUnauthorized {
		if s.clientFailed(w, r) {
			return
		}
		if _, _, basic := r.BasicAuth(); basic || (!r.PostForm.Has("client_id") && !r.PostForm.Has("client_assertion")) {
			w.Header().Set("WWW-Authenticate", `Basic realm="latchkey", charset="UTF-8"`)
		}
	}
	writeError(w, e.Status, e.Code, e.Description)
}

// handleToken is the client-credentials grant (RFC 6749 §4.4), with the
// issuance cap between authenticating the client and making its token.
func (s *Server) handleToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "client_credentials":
		case "":
			s.writeOAuthError(w, r, oauth.InvalidRequest("The 'grant_type' parameter is required."))
			return
		default:
			s.writeOAuthError(w, r, oauth.UnsupportedGrantType("Only grant_type 'client_credentials' is supported, not %q.", gt))
			return
		}
		err := s.oauth.Token(ctx, w, r, s.admitToken)
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
		s.metrics.tokenIssued(s.opts.TokenFormat, infoFrom(ctx).integration)
	})
}

// admitToken applies the issuance cap. It runs after authentication, so
// only the integration's own requests count, and before the token is made
// and stored, which is what the cap bounds. The rare retry after a
// regeneration counts twice.
func (s *Server) admitToken(c *storage.Client) error {
	rate := s.issuance.rate(c.Integration.TokenRatePerMinute)
	if wait, ok := s.issuance.take(c.Integration.ID, rate); !ok {
		return &issuanceLimited{perMinute: rate, wait: wait}
	}
	return nil
}

// handleIntrospect is RFC 7662. Only an integration with can_introspect
// may call it (401 invalid_client for bad credentials, 403 when not
// allowed). Any token that is not active, for whatever reason, is
// {"active": false} with 200, so a caller learns nothing more; to a
// caller with an introspection_audience, so is every token meant for
// another audience (§4).
func (s *Server) handleIntrospect() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		caller, err := s.oauth.AuthenticateClient(ctx, r)
		if err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		if !caller.Integration.CanIntrospect {
			writeError(w, http.StatusForbidden, "unauthorized_client",
				"This integration may not introspect tokens: its can_introspect is false.")
			return
		}
		if !r.PostForm.Has("token") {
			s.writeOAuthError(w, r, oauth.InvalidRequest("The 'token' parameter is required."))
			return
		}
		// An empty token is one more token that is not active (§2.2).
		info, err := s.oauth.Introspect(ctx, r.PostForm.Get("token"), caller.Integration.IntrospectionAudience)
		if err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
		if info == nil {
			s.metrics.introspectedInactive.Inc()
			writeJSON(w, http.StatusOK, map[string]bool{"active": false})
			return
		}
		s.metrics.introspectedActive.Inc()
		writeJSON(w, http.StatusOK, info)
	})
}

// handleRevoke is RFC 7009. Unknown, expired and already revoked tokens
// answer 200 (§2.2); another integration's token is refused with
// unauthorized_client and stays active.
func (s *Server) handleRevoke() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostForm.Get("token") == "" {
			s.writeOAuthError(w, r, oauth.InvalidRequest("The 'token' parameter is required."))
			return
		}
		if err := s.oauth.Revoke(r.Context(), r); err != nil {
			// Another integration's token: whether it is live is no
			// business of the caller's, and trying it counts as a failure.
			if errors.Is(err, oauth.ErrForeignToken) {
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
	// The signing algorithms of private_key_jwt client assertions
	// (RFC 8414 §2), for each endpoint that takes them.
	TokenEndpointAuthSigningAlgs         []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IntrospectionEndpointAuthSigningAlgs []string `json:"introspection_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthSigningAlgs    []string `json:"revocation_endpoint_auth_signing_alg_values_supported"`
	GrantTypesSupported                  []string `json:"grant_types_supported"`
	// ResponseTypesSupported is REQUIRED by RFC 8414 §2; latchkey has no
	// authorization endpoint, so it supports none.
	ResponseTypesSupported []string `json:"response_types_supported"`
	ScopesSupported        []string `json:"scopes_supported"`
	JWKSURI                string   `json:"jwks_uri"`
	// DPoPSigningAlgs are the DPoP proof algorithms the token endpoint
	// accepts (RFC 9449 §5.1).
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported"`
}

func (s *Server) handleMetadata() http.Handler {
	methods := []string{storage.AuthClientSecretBasic, storage.AuthClientSecretPost, storage.AuthPrivateKeyJWT}
	algs := oauth.AssertionAlgorithms
	base := metadata{
		TokenEndpointAuthSigningAlgs:         algs,
		IntrospectionEndpointAuthSigningAlgs: algs,
		RevocationEndpointAuthSigningAlgs:    algs,
		Issuer:                               s.opts.Issuer,
		TokenEndpoint:                        s.opts.Issuer + "/oauth2/token",
		TokenEndpointAuthMethods:             methods,
		IntrospectionEndpoint:                s.opts.Issuer + "/oauth2/introspect",
		IntrospectionEndpointAuthMethod:      methods,
		RevocationEndpoint:                   s.opts.Issuer + "/oauth2/revoke",
		RevocationEndpointAuthMethods:        methods,
		GrantTypesSupported:                  []string{"client_credentials"},
		ResponseTypesSupported:               []string{},
		JWKSURI:                              s.opts.Issuer + "/.well-known/jwks.json",
		DPoPSigningAlgs:                      oauth.DPoPAlgorithms,
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
		jwks, err := s.oauth.JWKS(r.Context())
		if err != nil {
			s.log.ErrorContext(r.Context(), "jwks: load signing keys", "err", err)
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the signing keys are unavailable")
			return
		}
		w.Header().Set("Cache-Control", cacheControl)
		writeJSON(w, http.StatusOK, jwks)
	})
}
