package server

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// Failed admin authentications are audited as admin.auth_failed events,
// aggregated so that a flood cannot grow the audit log without bound: per
// source address and minute, one event with the count, written after the
// minute ends. At most authFailureAddrs addresses a minute get an event of
// their own; failures from any further address are folded into one
// "other-addresses" event. So a replica writes at most authFailureAddrs+1
// events a minute, whatever the flood, and holds at most that many
// counters for each of at most authFailurePending minutes.
const (
	authFailureAddrs   = 100
	authFailurePending = 10
	// authFailureFlush is how often RunAuthFailureAudit writes the minutes
	// that have ended.
	authFailureFlush = 10 * time.Second
	// authFailureOthers is the actor of the folded event.
	authFailureOthers = "other-addresses"
)

// authFailures counts failed admin authentications until they are
// written. The presented token is never seen here, let alone kept.
type authFailures struct {
	now      func() time.Time
	log      *slog.Logger
	maxAddrs int

	mu      sync.Mutex
	minutes map[time.Time]*failureMinute
}

// failureMinute is one minute's failures: counts by address for the first
// maxAddrs addresses, and the sum of all the others.
type failureMinute struct {
	byAddr map[string]int64
	others int64
}

func newAuthFailures(now func() time.Time, log *slog.Logger, maxAddrs int) *authFailures {
	return &authFailures{now: now, log: log, maxAddrs: maxAddrs, minutes: map[time.Time]*failureMinute{}}
}

// record counts one failed authentication from addr. An IPv6 address
// counts as its /64, as the failure limits count it: a host usually holds
// the whole /64 and could otherwise take a counter per address.
func (a *authFailures) record(addr string) {
	key := addrKey(addr)
	minute := a.now().UTC().Truncate(time.Minute)
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.minutes[minute]
	if m == nil {
		if len(a.minutes) >= authFailurePending {
			// The database has been refusing the writes for minutes; the
			// oldest counts are lost rather than memory.
			oldest := slices.MinFunc(slices.Collect(maps.Keys(a.minutes)), time.Time.Compare)
			delete(a.minutes, oldest)
			a.log.Warn("admin authentication failures: could not audit a minute's failures; dropped", "minute", oldest)
		}
		m = &failureMinute{byAddr: map[string]int64{}}
		a.minutes[minute] = m
	}
	switch _, known := m.byAddr[key]; {
	case known || len(m.byAddr) < a.maxAddrs:
		m.byAddr[key]++
	default:
		m.others++
	}
}

// take removes and returns the minutes that have ended, or every minute
// when all is set.
func (a *authFailures) take(all bool) map[time.Time]*failureMinute {
	current := a.now().UTC().Truncate(time.Minute)
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[time.Time]*failureMinute{}
	for t, m := range a.minutes {
		if all || t.Before(current) {
			out[t] = m
			delete(a.minutes, t)
		}
	}
	return out
}

// putBack returns minutes whose write failed, to be written with the next
// flush; counts that arrived for them meanwhile are added up, within the
// same bounds as record's.
func (a *authFailures) putBack(minutes map[time.Time]*failureMinute) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t, m := range minutes {
		cur := a.minutes[t]
		if cur == nil {
			if len(a.minutes) >= authFailurePending {
				continue
			}
			a.minutes[t] = m
			continue
		}
		cur.others += m.others
		for addr, n := range m.byAddr {
			if _, known := cur.byAddr[addr]; known || len(cur.byAddr) < a.maxAddrs {
				cur.byAddr[addr] += n
			} else {
				cur.others += n
			}
		}
	}
}

// authFailureEvents turns minutes into audit events, oldest minute first and, within
// one, by address.
func authFailureEvents(minutes map[time.Time]*failureMinute) []storage.AuditEvent {
	var out []storage.AuditEvent
	for _, t := range slices.SortedFunc(maps.Keys(minutes), time.Time.Compare) {
		m := minutes[t]
		event := func(actor, remote string, count int64) storage.AuditEvent {
			return storage.AuditEvent{ActorType: "anonymous", Actor: actor, RemoteAddr: remote,
				Action: "admin.auth_failed", ObjectType: "admin_api",
				Details: map[string]any{"count": count, "minute": t.Format(time.RFC3339)}}
		}
		for _, addr := range slices.Sorted(maps.Keys(m.byAddr)) {
			out = append(out, event(addr, addr, m.byAddr[addr]))
		}
		if m.others > 0 {
			e := event(authFailureOthers, "", m.others)
			e.Details["beyond_first_addresses"] = len(m.byAddr)
			out = append(out, e)
		}
	}
	return out
}

// FlushAuthFailures writes the failed admin authentications of every
// minute that has ended as admin.auth_failed audit events. What it cannot
// write is kept for the next flush.
func (s *Server) FlushAuthFailures(ctx context.Context) error {
	return s.flushAuthFailures(ctx, false)
}

func (s *Server) flushAuthFailures(ctx context.Context, all bool) error {
	minutes := s.authFailures.take(all)
	if len(minutes) == 0 {
		return nil
	}
	if err := s.store.AppendAuditEvents(ctx, authFailureEvents(minutes)); err != nil {
		s.authFailures.putBack(minutes)
		return err
	}
	return nil
}

// RunAuthFailureAudit flushes the failed admin authentications every few
// seconds until ctx ends, and then once more, the minute in progress
// included, so a replica that stops loses none. Run it while the store is
// open and stop it before closing the store.
func (s *Server) RunAuthFailureAudit(ctx context.Context) {
	t := time.NewTicker(authFailureFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.flushAuthFailures(final, true); err != nil {
				s.log.Warn("admin authentication failures: could not audit them at shutdown", "err", err)
			}
			return
		case <-t.C:
		}
		if err := s.FlushAuthFailures(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("admin authentication failures: could not audit them; retrying", "err", err)
		}
	}
}
