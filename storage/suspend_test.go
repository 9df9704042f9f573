package storage

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// setDisabled suspends (true) or enables (false) the integration called
// name.
func setDisabled(t *testing.T, s *Store, name string, disabled bool) *Integration {
	t.Helper()
	ig, err := s.UpdateIntegration(t.Context(), name, IntegrationPatch{Disabled: &disabled}, testActor)
	if err != nil {
		t.Fatalf("UpdateIntegration(%q, disabled %v): %v", name, disabled, err)
	}
	return ig
}

// testIntegrationDisable suspends an integration and enables it again. The
// store changes no pair or token: every lookup, on every replica, reports
// the integration disabled (server/oauth refuses), no token can be stored
// for it meanwhile, and enabling it reports everything as it was.
func testIntegrationDisable(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	b := replicaOf(t, s)
	_, nk := createIntegration(t, s, IntegrationInput{Name: "paused", Scopes: []string{"read"}})
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	short := issueToken(t, s, clk, nk.ClientID, time.Minute)
	if c := getClient(t, s, nk.ClientID); c.Integration.Disabled {
		t.Fatal("a new integration is reported disabled")
	}

	clk.Advance(time.Second)
	if ig := setDisabled(t, s, "paused", true); !ig.Disabled {
		t.Errorf("UpdateIntegration returned Disabled = false after disabling")
	}
	// Every read the server makes reports it, on this store and another
	// replica's: GetClient (the pair is still found, so the server can
	// check its secret), GetToken, GetIntegration and the listing.
	for _, st := range []struct {
		name string
		s    *Store
	}{{"A", s}, {"B", b}} {
		if c := findClient(t, st.s, nk.ClientID); c == nil || !c.Integration.Disabled {
			t.Errorf("%s: GetClient found the pair: %v; want it found, its integration disabled", st.name, c != nil)
		}
		if tok := findToken(t, st.s, sig); tok == nil || !tok.Owner.Integration.Disabled {
			t.Errorf("%s: GetToken found the token: %v; want it found, its owner's integration disabled", st.name, tok != nil)
		}
		if !getIntegration(t, st.s, "paused").Disabled {
			t.Errorf("%s: GetIntegration reports Disabled = false", st.name)
		}
		igs, _, err := st.s.ListIntegrations(ctx, Page{})
		if err != nil || len(igs) != 1 || !igs[0].Disabled {
			t.Errorf("%s: ListIntegrations = %v, %v; want paused, disabled", st.name, igs, err)
		}
		if clientWorks(t, st.s, nk.ClientID) || tokenActive(t, st.s, sig) {
			t.Errorf("%s: the pair or its token works while the integration is disabled", st.name)
		}
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM key_pairs WHERE client_id = ? AND expires_at IS NULL", nk.ClientID); got != 1 {
		t.Errorf("disabling changed the key pair: %d current rows of it, want 1", got)
	}

	// The guarded insert refuses, whichever replica stores the token,
	// even for a pair read before the suspension.
	for _, st := range []*Store{s, b} {
		tok := newToken(getClient(t, st, nk.ClientID), clk.Now(), time.Hour)
		if err := st.CreateToken(ctx, tok, clk.Now()); !errors.Is(err, ErrKeyPairChanged) {
			t.Errorf("CreateToken while disabled = %v, want ErrKeyPairChanged", err)
		}
	}

	clk.Advance(time.Minute)
	if ig := setDisabled(t, b, "paused", false); ig.Disabled {
		t.Errorf("UpdateIntegration returned Disabled = true after enabling")
	}
	if !clientWorks(t, s, nk.ClientID) || !tokenActive(t, s, sig) {
		t.Error("the pair or its unexpired token does not work again after enabling")
	}
	if tokenActive(t, s, short) {
		t.Error("a token that expired during the suspension is active after enabling")
	}
	issueToken(t, s, clk, nk.ClientID, time.Hour)

	events, _, err := s.ListAuditEvents(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	var got []string
	for _, e := range events {
		if e.Action == "integration.update" {
			got = append(got, fmt.Sprint(e.Details["changes"]))
		}
	}
	// Newest first: the enabling, then the suspension.
	if want := []string{"map[disabled:map[new:false old:true]]", "map[disabled:map[new:true old:false]]"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("integration.update details = %q, want %q", got, want)
	}

	// The previous release names only the columns it knows: what it
	// creates is enabled.
	if err := s.w.WithContext(ctx).Exec(`INSERT INTO integrations (name, description, scopes, audience, can_introspect, created_by, created_at, updated_at)
		VALUES (?, '', '', '', ?, 'old', ?, ?)`, "old-release", false, s.Now(), s.Now()).Error; err != nil {
		t.Fatalf("the previous release's INSERT: %v", err)
	}
	if getIntegration(t, s, "old-release").Disabled {
		t.Error("an integration the previous release created is disabled")
	}
}

// testTouchKeyPair records a pair's use outside token requests: once per
// lastUsedWriteResolution, however often it is asked, and never moving
// the recorded time back.
func testTouchKeyPair(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "touched"})
	lastUsed := func() *time.Time {
		t.Helper()
		return getClient(t, s, nk.ClientID).LastUsedAt
	}
	touch := func(c *Client) {
		t.Helper()
		if err := s.TouchKeyPair(ctx, c, clk.Now()); err != nil {
			t.Fatalf("TouchKeyPair: %v", err)
		}
	}

	first := s.Now()
	touch(getClient(t, s, nk.ClientID))
	if got := lastUsed(); got == nil || !got.Equal(first) {
		t.Fatalf("LastUsedAt = %v after the first use, want %v", got, first)
	}

	// Within the resolution nothing moves: not for a caller that read
	// the recorded use, nor for one that read the pair before it was
	// recorded (two requests racing past a stale LastUsedAt).
	clk.Advance(lastUsedWriteResolution - time.Second)
	touch(getClient(t, s, nk.ClientID))
	stale := getClient(t, s, nk.ClientID)
	stale.LastUsedAt = nil
	touch(stale)
	if got := lastUsed(); got == nil || !got.Equal(first) {
		t.Errorf("LastUsedAt = %v within a minute of the last use, want it to stay %v", got, first)
	}

	clk.Advance(time.Second)
	touch(getClient(t, s, nk.ClientID))
	if got := lastUsed(); got == nil || !got.Equal(s.Now()) {
		t.Errorf("LastUsedAt = %v a minute after the last use, want %v", got, s.Now())
	}
	if kp := getIntegration(t, s, "touched").KeyPair; kp.LastUsedAt == nil || !kp.LastUsedAt.Equal(s.Now()) {
		t.Errorf("GetIntegration: key pair LastUsedAt = %v, want %v", kp.LastUsedAt, s.Now())
	}

	// A use recorded within the resolution costs no statement at all:
	// even a closed store takes it. A stale one is written, and fails.
	recent := getClient(t, s, nk.ClientID)
	s.Close()
	if err := s.TouchKeyPair(ctx, recent, clk.Now()); err != nil {
		t.Errorf("TouchKeyPair of a pair used just now = %v, want nil without asking the database", err)
	}
	recent.LastUsedAt = nil
	if err := s.TouchKeyPair(ctx, recent, clk.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("TouchKeyPair of a pair never used, on a closed store = %v, want ErrUnavailable", err)
	}
}
