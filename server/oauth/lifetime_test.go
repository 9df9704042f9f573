package oauth

import (
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage"
)

func ptr[T any](v T) *T { return &v }

func TestLifetimeDecisions(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	p := &Provider{opts: Options{TokenLifetime: 10 * time.Hour}}
	pair := func(deadline *time.Time, lifetime *int64) *storage.Client {
		return &storage.Client{ExpiresAt: deadline, Integration: storage.Integration{TokenLifetimeSeconds: lifetime}}
	}

	t.Run("expiry", func(t *testing.T) {
		tests := []struct {
			name string
			c    *storage.Client
			want time.Time
		}{
			{"current pair, server default", pair(nil, nil), now.Add(10 * time.Hour)},
			{"current pair, own lifetime", pair(nil, ptr[int64](600)), now.Add(10 * time.Minute)},
			{"grace deadline before the lifetime ends", pair(ptr(now.Add(time.Hour)), nil), now.Add(time.Hour)},
			{"grace deadline after the lifetime ends", pair(ptr(now.Add(20*time.Hour)), ptr[int64](600)), now.Add(10 * time.Minute)},
		}
		for _, tc := range tests {
			if got := p.expiry(tc.c, now); !got.Equal(tc.want) {
				t.Errorf("%s: expiry = %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	disabled := func(c *storage.Client) *storage.Client {
		c.Integration.Disabled = true
		return c
	}

	t.Run("works", func(t *testing.T) {
		tests := []struct {
			name       string
			c          *storage.Client
			wantInTerm bool
			wantWorks  bool
		}{
			{"current pair", pair(nil, nil), true, true},
			{"in its grace period", pair(ptr(now.Add(time.Nanosecond)), nil), true, true},
			{"at its deadline", pair(ptr(now), nil), false, false},
			{"revoked", pair(ptr(now.Add(-time.Hour)), nil), false, false},
			// In term, so its secret is checked, and refused once it is.
			{"current pair, integration disabled", disabled(pair(nil, nil)), true, false},
			{"in its grace period, integration disabled", disabled(pair(ptr(now.Add(time.Hour)), nil)), true, false},
			{"revoked, integration disabled", disabled(pair(ptr(now.Add(-time.Hour)), nil)), false, false},
		}
		for _, tc := range tests {
			if got := inTerm(tc.c, now); got != tc.wantInTerm {
				t.Errorf("%s: inTerm = %v, want %v", tc.name, got, tc.wantInTerm)
			}
			if got := works(tc.c, now); got != tc.wantWorks {
				t.Errorf("%s: works = %v, want %v", tc.name, got, tc.wantWorks)
			}
		}
	})

	t.Run("active", func(t *testing.T) {
		tests := []struct {
			name      string
			expires   time.Time
			deadline  *time.Time
			disabled  bool
			wantOK    bool
			wantUntil time.Time
		}{
			{"unexpired, current pair", now.Add(time.Hour), nil, false, true, now.Add(time.Hour)},
			{"at its expiry", now, nil, false, false, time.Time{}},
			{"expired", now.Add(-time.Second), nil, false, false, time.Time{}},
			{"pair in grace, deadline first", now.Add(time.Hour), ptr(now.Add(time.Minute)), false, true, now.Add(time.Minute)},
			{"pair in grace, token first", now.Add(time.Minute), ptr(now.Add(time.Hour)), false, true, now.Add(time.Minute)},
			{"pair past its deadline", now.Add(time.Hour), ptr(now), false, false, time.Time{}},
			{"unexpired, integration disabled", now.Add(time.Hour), nil, true, false, time.Time{}},
			{"pair in grace, integration disabled", now.Add(time.Hour), ptr(now.Add(time.Minute)), true, false, time.Time{}},
		}
		for _, tc := range tests {
			tok := &storage.Token{ExpiresAt: tc.expires, Owner: pair(tc.deadline, nil)}
			tok.Owner.Integration.Disabled = tc.disabled
			until, ok := active(tok, now)
			if ok != tc.wantOK || !until.Equal(tc.wantUntil) {
				t.Errorf("%s: active = %v, %v; want %v, %v", tc.name, until, ok, tc.wantUntil, tc.wantOK)
			}
		}
	})
}
