package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/latchkey/latchkey/dpop"
)

var (
	now       = time.Unix(1_800_000_000, 0)
	reqURL    = "https://api.example.com/v1/invoices"
	token     = "lk_at_example"
	keyOnce   sync.Once
	ecKey     *ecdsa.PrivateKey
	otherKey  *ecdsa.PrivateKey
	rsaKey    *rsa.PrivateKey
	weakRSA   *rsa.PrivateKey
	edPrivate ed25519.PrivateKey
)

func keys(t *testing.T) {
	t.Helper()
	keyOnce.Do(func() {
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		otherKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		weakRSA, _ = rsa.GenerateKey(rand.Reader, 1024)
		_, edPrivate, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// publicJWK is the JSON of pub as a JWK object, for forging headers.
func publicJWK(t *testing.T, pub crypto.PublicKey) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// forge signs a proof with exactly the header and claims given, with
// ES256 under key, so that each test case can break one thing.
func forge(t *testing.T, key *ecdsa.PrivateKey, hdr, cl map[string]any) string {
	t.Helper()
	input := b64JSON(t, hdr) + "." + b64JSON(t, cl)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64(sig)
}

func goodHeader(t *testing.T) map[string]any {
	return map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(t, &ecKey.PublicKey)}
}

func goodClaims() map[string]any {
	return map[string]any{
		"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": reqURL,
		"iat": now.Unix(), "ath": dpop.AccessTokenHash(token),
	}
}

func goodOptions() dpop.VerifyOptions {
	return dpop.VerifyOptions{Method: "GET", URL: reqURL, Now: now, AccessToken: token}
}

// TestVerifyRefuses holds Verify to each check of RFC 9449 §4.3: every case
// breaks one thing in an otherwise good proof and names the check that must
// refuse it.
func TestVerifyRefuses(t *testing.T) {
	keys(t)
	cases := []struct {
		name  string
		proof func(t *testing.T) string
		opts  func(*dpop.VerifyOptions)
		code  string // default dpop.CodeInvalidProof
		want  string // in the description
	}{
		{name: "oversize", want: "larger than", proof: func(t *testing.T) string {
			c := goodClaims()
			c["pad"] = strings.Repeat("a", dpop.MaxProofSize)
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "two proofs", want: "not one JWS", proof: func(t *testing.T) string {
			p := forge(t, ecKey, goodHeader(t), goodClaims())
			return p + "," + p
		}},
		{name: "no signature part", want: "not one JWS", proof: func(t *testing.T) string {
			p := forge(t, ecKey, goodHeader(t), goodClaims())
			return p[:strings.LastIndex(p, ".")+1]
		}},
		{name: "header not JSON", want: "header is not a JSON object", proof: func(t *testing.T) string {
			p := forge(t, ecKey, goodHeader(t), goodClaims())
			return b64([]byte("[1]")) + p[strings.Index(p, "."):]
		}},
		{name: "wrong typ", want: "typ", proof: func(t *testing.T) string {
			h := goodHeader(t)
			h["typ"] = "JWT"
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "missing typ", want: "typ", proof: func(t *testing.T) string {
			h := goodHeader(t)
			delete(h, "typ")
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "alg none", want: "alg \"none\" is not accepted", proof: func(t *testing.T) string {
			h := goodHeader(t)
			h["alg"] = "none"
			return b64JSON(t, h) + "." + b64JSON(t, goodClaims()) + ".AA"
		}},
		{name: "alg HS256", want: "alg \"HS256\" is not accepted", proof: func(t *testing.T) string {
			h := goodHeader(t)
			h["alg"] = "HS256"
			input := b64JSON(t, h) + "." + b64JSON(t, goodClaims())
			mac := hmac.New(sha256.New, []byte("a shared secret anyone may know"))
			mac.Write([]byte(input))
			return input + "." + b64(mac.Sum(nil))
		}},
		{name: "alg not in the allowed set", want: "alg \"ES256\" is not accepted", opts: func(o *dpop.VerifyOptions) {
			o.Algs = []string{"EdDSA"}
		}, proof: func(t *testing.T) string { return forge(t, ecKey, goodHeader(t), goodClaims()) }},
		{name: "missing jwk", want: "jwk header is missing", proof: func(t *testing.T) string {
			h := goodHeader(t)
			delete(h, "jwk")
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "private key in jwk", want: "jwk header holds a private", proof: func(t *testing.T) string {
			h := goodHeader(t)
			jwk := h["jwk"].(map[string]any)
			jwk["d"] = b64(ecKey.D.FillBytes(make([]byte, 32)))
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "symmetric key in jwk", want: "private or symmetric", proof: func(t *testing.T) string {
			h := goodHeader(t)
			h["jwk"] = map[string]any{"kty": "oct", "k": b64([]byte("secret"))}
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "jwk of another kind than alg", want: "cannot use", proof: func(t *testing.T) string {
			h := goodHeader(t)
			h["jwk"] = publicJWK(t, &rsaKey.PublicKey)
			return forge(t, ecKey, h, goodClaims())
		}},
		{name: "weak RSA key", want: "1024-bit", proof: func(t *testing.T) string {
			p, err := dpop.NewProof(weakRSA, "GET", reqURL, token, "", now)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{name: "wrong signature", want: "signature", proof: func(t *testing.T) string {
			return forge(t, otherKey, goodHeader(t), goodClaims())
		}},
		{name: "claims not JSON", want: "claims", proof: func(t *testing.T) string {
			h := b64JSON(t, goodHeader(t))
			input := h + "." + b64([]byte("not json"))
			sum := sha256.Sum256([]byte(input))
			r, s, _ := ecdsa.Sign(rand.Reader, ecKey, sum[:])
			sig := make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
			return input + "." + b64(sig)
		}},
		{name: "missing jti", want: "jti is missing", proof: func(t *testing.T) string {
			c := goodClaims()
			delete(c, "jti")
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "long jti", want: "jti is longer", proof: func(t *testing.T) string {
			c := goodClaims()
			c["jti"] = strings.Repeat("j", dpop.MaxJTILength+1)
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "wrong htm", want: "htm", proof: func(t *testing.T) string {
			c := goodClaims()
			c["htm"] = "POST"
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "wrong htu path", want: "htu does not match", proof: func(t *testing.T) string {
			c := goodClaims()
			c["htu"] = "https://api.example.com/v1/payroll"
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "wrong htu host", want: "htu does not match", proof: func(t *testing.T) string {
			c := goodClaims()
			c["htu"] = "https://evil.example.com/v1/invoices"
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "wrong htu scheme", want: "htu does not match", proof: func(t *testing.T) string {
			c := goodClaims()
			c["htu"] = "http://api.example.com/v1/invoices"
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "htu not absolute", want: "htu is not", proof: func(t *testing.T) string {
			c := goodClaims()
			c["htu"] = "/v1/invoices"
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "stale iat", want: "older", proof: func(t *testing.T) string {
			c := goodClaims()
			c["iat"] = now.Add(-dpop.DefaultMaxAge - time.Second).Unix()
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "future iat", want: "future", proof: func(t *testing.T) string {
			c := goodClaims()
			c["iat"] = now.Add(dpop.DefaultLeeway + time.Second).Unix()
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "missing iat", want: "iat is missing", proof: func(t *testing.T) string {
			c := goodClaims()
			delete(c, "iat")
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "missing ath", want: "ath is missing", proof: func(t *testing.T) string {
			c := goodClaims()
			delete(c, "ath")
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "bad ath", want: "ath does not match", proof: func(t *testing.T) string {
			c := goodClaims()
			c["ath"] = dpop.AccessTokenHash("lk_at_another")
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "missing nonce", code: dpop.CodeUseNonce, want: "nonce", opts: func(o *dpop.VerifyOptions) {
			o.Nonce = "n-0S6_WzA2Mj"
		}, proof: func(t *testing.T) string { return forge(t, ecKey, goodHeader(t), goodClaims()) }},
		{name: "stale nonce", code: dpop.CodeUseNonce, want: "nonce", opts: func(o *dpop.VerifyOptions) {
			o.Nonce = "n-0S6_WzA2Mj"
		}, proof: func(t *testing.T) string {
			c := goodClaims()
			c["nonce"] = "an-old-nonce"
			return forge(t, ecKey, goodHeader(t), c)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := goodOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			p, err := dpop.Verify(tc.proof(t), o)
			var derr *dpop.Error
			if !errors.As(err, &derr) {
				t.Fatalf("Verify = %+v, %v; want a *dpop.Error", p, err)
			}
			code := tc.code
			if code == "" {
				code = dpop.CodeInvalidProof
			}
			if derr.Code != code || !strings.Contains(derr.Description, tc.want) {
				t.Errorf("Verify error = %q %q; want %q with %q", derr.Code, derr.Description, code, tc.want)
			}
		})
	}
}

// TestVerifyAccepts shows the good proofs the negative cases start from
// pass, with each kind of key NewProof signs with, and with the URL
// spelled differently in ways RFC 3986 §6.2 says are the same.
func TestVerifyAccepts(t *testing.T) {
	keys(t)
	cases := []struct {
		name  string
		proof func(t *testing.T) string
		opts  func(*dpop.VerifyOptions)
		key   crypto.PublicKey
	}{
		{name: "forged baseline", key: &ecKey.PublicKey, proof: func(t *testing.T) string {
			return forge(t, ecKey, goodHeader(t), goodClaims())
		}},
		{name: "ES256", key: &ecKey.PublicKey, proof: newProof(ecKey, reqURL)},
		{name: "EdDSA", key: edPrivate.Public(), proof: newProof(edPrivate, reqURL)},
		{name: "PS256", key: &rsaKey.PublicKey, proof: newProof(rsaKey, reqURL)},
		{name: "a signer behind an interface", key: &ecKey.PublicKey, proof: newProof(hidden{ecKey}, reqURL)},
		{name: "RS256", key: &rsaKey.PublicKey, proof: func(t *testing.T) string {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rsaKey},
				(&jose.SignerOptions{EmbedJWK: true}).WithType(dpop.Type))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(goodClaims())
			jws, err := signer.Sign(b)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := jws.CompactSerialize()
			return s
		}},
		{name: "query and fragment ignored", key: &ecKey.PublicKey, proof: newProof(ecKey, reqURL+"?page=2#top"),
			opts: func(o *dpop.VerifyOptions) { o.URL = reqURL + "?page=3" }},
		{name: "scheme, host case, default port, percent-encoding, dot segments", key: &ecKey.PublicKey,
			proof: func(t *testing.T) string {
				c := goodClaims()
				c["htu"] = "HTTPS://API.Example.COM:443/v1/./x/../%69nvoices"
				return forge(t, ecKey, goodHeader(t), c)
			}},
		{name: "iat within the leeway", key: &ecKey.PublicKey, proof: func(t *testing.T) string {
			c := goodClaims()
			c["iat"] = now.Add(dpop.DefaultLeeway).Unix()
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "iat at the max age", key: &ecKey.PublicKey, proof: func(t *testing.T) string {
			c := goodClaims()
			c["iat"] = now.Add(-dpop.DefaultMaxAge).Unix()
			return forge(t, ecKey, goodHeader(t), c)
		}},
		{name: "the nonce asked for", key: &ecKey.PublicKey, opts: func(o *dpop.VerifyOptions) { o.Nonce = "n1" },
			proof: func(t *testing.T) string {
				p, err := dpop.NewProof(ecKey, "GET", reqURL, token, "n1", now)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}},
		{name: "no access token at the token endpoint", key: &ecKey.PublicKey,
			opts: func(o *dpop.VerifyOptions) { o.AccessToken = "" },
			proof: func(t *testing.T) string {
				p, err := dpop.NewProof(ecKey, "GET", reqURL, "", "", now)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := goodOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			p, err := dpop.Verify(tc.proof(t), o)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want, _ := dpop.Thumbprint(&jose.JSONWebKey{Key: tc.key})
			if p.Thumbprint != want || p.JTI == "" || p.IssuedAt.IsZero() {
				t.Errorf("Verify = %+v; want thumbprint %s, a jti and an iat", p, want)
			}
		})
	}
}

// hidden is a crypto.Signer that is not one of the key types go-jose
// knows, as a key in an HSM or a KMS is.
type hidden struct{ k *ecdsa.PrivateKey }

func (h hidden) Public() crypto.PublicKey { return h.k.Public() }
func (h hidden) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return h.k.Sign(r, d, o)
}

func newProof(key crypto.Signer, u string) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		p, err := dpop.NewProof(key, "GET", u, token, "", now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// TestNewProofClaims checks what NewProof puts in a proof beyond what
// Verify reads back: a fresh jti of 128 bits or more each time, and htu
// without the query.
func TestNewProofClaims(t *testing.T) {
	keys(t)
	seen := map[string]bool{}
	for range 3 {
		p, err := dpop.NewProof(ecKey, "POST", "https://as.example.com/oauth2/token?x=1", "", "", now)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(p, ".")[1])
		var c map[string]any
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatal(err)
		}
		jti, _ := c["jti"].(string)
		raw, _ := base64.RawURLEncoding.DecodeString(jti)
		if len(raw) < 16 || seen[jti] {
			t.Errorf("jti %q: want 128 random bits or more, fresh each time", jti)
		}
		seen[jti] = true
		if c["htu"] != "https://as.example.com/oauth2/token" || c["htm"] != "POST" {
			t.Errorf("claims = %v", c)
		}
		if _, ok := c["ath"]; ok {
			t.Errorf("ath without an access token: %v", c)
		}
	}
}

// TestThumbprint is the example of RFC 7638 §3.1.
func TestThumbprint(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	got, err := dpop.Thumbprint(&jose.JSONWebKey{Key: key})
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want || err != nil {
		t.Errorf("Thumbprint = %q, %v; want %q", got, err, want)
	}
	if _, err := dpop.Thumbprint(nil); err == nil {
		t.Error("Thumbprint(nil) succeeded")
	}
}

// TestFromHeader: RFC 9449 §4.3 check 1 allows one DPoP header field.
func TestFromHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		ok     bool
	}{
		{"one", []string{"a.b.c"}, true},
		{"none", nil, false},
		{"two fields", []string{"a.b.c", "d.e.f"}, false},
		{"a list in one field", []string{"a.b.c, d.e.f"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add("DPoP", v)
			}
			_, err := dpop.FromHeader(h)
			if (err == nil) != tc.ok {
				t.Errorf("FromHeader(%q) error = %v; want ok %v", tc.values, err, tc.ok)
			}
		})
	}
}

// TestVerifyOptions: a verifier cannot be configured into accepting a
// symmetric or empty algorithm.
func TestVerifyOptions(t *testing.T) {
	keys(t)
	p := forge(t, ecKey, goodHeader(t), goodClaims())
	for _, algs := range [][]string{{"none"}, {"HS256"}, {"ES256", "HS512"}} {
		o := goodOptions()
		o.Algs = algs
		if _, err := dpop.Verify(p, o); err == nil {
			t.Errorf("Verify with Algs %v succeeded", algs)
		}
	}
}
