package storage

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/internal/jwtclaim"
)

// How an integration's key pairs authenticate (RFC 7591 §2
// token_endpoint_auth_method). Both secret methods accept the secret in
// either place, Basic or the form, as latchkey always has: an integration
// that names one is not refused for using the other.
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
)

// AuthMethods are the token_endpoint_auth_method values an integration may
// have, the default first.
var AuthMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT}

// Limits on an integration's registered public keys. A key set is parsed on
// every assertion, so it stays small; rotation needs two keys, a few more
// cover several deployments each signing with its own.
const (
	MaxJWKSBytes   = 16 << 10
	MaxJWKSKeys    = 10
	MaxJWKSURILen  = 2048
	MinRSAKeyBits  = jwtclaim.MinRSABits
	MaxRSAKeyBits  = jwtclaim.MaxRSABits
	MaxJTILen      = jwtclaim.MaxJTILen
	maxKeyIDLength = 256
)

// ClientAssertionAlgorithms are the signature algorithms latchkey accepts on
// client assertions and DPoP proofs: asymmetric only, never none or HS*,
// whose key the server would have to hold.
var ClientAssertionAlgorithms = slices.Clone(jwtclaim.Algorithms)

// KeyAlgorithms are the ClientAssertionAlgorithms a public key can verify.
func KeyAlgorithms(k *jose.JSONWebKey) []string {
	var algs []string
	switch pub := k.Key.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			algs = []string{"ES256"}
		}
	case ed25519.PublicKey:
		algs = []string{"EdDSA"}
	case *rsa.PublicKey:
		algs = []string{"RS256", "PS256"}
	}
	if k.Algorithm != "" {
		if !slices.Contains(algs, k.Algorithm) {
			return nil
		}
		return []string{k.Algorithm}
	}
	return algs
}

// ParseJWKS parses and checks a client's public key set: at most
// MaxJWKSBytes and MaxJWKSKeys, every key public, for signing, of a type
// and size ClientAssertionAlgorithms covers, and no two keys with one kid
// (an assertion's kid must name one key). It is what the token endpoint
// trusts, whether the set was registered or fetched from jwks_uri.
func ParseJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	if len(raw) > MaxJWKSBytes {
		return nil, invalidf("jwks is larger than %d bytes", MaxJWKSBytes)
	}
	// Counted before go-jose parses the keys: an RSA key costs a big
	// integer parse, so a set of thousands would cost CPU before it is
	// refused.
	var probe struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, invalidf("jwks is not a JSON Web Key Set: %v", err)
	}
	if len(probe.Keys) == 0 || len(probe.Keys) > MaxJWKSKeys {
		return nil, invalidf("jwks must hold between 1 and %d keys", MaxJWKSKeys)
	}
	var set jose.JSONWebKeySet
	for i, rk := range probe.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(rk); err != nil {
			return nil, invalidf("jwks key %d: %v", i, err)
		}
		if err := checkPublicKey(&k); err != nil {
			return nil, invalidf("jwks key %d: %s", i, err)
		}
		if k.KeyID != "" && len(set.Key(k.KeyID)) > 0 {
			return nil, invalidf("jwks key %d: kid %q is used by another key", i, k.KeyID)
		}
		set.Keys = append(set.Keys, k)
	}
	return &set, nil
}

func checkPublicKey(k *jose.JSONWebKey) error {
	if _, ok := k.Key.([]byte); ok {
		return errors.New("is a symmetric key; register an EC P-256, Ed25519 or RSA public key")
	}
	if !k.Valid() {
		return errors.New("not a valid key")
	}
	if !k.IsPublic() {
		return errors.New("is a private key; register only the public part")
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use is %q, not sig", k.Use)
	}
	if len(k.KeyID) > maxKeyIDLength {
		return fmt.Errorf("kid is longer than %d bytes", maxKeyIDLength)
	}
	if pub, ok := k.Key.(*rsa.PublicKey); ok {
		if n := pub.N.BitLen(); n < MinRSAKeyBits || n > MaxRSAKeyBits {
			return fmt.Errorf("RSA key of %d bits; between %d and %d are accepted", n, MinRSAKeyBits, MaxRSAKeyBits)
		}
	}
	if len(KeyAlgorithms(k)) == 0 {
		return fmt.Errorf("key type or alg %q is not one of %v", k.Algorithm, ClientAssertionAlgorithms)
	}
	return nil
}

// canonicalJWKS is the set as stored: each key in go-jose's encoding, so
// members the key does not need are not kept.
func canonicalJWKS(set *jose.JSONWebKeySet) (string, error) {
	b, err := json.Marshal(set)
	return string(b), err
}

// checkJWKSURI accepts an absolute https URL (or http, which the fetcher
// refuses unless configured to allow it, for development) without user
// information or fragment.
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || len(s) > MaxJWKSURILen || (u.Scheme != "https" && u.Scheme != "http") ||
		u.Host == "" || u.User != nil || u.Fragment != "" {
		return invalidf("jwks_uri must be an absolute https URL of at most %d bytes, without user information or fragment", MaxJWKSURILen)
	}
	return nil
}

// keySource is an integration's authentication method with its keys.
type keySource struct {
	method string
	jwks   *string // canonical JSON
	uri    *string
}

// checkKeySource checks the method and keys an integration would have
// after a create or patch: private_key_jwt needs exactly one of jwks and
// jwks_uri; a secret method may hold keys already, registered ahead of a
// switch to private_key_jwt, but not both kinds.
func checkKeySource(ks keySource) error {
	if !slices.Contains(AuthMethods, ks.method) {
		return invalidf("token_endpoint_auth_method must be one of %v", AuthMethods)
	}
	if ks.jwks != nil && ks.uri != nil {
		return invalidf("set jwks or jwks_uri, not both")
	}
	if ks.method == AuthPrivateKeyJWT && ks.jwks == nil && ks.uri == nil {
		return invalidf("token_endpoint_auth_method private_key_jwt needs jwks or jwks_uri")
	}
	return nil
}

// normalizeJWKS parses raw (nil: none) into its stored form.
func normalizeJWKS(raw json.RawMessage) (*string, error) {
	if raw == nil || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	set, err := ParseJWKS(raw)
	if err != nil {
		return nil, err
	}
	s, err := canonicalJWKS(set)
	if err != nil {
		return nil, invalidf("jwks: %v", err)
	}
	return &s, nil
}

// jwksSummary names the keys of a stored set for the audit log: kid and
// RFC 7638 thumbprint, enough to tell which key was added or removed
// without copying the set into every event.
func jwksSummary(stored *string) []string {
	if stored == nil {
		return nil
	}
	var set jose.JSONWebKeySet
	if json.Unmarshal([]byte(*stored), &set) != nil {
		return nil
	}
	out := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s#%s", k.KeyID, base64.RawURLEncoding.EncodeToString(tp)))
	}
	return out
}

// ErrReplay is UseJTI's answer for a jti it has seen.
var ErrReplay = errors.New("jti already used")

const useJTISQL = `INSERT INTO used_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// UseJTI records jti (a client assertion's or a DPoP proof's, prefixed by
// at most 128 bytes naming whose it is) as used until expiresAt, after which the janitor
// forgets it: by then what carried it is refused for its age. It returns
// ErrReplay if jti is recorded already, on any replica sharing the
// database; the insert is the check, so two replicas racing with one jti
// cannot both succeed.
func (s *Store) UseJTI(ctx context.Context, jti string, expiresAt time.Time) error {
	if jti == "" || len(jti) > MaxJTILen+128 {
		return invalidf("jti is empty or longer than %d bytes", MaxJTILen)
	}
	res, err := s.exec(ctx, nil, useJTISQL, jti, expiresAt.UTC().Truncate(time.Microsecond))
	if err != nil {
		return fmt.Errorf("use jti: %w: %w", ErrUnavailable, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("use jti: %w: %w", ErrUnavailable, err)
	}
	if n == 0 {
		return ErrReplay
	}
	return nil
}

// ForgetJTI forgets a jti UseJTI recorded, for a request that used it and
// was then refused, so that it may be sent again; forgetting what is not
// there succeeds.
func (s *Store) ForgetJTI(ctx context.Context, jti string) error {
	if _, err := s.exec(ctx, nil, `DELETE FROM used_jtis WHERE jti = $1`, jti); err != nil {
		return fmt.Errorf("forget jti: %w: %w", ErrUnavailable, err)
	}
	return nil
}
