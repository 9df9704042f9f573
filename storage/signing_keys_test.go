package storage

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// privateJWKMembers are the RFC 7518 §6 members that hold private key
// material.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// signingKeyColumns reads the stored columns of signing key kid.
func signingKeyColumns(t *testing.T, s *Store, kid string) (sealed []byte, publicJWK string) {
	t.Helper()
	err := s.r.WithContext(t.Context()).Raw("SELECT private_key, public_jwk FROM signing_keys WHERE kid = ?", kid).
		Row().Scan(&sealed, &publicJWK)
	if err != nil {
		t.Fatalf("read signing key %s: %v", kid, err)
	}
	return sealed, publicJWK
}

// privateScalar returns the secret number of a private key in its usual
// raw encoding, to look for in storage.
func privateScalar(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return b
	case ed25519.PrivateKey:
		return k.Seed()
	case *rsa.PrivateKey:
		return k.D.Bytes()
	}
	t.Fatalf("unexpected private key type %T", k)
	return nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// TestSigningKeyStoredSealed checks, for every algorithm, that the private
// part of a signing key is stored only encrypted and the public part holds
// no private member.
func TestSigningKeyStoredSealed(t *testing.T) {
	tests := []struct {
		alg, kty string
	}{
		{ES256, "EC"},
		{EdDSA, "OKP"},
		{RS256, "RSA"},
	}
	for _, tt := range tests {
		t.Run(tt.alg, func(t *testing.T) {
			s := newSQLiteStore(t, newFakeClock().Now)
			k, err := s.EnsureSigningKey(t.Context(), tt.alg)
			if err != nil {
				t.Fatalf("EnsureSigningKey(%s): %v", tt.alg, err)
			}
			if k.Private == nil || !k.Active || k.Algorithm != tt.alg {
				t.Fatalf("EnsureSigningKey = %+v, want an active %s key with its private part", k, tt.alg)
			}
			der, err := x509.MarshalPKCS8PrivateKey(k.Private)
			if err != nil {
				t.Fatal(err)
			}
			scalar := privateScalar(t, k.Private)

			sealed, pubJWK := signingKeyColumns(t, s, k.ID)
			if _, err := x509.ParsePKCS8PrivateKey(sealed); err == nil {
				t.Error("private_key parses as PKCS#8: stored in clear")
			}
			for name, secret := range map[string][]byte{"PKCS#8 DER": der, "private scalar": scalar} {
				if bytes.Contains(sealed, secret) {
					t.Errorf("private_key contains the %s", name)
				}
				for _, enc := range []string{
					base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret),
				} {
					for _, row := range tableText(t, s, "signing_keys") {
						if strings.Contains(row, enc) {
							t.Errorf("signing_keys holds the %s, encoded: %s", name, row)
						}
					}
				}
			}

			var members map[string]any
			if err := json.Unmarshal([]byte(pubJWK), &members); err != nil {
				t.Fatalf("public_jwk is not a JSON object: %q", pubJWK)
			}
			for _, p := range privateJWKMembers {
				if _, ok := members[p]; ok {
					t.Errorf("public_jwk has private member %q: %s", p, pubJWK)
				}
			}
			for _, m := range []struct{ member, want string }{
				{"kid", k.ID}, {"kty", tt.kty}, {"alg", tt.alg}, {"use", "sig"},
			} {
				if got := members[m.member]; got != m.want {
					t.Errorf("public_jwk %s = %v, want %q", m.member, got, m.want)
				}
			}
			tp, err := (&jose.JSONWebKey{Key: k.Private.Public()}).Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := k.ID, base64.RawURLEncoding.EncodeToString(tp); got != want {
				t.Errorf("kid = %q, want the RFC 7638 thumbprint %q", got, want)
			}

			listed, err := s.SigningKeys(t.Context())
			if err != nil {
				t.Fatalf("SigningKeys: %v", err)
			}
			for _, l := range listed {
				if l.Private != nil {
					t.Errorf("SigningKeys returned key %s with its private part", l.ID)
				}
			}

			again, err := s.EnsureSigningKey(t.Context(), tt.alg)
			if err != nil {
				t.Fatalf("second EnsureSigningKey: %v", err)
			}
			if again.ID != k.ID {
				t.Errorf("second EnsureSigningKey made key %s, want the existing %s", again.ID, k.ID)
			}
			if got := countRows(t, s, "SELECT COUNT(*) FROM signing_keys"); got != 1 {
				t.Errorf("%d signing keys after two EnsureSigningKey calls, want 1", got)
			}
		})
	}
}

// TestSigningKeySecretRotation checks that signing keys survive a system
// secret rotation: a wrong secret cannot open them (and does not replace
// them), [new, old] opens and re-seals every key under the new secret, and
// afterwards [new] alone suffices.
// TestSigningKeyUnknownAlgorithm: an algorithm outside SigningAlgorithms
// is refused with the list in the reason, and nothing is stored.
func TestSigningKeyUnknownAlgorithm(t *testing.T) {
	s := newSQLiteStore(t, newFakeClock().Now)
	_, err := s.RotateSigningKey(t.Context(), "HS256", testActor)
	var invalid *InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("RotateSigningKey(HS256) = %v, want an *InvalidError", err)
	}
	if got, want := invalid.Reason, `signing algorithm "HS256" is not one of ES256, EdDSA, RS256`; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	if keys, err := s.SigningKeys(t.Context()); err != nil || len(keys) != 0 {
		t.Errorf("SigningKeys = %d keys, %v; want none", len(keys), err)
	}
}

func TestSigningKeySecretRotation(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "latchkey.db")
	oldSecret, newSecret := testSecret, []byte(strings.Repeat("n", 32))
	ctx := t.Context()

	first, _ := openSQLite(t, path, clk.Now, oldSecret)
	retired, err := first.EnsureSigningKey(ctx, ES256)
	if err != nil {
		t.Fatalf("EnsureSigningKey: %v", err)
	}
	if _, err := first.RotateSigningKey(ctx, EdDSA, Actor{Type: "admin", Name: "root"}); err != nil {
		t.Fatalf("RotateSigningKey: %v", err)
	}
	active, err := first.ActiveSigningKey(ctx)
	if err != nil {
		t.Fatalf("ActiveSigningKey: %v", err)
	}
	sealedBefore := map[string][]byte{}
	for _, kid := range []string{retired.ID, active.ID} {
		sealedBefore[kid], _ = signingKeyColumns(t, first, kid)
	}
	first.Close()

	t.Run("wrong secret", func(t *testing.T) {
		s, _ := openSQLite(t, path, clk.Now, newSecret)
		if k, err := s.EnsureSigningKey(ctx, EdDSA); err == nil {
			t.Errorf("EnsureSigningKey with the wrong secret = key %s, nil error", k.ID)
		}
		if k, err := s.ActiveSigningKey(ctx); err == nil {
			t.Errorf("ActiveSigningKey with the wrong secret = key %s, nil error", k.ID)
		}
		if got := countRows(t, s, "SELECT COUNT(*) FROM signing_keys"); got != 2 {
			t.Errorf("%d signing keys after a failed EnsureSigningKey, want the 2 there were", got)
		}
		s.Close()
	})

	t.Run("new and old secrets", func(t *testing.T) {
		s, _ := openSQLite(t, path, clk.Now, newSecret, oldSecret)
		k, err := s.EnsureSigningKey(ctx, EdDSA)
		if err != nil {
			t.Fatalf("EnsureSigningKey with [new, old]: %v", err)
		}
		if k.ID != active.ID || !samePublicKey(k.Private.Public(), active.Private.Public()) {
			t.Errorf("EnsureSigningKey = key %s, want the existing %s with the same private key", k.ID, active.ID)
		}
		for kid, before := range sealedBefore {
			if after, _ := signingKeyColumns(t, s, kid); bytes.Equal(after, before) {
				t.Errorf("key %s was not re-sealed under the new secret", kid)
			}
		}
		s.Close()
	})

	t.Run("old secret alone, after re-sealing", func(t *testing.T) {
		s, _ := openSQLite(t, path, clk.Now, oldSecret)
		if _, err := s.ActiveSigningKey(ctx); err == nil {
			t.Error("ActiveSigningKey with only the retired secret = nil error; the key was not re-sealed")
		}
		s.Close()
	})

	t.Run("new secret alone", func(t *testing.T) {
		s, _ := openSQLite(t, path, clk.Now, newSecret)
		// EnsureSigningKey opens every key, the retired one too.
		k, err := s.EnsureSigningKey(ctx, EdDSA)
		if err != nil {
			t.Fatalf("EnsureSigningKey with [new]: %v", err)
		}
		if k.ID != active.ID || !samePublicKey(k.Private.Public(), active.Private.Public()) {
			t.Errorf("EnsureSigningKey = key %s, want the existing %s with the same private key", k.ID, active.ID)
		}
		if got := countRows(t, s, "SELECT COUNT(*) FROM signing_keys"); got != 2 {
			t.Errorf("%d signing keys, want 2 (no rotation)", got)
		}
		s.Close()
	})
}

// TestRotateSigningKeyIfOlder checks scheduled rotation: nothing while the
// active key is young, one rotation once it is old enough, and none again
// for the key that replaced it.
func TestRotateSigningKeyIfOlder(t *testing.T) {
	clk := newFakeClock()
	s := newSQLiteStore(t, clk.Now)
	first, err := s.EnsureSigningKey(t.Context(), ES256)
	if err != nil {
		t.Fatal(err)
	}
	rotate := func() bool {
		t.Helper()
		rotated, err := s.RotateSigningKeyIfOlder(t.Context(), EdDSA, 24*time.Hour)
		if err != nil {
			t.Fatalf("RotateSigningKeyIfOlder: %v", err)
		}
		return rotated
	}
	clk.Advance(23 * time.Hour)
	if rotate() {
		t.Fatal("rotated a key younger than the maximum age")
	}
	clk.Advance(time.Hour)
	if !rotate() {
		t.Fatal("did not rotate a key as old as the maximum age")
	}
	active, err := s.ActiveSigningKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if active.ID == first.ID || active.Algorithm != EdDSA {
		t.Fatalf("active key = %s (%s), want a new EdDSA key", active.ID, active.Algorithm)
	}
	if rotate() {
		t.Fatal("rotated the fresh key again")
	}
	keys, err := s.SigningKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[1].ID != first.ID || keys[1].RetiredAt == nil {
		t.Fatalf("keys = %+v, want the new active key and the retired first one", keys)
	}
}
