// Package dpop makes and verifies DPoP proofs (RFC 9449): the JWTs with
// which a client shows, on each request, that it holds the private key a
// sender-constrained access token is bound to.
//
// Verify performs the checks of RFC 9449 §4.3 on one proof. It does not
// remember proofs: refusing a jti seen before (§11.1) needs a store whose
// policy (how long, how big, shared by which replicas) belongs to the
// caller, so Verify returns the jti and the time it was issued for the
// caller to remember. Nor does it know which key a token is bound to: the
// caller compares Proof.Thumbprint with the token's cnf.jkt (§4.3 check
// 12, §6.1).
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/latchkey/latchkey/internal/jwtclaim"
)

// Error codes of RFC 9449 §7.1 and §8.
const (
	// CodeInvalidProof is the error code for a proof that fails a check.
	CodeInvalidProof = "invalid_dpop_proof"
	// CodeUseNonce is the error code for a proof without the nonce the
	// server asked for, or with a stale one (RFC 9449 §8, §9).
	CodeUseNonce = "use_dpop_nonce"
)

// Type is the JOSE "typ" of a DPoP proof (RFC 9449 §4.2).
const Type = "dpop+jwt"

// Bounds on what an attacker controls. A proof carries one public key and a
// handful of short claims; the largest honest one, with an 8192-bit RSA key
// in its header, stays under 3 KiB.
const (
	// MaxProofSize bounds the proof's compact serialization, in bytes.
	MaxProofSize = 8 << 10
	// MaxJTILength bounds the jti, which callers keep in replay stores.
	MaxJTILength = jwtclaim.MaxJTILen
	// MinRSABits and MaxRSABits bound the size of an RSA proof key: smaller
	// is weak, larger costs the verifier CPU for nothing.
	MinRSABits = jwtclaim.MinRSABits
	MaxRSABits = jwtclaim.MaxRSABits
)

// Defaults for VerifyOptions.
const (
	DefaultMaxAge = 5 * time.Minute
	DefaultLeeway = 30 * time.Second
)

// DefaultAlgs are the proof signature algorithms accepted unless
// VerifyOptions.Algs says otherwise: the asymmetric ones latchkey's
// metadata advertises.
var DefaultAlgs = slices.Clone(jwtclaim.Algorithms)

// asymmetric lists every algorithm Verify can be told to accept. "none" and
// the HMAC algorithms are absent: a proof shows possession of a private
// key, which a shared or empty secret cannot (RFC 9449 §4.3 check 5).
var asymmetric = map[string]bool{
	"ES256": true, "ES384": true, "ES512": true, "EdDSA": true,
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
}

// Error is a proof that failed a check. Code is the RFC 9449 error code to
// answer with; Description says which check failed, and never repeats the
// proof.
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return "dpop: " + e.Code + ": " + e.Description }

func invalid(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidProof, Description: fmt.Sprintf(format, args...)}
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of jwk's public key,
// base64url-encoded without padding: the "jkt" a bound token carries in
// its "cnf" claim (RFC 9449 §6).
func Thumbprint(jwk *jose.JSONWebKey) (string, error) {
	if jwk == nil || jwk.Key == nil {
		return "", errors.New("dpop: thumbprint of no key")
	}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// AccessTokenHash returns the "ath" of a proof sent with accessToken: the
// base64url SHA-256 of its ASCII bytes (RFC 9449 §4.2).
func AccessTokenHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewProof returns a DPoP proof, signed with key, for a request with the
// given method and URL at time now. The URL's query and fragment are left
// out of htu (RFC 9449 §4.2). accessToken, when not empty, is bound by its
// hash (ath), as a request to a resource server needs; nonce, when not
// empty, is the last DPoP-Nonce the server sent.
//
// The algorithm follows from the key: ES256, ES384 or ES512 for ECDSA on
// P-256, P-384 or P-521, EdDSA for Ed25519, PS256 for RSA.
func NewProof(key crypto.Signer, method, rawURL, accessToken, nonce string, now time.Time) (string, error) {
	alg, err := algFor(key.Public())
	if err != nil {
		return "", err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("dpop: htu: %w", err)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""

	var signingKey any = key
	switch key.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey, *rsa.PrivateKey:
	default:
		// A key in an HSM or a cloud KMS, which go-jose signs through.
		signingKey = cryptosigner.Opaque(key)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signingKey},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(Type))
	if err != nil {
		return "", fmt.Errorf("dpop: signer: %w", err)
	}

	jti := make([]byte, 24)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("dpop: jti: %w", err)
	}
	c := claims{
		JTI: base64.RawURLEncoding.EncodeToString(jti),
		HTM: method,
		HTU: u.String(),
		IAT: json.Number(fmt.Sprint(now.Unix())),
	}
	if accessToken != "" {
		ath := AccessTokenHash(accessToken)
		c.ATH = &ath
	}
	if nonce != "" {
		c.Nonce = &nonce
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func algFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		return jose.PS256, nil
	}
	return "", fmt.Errorf("dpop: no proof algorithm for a %T key", pub)
}

// VerifyOptions describe the request a proof must match.
type VerifyOptions struct {
	// Method is the request's HTTP method, compared with htm.
	Method string
	// URL is the request's absolute URL as the client addressed it (scheme
	// and host included: behind a proxy, the public one), compared with
	// htu ignoring query and fragment.
	URL string
	// Now is the time the proof's iat is judged against; zero means
	// time.Now().
	Now time.Time
	// MaxAge is how old a proof may be (default DefaultMaxAge). It also
	// bounds how long a caller must remember a jti to refuse replays.
	MaxAge time.Duration
	// Leeway is how far in the future iat may be, for clock skew (default
	// DefaultLeeway).
	Leeway time.Duration
	// AccessToken, when not empty, is the token the proof is sent with:
	// the proof's ath must then be present and be its hash (RFC 9449 §4.3
	// check 12).
	AccessToken string
	// Nonce, when not empty, is the DPoP-Nonce the server expects; a proof
	// without it fails with CodeUseNonce.
	Nonce string
	// Algs are the accepted signature algorithms (default DefaultAlgs).
	// Each must be asymmetric.
	Algs []string
}

// Proof is a verified DPoP proof.
type Proof struct {
	// JTI identifies the proof; a caller refuses a second proof with the
	// same JTI within MaxAge (RFC 9449 §11.1).
	JTI string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
	// Thumbprint is the RFC 7638 thumbprint of Key, to compare with a bound
	// token's cnf.jkt.
	Thumbprint string
	// Key is the public key the proof was signed with.
	Key *jose.JSONWebKey
	// Nonce is the proof's nonce claim, if any.
	Nonce string
}

type header struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

type claims struct {
	JTI   string      `json:"jti"`
	HTM   string      `json:"htm"`
	HTU   string      `json:"htu"`
	IAT   json.Number `json:"iat"`
	ATH   *string     `json:"ath,omitempty"`
	Nonce *string     `json:"nonce,omitempty"`
}

// privateMembers are the JWK members that carry private or symmetric key
// material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// Verify checks proof as RFC 9449 §4.3 says, against the request o
// describes, and returns it. Every failure is an *Error; only bad
// VerifyOptions give another error. Refusing a replayed jti (§11.1) and
// matching the key to a token's cnf.jkt are the caller's: see Proof.
func Verify(proof string, o VerifyOptions) (*Proof, error) {
	algs := o.Algs
	if algs == nil {
		algs = DefaultAlgs
	}
	joseAlgs := make([]jose.SignatureAlgorithm, 0, len(algs))
	allowed := make(map[string]bool, len(algs))
	for _, a := range algs {
		if !asymmetric[a] {
			return nil, fmt.Errorf("dpop: %q is not an asymmetric signature algorithm", a)
		}
		allowed[a] = true
		joseAlgs = append(joseAlgs, jose.SignatureAlgorithm(a))
	}
	if o.Method == "" || o.URL == "" {
		return nil, errors.New("dpop: VerifyOptions need the request's Method and URL")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxAge, leeway := o.MaxAge, o.Leeway
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if leeway <= 0 {
		leeway = DefaultLeeway
	}

	// Checks 1 and 2: one well-formed JWT, and not an expensive one.
	if len(proof) > MaxProofSize {
		return nil, invalid("proof is larger than %d bytes", MaxProofSize)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, invalid("proof is not one JWS in compact serialization")
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, invalid("proof header is not base64url")
	}
	var h header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, invalid("proof header is not a JSON object")
	}
	// Check 4: the type.
	if h.Typ != Type {
		return nil, invalid("typ is not %s", Type)
	}
	// Check 5: an asymmetric algorithm this verifier accepts.
	if !allowed[h.Alg] {
		return nil, invalid("alg %q is not accepted; accepted: %s", truncate(h.Alg), strings.Join(algs, " "))
	}
	// Check 7: a public key, and only a public key, in the header.
	if len(h.JWK) == 0 || string(h.JWK) == "null" {
		return nil, invalid("jwk header is missing")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(h.JWK, &members); err != nil {
		return nil, invalid("jwk header is not a JSON object")
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return nil, invalid("jwk header holds a private or symmetric key")
		}
	}

	jws, err := jose.ParseSignedCompact(proof, joseAlgs)
	if err != nil {
		return nil, invalid("proof is not a valid JWS: %s", joseReason(err))
	}
	if len(jws.Signatures) != 1 || jws.Signatures[0].Header.JSONWebKey == nil {
		return nil, invalid("jwk header is not a usable key")
	}
	jwk := jws.Signatures[0].Header.JSONWebKey
	if err := keyFitsAlg(jwk, h.Alg); err != nil {
		return nil, err
	}
	// Check 6: the signature, with the key in the header.
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, invalid("signature does not verify with the jwk in the header")
	}

	// Check 3: the claims DPoP requires, each of the right type.
	var c claims
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return nil, invalid("claims are not a JSON object of DPoP claims")
	}
	if c.JTI == "" {
		return nil, invalid("jti is missing")
	}
	if len(c.JTI) > MaxJTILength {
		return nil, invalid("jti is longer than %d bytes", MaxJTILength)
	}
	// Check 8: the method.
	if c.HTM != o.Method {
		return nil, invalid("htm does not match the request method")
	}
	// Check 9: the URL.
	if c.HTU == "" {
		return nil, invalid("htu is missing")
	}
	same, err := sameHTU(c.HTU, o.URL)
	if err != nil {
		return nil, err
	}
	if !same {
		return nil, invalid("htu does not match the request URL")
	}
	// Check 11: iat within the window (§11.1).
	iat, ok := jwtclaim.NumericDate(c.IAT)
	if !ok {
		return nil, invalid("iat is missing or not a number")
	}
	if iat.Before(now.Add(-maxAge)) {
		return nil, invalid("iat is older than %s", maxAge)
	}
	if iat.After(now.Add(leeway)) {
		return nil, invalid("iat is in the future")
	}
	// Check 10: the nonce the server asked for.
	if o.Nonce != "" {
		if c.Nonce == nil || subtle.ConstantTimeCompare([]byte(*c.Nonce), []byte(o.Nonce)) != 1 {
			return nil, &Error{Code: CodeUseNonce, Description: "nonce is missing or is not the current DPoP-Nonce"}
		}
	}
	// Check 12: bound to the access token it is sent with.
	if o.AccessToken != "" {
		if c.ATH == nil {
			return nil, invalid("ath is missing")
		}
		if subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(AccessTokenHash(o.AccessToken))) != 1 {
			return nil, invalid("ath does not match the access token")
		}
	}

	jkt, err := Thumbprint(jwk)
	if err != nil {
		return nil, invalid("jwk header has no thumbprint")
	}
	p := &Proof{JTI: c.JTI, IssuedAt: iat, Thumbprint: jkt, Key: jwk}
	if c.Nonce != nil {
		p.Nonce = *c.Nonce
	}
	return p, nil
}

// keyFitsAlg checks that the header's key is of the kind alg needs, so a
// proof cannot pair, say, an RSA key with ES256, and that an RSA key is
// neither weak nor expensive.
func keyFitsAlg(jwk *jose.JSONWebKey, alg string) error {
	switch k := jwk.Key.(type) {
	case *ecdsa.PublicKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if want == nil || k.Curve != want {
			return invalid("jwk header is an EC key on %s, which alg %s cannot use", k.Curve.Params().Name, alg)
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return invalid("jwk header is an Ed25519 key, which alg %s cannot use", alg)
		}
	case *rsa.PublicKey:
		if !strings.HasPrefix(alg, "RS") && !strings.HasPrefix(alg, "PS") {
			return invalid("jwk header is an RSA key, which alg %s cannot use", alg)
		}
		if n := k.N.BitLen(); n < MinRSABits || n > MaxRSABits {
			return invalid("jwk header is a %d-bit RSA key; accepted: %d to %d bits", n, MinRSABits, MaxRSABits)
		}
	default:
		return invalid("jwk header is not a public key of an accepted kind")
	}
	return nil
}

// sameHTU reports whether a proof's htu names the request URL: both
// without query and fragment, after the syntax-based normalisation of
// RFC 3986 §6.2.2 and the scheme-based one of §6.2.3 (RFC 9449 §4.3 check
// 9).
func sameHTU(htu, requestURL string) (bool, error) {
	a, err := normalizeURL(htu)
	if err != nil {
		return false, invalid("htu is not an absolute http(s) URL")
	}
	b, err := normalizeURL(requestURL)
	if err != nil {
		return false, fmt.Errorf("dpop: request URL %q: %w", requestURL, err)
	}
	return a == b, nil
}

func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", errors.New("not an absolute http(s) URL")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	p := removeDotSegments(normalizePercent(u.EscapedPath()))
	if p == "" {
		p = "/"
	}
	return scheme + "://" + host + p, nil
}

// normalizePercent upper-cases the hex of every percent-encoding and
// decodes those of unreserved characters (RFC 3986 §6.2.2.1, §6.2.2.2).
func normalizePercent(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			c := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(c) {
				b.WriteByte(c)
			} else {
				b.WriteString(strings.ToUpper(p[i : i+3]))
			}
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	var out []string
	segs := strings.Split(p, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// truncate keeps an attacker's string short enough to go into an error
// description.
func truncate(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// joseReason keeps go-jose's message but not its prefix.
func joseReason(err error) string {
	return strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")
}

// RequestPath is the path of r as the client sent it, which its proof's
// htu names: r.URL may have been rewritten since (a handler mounted under
// http.StripPrefix, a route served under a canonical path), r.RequestURI
// is what arrived. Joined to the public base URL of the server (scheme and
// host as clients address it, behind a proxy too) it is the URL to verify
// a proof against.
func RequestPath(r *http.Request) string {
	if r.RequestURI != "" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
			return u.EscapedPath()
		}
	}
	return r.URL.EscapedPath()
}

// FromHeader returns the one DPoP proof in h. A request with no DPoP
// header, several, or one holding a list, gets an *Error: RFC 9449 §4.3
// check 1 allows exactly one.
func FromHeader(h http.Header) (string, error) {
	v := h.Values("DPoP")
	switch {
	case len(v) == 0:
		return "", invalid("no DPoP header")
	case len(v) > 1 || strings.Contains(v[0], ","):
		return "", invalid("more than one DPoP proof")
	}
	return strings.TrimSpace(v[0]), nil
}
