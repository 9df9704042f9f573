package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"
)

// findAllAudit pages through the events f matches, limit at a time, and
// returns their objects (action:object), newest first.
func findAllAudit(t *testing.T, s *Store, f AuditFilter, limit int) []string {
	t.Helper()
	var got []string
	page := Page{Limit: limit}
	for range 100 {
		events, next, err := s.FindAuditEvents(t.Context(), f, page)
		if err != nil {
			t.Fatalf("FindAuditEvents(%+v, %+v): %v", f, page, err)
		}
		if len(events) > limit {
			t.Fatalf("FindAuditEvents(%+v) gave %d events, more than the limit %d", f, len(events), limit)
		}
		for _, e := range events {
			got = append(got, e.Actor+":"+e.Action+":"+e.Object)
		}
		if next == "" {
			return got
		}
		page.Token = next
	}
	t.Fatalf("FindAuditEvents(%+v) did not end after 100 pages", f)
	return nil
}

func testAuditFilters(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	type ev struct{ actorType, actor, action, objectType, object string }
	evs := []ev{
		{"admin", "alice", "integration.create", "integration", "billing"},
		{"admin", "bob", "integration.update", "integration", "billing"},
		{"admin", "alice", "admin.create", "admin", "billing"}, // an admin named like the integration
		{"integration", "svc", "access_token.revoke", "access_token", "req-1"},
		{"admin", "alice", "integration.update", "integration", "reports"},
		{"admin", "alice", "integration.update", "integration", "billing"},
	}
	at := make([]time.Time, len(evs))
	ids := make([]string, len(evs))
	for i, e := range evs {
		clk.Advance(time.Second)
		at[i] = s.Now()
		ids[i] = e.actor + ":" + e.action + ":" + e.object
		if err := s.audit(s.w.WithContext(ctx), Actor{Type: e.actorType, Name: e.actor}, e.action, e.objectType, e.object, nil); err != nil {
			t.Fatalf("audit: %v", err)
		}
	}
	pick := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, ids[i])
		}
		return out
	}
	tests := []struct {
		name string
		f    AuditFilter
		want []string
	}{
		{"none", AuditFilter{}, pick(5, 4, 3, 2, 1, 0)},
		{"integration", AuditFilter{Integration: "billing"}, pick(5, 1, 0)},
		{"actor", AuditFilter{Actor: "alice"}, pick(5, 4, 2, 0)},
		{"integration actor", AuditFilter{Actor: "svc"}, pick(3)},
		{"action", AuditFilter{Action: "integration.update"}, pick(5, 4, 1)},
		{"since, inclusive", AuditFilter{Since: at[3]}, pick(5, 4, 3)},
		{"until, exclusive", AuditFilter{Until: at[2]}, pick(1, 0)},
		{"since and until", AuditFilter{Since: at[1], Until: at[5]}, pick(4, 3, 2, 1)},
		{"since between microseconds", AuditFilter{Since: at[3].Add(time.Nanosecond)}, pick(5, 4)},
		{"until between microseconds", AuditFilter{Until: at[2].Add(time.Nanosecond)}, pick(2, 1, 0)},
		{"since in another zone", AuditFilter{Since: at[4].In(time.FixedZone("UTC+5", 5*3600))}, pick(5, 4)},
		{"actor and action", AuditFilter{Actor: "alice", Action: "integration.update"}, pick(5, 4)},
		{"integration, actor and action", AuditFilter{Integration: "billing", Actor: "alice", Action: "integration.update"}, pick(5)},
		{"actor and window", AuditFilter{Actor: "alice", Since: at[1], Until: at[5]}, pick(4, 2)},
		{"every filter", AuditFilter{Integration: "billing", Actor: "bob", Action: "integration.update", Since: at[0], Until: at[2]}, pick(1)},
		{"no match", AuditFilter{Actor: "nobody"}, pick()},
		{"disjoint", AuditFilter{Actor: "bob", Action: "admin.create"}, pick()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []int{1, 2, 100} {
				if got := findAllAudit(t, s, tc.f, limit); !slices.Equal(got, tc.want) {
					t.Errorf("limit %d: got %q, want %q", limit, got, tc.want)
				}
			}
		})
	}
	for name, f := range map[string]AuditFilter{
		"until equal to since": {Since: at[2], Until: at[2]},
		"until before since":   {Since: at[3], Until: at[2]},
	} {
		if _, _, err := s.FindAuditEvents(ctx, f, Page{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("FindAuditEvents(%s) = %v, want ErrInvalid", name, err)
		}
	}
	for _, token := range []string{"!", pageToken("42"), pageToken("yesterday 42"), pageToken(at[0].Format(time.RFC3339Nano) + " x")} {
		if _, _, err := s.FindAuditEvents(ctx, AuditFilter{}, Page{Token: token}); !errors.Is(err, ErrInvalid) {
			t.Errorf("FindAuditEvents with page token %q = %v, want ErrInvalid", token, err)
		}
	}

	// Events of one instant are in the order they were written, newest
	// first, and a page boundary between them loses none.
	var same []string
	for i := range 3 {
		object := fmt.Sprintf("same-%d", i)
		same = append([]string{"alice:same.instant:" + object}, same...)
		if err := s.audit(s.w.WithContext(ctx), Actor{Type: "admin", Name: "alice"}, "same.instant", "thing", object, nil); err != nil {
			t.Fatalf("audit: %v", err)
		}
	}
	for _, limit := range []int{1, 2} {
		if got := findAllAudit(t, s, AuditFilter{Action: "same.instant"}, limit); !slices.Equal(got, same) {
			t.Errorf("events of one instant, limit %d: got %q, want %q", limit, got, same)
		}
	}
}

func testAuditAppend(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	clk.Advance(time.Second)
	now := s.Now()
	in := []AuditEvent{
		{ID: 99, Time: now.Add(-time.Hour), ActorType: "anonymous", Actor: "192.0.2.1", Action: "admin.auth_failed",
			ObjectType: "admin_api", RemoteAddr: "192.0.2.1", Details: map[string]any{"count": 3}},
		{ActorType: "anonymous", Actor: "other-addresses", Action: "admin.auth_failed", ObjectType: "admin_api"},
	}
	if err := s.AppendAuditEvents(ctx, in); err != nil {
		t.Fatalf("AppendAuditEvents: %v", err)
	}
	if err := s.AppendAuditEvents(ctx, nil); err != nil {
		t.Fatalf("AppendAuditEvents(nil): %v", err)
	}
	got, _, err := s.ListAuditEvents(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("%d events, want 2", len(got))
	}
	slices.Reverse(got)
	for i, e := range got {
		w := in[i]
		if e.ID == 99 || !e.Time.Equal(now) || e.ActorType != w.ActorType || e.Actor != w.Actor || e.Action != w.Action ||
			e.ObjectType != w.ObjectType || e.RemoteAddr != w.RemoteAddr {
			t.Errorf("event %d = %+v, want %+v with a new ID, at %v", i, e, w, now)
		}
	}
	if got[0].Details["count"] != float64(3) || got[1].Details == nil || len(got[1].Details) != 0 {
		t.Errorf("details = %v, %v; want count 3, and {}", got[0].Details, got[1].Details)
	}
}

// testIntegrationUpdateChanges checks the audit details of every field an
// update can change: old and new value, only for fields that changed.
func testIntegrationUpdateChanges(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	base := IntegrationInput{
		Description: "before", Scopes: []string{"read", "write"}, Audience: []string{"api"},
		TokenLifetimeSeconds: ptr[int64](600), TokenRatePerMinute: ptr[int64](30),
	}
	tests := []struct {
		name  string
		patch IntegrationPatch
		want  string // the details' changes as JSON; "" for no event
	}{
		{"description", IntegrationPatch{Description: ptr("after")}, `{"description":{"new":"after","old":"before"}}`},
		{"scopes", IntegrationPatch{Scopes: &[]string{"read", "admin", "read"}}, `{"scopes":{"new":["read","admin"],"old":["read","write"]}}`},
		{"scopes emptied", IntegrationPatch{Scopes: &[]string{}}, `{"scopes":{"new":[],"old":["read","write"]}}`},
		{"audience", IntegrationPatch{Audience: &[]string{"api", "other"}}, `{"audience":{"new":["api","other"],"old":["api"]}}`},
		{"can introspect", IntegrationPatch{CanIntrospect: ptr(true)}, `{"can_introspect":{"new":true,"old":false}}`},
		{"token lifetime", IntegrationPatch{TokenLifetimeSeconds: ptr[int64](7200)}, `{"token_lifetime_seconds":{"new":7200,"old":600}}`},
		{"token lifetime back to the default", IntegrationPatch{ResetTokenLifetime: true}, `{"token_lifetime_seconds":{"new":null,"old":600}}`},
		{"token rate uncapped", IntegrationPatch{TokenRatePerMinute: ptr[int64](0)}, `{"token_rate_per_minute":{"new":0,"old":30}}`},
		{"token rate back to the default", IntegrationPatch{ResetTokenRate: true}, `{"token_rate_per_minute":{"new":null,"old":30}}`},
		{"only what changed", IntegrationPatch{Description: ptr("before"), Scopes: &[]string{"read", "write"}, CanIntrospect: ptr(true),
			TokenLifetimeSeconds: ptr[int64](600), TokenRatePerMinute: ptr[int64](31)},
			`{"can_introspect":{"new":true,"old":false},"token_rate_per_minute":{"new":31,"old":30}}`},
		{"the same values", IntegrationPatch{Description: ptr("before"), Scopes: &[]string{"read", "write", "read"}, Audience: &[]string{"api"},
			CanIntrospect: ptr(false), TokenLifetimeSeconds: ptr[int64](600), TokenRatePerMinute: ptr[int64](30)}, ""},
		{"nothing", IntegrationPatch{}, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			in.Name = fmt.Sprintf("changes-%d", i)
			created, _ := createIntegration(t, s, in)
			clk.Advance(time.Minute)
			before := len(auditOf(t, s, "integration.update"))
			got, err := s.UpdateIntegration(ctx, in.Name, tc.patch, testActor)
			if err != nil {
				t.Fatalf("UpdateIntegration: %v", err)
			}
			events := auditOf(t, s, "integration.update")
			if tc.want == "" {
				if len(events) != before || !got.UpdatedAt.Equal(created.UpdatedAt) {
					t.Errorf("a patch that changes nothing: %d new events, updated_at %v (was %v); want none, unchanged",
						len(events)-before, got.UpdatedAt, created.UpdatedAt)
				}
				return
			}
			if len(events) != before+1 {
				t.Fatalf("%d new integration.update events, want 1", len(events)-before)
			}
			e := events[0]
			if e.Object != in.Name || len(e.Details) != 1 {
				t.Errorf("event about %q with details %v, want about %q with changes alone", e.Object, e.Details, in.Name)
			}
			if b, _ := json.Marshal(e.Details["changes"]); string(b) != tc.want {
				t.Errorf("changes = %s, want %s", b, tc.want)
			}
		})
	}
}

// testAuditIndexed checks, from the database's own query plans, that the
// audit log's filters and the lookup of a client secret read an index in
// the listing's order instead of the table: the audit log grows without
// bound, and the plans of an empty table are the plans of a full one on
// SQLite, which keeps no statistics. PostgreSQL, which does, is told to
// avoid scans and sorts where it can, so the plan shows whether an index
// can serve the query at all.
func testAuditIndexed(t *testing.T, s *Store, clk *fakeClock) {
	since, until := clk.Now().Add(-time.Hour), clk.Now()
	cursor := timeCursor(clk.Now(), 42)
	tests := []struct {
		name  string
		f     AuditFilter
		index string // the index the plan must use; "" for any
	}{
		{"none", AuditFilter{}, "audit_events_by_time"},
		{"integration", AuditFilter{Integration: "billing"}, "audit_events_by_object_time"},
		{"actor", AuditFilter{Actor: "alice"}, "audit_events_by_actor"},
		{"action", AuditFilter{Action: "integration.update"}, "audit_events_by_action"},
		{"since", AuditFilter{Since: since}, "audit_events_by_time"},
		{"until", AuditFilter{Until: until}, "audit_events_by_time"},
		{"window", AuditFilter{Since: since, Until: until}, "audit_events_by_time"},
		{"actor and action", AuditFilter{Actor: "alice", Action: "integration.update"}, ""},
		{"everything", AuditFilter{Integration: "billing", Actor: "alice", Action: "integration.update", Since: since, Until: until}, ""},
	}
	for _, tc := range tests {
		for _, after := range []string{"", cursor} {
			q, err := auditQuery(s.r.Session(&gorm.Session{DryRun: true}), tc.f, after, 101)
			if err != nil {
				t.Fatalf("auditQuery: %v", err)
			}
			plan := explain(t, s, q.Find(&[]auditRow{}).Statement)
			label := fmt.Sprintf("%s (page token %v)", tc.name, after != "")
			assertIndexed(t, label, plan, "audit_events", tc.index)
		}
	}
	hashes := s.creds.SecretHashes("lk_cs_example")
	q := s.r.Session(&gorm.Session{DryRun: true}).Select("id", "integration_id", "client_id").Where("secret_hash IN ?", hashes)
	assertIndexed(t, "client secret lookup", explain(t, s, q.Take(&KeyPair{}).Statement), "key_pairs", "key_pairs_secret_hash")
}

// explain returns the database's plan of stmt, one line per step.
func explain(t *testing.T, s *Store, stmt *gorm.Statement) []string {
	t.Helper()
	ctx := t.Context()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prefix := "EXPLAIN QUERY PLAN "
	if _, ok := s.dialect.(postgresDialect); ok {
		prefix = "EXPLAIN "
		for _, set := range []string{"SET LOCAL enable_seqscan = off", "SET LOCAL enable_sort = off", "SET LOCAL enable_bitmapscan = off"} {
			if _, err := tx.ExecContext(ctx, set); err != nil {
				t.Fatal(err)
			}
		}
	}
	rows, err := tx.QueryContext(ctx, prefix+stmt.SQL.String(), stmt.Vars...)
	if err != nil {
		t.Fatalf("explain %s: %v", stmt.SQL.String(), err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var plan []string
	for rows.Next() {
		dest := make([]any, len(cols))
		for i := range dest {
			dest[i] = new(any)
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, fmt.Sprint(*dest[len(dest)-1].(*any)))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// assertIndexed fails unless plan reads table through an index (index, if
// set) and needs no sort of its own.
func assertIndexed(t *testing.T, label string, plan []string, table, index string) {
	t.Helper()
	text := strings.Join(plan, "\n")
	bad := strings.Contains(text, "TEMP B-TREE") || // SQLite sorts
		slices.Contains(plan, "SCAN "+table) || // SQLite reads the table
		strings.Contains(text, "Seq Scan") || strings.Contains(text, "Sort") // PostgreSQL
	if bad || (index != "" && !strings.Contains(text, index)) {
		t.Errorf("%s: plan\n%s\nwant an index (%q) read in order", label, text, index)
	}
}
