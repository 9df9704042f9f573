package storage

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// testIntegrationFind lists 160 integrations, the scale a platform team
// has, in every order, a few at a time, and narrows them by what an admin
// searches with: part of a name or description in any case, a scope, a
// client ID pasted from a log (the current pair's or, during a grace, the
// previous one's).
func testIntegrationFind(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	const n = 160
	var names []string
	for i := range n {
		name := fmt.Sprintf("svc-%03d", (i*37)%n) // created out of name order
		in := IntegrationInput{Name: name, Description: fmt.Sprintf("Team %d job", i%4), Scopes: []string{fmt.Sprintf("area%d:read", i%5)}}
		if i == 7 {
			in.Description = "100%_literal"
		}
		createIntegration(t, s, in)
		names = append(names, name)
		if i%3 == 2 { // threes share a creation time: the ID orders them
			clk.Advance(time.Millisecond)
		}
	}
	deleted, _ := createIntegration(t, s, IntegrationInput{Name: "svc-deleted", Description: "Team 1 job"})
	if err := s.DeleteIntegration(ctx, deleted.Name, testActor); err != nil {
		t.Fatal(err)
	}
	byName := slices.Sorted(slices.Values(names))

	all := func(q IntegrationQuery) ([]string, int64) {
		t.Helper()
		var got []string
		var total int64
		p := Page{Limit: 7}
		for range n {
			igs, next, tot, err := s.FindIntegrations(ctx, q, p)
			if err != nil {
				t.Fatalf("FindIntegrations(%+v, %+v): %v", q, p, err)
			}
			total = tot
			for _, ig := range igs {
				got = append(got, ig.Name)
			}
			if next == "" {
				return got, total
			}
			p.Token = next
		}
		t.Fatalf("FindIntegrations(%+v): more pages than integrations", q)
		return nil, 0
	}
	for sort, want := range map[string][]string{
		"":            byName,
		"name":        byName,
		"-name":       reversed(byName),
		"created_at":  names,
		"-created_at": reversed(names),
	} {
		got, total := all(IntegrationQuery{Sort: sort})
		if !slices.Equal(got, want) || total != n {
			t.Errorf("sort %q: %d names, total %d; want all %d in order (first %v, want %v)", sort, len(got), total, n, head(got), head(want))
		}
	}

	before := getIntegration(t, s, "svc-101").KeyPair.ClientID
	after := regenerate(t, s, "svc-101", time.Hour).ClientID
	for _, tc := range []struct {
		q    string
		want func(name string, i int) bool
	}{
		{"SVC-04", func(name string, _ int) bool { return strings.HasPrefix(name, "svc-04") }},
		{"team 2", func(_ string, i int) bool { return i%4 == 2 && i != 7 }},
		{"area3:read", func(_ string, i int) bool { return i%5 == 3 }},
		{"100%_", func(_ string, i int) bool { return i == 7 }},
		{"svc%9", func(string, int) bool { return false }}, // % is itself, not a wildcard
		{"svc_0", func(string, int) bool { return false }}, // and so is _
		{after, func(name string, _ int) bool { return name == "svc-101" }},
		{before, func(name string, _ int) bool { return name == "svc-101" }}, // the pair in its grace
		{after[:len(after)-1], func(string, int) bool { return false }},      // a client ID matches whole
	} {
		var want []string
		for i, name := range names {
			if tc.want(name, i) {
				want = append(want, name)
			}
		}
		slices.Sort(want)
		got, total := all(IntegrationQuery{Search: tc.q})
		if !slices.Equal(got, want) || total != int64(len(want)) {
			t.Errorf("q %q: %v (total %d), want %v", tc.q, got, total, want)
		}
	}

	if _, _, _, err := s.FindIntegrations(ctx, IntegrationQuery{Sort: "updated_at"}, Page{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("sort updated_at: %v, want ErrInvalid", err)
	}
	_, next, _, err := s.FindIntegrations(ctx, IntegrationQuery{Sort: "name"}, Page{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.FindIntegrations(ctx, IntegrationQuery{Sort: "-created_at"}, Page{Token: next}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a name-order page token with sort -created_at: %v, want ErrInvalid", err)
	}
}

func head(s []string) []string { return s[:min(3, len(s))] }

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}
