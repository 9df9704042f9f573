package storage

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksOf is the JSON Web Key Set of the public parts of keys, each with
// kid "k<i>".
func jwksOf(t *testing.T, keys ...crypto.Signer) json.RawMessage {
	t.Helper()
	var set jose.JSONWebKeySet
	for i, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: fmt.Sprintf("k%d", i), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseJWKS(t *testing.T) {
	ec := newECKey(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	marshal := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	private := marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec, KeyID: "p"}}})
	symmetric := marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hs"}}})
	encryption := marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec.Public(), Use: "enc"}}})
	wrongAlg := marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec.Public(), Algorithm: "RS256"}}})
	dupKid := marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: ec.Public(), KeyID: "a"}, {Key: ed.Public(), KeyID: "a"}}})
	var many jose.JSONWebKeySet
	for range MaxJWKSKeys + 1 {
		many.Keys = append(many.Keys, jose.JSONWebKey{Key: ec.Public()})
	}
	tests := []struct {
		name    string
		raw     []byte
		wantErr string
	}{
		{"EC, Ed25519 and RSA public keys", jwksOf(t, ec, ed, rsa2048), ""},
		{"not JSON", []byte("{"), "not a JSON Web Key Set"},
		{"no keys", []byte(`{"keys":[]}`), "between 1 and"},
		{"too many keys", marshal(many), "between 1 and"},
		{"too large", []byte(`{"keys":[` + strings.Repeat(" ", MaxJWKSBytes) + `]}`), "larger than"},
		{"a private key", private, "private key"},
		{"a symmetric key", symmetric, "symmetric key"},
		{"an encryption key", encryption, "not sig"},
		{"alg not the key's", wrongAlg, "key type or alg"},
		{"P-384", jwksOf(t, p384), "key type or alg"},
		{"RSA 1024", jwksOf(t, rsa1024), "RSA key of 1024 bits"},
		{"one kid twice", dupKid, "used by another key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := ParseJWKS(tc.raw)
			if tc.wantErr == "" {
				if err != nil || len(set.Keys) != 3 {
					t.Fatalf("ParseJWKS = %v, %v; want 3 keys", set, err)
				}
				return
			}
			var invalid *InvalidError
			if !errors.As(err, &invalid) || !strings.Contains(invalid.Reason, tc.wantErr) {
				t.Fatalf("ParseJWKS = %v, want an InvalidError containing %q", err, tc.wantErr)
			}
		})
	}
}

// testIntegrationKeyless creates a private_key_jwt integration: it stores
// the key set, its pairs have no secret (a regeneration makes none
// either), and the audit log names the keys by kid and thumbprint.
func testIntegrationKeyless(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	ec := newECKey(t)
	ig, nk := createIntegration(t, s, IntegrationInput{
		Name: "keyless", TokenEndpointAuthMethod: AuthPrivateKeyJWT, JWKS: jwksOf(t, ec),
		RequireDPoP: true, IntrospectionAudience: []string{"invoices", "invoices"},
	})
	if nk.ClientSecret != "" || nk.ClientID == "" {
		t.Errorf("new pair = %+v, want a client ID and no secret", nk)
	}
	if ig.TokenEndpointAuthMethod != AuthPrivateKeyJWT || !ig.RequireDPoP || !slices.Equal(ig.IntrospectionAudience, []string{"invoices"}) {
		t.Errorf("created = %+v", ig)
	}
	got := getIntegration(t, s, "keyless")
	set, err := ParseJWKS([]byte(got.JWKS))
	if err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k0" {
		t.Fatalf("stored jwks %s: %v", got.JWKS, err)
	}
	c := getClient(t, s, nk.ClientID)
	if len(c.SecretHash) != 0 {
		t.Errorf("keyless pair's secret hash = %x, want empty", c.SecretHash)
	}
	if c.Integration.TokenEndpointAuthMethod != AuthPrivateKeyJWT || c.Integration.JWKS != got.JWKS ||
		!c.Integration.RequireDPoP || !slices.Equal(c.Integration.IntrospectionAudience, []string{"invoices"}) {
		t.Errorf("GetClient's integration = %+v", c.Integration)
	}
	if h := clientSecretHasher(testSecret); h.Compare(ctx, c.SecretHash, []byte("")) == nil {
		t.Error("the empty secret matches a keyless pair")
	}
	nk2 := regenerate(t, s, "keyless", 0)
	if nk2.ClientSecret != "" || len(getClient(t, s, nk2.ClientID).SecretHash) != 0 {
		t.Errorf("regenerated keyless pair has a secret: %+v", nk2)
	}
	events, _, err := s.FindAuditEvents(ctx, AuditFilter{Integration: "keyless", Action: "integration.create"}, Page{})
	if err != nil || len(events) != 1 {
		t.Fatalf("ListAudit = %v, %v", events, err)
	}
	tp, _ := set.Keys[0].Thumbprint(crypto.SHA256)
	keys, _ := json.Marshal(events[0].Details["jwks"])
	if !strings.Contains(string(keys), "k0#") || strings.Contains(string(keys), `"x"`) || len(tp) == 0 {
		t.Errorf("audit names the keys as %s, want kid#thumbprint only", keys)
	}

	uri, _, err := s.CreateIntegration(ctx, IntegrationInput{Name: "by-uri", TokenEndpointAuthMethod: AuthPrivateKeyJWT,
		JWKSURI: "https://keys.example.com/jwks.json"}, testActor)
	if err != nil || uri.JWKSURI != "https://keys.example.com/jwks.json" || uri.JWKS != "" {
		t.Errorf("create with jwks_uri = %+v, %v", uri, err)
	}
}

func testIntegrationKeylessInvalid(t *testing.T, s *Store, _ *fakeClock) {
	ec := newECKey(t)
	tests := []struct {
		name string
		in   IntegrationInput
		want string
	}{
		{"unknown method", IntegrationInput{TokenEndpointAuthMethod: "client_secret_jwt"}, "token_endpoint_auth_method"},
		{"private_key_jwt without keys", IntegrationInput{TokenEndpointAuthMethod: AuthPrivateKeyJWT}, "needs jwks or jwks_uri"},
		{"both jwks and jwks_uri", IntegrationInput{TokenEndpointAuthMethod: AuthPrivateKeyJWT, JWKS: jwksOf(t, ec),
			JWKSURI: "https://keys.example.com/jwks.json"}, "not both"},
		{"relative jwks_uri", IntegrationInput{TokenEndpointAuthMethod: AuthPrivateKeyJWT, JWKSURI: "/jwks.json"}, "absolute https URL"},
		{"jwks_uri with a password", IntegrationInput{TokenEndpointAuthMethod: AuthPrivateKeyJWT, JWKSURI: "https://u:p@example.com/k"}, "user information"},
		{"ftp jwks_uri", IntegrationInput{TokenEndpointAuthMethod: AuthPrivateKeyJWT, JWKSURI: "ftp://example.com/k"}, "absolute https URL"},
		{"bad introspection_audience", IntegrationInput{IntrospectionAudience: []string{"has space"}}, "introspection_audience"},
	}
	for _, tc := range tests {
		tc.in.Name = "bad"
		_, _, err := s.CreateIntegration(t.Context(), tc.in, testActor)
		var invalid *InvalidError
		if !errors.As(err, &invalid) || !strings.Contains(invalid.Reason, tc.want) {
			t.Errorf("%s: CreateIntegration = %v, want an InvalidError containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := s.GetIntegration(t.Context(), "bad"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused integration was stored: %v", err)
	}
}

// testIntegrationSwitchToKeys moves a secret integration to
// private_key_jwt: the secrets of its pairs, the one in grace too, are
// gone for good, a switch back gives none back, and the audit log has each
// step.
func testIntegrationSwitchToKeys(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	_, first := createIntegration(t, s, IntegrationInput{Name: "mover"})
	second := regenerate(t, s, "mover", time.Hour)
	ec := newECKey(t)
	method := AuthPrivateKeyJWT
	// Keys may be registered before the switch, while the secret still works.
	if _, err := s.UpdateIntegration(ctx, "mover", IntegrationPatch{JWKS: jwksOf(t, ec)}, testActor); err != nil {
		t.Fatal(err)
	}
	if len(getClient(t, s, second.ClientID).SecretHash) == 0 {
		t.Fatal("registering keys removed the secret")
	}
	ig, err := s.UpdateIntegration(ctx, "mover", IntegrationPatch{TokenEndpointAuthMethod: &method}, testActor)
	if err != nil || ig.TokenEndpointAuthMethod != AuthPrivateKeyJWT {
		t.Fatalf("switch = %+v, %v", ig, err)
	}
	for _, id := range []string{first.ClientID, second.ClientID} {
		if c := findClient(t, s, id); c != nil && len(c.SecretHash) != 0 {
			t.Errorf("pair %s kept its secret hash after the switch", id)
		}
	}
	back := AuthClientSecretBasic
	if _, err := s.UpdateIntegration(ctx, "mover", IntegrationPatch{TokenEndpointAuthMethod: &back}, testActor); err != nil {
		t.Fatal(err)
	}
	if len(getClient(t, s, second.ClientID).SecretHash) != 0 {
		t.Error("switching back revived a secret")
	}
	// Removing the keys of a private_key_jwt integration is refused.
	if _, err := s.UpdateIntegration(ctx, "mover", IntegrationPatch{TokenEndpointAuthMethod: &method, JWKS: json.RawMessage("null")}, testActor); !errors.Is(err, ErrInvalid) {
		t.Errorf("private_key_jwt without keys = %v, want ErrInvalid", err)
	}
	events, _, err := s.FindAuditEvents(ctx, AuditFilter{Integration: "mover", Action: "integration.update"}, Page{})
	if err != nil || len(events) != 3 {
		t.Fatalf("ListAudit = %d events, %v; want 3", len(events), err)
	}
	if _, ok := events[2].Details["changes"].(map[string]any)["jwks"]; !ok {
		t.Errorf("the key registration's event = %v, want a jwks change", events[2].Details)
	}
	if _, ok := events[1].Details["changes"].(map[string]any)["token_endpoint_auth_method"]; !ok {
		t.Errorf("the switch's event = %v, want a token_endpoint_auth_method change", events[1].Details)
	}
}

// testAccessTokenBinding stores a DPoP-bound token and a bearer one.
func testAccessTokenBinding(t *testing.T, s *Store, clk *fakeClock) {
	_, nk := createIntegration(t, s, IntegrationInput{Name: "bound"})
	bound := newToken(getClient(t, s, nk.ClientID), clk.Now(), time.Hour)
	bound.JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	if err := s.CreateToken(t.Context(), bound, clk.Now()); err != nil {
		t.Fatal(err)
	}
	bearer := issueToken(t, s, clk, nk.ClientID, time.Hour)
	if got := findToken(t, s, bound.Signature); got == nil || got.JKT != bound.JKT {
		t.Errorf("bound token read back as %+v, want jkt %s", got, bound.JKT)
	}
	if got := findToken(t, s, bearer); got == nil || got.JKT != "" {
		t.Errorf("bearer token read back as %+v, want no jkt", got)
	}
}

// testUseJTI records jtis once, on any replica, and forgets them after
// they expire.
func testUseJTI(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	other := replicaOf(t, s)
	exp := clk.Now().Add(5 * time.Minute)
	if err := s.UseJTI(ctx, "a:client:1", exp); err != nil {
		t.Fatalf("first use = %v", err)
	}
	if err := other.UseJTI(ctx, "a:client:1", exp); !errors.Is(err, ErrReplay) {
		t.Errorf("replay on another replica = %v, want ErrReplay", err)
	}
	if err := s.UseJTI(ctx, "a:other:1", exp); err != nil {
		t.Errorf("the same jti of another client = %v, want nil", err)
	}
	if err := s.UseJTI(ctx, "", exp); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty jti = %v, want ErrInvalid", err)
	}
	if err := s.UseJTI(ctx, strings.Repeat("j", MaxJTILen+129), exp); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized jti = %v, want ErrInvalid", err)
	}

	// A jti given back may be used again, once.
	if err := other.ForgetJTI(ctx, "a:client:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.UseJTI(ctx, "a:client:1", exp); err != nil {
		t.Errorf("a jti given back = %v, want usable again", err)
	}
	if err := s.UseJTI(ctx, "a:client:1", exp); !errors.Is(err, ErrReplay) {
		t.Errorf("then again = %v, want ErrReplay", err)
	}

	// Two replicas racing with one jti: exactly one wins.
	errs := make(chan error, 2)
	for _, st := range []*Store{s, other} {
		go func() { errs <- st.UseJTI(ctx, "race", exp) }()
	}
	won := 0
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, ErrReplay):
			t.Errorf("racing UseJTI = %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of two racing uses of one jti succeeded, want 1", won)
	}

	clk.Advance(5*time.Minute + time.Second)
	if _, err := s.Purge(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.UseJTI(ctx, "a:client:1", clk.Now().Add(time.Minute)); err != nil {
		t.Errorf("a jti purged after it expired = %v, want usable again", err)
	}
}
