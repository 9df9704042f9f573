package storage

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server/oauth/credential"
)

// The conformance tests of revocation by value and of the audit log's
// filters and update details; runConformance lists them.

// auditOf returns the audit events with action, newest first.
func auditOf(t *testing.T, s *Store, action string) []AuditEvent {
	t.Helper()
	events, _, err := s.FindAuditEvents(t.Context(), AuditFilter{Action: action}, Page{Limit: MaxPageLimit})
	if err != nil {
		t.Fatalf("FindAuditEvents(%s): %v", action, err)
	}
	return events
}

// assertNoHashStored fails if a hash of secret, under any key the store
// accepts and in a common encoding, appears in the audit log: revoking a
// credential must record neither it nor what identifies it in the tables.
func assertNoHashStored(t *testing.T, s *Store, secret string) {
	t.Helper()
	for _, row := range tableText(t, s, "audit_events") {
		for _, h := range s.creds.SecretHashes(secret) {
			for _, enc := range []string{string(h), hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h),
				base64.RawURLEncoding.EncodeToString(h), base64.RawStdEncoding.EncodeToString(h)} {
				if strings.Contains(row, enc) {
					t.Errorf("a hash of %q is in the audit log: %s", secret, row)
				}
			}
		}
	}
}

func wantRevoked(t *testing.T, label string, got *RevokedCredential, err error, want RevokedCredential) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	if *got != want {
		t.Errorf("%s = %+v, want %+v", label, *got, want)
	}
}

func testRevokeClientSecret(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, first := createIntegration(t, s, IntegrationInput{Name: "leaky", Scopes: []string{"read"}})
	sig := issueToken(t, s, clk, first.ClientID, time.Hour)
	clk.Advance(time.Second)
	revokedAt := s.Now()

	got, err := s.RevokeClientSecret(ctx, first.ClientSecret, testActor)
	wantRevoked(t, "RevokeClientSecret", got, err, RevokedCredential{Kind: KindClientSecret, OwnerType: "integration",
		Owner: "leaky", ClientID: first.ClientID, Revoked: true})
	if clientWorks(t, s, first.ClientID) {
		t.Error("the revoked pair still works")
	}
	if c := findClient(t, s, first.ClientID); c == nil || c.ExpiresAt == nil || !c.ExpiresAt.Equal(revokedAt) {
		t.Errorf("the revoked pair = %+v, want it ended at %v", c, revokedAt)
	}
	if tokenActive(t, s, sig) {
		t.Error("a token of the revoked pair is still active")
	}
	if ig := getIntegration(t, s, "leaky"); ig.KeyPair != nil || ig.PreviousKeyPair != nil {
		t.Errorf("integration after the revocation: key pair %+v, previous %+v; want neither", ig.KeyPair, ig.PreviousKeyPair)
	}

	// Found again, but ended already: nothing changes, its end included.
	clk.Advance(time.Minute)
	got, err = s.RevokeClientSecret(ctx, first.ClientSecret, testActor)
	wantRevoked(t, "RevokeClientSecret again", got, err, RevokedCredential{Kind: KindClientSecret, OwnerType: "integration",
		Owner: "leaky", ClientID: first.ClientID, Revoked: false})
	if c := findClient(t, s, first.ClientID); c == nil || c.ExpiresAt == nil || !c.ExpiresAt.Equal(revokedAt) {
		t.Errorf("the pair revoked twice = %+v, want it still ended at %v", c, revokedAt)
	}

	// The integration gets a pair again by regenerating, with nothing to
	// replace.
	second := regenerate(t, s, "leaky", time.Hour)
	if second.PreviousExpiresAt != nil {
		t.Errorf("regenerate after the revocation: previous_expires_at %v, want none", second.PreviousExpiresAt)
	}
	if !clientWorks(t, s, second.ClientID) {
		t.Error("the regenerated pair does not work")
	}

	// A pair in its grace period ends at once, and the current pair is
	// left alone.
	third := regenerate(t, s, "leaky", time.Hour)
	clk.Advance(time.Second)
	got, err = s.RevokeClientSecret(ctx, second.ClientSecret, testActor)
	wantRevoked(t, "RevokeClientSecret of the pair in grace", got, err, RevokedCredential{Kind: KindClientSecret,
		OwnerType: "integration", Owner: "leaky", ClientID: second.ClientID, Revoked: true})
	if clientWorks(t, s, second.ClientID) || !clientWorks(t, s, third.ClientID) {
		t.Errorf("after revoking the pair in grace: it works %v (want false), the current works %v (want true)",
			clientWorks(t, s, second.ClientID), clientWorks(t, s, third.ClientID))
	}
	if ig := getIntegration(t, s, "leaky"); ig.KeyPair == nil || ig.KeyPair.ClientID != third.ClientID || ig.PreviousKeyPair != nil {
		t.Errorf("integration after revoking the pair in grace: key pair %+v, previous %+v; want %s alone", ig.KeyPair, ig.PreviousKeyPair, third.ClientID)
	}

	for name, secret := range map[string]string{
		"unknown":     credential.NewClientSecret(),
		"admin token": credential.NewAdminToken(),
	} {
		if _, err := s.RevokeClientSecret(ctx, secret, testActor); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeClientSecret(%s) = %v, want ErrNotFound", name, err)
		}
	}
	if err := s.DeleteIntegration(ctx, "leaky", testActor); err != nil {
		t.Fatalf("DeleteIntegration: %v", err)
	}
	if _, err := s.RevokeClientSecret(ctx, third.ClientSecret, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeClientSecret of a deleted integration's pair = %v, want ErrNotFound", err)
	}

	events := auditOf(t, s, "credential.revoke")
	if len(events) != 3 {
		t.Fatalf("%d credential.revoke events, want 3 (the misses leave none): %+v", len(events), events)
	}
	for i, want := range []struct {
		clientID string
		revoked  bool
	}{{second.ClientID, true}, {first.ClientID, false}, {first.ClientID, true}} {
		e := events[i]
		d, _ := json.Marshal(e.Details)
		wantD, _ := json.Marshal(map[string]any{"kind": "client_secret", "owner_type": "integration", "owner": "leaky",
			"client_id": want.clientID, "revoked": want.revoked})
		if e.ObjectType != "integration" || e.Object != "leaky" || e.Actor != testActor.Name || string(d) != string(wantD) {
			t.Errorf("event %d = %s/%s by %s, details %s; want integration/leaky by %s, %s", i, e.ObjectType, e.Object, e.Actor, d, testActor.Name, wantD)
		}
	}
	assertNotStored(t, s, first.ClientSecret, second.ClientSecret, third.ClientSecret)
	assertNoHashStored(t, s, first.ClientSecret)
	assertNoHashStored(t, s, second.ClientSecret)
}

func testRevokeAdminTokenValue(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	alice, first, secret := createAdmin(t, s, "alice", DefaultAdminTokenDays)
	_, other := createAdminToken(t, s, alice, "other", DefaultAdminTokenDays)
	allow := func(*Admin) error { return nil }

	refused := errors.New("may not")
	var asked []string
	_, err := s.RevokeAdminTokenValue(ctx, secret, testActor, func(a *Admin) error {
		asked = append(asked, a.Name)
		return refused
	})
	if !errors.Is(err, refused) || len(asked) == 0 || asked[0] != "alice" {
		t.Errorf("RevokeAdminTokenValue refused = %v, asked about %v; want allow's error, asked about alice", err, asked)
	}
	if !adminAuthenticates(t, s, secret, "alice") || len(auditOf(t, s, "credential.revoke")) != 0 {
		t.Error("a refused revocation changed something")
	}

	got, err := s.RevokeAdminTokenValue(ctx, secret, testActor, allow)
	wantRevoked(t, "RevokeAdminTokenValue", got, err, RevokedCredential{Kind: KindAdminToken, OwnerType: "admin",
		Owner: "alice", AdminTokenID: first.ID, Revoked: true})
	if adminAuthenticates(t, s, secret, "alice") {
		t.Error("the revoked admin token still authenticates")
	}
	if !adminAuthenticates(t, s, other, "alice") {
		t.Error("revoking one admin token revoked another of its admin")
	}
	if _, err := s.RevokeAdminTokenValue(ctx, secret, testActor, allow); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAdminTokenValue of a revoked token = %v, want ErrNotFound: revoking deletes it", err)
	}

	short, shortSecret := createAdminToken(t, s, alice, "short", 1)
	clk.Advance(25 * time.Hour)
	got, err = s.RevokeAdminTokenValue(ctx, shortSecret, testActor, allow)
	wantRevoked(t, "RevokeAdminTokenValue of an expired token", got, err, RevokedCredential{Kind: KindAdminToken,
		OwnerType: "admin", Owner: "alice", AdminTokenID: short.ID, Revoked: false})

	for name, v := range map[string]string{"unknown": credential.NewAdminToken(), "client secret": credential.NewClientSecret()} {
		if _, err := s.RevokeAdminTokenValue(ctx, v, testActor, allow); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeAdminTokenValue(%s) = %v, want ErrNotFound", name, err)
		}
	}
	events := auditOf(t, s, "credential.revoke")
	if len(events) != 2 || events[1].Object != "alice" || events[1].ObjectType != "admin" ||
		events[1].Details["admin_token_id"] != first.ID || events[1].Details["kind"] != "admin_token" {
		t.Errorf("credential.revoke events = %+v, want two about admin alice, the first naming token %s", events, first.ID)
	}
	assertNotStored(t, s, secret, shortSecret)
	assertNoHashStored(t, s, secret)
}

func testRevokeAccessToken(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "holder"})
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	tok := findToken(t, s, sig)

	got, err := s.RevokeAccessToken(ctx, tok, true, testActor)
	wantRevoked(t, "RevokeAccessToken", got, err, RevokedCredential{Kind: KindAccessToken, OwnerType: "integration",
		Owner: "holder", ClientID: nk.ClientID, TokenID: tok.RequestID, Revoked: true})
	if findToken(t, s, sig) != nil {
		t.Error("the revoked token is still stored")
	}
	if _, err := s.RevokeAccessToken(ctx, tok, true, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAccessToken of a revoked token = %v, want ErrNotFound", err)
	}

	sig = issueToken(t, s, clk, nk.ClientID, time.Hour)
	clk.Advance(2 * time.Hour)
	got, err = s.RevokeAccessToken(ctx, findToken(t, s, sig), false, testActor)
	if err != nil || got.Revoked {
		t.Errorf("RevokeAccessToken of an expired token = %+v, %v; want Revoked false", got, err)
	}
	events := auditOf(t, s, "credential.revoke")
	if len(events) != 2 || events[1].Object != "holder" || events[1].Details["jti"] != tok.RequestID ||
		events[1].Details["client_id"] != nk.ClientID || events[1].Details["revoked"] != true {
		t.Errorf("credential.revoke events = %+v, want two about holder, the first with jti %s", events, tok.RequestID)
	}
	assertNotStored(t, s, sig)
	for _, row := range tableText(t, s, "audit_events") {
		if strings.Contains(row, sig) || strings.Contains(row, tok.Signature) {
			t.Errorf("a token's signature is in the audit log: %s", row)
		}
	}
}
