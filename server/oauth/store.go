package oauth

import (
	"context"
	"errors"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// The interfaces fosite's handlers type-assert their storage to at run
// time, pinned here at compile time: a missing method would otherwise
// switch an endpoint off silently.
var (
	_ fosite.Storage                = fositeStore{}
	_ oauth2.AccessTokenStorage     = fositeStore{}
	_ oauth2.CoreStorage            = fositeStore{}
	_ oauth2.TokenRevocationStorage = fositeStore{}
	_ fosite.Client                 = client{}
)

// client is a key pair as fosite sees it: a confidential client that may
// use only the client-credentials grant, within its integration's scopes
// and audience.
type client struct{ *storage.Client }

func (c client) GetID() string                      { return c.ClientID }
func (c client) GetHashedSecret() []byte            { return c.SecretHash }
func (c client) GetRedirectURIs() []string          { return nil }
func (c client) GetGrantTypes() fosite.Arguments    { return fosite.Arguments{"client_credentials"} }
func (c client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{} }
func (c client) GetScopes() fosite.Arguments        { return c.Integration.Scopes }
func (c client) IsPublic() bool                     { return false }
func (c client) GetAudience() fosite.Arguments      { return c.Integration.Audience }

// clientOf is the key pair behind a client fosite hands back.
func clientOf(c fosite.Client) *storage.Client { return c.(client).Client }

// sessionKeyID is the fosite.DefaultSession Extra entry in which the JWT
// strategy names the key that signed the token, so the store can keep that
// key published while the token lives.
const sessionKeyID = "kid"

// fositeStore is the store as fosite's handlers use it: storage's types and
// errors in, fosite's out, and the decisions of lifetime.go applied on the
// Provider's clock.
type fositeStore struct{ p *Provider }

// dummySecretHash stands in for the hash of a client ID that names no
// working key pair.
var dummySecretHash = make([]byte, 32)

// dummySecret is compared against dummySecretHash: well formed, so it costs
// the full HMAC, and never a match.
var dummySecret = []byte(credential.NewClientSecret())

// GetClient returns the key pair in term with client ID id, or
// fosite.ErrNotFound when the ID is malformed, unknown, revoked or past its
// grace deadline. A pair of a disabled integration is returned, for its
// secret to be checked; Provider.authenticated then refuses it.
func (f fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	var c *storage.Client
	err := storage.ErrNotFound
	if credential.ValidClientID(id) {
		c, err = f.p.store.GetClient(ctx, id)
	}
	if err == nil && !inTerm(c, f.p.now()) {
		err = storage.ErrNotFound
	}
	switch {
	case err == nil:
		f.p.opts.OnClient(ctx, c)
		return client{c}, nil
	case errors.Is(err, storage.ErrNotFound):
		f.p.opts.OnFailure(ctx, FailureUnknownClient)
		// fosite answers an unknown client without comparing its
		// secret; comparing one anyway makes an unknown client ID cost
		// what a known one does, so timing tells no one which client
		// IDs exist.
		_ = f.p.secrets.Compare(ctx, dummySecretHash, dummySecret)
		return nil, fosite.ErrNotFound
	}
	return nil, err
}

// ClientAssertionJWTValid is part of fosite.ClientManager. It finds every
// jti valid: asking first and recording after would let two replicas
// both accept one jti, so SetClientAssertionJWT's insert is the check.
func (fositeStore) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT records jti as used until exp on every replica,
// and is fosite.ErrJTIKnown if it was used already (RFC 7523 §3 item 7).
// It serves fosite's own assertion check, which latchkey does not run
// (see assertion.go, which records jtis with spendAssertion); it is here
// so that one, if ever reached, cannot accept a replay.
func (f fositeStore) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	err := f.p.store.UseJTI(ctx, jti, exp)
	if errors.Is(err, storage.ErrReplay) {
		return fosite.ErrJTIKnown.WithWrap(err)
	}
	return err
}

// CreateAccessTokenSession stores an issued token under its signature; the
// request's RequestedAt is its issue time and its session's access-token
// expiry is the token's. A key pair revoked or regenerated since the
// request authenticated makes it fail with invalid_client wrapping
// storage.ErrKeyPairChanged.
func (f fositeStore) CreateAccessTokenSession(ctx context.Context, signature string, req fosite.Requester) error {
	t := &storage.Token{
		Signature: signature,
		RequestID: req.GetID(),
		Scopes:    req.GetGrantedScopes(),
		Audience:  req.GetGrantedAudience(),
		IssuedAt:  req.GetRequestedAt(),
		ExpiresAt: req.GetSession().GetExpiresAt(fosite.AccessToken),
		Owner:     clientOf(req.GetClient()),
	}
	if ds, ok := req.GetSession().(*fosite.DefaultSession); ok {
		t.KeyID, _ = ds.Extra[sessionKeyID].(string)
		t.JKT, _ = ds.Extra[sessionJKT].(string)
	}
	err := f.p.store.CreateToken(ctx, t, f.p.now())
	if errors.Is(err, storage.ErrKeyPairChanged) {
		return fosite.ErrInvalidClient.
			WithHint("The key pair was revoked or regenerated while the token was being issued.").
			WithWrap(err)
	}
	return err
}

// GetAccessTokenSession returns the request an active token was issued
// for, or fosite.ErrNotFound. session may be nil (the revocation handler
// passes nil); a *fosite.DefaultSession gets the integration name as its
// subject.
func (f fositeStore) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	t, err := f.p.store.GetToken(ctx, signature)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	exp, ok := active(t, f.p.now())
	if !ok {
		return nil, fosite.ErrNotFound
	}
	if session == nil {
		session = new(fosite.DefaultSession)
	}
	session.SetExpiresAt(fosite.AccessToken, exp)
	if ds, ok := session.(*fosite.DefaultSession); ok {
		ds.Subject = t.Owner.Integration.Name
		if t.JKT != "" {
			if ds.Extra == nil {
				ds.Extra = map[string]any{}
			}
			ds.Extra[sessionJKT] = t.JKT
		}
	}
	return &fosite.Request{
		ID:                t.RequestID,
		RequestedAt:       t.IssuedAt,
		Client:            client{t.Owner},
		RequestedScope:    t.Scopes,
		GrantedScope:      t.Scopes,
		RequestedAudience: t.Audience,
		GrantedAudience:   t.Audience,
		Session:           session,
		Form:              url.Values{},
	}, nil
}

// DeleteAccessTokenSession deletes one token by signature.
func (f fositeStore) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return f.p.store.DeleteToken(ctx, signature)
}

// The client-credentials grant issues no refresh tokens (RFC 6749 §4.4.3)
// and latchkey serves no authorization codes; these methods exist because
// fosite's introspection handler requires the full storage interfaces, and
// latchkey's revocation handler revokes by signature, never by request ID.
// Lookups find nothing; writes are refused.

var errUnsupported = errors.New("latchkey issues only client-credentials access tokens, revoked by signature")

func (fositeStore) RevokeAccessToken(context.Context, string) error { return errUnsupported }
func (fositeStore) CreateRefreshTokenSession(context.Context, string, string, fosite.Requester) error {
	return errUnsupported
}
func (fositeStore) GetRefreshTokenSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}
func (fositeStore) DeleteRefreshTokenSession(context.Context, string) error  { return nil }
func (fositeStore) RotateRefreshToken(context.Context, string, string) error { return nil }
func (fositeStore) RevokeRefreshToken(context.Context, string) error         { return nil }
func (fositeStore) CreateAuthorizeCodeSession(context.Context, string, fosite.Requester) error {
	return errUnsupported
}
func (fositeStore) GetAuthorizeCodeSession(context.Context, string, fosite.Session) (fosite.Requester, error) {
	return nil, fosite.ErrNotFound
}
func (fositeStore) InvalidateAuthorizeCodeSession(context.Context, string) error {
	return fosite.ErrNotFound
}
