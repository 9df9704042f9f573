package storage

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// testIntegrationTokens: ListIntegrationTokens pages through the tokens of
// every pair of one integration, newest first and ties in issue time by
// request ID, each with the pair it was issued to, never another
// integration's and never its signature.
func testIntegrationTokens(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	createIntegration(t, s, IntegrationInput{Name: "busy", Scopes: []string{"read", "write"}, Audience: []string{"api"}})
	first := getIntegration(t, s, "busy").KeyPair
	_, other := createIntegration(t, s, IntegrationInput{Name: "other"})

	type issued struct {
		req, clientID string
		at            time.Time
	}
	var want []issued
	issue := func(clientID string, lifetime time.Duration) {
		t.Helper()
		tok := newToken(getClient(t, s, clientID), clk.Now(), lifetime)
		if err := s.CreateToken(ctx, tok, clk.Now()); err != nil {
			t.Fatalf("CreateToken for %s: %v", clientID, err)
		}
		want = append(want, issued{tok.RequestID, clientID, clk.Now().UTC().Truncate(time.Microsecond)})
	}
	// Tokens issued in the same microsecond, as a busy pair's are, two
	// at a time.
	for i := range 6 {
		issue(first.ClientID, time.Hour)
		if i%2 == 1 {
			clk.Advance(time.Second)
		}
	}
	issueToken(t, s, clk, other.ClientID, time.Hour)
	second := regenerate(t, s, "busy", time.Hour)
	// The pair in grace and the new one, at the same instant.
	issue(first.ClientID, 30*time.Minute)
	issue(second.ClientID, time.Hour)
	for range 3 {
		clk.Advance(time.Millisecond)
		issue(second.ClientID, time.Hour)
	}
	slices.SortFunc(want, func(a, b issued) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return strings.Compare(b.req, a.req)
	})

	for _, limit := range []int{1, 2, 3, len(want), 100} {
		var got []issued
		pages := 0
		page := Page{Limit: limit}
		for {
			toks, next, err := s.ListIntegrationTokens(ctx, "busy", page)
			if err != nil {
				t.Fatalf("ListIntegrationTokens(limit %d, page %d): %v", limit, pages, err)
			}
			pages++
			if len(toks) > limit {
				t.Errorf("limit %d: a page of %d", limit, len(toks))
			}
			for _, tok := range toks {
				if tok.Signature != "" {
					t.Errorf("a listed token carries its signature %q", tok.Signature)
				}
				if tok.Owner == nil || tok.Owner.Integration.Name != "busy" {
					t.Fatalf("token %s listed with owner %+v, want a pair of busy", tok.RequestID, tok.Owner)
				}
				if !slices.Equal(tok.Scopes, []string{"read", "write"}) || !slices.Equal(tok.Audience, []string{"api"}) {
					t.Errorf("token %s: scopes %q, audience %q; want [read write], [api]", tok.RequestID, tok.Scopes, tok.Audience)
				}
				if wantGrace := tok.Owner.ClientID == first.ClientID; (tok.Owner.ExpiresAt != nil) != wantGrace {
					t.Errorf("token %s of %s: owner's ExpiresAt %v; want the grace deadline for the old pair only",
						tok.RequestID, tok.Owner.ClientID, tok.Owner.ExpiresAt)
				}
				if !tok.ExpiresAt.After(tok.IssuedAt) {
					t.Errorf("token %s: issued %v, expires %v", tok.RequestID, tok.IssuedAt, tok.ExpiresAt)
				}
				got = append(got, issued{tok.RequestID, tok.Owner.ClientID, tok.IssuedAt})
			}
			if next == "" {
				break
			}
			if pages > len(want)+1 {
				t.Fatalf("limit %d: more pages than tokens", limit)
			}
			page.Token = next
		}
		if !slices.EqualFunc(got, want, func(a, b issued) bool { return a.req == b.req && a.clientID == b.clientID && a.at.Equal(b.at) }) {
			t.Errorf("limit %d: listed\n%v\nwant newest first, ties by request ID\n%v", limit, got, want)
		}
		if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}

	if toks, next, err := s.ListIntegrationTokens(ctx, "other", Page{}); err != nil || len(toks) != 1 || next != "" {
		t.Errorf("other's tokens = %d, %q, %v; want its one token", len(toks), next, err)
	}
	if _, _, err := s.ListIntegrationTokens(ctx, "nope", Page{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("tokens of an unknown integration: %v, want ErrNotFound", err)
	}
	for _, token := range []string{"!!!", pageToken("no-time"), pageToken("2026-01-02T03:04:05Z"), pageToken("yesterday req-1")} {
		if _, _, err := s.ListIntegrationTokens(ctx, "busy", Page{Token: token}); !errors.Is(err, ErrInvalid) {
			t.Errorf("ListIntegrationTokens(page token %q) = %v, want ErrInvalid", token, err)
		}
	}
	if err := s.DeleteIntegration(ctx, "busy", testActor); err != nil {
		t.Fatalf("DeleteIntegration: %v", err)
	}
	if _, _, err := s.ListIntegrationTokens(ctx, "busy", Page{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("tokens of a deleted integration: %v, want ErrNotFound", err)
	}
}

// testIntegrationTokensIndexed checks from the database's plans that a
// page of a pair's tokens is read in order from an index, whatever its
// size: at most the tokens sharing one issue time are sorted (by request
// ID), never all of the pair's. See testAuditIndexed for why plans.
func testIntegrationTokensIndexed(t *testing.T, s *Store, clk *fakeClock) {
	fullSort := regexp.MustCompile(`TEMP B-TREE FOR ORDER BY|(^|->\s+)Sort\s+\(`)
	for _, token := range []string{"", pageToken(textTimeCursor(clk.Now(), "req-1"))} {
		q, err := pageQuery(tokensOfPair(s.r.Session(&gorm.Session{DryRun: true}), 1), Page{Limit: 100, Token: token}, tokensByIssue)
		if err != nil {
			t.Fatalf("pageQuery: %v", err)
		}
		plan := explain(t, s, q.Find(&[]accessTokenRow{}).Statement)
		text := strings.Join(plan, "\n")
		bad := slices.Contains(plan, "SCAN access_tokens") || strings.Contains(text, "Seq Scan")
		for _, line := range plan {
			bad = bad || fullSort.MatchString(strings.TrimSpace(line))
		}
		if bad || !strings.Contains(text, "access_tokens_key_pair_issued") {
			t.Errorf("a pair's tokens (page token %v): plan\n%s\nwant access_tokens_key_pair_issued read in order", token != "", text)
		}
	}
}
