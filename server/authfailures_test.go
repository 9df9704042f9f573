package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
)

// behindProxy makes the test client, on 127.0.0.1, a trusted proxy, so
// X-Forwarded-For sets each request's source address.
func behindProxy(o *server.Options) {
	o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
}

// adminFrom calls GET /admin/tokens from addr with token ("" for none)
// and returns the status.
func (e *env) adminFrom(addr, token string) int {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.adminURL()+"/admin/tokens", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", addr)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	status, _, _ := e.do(req)
	return status
}

// authFailedEvents lists the admin.auth_failed events, newest first.
func (e *env) authFailedEvents() []map[string]any {
	e.t.Helper()
	items, _ := e.listAll(testBootstrap, "/admin/audit?action=admin.auth_failed")
	return items
}

func (e *env) flushAuthFailures() {
	e.t.Helper()
	if err := e.server.FlushAuthFailures(context.Background()); err != nil {
		e.t.Fatalf("FlushAuthFailures: %v", err)
	}
}

func TestAuthFailureAudit(t *testing.T) {
	e := newEnv(t, behindProxy)
	e.failOnServerErrors()
	e.clock.Advance(time.Minute - time.Duration(e.clock.Now().Second())*time.Second - time.Duration(e.clock.Now().Nanosecond()))
	minute := e.now().Truncate(time.Minute)
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)

	var presented []string
	fail := func(addr string, n int) {
		for range n {
			tok := credential.NewAdminToken()
			presented = append(presented, tok)
			if status := e.adminFrom(addr, tok); status != http.StatusUnauthorized {
				t.Fatalf("a wrong admin token from %s: %d, want 401", addr, status)
			}
		}
	}
	fail("192.0.2.1", 3)
	fail("192.0.2.2", 1)
	fail("2001:db8:1:2::1", 1)
	fail("2001:db8:1:2::ffff", 1) // the same /64
	if status := e.adminFrom("192.0.2.1", flipLast(alice)); status != http.StatusUnauthorized {
		t.Fatalf("a mistyped admin token: %d, want 401", status)
	}
	presented = append(presented, flipLast(alice))
	// Neither a right token nor no token at all is a failed authentication.
	if status := e.adminFrom("192.0.2.3", alice); status != http.StatusOK {
		t.Fatalf("alice's token: %d, want 200", status)
	}
	if status := e.adminFrom("192.0.2.4", ""); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", status)
	}

	// Nothing is written while the minute lasts.
	e.clock.Advance(59 * time.Second)
	e.flushAuthFailures()
	if got := e.authFailedEvents(); len(got) != 0 {
		t.Fatalf("admin.auth_failed events during the minute: %v, want none yet", got)
	}

	e.clock.Advance(time.Second)
	fail("192.0.2.1", 2) // the next minute
	// A write that fails keeps the counts for the next flush.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.server.FlushAuthFailures(cancelled); err == nil {
		t.Fatal("FlushAuthFailures with a cancelled context succeeded")
	}
	e.flushAuthFailures()
	got := e.authFailedEvents()
	want := map[string]float64{"192.0.2.1": 4, "192.0.2.2": 1, "2001:db8:1:2::/64": 2}
	if len(got) != len(want) {
		t.Fatalf("admin.auth_failed events = %v, want one for each of %v", got, want)
	}
	for _, ev := range got {
		addr := fmt.Sprint(ev["actor"])
		d := ev["details"].(map[string]any)
		if ev["actor_type"] != "anonymous" || ev["remote_addr"] != addr || d["count"] != want[addr] || d["minute"] != minute.Format(time.RFC3339) {
			t.Errorf("event %v, want from %s, count %v, minute %s", ev, addr, want[addr], minute.Format(time.RFC3339))
		}
	}
	e.flushAuthFailures()
	if n := len(e.authFailedEvents()); n != 3 {
		t.Errorf("a second flush: %d events, want still 3", n)
	}

	// The next minute's two failures are written when it ends, or when
	// the server stops.
	ctx, stop := context.WithCancel(context.Background())
	stop()
	e.server.RunAuthFailureAudit(ctx)
	got = e.authFailedEvents()
	if len(got) != 4 || got[0]["actor"] != "192.0.2.1" || got[0]["details"].(map[string]any)["count"] != float64(2) {
		t.Errorf("after stopping: newest event %v of %d, want 192.0.2.1's 2 failures of the minute in progress", got[0], len(got))
	}

	all, _ := json.Marshal(e.authFailedEvents())
	for _, tok := range presented {
		for _, needle := range []string{tok, tok[len(credential.AdminTokenPrefix):][:16]} {
			if strings.Contains(string(all), needle) || strings.Contains(auditTableText(t, e), needle) || strings.Contains(e.logs.String(), needle) {
				t.Errorf("a presented admin token is recorded: %q", needle)
			}
		}
	}
}

// TestAuthFailureAuditBounded floods the admin API with wrong tokens from
// thousands of addresses: each minute still writes at most one event per
// address for the first addresses and one for all the others, and no
// failure goes uncounted.
func TestAuthFailureAuditBounded(t *testing.T) {
	e := newEnv(t, behindProxy)
	e.failOnServerErrors()
	e.clock.Advance(time.Minute - time.Duration(e.clock.Now().Second())*time.Second - time.Duration(e.clock.Now().Nanosecond()))
	const perMinute = 2500
	const maxRows = 101 // the first 100 addresses and one for the rest
	tok := credential.NewAdminToken()
	for m := range 2 {
		for i := range perMinute {
			addr := fmt.Sprintf("10.%d.%d.%d", m, i/250, i%250)
			if status := e.adminFrom(addr, tok); status != http.StatusUnauthorized {
				t.Fatalf("%s: %d, want 401", addr, status)
			}
			if i%500 == 0 {
				e.adminFrom("192.0.2.1", tok) // an address seen every minute, early
			}
		}
		e.clock.Advance(time.Minute)
		e.flushAuthFailures()
	}

	byMinute := map[string][]map[string]any{}
	for _, ev := range e.authFailedEvents() {
		d := ev["details"].(map[string]any)
		byMinute[fmt.Sprint(d["minute"])] = append(byMinute[fmt.Sprint(d["minute"])], ev)
	}
	if len(byMinute) != 2 {
		t.Fatalf("events for %d minutes, want 2", len(byMinute))
	}
	for minute, events := range byMinute {
		var total, others float64
		seen := map[string]bool{}
		for _, ev := range events {
			d := ev["details"].(map[string]any)
			total += d["count"].(float64)
			if ev["actor"] == "other-addresses" {
				others += d["count"].(float64)
				if d["beyond_first_addresses"] != float64(100) {
					t.Errorf("%s: the folded event's details %v, want beyond_first_addresses 100", minute, d)
				}
				continue
			}
			if seen[fmt.Sprint(ev["actor"])] {
				t.Errorf("%s: two events for %v", minute, ev["actor"])
			}
			seen[fmt.Sprint(ev["actor"])] = true
		}
		if len(events) != maxRows {
			t.Errorf("%s: %d events, want %d", minute, len(events), maxRows)
		}
		if want := float64(perMinute + 5); total != want || others != want-float64(len(events)-1)-4 {
			t.Errorf("%s: %v failures counted, %v of them folded; want %v, %v", minute, total, others, want, want-float64(len(events)-1)-4)
		}
		if !seen["192.0.2.1"] {
			t.Errorf("%s: no event of its own for 192.0.2.1, among the first addresses", minute)
		}
	}
}
