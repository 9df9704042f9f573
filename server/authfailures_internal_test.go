package server

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// TestAuthFailuresMemoryBound: however many addresses fail, and however
// long the audit log cannot be written, the counters stay within
// maxAddrs per minute and authFailurePending minutes.
func TestAuthFailuresMemoryBound(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAuthFailures(func() time.Time { return now }, slog.New(slog.DiscardHandler), 100)
	for m := range 3 * authFailurePending {
		for i := range 5000 {
			a.record(fmt.Sprintf("10.%d.%d.%d", m%250, i/250, i%250))
		}
		now = now.Add(time.Minute)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.minutes) > authFailurePending {
		t.Errorf("%d minutes held, want at most %d", len(a.minutes), authFailurePending)
	}
	for minute, m := range a.minutes {
		if len(m.byAddr) > 100 || m.others != 5000-100 {
			t.Errorf("%v: %d addresses and %d folded failures, want 100 and %d", minute, len(m.byAddr), m.others, 5000-100)
		}
	}
}
