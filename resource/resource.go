// Package resource lets an API built on net/http accept latchkey access
// tokens: a Verifier checks the token of each request and its Middleware
// answers the request itself, with the RFC 6750 or RFC 9449 error, when the
// token does not do.
//
// JWT access tokens (RFC 9068) are verified offline against the issuer's
// JWKS; opaque tokens (lk_at_…) by introspection (RFC 7662), with a short
// cache. A token bound to a key (cnf.jkt, RFC 9449) is accepted only with
// the DPoP scheme and a proof for this request signed with that key.
//
// What each token format means for revocation: a revoked opaque token is
// refused once the introspection cache forgets it (IntrospectionCacheTTL,
// or at once when that is negative); a revoked JWT is accepted until it
// expires, because nothing offline can know of the revocation.
package resource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkey/latchkey/dpop"
)

// Defaults for Options.
const (
	DefaultJWKSCacheTTL          = 5 * time.Minute
	DefaultJWKSMinRefetch        = 10 * time.Second
	DefaultIntrospectionCacheTTL = 30 * time.Second
	DefaultInactiveCacheTTL      = 5 * time.Second
	DefaultIntrospectionCacheMax = 10000
	DefaultReplayCacheMax        = 100000
	DefaultLeeway                = 30 * time.Second
	DefaultHTTPTimeout           = 10 * time.Second
)

// MaxAuthorizationLength bounds the Authorization header the middleware
// reads. latchkey's largest tokens, JWTs with a hundred scopes and an RSA
// signature, stay well under it.
const MaxAuthorizationLength = 8 << 10

// opaquePrefix marks latchkey's opaque access tokens (DESIGN "Formats").
const opaquePrefix = "lk_at_"

// Options configure a Verifier. Only Issuer is required.
type Options struct {
	// Issuer is latchkey's issuer URL, its `issuer` setting, as it appears
	// in the tokens' iss. The JWKS and the introspection endpoint are found
	// under it unless JWKSURL or IntrospectionURL say otherwise.
	Issuer string
	// Audience, when set, is this resource server's identifier: a token
	// whose aud does not include it is refused. Without it a token meant
	// for any other API of the same issuer is accepted, so set it.
	Audience string
	// Scopes are the scopes every request must carry, all of them; a token
	// without one gets 403 insufficient_scope.
	Scopes []string

	// ClientID and ClientSecret are the key pair of an integration with
	// can_introspect, for opaque tokens. Without them (and without
	// Authenticate) opaque tokens are refused and only JWTs are accepted.
	ClientID, ClientSecret string
	// Authenticate, when set, authenticates introspection requests instead
	// of ClientID and ClientSecret: it may add a header to req or fields to
	// form (a private_key_jwt client assertion, say) before form is sent.
	Authenticate func(req *http.Request, form url.Values) error

	// JWKSURL defaults to Issuer + "/.well-known/jwks.json".
	JWKSURL string
	// IntrospectionURL defaults to Issuer + "/oauth2/introspect".
	IntrospectionURL string
	// PublicURL, when set, is the scheme and host clients address this
	// API by (e.g. "https://api.example.com" behind a TLS-terminating
	// proxy); DPoP proofs name it in htu. By default it is taken from the
	// request (r.TLS and r.Host).
	PublicURL string

	// JWKSCacheTTL is how long the key set is used before it is fetched
	// again (default DefaultJWKSCacheTTL).
	JWKSCacheTTL time.Duration
	// JWKSMinRefetch is the least time between two fetches caused by a
	// token whose kid is unknown (default DefaultJWKSMinRefetch), so a
	// flood of made-up kids costs latchkey one fetch per interval.
	JWKSMinRefetch time.Duration
	// IntrospectionCacheTTL is how long an active answer is reused, never
	// past the token's exp (default DefaultIntrospectionCacheTTL; negative
	// disables the cache, and a revoked token is refused at once).
	IntrospectionCacheTTL time.Duration
	// InactiveCacheTTL is how long an inactive answer is reused (default
	// DefaultInactiveCacheTTL; negative: not at all).
	InactiveCacheTTL time.Duration
	// IntrospectionCacheMax bounds the cached answers (default
	// DefaultIntrospectionCacheMax).
	IntrospectionCacheMax int
	// ReplayCacheMax bounds the DPoP proof jtis remembered (default
	// DefaultReplayCacheMax). When it is full the oldest are forgotten and
	// proofs as old as them are refused, so no replay gets through.
	ReplayCacheMax int
	// DPoPAlgs are the proof algorithms accepted (default
	// dpop.DefaultAlgs).
	DPoPAlgs []string
	// DPoPMaxAge is how old a proof may be (default dpop.DefaultMaxAge).
	DPoPMaxAge time.Duration
	// Leeway is the clock skew allowed on exp, nbf, iat and proofs' iat
	// (default DefaultLeeway).
	Leeway time.Duration

	// HTTPClient fetches the JWKS and calls introspection; the default has
	// a DefaultHTTPTimeout timeout.
	HTTPClient *http.Client
	// Logger receives what the middleware cannot answer for with a client
	// error: latchkey unreachable, introspection credentials refused. Nil
	// discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks latchkey access tokens. Build it with New; it is safe for
// concurrent use.
type Verifier struct {
	o          Options
	now        func() time.Time
	log        *slog.Logger
	keys       *keySet
	intro      *introspector
	replay     *replayCache
	dpopAlgs   []string
	challenge  string // the DPoP challenge's parameters
	introspect bool
}

// New checks o and returns a Verifier. It fetches nothing: the JWKS is
// fetched by the first request with a JWT.
func New(o Options) (*Verifier, error) {
	iss, err := url.Parse(o.Issuer)
	if err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" {
		return nil, fmt.Errorf("resource: Issuer %q is not an http(s) URL", o.Issuer)
	}
	base := strings.TrimSuffix(o.Issuer, "/")
	if o.JWKSURL == "" {
		o.JWKSURL = base + "/.well-known/jwks.json"
	}
	if o.IntrospectionURL == "" {
		o.IntrospectionURL = base + "/oauth2/introspect"
	}
	if o.PublicURL != "" {
		if u, err := url.Parse(o.PublicURL); err != nil || u.Host == "" {
			return nil, fmt.Errorf("resource: PublicURL %q is not an absolute URL", o.PublicURL)
		}
		o.PublicURL = strings.TrimSuffix(o.PublicURL, "/")
	}
	if (o.ClientID == "") != (o.ClientSecret == "") {
		return nil, errors.New("resource: ClientID and ClientSecret go together")
	}
	for _, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") {
			return nil, fmt.Errorf("resource: scope %q is not a scope token", s)
		}
	}
	// Only the caches may be turned off. A proof age or leeway of zero or
	// less would be dpop's default there but not in the replay window.
	positive(&o.JWKSCacheTTL, DefaultJWKSCacheTTL)
	positive(&o.JWKSMinRefetch, DefaultJWKSMinRefetch)
	positive(&o.DPoPMaxAge, dpop.DefaultMaxAge)
	positive(&o.Leeway, DefaultLeeway)
	if o.IntrospectionCacheTTL == 0 {
		o.IntrospectionCacheTTL = DefaultIntrospectionCacheTTL
	}
	if o.InactiveCacheTTL == 0 {
		o.InactiveCacheTTL = DefaultInactiveCacheTTL
	}
	if o.IntrospectionCacheMax <= 0 {
		o.IntrospectionCacheMax = DefaultIntrospectionCacheMax
	}
	if o.ReplayCacheMax <= 0 {
		o.ReplayCacheMax = DefaultReplayCacheMax
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	algs := o.DPoPAlgs
	if algs == nil {
		algs = dpop.DefaultAlgs
	}
	// dpop.Verify refuses what is not asymmetric; find out now, not on the
	// first request.
	if _, err := dpop.Verify("", dpop.VerifyOptions{Method: "GET", URL: "https://x/", Algs: algs}); err != nil {
		var derr *dpop.Error
		if !errors.As(err, &derr) {
			return nil, fmt.Errorf("resource: DPoPAlgs: %w", err)
		}
	}
	v := &Verifier{
		o: o, now: o.Now, log: o.Logger, dpopAlgs: algs,
		challenge:  `algs="` + strings.Join(algs, " ") + `"`,
		introspect: o.ClientID != "" || o.Authenticate != nil,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	v.keys = newKeySet(o.HTTPClient, o.JWKSURL, o.JWKSCacheTTL, o.JWKSMinRefetch, v.now)
	v.intro = newIntrospector(o, v.now)
	v.replay = newReplayCache(o.ReplayCacheMax)
	return v, nil
}

// positive sets d to def unless d is positive.
func positive(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Claims are what a verified token says. Handlers read them with
// FromContext.
type Claims struct {
	// Subject is the integration's name.
	Subject string
	// ClientID is the key pair the token was issued to.
	ClientID string
	// Scopes are the granted scopes.
	Scopes []string
	// Audience is the token's aud.
	Audience []string
	// Expiry and IssuedAt are the token's exp and iat.
	Expiry, IssuedAt time.Time
	// ID is the token's jti.
	ID string
	// JKT is the thumbprint of the key the token is bound to (cnf.jkt), or
	// empty for a bearer token.
	JKT string
}

// HasScope reports whether the token was granted scope.
func (c *Claims) HasScope(scope string) bool {
	for _, s := range c.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

type claimsKey struct{}

// FromContext returns the claims of the token the Middleware accepted for
// the request whose context is ctx.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok
}

// Error is a request refused. Status is the HTTP status to answer with;
// Code is the RFC 6750 §3.1 or RFC 9449 §7.1 error code ("" when the
// request had no credentials at all, RFC 6750 §3.1); Scope, for
// insufficient_scope, the scopes needed.
type Error struct {
	Status      int
	Code        string
	Description string
	Scope       string
	// DPoP says the request used (or had to use) the DPoP scheme, whose
	// challenge then carries the error.
	DPoP bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("resource: %d %s: %s", e.Status, e.Code, e.Description)
}

// Error codes (RFC 6750 §3.1, RFC 9449 §7.1).
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
	CodeInvalidDPoPProof  = dpop.CodeInvalidProof
)

func invalidToken(dpopScheme bool, format string, args ...any) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: fmt.Sprintf(format, args...), DPoP: dpopScheme}
}

func invalidRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: fmt.Sprintf(format, args...)}
}

// errUnavailable is latchkey not answering: the request may be fine, so it
// gets 503, not 401.
var errUnavailable = errors.New("the authorization server is unavailable")

// Middleware serves next the requests that carry an acceptable token, with
// its Claims in the context, and answers the others itself.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r)
		if err != nil {
			v.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), claimsKey{}, c)))
	})
}

// Verify checks the token of r, and its DPoP proof if the token is bound.
// A refusal is an *Error; any other error means latchkey could not be
// asked (the JWKS or introspection failed) and is not the client's fault.
func (v *Verifier) Verify(r *http.Request) (*Claims, error) {
	scheme, token, err := v.credentials(r)
	if err != nil {
		return nil, err
	}
	isDPoP := scheme == "dpop"

	// The proof is checked before the token: it costs no call to latchkey,
	// so junk never reaches introspection.
	var proof *dpop.Proof
	if isDPoP {
		if proof, err = v.verifyProof(r, token); err != nil {
			return nil, err
		}
	}

	var c *Claims
	if strings.HasPrefix(token, opaquePrefix) {
		if !v.introspect {
			return nil, invalidToken(isDPoP, "opaque tokens are not accepted here")
		}
		c, err = v.intro.verify(r.Context(), token, isDPoP)
	} else {
		c, err = v.verifyJWT(r.Context(), token, isDPoP)
	}
	if err != nil {
		return nil, err
	}

	// RFC 9449 §7.1, §7.2: a bound token only with its proof, and the DPoP
	// scheme only with a bound token.
	switch {
	case c.JKT != "" && !isDPoP:
		return nil, invalidToken(true, "the token is DPoP-bound and must be sent with the DPoP scheme and a proof")
	case c.JKT == "" && isDPoP:
		return nil, invalidToken(true, "the token is not DPoP-bound")
	case isDPoP && proof.Thumbprint != c.JKT:
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, DPoP: true,
			Description: "the proof is not signed with the key the token is bound to"}
	}
	if isDPoP && !v.replay.add(proof.Thumbprint+" "+proof.JTI, proof.IssuedAt, v.now(), v.o.DPoPMaxAge+v.o.Leeway) {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, DPoP: true,
			Description: "the proof was used before"}
	}

	if v.o.Audience != "" && !contains(c.Audience, v.o.Audience) {
		return nil, invalidToken(isDPoP, "the token is not meant for this audience")
	}
	for _, s := range v.o.Scopes {
		if !c.HasScope(s) {
			return nil, &Error{Status: http.StatusForbidden, Code: CodeInsufficientScope, DPoP: isDPoP,
				Description: "the token lacks a scope this API requires", Scope: strings.Join(v.o.Scopes, " ")}
		}
	}
	return c, nil
}

// credentials reads the one Authorization header: its scheme, lower-cased,
// and its token.
func (v *Verifier) credentials(r *http.Request) (scheme, token string, err error) {
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", "", &Error{Status: http.StatusUnauthorized, Description: "an access token is required"}
	case len(values) > 1:
		return "", "", invalidRequest("more than one Authorization header")
	case len(values[0]) > MaxAuthorizationLength:
		return "", "", invalidRequest("the Authorization header is longer than %d bytes", MaxAuthorizationLength)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	scheme = strings.ToLower(scheme)
	if scheme != "bearer" && scheme != "dpop" {
		// Another scheme (Basic, say) is no credential this API knows of.
		return "", "", &Error{Status: http.StatusUnauthorized, Description: "an access token is required"}
	}
	token = strings.TrimLeft(token, " ")
	if !ok || !isToken68(token) {
		return "", "", invalidRequest("the Authorization header is not a scheme and one token")
	}
	return scheme, token, nil
}

// isToken68 reports whether s is a b64token (RFC 6750 §2.1), the syntax of
// both schemes' credentials.
func isToken68(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

func (v *Verifier) verifyProof(r *http.Request, token string) (*dpop.Proof, error) {
	refuse := func(err error) error {
		var derr *dpop.Error
		if errors.As(err, &derr) {
			return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidDPoPProof, Description: derr.Description, DPoP: true}
		}
		return err
	}
	raw, err := dpop.FromHeader(r.Header)
	if err != nil {
		return nil, refuse(err)
	}
	p, err := dpop.Verify(raw, dpop.VerifyOptions{
		Method: r.Method, URL: v.requestURL(r), Now: v.now(), MaxAge: v.o.DPoPMaxAge, Leeway: v.o.Leeway,
		AccessToken: token, Algs: v.dpopAlgs,
	})
	if err != nil {
		return nil, refuse(err)
	}
	return p, nil
}

// requestURL is the URL the client addressed, as htu names it.
func (v *Verifier) requestURL(r *http.Request) string {
	if v.o.PublicURL != "" {
		return v.o.PublicURL + dpop.RequestPath(r)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + dpop.RequestPath(r)
}

// writeError answers as RFC 6750 §3 and RFC 9449 §7.1 say: a challenge for
// each scheme this API accepts, the error in the one the client used.
func (v *Verifier) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		v.log.ErrorContext(r.Context(), "resource: cannot verify the access token", "err", err)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "the access token cannot be verified now", http.StatusServiceUnavailable)
		return
	}
	var params []string
	if e.Code != "" {
		params = append(params, `error="`+e.Code+`"`)
		if e.Description != "" {
			params = append(params, `error_description="`+quotable(e.Description)+`"`)
		}
	}
	if e.Scope != "" {
		params = append(params, `scope="`+e.Scope+`"`)
	}
	bearer, dpopParams := "Bearer", "DPoP "+v.challenge
	if len(params) > 0 {
		if e.DPoP {
			dpopParams += ", " + strings.Join(params, ", ")
		} else {
			bearer += " " + strings.Join(params, ", ")
		}
	}
	h := w.Header()
	h.Add("WWW-Authenticate", bearer)
	h.Add("WWW-Authenticate", dpopParams)
	h.Set("Cache-Control", "no-store")
	if e.Code == "" {
		w.WriteHeader(e.Status)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	fmt.Fprintf(w, `{"error":%q,"error_description":%q}`+"\n", e.Code, quotable(e.Description))
}

// quotable keeps the characters RFC 6750 §3 allows in error_description,
// which excludes '"' and '\'.
func quotable(s string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return '?'
		}
		return c
	}, s)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
