// Package oauth is latchkey's boundary with fosite: the client and storage
// adapters fosite needs, the token strategies (opaque and JWT), the signing
// keyring, and the decisions of lifetime.go, the only places where a key
// pair's or a token's worth is decided against the clock. Credential
// formats and hashing are in its credential package. The server package
// speaks HTTP and calls in here; nothing outside this package sees fosite.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/x/errorsx"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// Why a client failed to authenticate, as Options.OnFailure is told.
const (
	// FailureUnknownClient: the client ID names no working key pair.
	FailureUnknownClient = "unknown_client"
	// FailureWrongSecret: the client ID names a working key pair and the
	// secret is not its secret.
	FailureWrongSecret = "wrong_secret"
	// FailureDisabledClient: the client ID and secret are right, and the
	// pair's integration is disabled.
	FailureDisabledClient = "disabled_client"
)

// Options configures a Provider. Issuer, TokenLifetime and Secrets are
// required.
type Options struct {
	// Issuer is the public base URL, without a trailing slash.
	Issuer string
	// TokenLifetime applies to integrations that set no lifetime of their own.
	TokenLifetime time.Duration
	// Secrets are the system secrets, current first; the keys of client
	// secret hashes and access-token HMACs derive from them.
	Secrets [][]byte
	// IssueJWTs issues RFC 9068 JWT access tokens instead of opaque ones;
	// both kinds are recognised either way.
	IssueJWTs bool
	// SigningAlgorithm is the algorithm of new signing keys; "" is ES256.
	SigningAlgorithm string
	// Now is the clock every decision reads; nil means time.Now.
	Now func() time.Time
	// Logger receives unexpected conditions; nil discards.
	Logger *slog.Logger
	// OnClient is told the key pair a client ID names, before its secret
	// is checked; OnFailure why authentication failed. Both may be nil.
	OnClient  func(context.Context, *storage.Client)
	OnFailure func(ctx context.Context, reason string)
	// JWKSFetchAllowPrivate lets a jwks_uri be http, and on a loopback,
	// private or link-local address: for development and tests only.
	JWKSFetchAllowPrivate bool
}

// Provider serves the OAuth operations latchkey offers: the
// client-credentials grant, introspection and revocation.
type Provider struct {
	opts     Options
	store    *storage.Store
	f        *fosite.Fosite
	strategy *tokenStrategy
	keys     *keyring
	// secrets checks client secrets: a malformed one fails on its
	// checksum alone.
	secrets *credential.Hasher
	// jwks fetches the key sets of private_key_jwt integrations with a
	// jwks_uri; parsedKeys keeps registered key sets parsed.
	jwks       *jwksFetcher
	parsedKeys keySetCache
}

// New builds the Provider. A signing key is made if none exists, whatever
// the token format, so the JWKS is always valid and switching to JWTs
// needs no key ceremony.
func New(ctx context.Context, store *storage.Store, o Options) (*Provider, error) {
	if o.Issuer == "" || o.TokenLifetime <= 0 || len(o.Secrets) == 0 {
		return nil, errors.New("oauth: issuer, token lifetime and secrets are required")
	}
	if o.SigningAlgorithm == "" {
		o.SigningAlgorithm = storage.ES256
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnClient == nil {
		o.OnClient = func(context.Context, *storage.Client) {}
	}
	if o.OnFailure == nil {
		o.OnFailure = func(context.Context, string) {}
	}
	p := &Provider{opts: o, store: store,
		secrets: credential.NewMinter(o.Secrets).Checking(credential.ClientSecretPrefix)}
	if _, err := store.EnsureSigningKey(ctx, o.SigningAlgorithm); err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	p.jwks = newJWKSFetcher(p.now, o.JWKSFetchAllowPrivate)
	p.keys = newKeyring(store, p.now, o.Logger)
	if err := p.keys.reload(ctx); err != nil {
		return nil, fmt.Errorf("oauth: load signing keys: %w", err)
	}
	p.f = p.fosite()
	return p, nil
}

// now is the one clock reading every decision of this package uses, in
// UTC and at the microsecond resolution the store keeps.
func (p *Provider) now() time.Time { return p.opts.Now().UTC().Truncate(time.Microsecond) }

// fosite wires the fosite provider with only what latchkey serves.
func (p *Provider) fosite() *fosite.Fosite {
	keys := make([][]byte, len(p.opts.Secrets))
	for i, sec := range p.opts.Secrets {
		keys[i] = credential.DeriveKey(sec, "access-token-hmac")
	}
	cfg := &fosite.Config{
		// AccessTokenLifespan is left unset: fosite's grant handler would
		// set an expiry from it and time.Now, which grant replaces.
		AccessTokenIssuer:        p.opts.Issuer,
		TokenURL:                 p.opts.Issuer + "/oauth2/token",
		GlobalSecret:             keys[0],
		RotatedGlobalSecrets:     keys[1:],
		TokenEntropy:             32,
		ClientSecretsHasher:      notingHasher{p},
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.ExactAudienceMatchingStrategy,
		// Only access tokens exist; never look a token up as a refresh token.
		DisableRefreshTokenValidation: true,
		// Client assertions are checked by latchkey (assertion.go says
		// why); secrets by fosite.
		ClientAuthenticationStrategy: p.authenticateClient,
	}
	p.strategy = &tokenStrategy{
		prefixedHMACStrategy: &prefixedHMACStrategy{
			HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: cfg}, cfg),
		},
		keys: p.keys, issuer: p.opts.Issuer, issueJWTs: p.opts.IssueJWTs,
	}
	store := fositeStore{p}
	// The handlers are wired by hand rather than through fosite/compose,
	// which would link in OpenID Connect, PKCE, PAR and JWT-bearer code
	// latchkey never runs.
	cfg.TokenEndpointHandlers.Append(&grant{
		ClientCredentialsGrantHandler: &oauth2.ClientCredentialsGrantHandler{
			HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: p.strategy, AccessTokenStorage: store, Config: cfg},
			Config:       cfg,
		},
		p: p,
	})
	cfg.TokenIntrospectionHandlers.Append(&oauth2.CoreValidator{CoreStrategy: p.strategy, CoreStorage: store, Config: cfg})
	cfg.RevocationHandlers.Append(&revocationHandler{p: p})
	// NewOAuth2Provider returns the concrete *fosite.Fosite, whose
	// AuthenticateClient introspection needs for client_secret_post.
	return fosite.NewOAuth2Provider(store, cfg)
}

// notingHasher checks client secrets and tells OnFailure of a wrong one;
// its shape was checked before the client was looked up.
type notingHasher struct{ p *Provider }

func (n notingHasher) Hash(ctx context.Context, data []byte) ([]byte, error) {
	return n.p.secrets.Hash(ctx, data)
}

func (n notingHasher) Compare(ctx context.Context, hash, data []byte) error {
	if len(hash) == 0 {
		// A private_key_jwt key pair has no secret to compare with.
		n.p.opts.OnFailure(ctx, FailureWrongMethod)
		return errKeylessSecret
	}
	err := n.p.secrets.Compare(ctx, hash, data)
	if err != nil {
		n.p.opts.OnFailure(ctx, FailureWrongSecret)
	}
	return err
}

// grant is fosite's client-credentials grant with latchkey's rules: asking
// for no scope grants every scope the integration has, asking for no
// audience its whole audience, and the token's issue time and expiry come
// from the Provider's clock and expiry, replacing those fosite sets from
// time.Now.
type grant struct {
	*oauth2.ClientCredentialsGrantHandler
	p *Provider
}

func (g *grant) HandleTokenEndpointRequest(ctx context.Context, req fosite.AccessRequester) error {
	// fosite runs this once the client is authenticated; a suspended
	// integration is refused before its request is looked at any further.
	c := clientOf(req.GetClient())
	if err := g.p.authenticated(ctx, c, false); err != nil {
		return err
	}
	if err := requestResources(req, c); err != nil {
		return err
	}
	if err := g.ClientCredentialsGrantHandler.HandleTokenEndpointRequest(ctx, req); err != nil {
		return err
	}
	scopes := req.GetRequestedScopes()
	if len(scopes) == 0 {
		scopes = c.Integration.Scopes
	}
	for _, sc := range scopes {
		req.GrantScope(sc)
	}
	aud := req.GetRequestedAudience()
	if len(aud) == 0 {
		aud = c.Integration.Audience
	}
	for _, a := range aud {
		req.GrantAudience(a)
	}
	now := g.p.now()
	if ar, ok := req.(*fosite.AccessRequest); ok {
		ar.RequestedAt = now
	}
	req.GetSession().SetExpiresAt(fosite.AccessToken, g.p.expiry(c, now))
	if s, ok := req.GetSession().(*fosite.DefaultSession); ok {
		s.Subject = c.Integration.Name
	}
	return nil
}

func (g *grant) PopulateTokenEndpointResponse(ctx context.Context, req fosite.AccessRequester, resp fosite.AccessResponder) error {
	if err := g.ClientCredentialsGrantHandler.PopulateTokenEndpointResponse(ctx, req, resp); err != nil {
		return err
	}
	// Full precision, not whole seconds: expires_in is floored, and must
	// never promise more than the grace deadline leaves.
	resp.SetExpiresIn(req.GetSession().GetExpiresAt(fosite.AccessToken).Sub(req.GetRequestedAt()))
	resp.SetScopes(req.GetGrantedScopes())
	if jktOf(req.GetSession()) != "" {
		resp.SetTokenType("DPoP") // RFC 9449 §5
	}
	return nil
}

// jktOf is the thumbprint the token of session s is bound to, or "".
func jktOf(s fosite.Session) string {
	ds, ok := s.(*fosite.DefaultSession)
	if !ok {
		return ""
	}
	jkt, _ := ds.Extra[sessionJKT].(string)
	return jkt
}

// Token answers a client-credentials token request (RFC 6749 §4.4): it
// authenticates the client, asks admit whether the integration may have
// another token, issues and stores one and writes the response. On error
// nothing is written; admit's own error is returned as it is.
//
// A regeneration that commits between authentication and the token's
// write makes the write fail; authenticating again sees the pair's new
// state (revoked, or a grace deadline to respect), so Token tries once
// more. admit is asked again then.
//
// A request with a DPoP proof (RFC 9449 §5) gets a token bound to the
// proof's key; its proof is checked once the client is authenticated, and
// its jti recorded once admit has let it through, as is a client
// assertion's.
func (p *Provider) Token(ctx context.Context, w http.ResponseWriter, r *http.Request, admit func(*storage.Client) error) error {
	var b binding
	ctx = context.WithValue(ctx, pendingJTIKey{}, &b.assertion)
	req, resp, err := p.issue(ctx, r, admit, &b)
	if errors.Is(err, storage.ErrKeyPairChanged) {
		req, resp, err = p.issue(ctx, r, admit, &b)
	}
	if err != nil {
		return err
	}
	p.f.WriteAccessResponse(ctx, w, req, resp)
	return nil
}

func (p *Provider) issue(ctx context.Context, r *http.Request, admit func(*storage.Client) error, b *binding) (fosite.AccessRequester, fosite.AccessResponder, error) {
	sess := new(fosite.DefaultSession)
	req, err := p.f.NewAccessRequest(ctx, r, sess)
	if err != nil {
		return nil, nil, err
	}
	c := clientOf(req.GetClient())
	if err := p.checkProof(r, c, b); err != nil {
		return nil, nil, err
	}
	// The assertion is spent before admit, so that a replayed one never
	// takes from the integration's issuance cap, and given back if the
	// request is refused after all, so that it can be retried as it is.
	if err := p.spendAssertion(ctx, &b.assertion); err != nil {
		return nil, nil, err
	}
	refused := func(err error) (fosite.AccessRequester, fosite.AccessResponder, error) {
		if !errors.Is(err, storage.ErrKeyPairChanged) {
			p.giveBackAssertion(ctx, &b.assertion)
		}
		return nil, nil, err
	}
	if err := admit(c); err != nil {
		return refused(err)
	}
	if err := p.recordProof(ctx, b); err != nil {
		return refused(err)
	}
	if b.jkt != "" {
		if sess.Extra == nil {
			sess.Extra = map[string]any{}
		}
		sess.Extra[sessionJKT] = b.jkt
	}
	resp, err := p.f.NewAccessResponse(ctx, req)
	if err != nil {
		// A regeneration racing the request (ErrKeyPairChanged) keeps it:
		// Token tries again with it.
		return refused(err)
	}
	return req, resp, nil
}

// AuthenticateClient returns the working key pair whose credentials r
// carries (client_secret_basic, client_secret_post or private_key_jwt), for a request that
// is not a token request, and records its use.
func (p *Provider) AuthenticateClient(ctx context.Context, r *http.Request) (*storage.Client, error) {
	c, err := p.f.AuthenticateClient(ctx, r, r.PostForm)
	if err != nil {
		return nil, err
	}
	if err := p.authenticated(ctx, clientOf(c), true); err != nil {
		return nil, err
	}
	return clientOf(c), nil
}

// authenticated finishes authenticating key pair c once fosite has checked
// its secret. fosite's client lookup lets through a pair in term whose
// integration is disabled, so that whoever lacks the secret is told only
// that it is wrong; the pair's owner is told here that it is suspended.
// For requests other than token requests (touch), whose use CreateToken
// does not record, it records the use, at most once per minute per pair;
// failing to is logged and never fails the request.
func (p *Provider) authenticated(ctx context.Context, c *storage.Client, touch bool) error {
	now := p.now()
	if !works(c, now) {
		if c.Integration.Disabled {
			p.opts.OnFailure(ctx, FailureDisabledClient)
			return fosite.ErrInvalidClient.WithHint("The integration of this key pair is disabled; an admin can enable it again.")
		}
		// Its grace deadline passed since the lookup, a moment ago.
		p.opts.OnFailure(ctx, FailureUnknownClient)
		return fosite.ErrInvalidClient.WithHint("The key pair was revoked or regenerated.")
	}
	if touch {
		if err := p.store.TouchKeyPair(ctx, c, now); err != nil {
			p.opts.Logger.WarnContext(ctx, "key pair: could not record its last use", "client_id", c.ClientID, "err", err)
		}
	}
	return nil
}

// Introspection is the RFC 7662 §2.2 response for an active token.
type Introspection struct {
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
	// Cnf names the key a DPoP-bound token is bound to (RFC 9449 §6.2);
	// absent for a bearer token.
	Cnf *Confirmation `json:"cnf,omitempty"`
}

// Confirmation is the "cnf" member of a DPoP-bound token (RFC 7800 §3.1,
// RFC 9449 §6.1): the RFC 7638 thumbprint of its key.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// Introspect describes token if it is active, and returns nil if it is not,
// for whatever reason. Only a database failure is an error.
//
// visible, when not empty, is the caller's introspection_audience: a
// token whose aud holds none of its values is answered as not active, so
// a resource server learns nothing of the tokens meant for others (RFC
// 7662 §4). aud is the token's as introspection reports it, the issuer
// for a token granted no audience.
func (p *Provider) Introspect(ctx context.Context, token string, visible []string) (*Introspection, error) {
	if token == "" {
		return nil, nil
	}
	_, ar, err := p.f.IntrospectToken(ctx, token, fosite.AccessToken, new(fosite.DefaultSession))
	if errors.Is(err, storage.ErrUnavailable) {
		return nil, err
	}
	if err != nil {
		return nil, nil
	}
	c := clientOf(ar.GetClient())
	granted := []string(ar.GetGrantedAudience())
	if len(granted) == 0 {
		granted = []string{p.opts.Issuer}
	}
	if len(visible) > 0 && !slices.ContainsFunc(granted, func(a string) bool { return slices.Contains(visible, a) }) {
		return nil, nil
	}
	var aud any = granted
	if len(granted) == 1 {
		aud = granted[0]
	}
	info := &Introspection{
		Active:    true,
		ClientID:  c.ClientID,
		Sub:       c.Integration.Name,
		Scope:     strings.Join(ar.GetGrantedScopes(), " "),
		Aud:       aud,
		Iss:       p.opts.Issuer,
		Exp:       ar.GetSession().GetExpiresAt(fosite.AccessToken).Unix(),
		Iat:       ar.GetRequestedAt().Unix(),
		Jti:       ar.GetID(),
		TokenType: "Bearer",
		TokenUse:  "access_token",
	}
	if jkt := jktOf(ar.GetSession()); jkt != "" {
		info.TokenType = "DPoP"
		info.Cnf = &Confirmation{JKT: jkt}
	}
	return info, nil
}

// ErrForeignToken is wrapped by Revoke's error when the token belongs to
// another integration.
var ErrForeignToken = errors.New("the token was issued to another integration")

// Revoke answers an RFC 7009 revocation request: it authenticates the
// client and revokes the token if the client's integration owns it.
// Unknown, invalid and inactive tokens succeed (§2.2).
func (p *Provider) Revoke(ctx context.Context, r *http.Request) error {
	return p.f.NewRevocationRequest(ctx, r)
}

// TokenSignature returns the key the access token token is stored under,
// if token is one this server issued: an opaque token whose HMAC holds
// under a current or retired system secret, or a JWT signed by a published
// signing key. It says nothing of whether the token is still active, and
// is for finding a token by its value (an admin revoking one found in the
// wild): anything else, a look-alike included, is not found.
func (p *Provider) TokenSignature(ctx context.Context, token string) (string, bool) {
	sig := p.strategy.AccessTokenSignature(ctx, token)
	if sig == "" || p.strategy.ValidateAccessToken(ctx, nil, token) != nil {
		return "", false
	}
	return sig, true
}

// revocationHandler is RFC 7009 revocation where the integration, not the
// key pair, owns a token: during a grace period the new pair can revoke
// tokens the old pair was issued. fosite's own handler compares client IDs,
// which change with every regeneration.
type revocationHandler struct{ p *Provider }

var _ fosite.RevocationHandler = (*revocationHandler)(nil)

func (h *revocationHandler) RevokeToken(ctx context.Context, token string, _ fosite.TokenType, caller fosite.Client) error {
	// fosite authenticated caller just before it called this, the one
	// revocation handler.
	if err := h.p.authenticated(ctx, clientOf(caller), true); err != nil {
		return err
	}
	store := fositeStore{h.p}
	signature := h.p.strategy.AccessTokenSignature(ctx, token)
	ar, err := store.GetAccessTokenSession(ctx, signature, nil)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if h.p.strategy.ValidateAccessToken(ctx, ar, token) != nil {
		return nil
	}
	if clientOf(ar.GetClient()).Integration.ID != clientOf(caller).Integration.ID {
		return errorsx.WithStack(fosite.ErrUnauthorizedClient.WithHint("The token was issued to another integration.").WithWrap(ErrForeignToken))
	}
	// By signature, the table's key: a client-credentials request issues
	// one token, so this is all RFC 7009 §2.1 asks to revoke.
	return store.DeleteAccessTokenSession(ctx, signature)
}

// JWKS is the published key set (RFC 7517): the active signing key and
// every retired key that may still have live tokens.
func (p *Provider) JWKS(ctx context.Context) (jose.JSONWebKeySet, error) {
	snap, err := p.keys.current(ctx)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return snap.jwks, nil
}

// ReloadKeys reads the signing keys again, after this replica rotated them.
func (p *Provider) ReloadKeys(ctx context.Context) error { return p.keys.reload(ctx) }
