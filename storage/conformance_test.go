package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server/oauth/credential"
)

// This file is the storage contract as executable tests. Every backend runs
// runConformance against a fresh, migrated Store per subtest; nothing here
// may assume a particular database. Raw SQL is limited to portable
// statements with ? placeholders, which gorm rewrites per dialect.

// fakeClock is the store's clock in tests: it moves only when told to, so
// expiry and grace deadlines are crossed without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	// Nanoseconds on purpose: the store keeps microseconds, which every
	// backend can store, and must truncate consistently.
	return &fakeClock{t: time.Date(2031, time.March, 14, 15, 9, 26, 535897932, time.UTC)}
}

// Now returns the current fake time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type conformanceTest struct {
	name string
	run  func(t *testing.T, s *Store, clk *fakeClock)
}

// runConformance runs every Store behaviour against stores made by
// newStore, which must return a migrated, empty store on a fresh database
// that reads its time from now, and close it when the test ends. A subtest
// may close the store itself first, so closing twice must be harmless.
func runConformance(t *testing.T, newStore func(t *testing.T, now func() time.Time) *Store) {
	tests := []conformanceTest{
		{"Migrate/SecondRunAppliesNothing", testMigrateIdempotent},
		{"Migrate/RecordsEveryFile", testMigrateRecordsEveryFile},
		{"Migrate/SeededDataSurvives", testMigrateSeededDataSurvives},
		{"Migrate/NewerSchema", testMigrateNewerSchema},
		{"Migrate/Roles", testMigrateRoles},

		{"Integration/Create", testIntegrationCreate},
		{"Integration/CreateStoresOnlyHash", testIntegrationCreateStoresOnlyHash},
		{"Integration/CreateConflict", testIntegrationCreateConflict},
		{"Integration/CreateInvalid", testIntegrationCreateInvalid},
		{"Integration/List", testIntegrationList},
		{"Integration/Find", testIntegrationFind},
		{"Integration/Update", testIntegrationUpdate},
		{"Integration/UpdateErrors", testIntegrationUpdateErrors},
		{"Integration/Delete", testIntegrationDelete},
		{"Integration/DeleteSeenByPreviousRelease", testIntegrationDeleteSeenByPreviousRelease},
		{"Integration/Audit", testIntegrationAudit},
		{"Integration/Disable", testIntegrationDisable},
		{"Integration/UpdateChanges", testIntegrationUpdateChanges},
		{"Integration/Keyless", testIntegrationKeyless},
		{"Integration/KeylessInvalid", testIntegrationKeylessInvalid},
		{"Integration/SwitchToKeys", testIntegrationSwitchToKeys},

		{"Client/Get", testClientGet},
		{"Client/GetNotFound", testClientGetNotFound},
		{"Client/RegenerateImmediate", testRegenerateImmediate},
		{"Client/RegenerateWithGrace", testRegenerateWithGrace},
		{"Client/RegenerateDuringGrace", testRegenerateDuringGrace},
		{"Client/RegenerateErrors", testRegenerateErrors},
		{"Client/EndGrace", testEndGrace},
		{"Client/TouchKeyPair", testTouchKeyPair},

		{"AccessToken/CreateGet", testAccessTokenCreateGet},
		{"AccessToken/Inactive", testAccessTokenInactive},
		{"AccessToken/IssuedDuringGrace", testAccessTokenIssuedDuringGrace},
		{"AccessToken/Delete", testAccessTokenDelete},
		{"AccessToken/Binding", testAccessTokenBinding},
		{"JTI/UseOnce", testUseJTI},
		{"AccessToken/CreateForRevokedPair", testAccessTokenCreateForRevokedPair},
		{"AccessToken/ConcurrentRegenerate", testAccessTokenConcurrentRegenerate},
		{"AccessToken/ConcurrentRegenerateOnReplica", testAccessTokenConcurrentRegenerateOnReplica},
		{"AccessToken/DatabaseUnavailable", testDatabaseUnavailable},
		{"AccessToken/ListByIntegration", testIntegrationTokens},
		{"AccessToken/ListByIntegrationIndexed", testIntegrationTokensIndexed},

		{"Admin/CreateAuthenticate", testAdminCreateAuthenticate},
		{"Admin/CreateErrors", testAdminCreateErrors},
		{"Admin/AuthenticateRejects", testAdminAuthenticateRejects},
		{"Admin/LastUsed", testAdminLastUsed},
		{"Admin/TokenExpiry", testAdminTokenExpiry},
		{"Admin/TokenNeverExpires", testAdminTokenNeverExpires},
		{"Admin/RevokeToken", testAdminRevokeToken},
		{"Admin/Delete", testAdminDelete},
		{"Admin/Ensure", testAdminEnsure},
		{"Admin/ListTokens", testAdminListTokens},
		{"Admin/List", testAdminList},
		{"Admin/Audit", testAdminAudit},
		{"Admin/Roles", testAdminRoles},
		{"Admin/TokenPermissions", testAdminTokenPermissions},
		{"Admin/LastOwner", testAdminLastOwner},
		{"Admin/LastOwnerConcurrent", testAdminLastOwnerConcurrent},

		{"Audit/List", testAuditList},
		{"Audit/ByIntegration", testAuditByIntegration},
		{"Audit/Filters", testAuditFilters},
		{"Audit/Append", testAuditAppend},
		{"Audit/Indexed", testAuditIndexed},

		{"Credential/RevokeClientSecret", testRevokeClientSecret},
		{"Credential/RevokeAdminToken", testRevokeAdminTokenValue},
		{"Credential/RevokeAccessToken", testRevokeAccessToken},

		{"Replica/SeesChangesAtOnce", testReplicaSeesChangesAtOnce},
		{"Replica/ConcurrentRegenerate", testReplicaConcurrentRegenerate},

		{"Purge/Batches", testPurgeBatches},
		{"Purge/ExpiredAdminTokens", testPurgeExpiredAdminTokens},
		{"Purge/Arguments", testPurgeArguments},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			tc.run(t, newStore(t, clk.Now), clk)
		})
	}
}

// replicas maps each store a test backend made to a function that opens
// another store on the same database, as a second replica would.
var replicas sync.Map // *Store → func(t *testing.T) *Store

// replicaOf opens a second store on s's database.
func replicaOf(t *testing.T, s *Store) *Store {
	t.Helper()
	open, ok := replicas.Load(s)
	if !ok {
		t.Fatal("the backend registered no way to open a replica of this store")
	}
	return open.(func(*testing.T) *Store)(t)
}

// testActor performs the changes in these tests.
var testActor = Actor{Type: "admin", Name: "alice", RemoteAddr: "192.0.2.10:51234"}

func createIntegration(t *testing.T, s *Store, in IntegrationInput) (*Integration, *NewKeyPair) {
	t.Helper()
	ig, nk, err := s.CreateIntegration(t.Context(), in, testActor)
	if err != nil {
		t.Fatalf("CreateIntegration(%q): %v", in.Name, err)
	}
	return ig, nk
}

func getIntegration(t *testing.T, s *Store, name string) *Integration {
	t.Helper()
	ig, err := s.GetIntegration(t.Context(), name)
	if err != nil {
		t.Fatalf("GetIntegration(%q): %v", name, err)
	}
	return ig
}

func regenerate(t *testing.T, s *Store, name string, grace time.Duration) *NewKeyPair {
	t.Helper()
	nk, err := s.RegenerateKeyPair(t.Context(), name, grace, testActor)
	if err != nil {
		t.Fatalf("RegenerateKeyPair(%q, %v): %v", name, grace, err)
	}
	return nk
}

func getClient(t *testing.T, s *Store, id string) *Client {
	t.Helper()
	c, err := s.GetClient(t.Context(), id)
	if err != nil {
		t.Fatalf("GetClient(%q): %v", id, err)
	}
	return c
}

// findClient returns the pair GetClient finds for id, or nil when it
// reports ErrNotFound; it fails the test on any other error.
func findClient(t *testing.T, s *Store, id string) *Client {
	t.Helper()
	c, err := s.GetClient(t.Context(), id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("GetClient(%q) = %v, want nil or ErrNotFound", id, err)
	}
	return c
}

// pairWorks is the oracle for whether a key pair authenticates at now, the
// rule server/oauth applies to what GetClient returns: the store reports a
// pair past its grace deadline, or of a disabled integration, too, so the
// tests judge what it reports. A pair works until its deadline, exclusive
// (the current pair has none), while its integration is not disabled.
func pairWorks(c *Client, now time.Time) bool {
	return (c.ExpiresAt == nil || c.ExpiresAt.After(now)) && !c.Integration.Disabled
}

// clientWorks reports whether GetClient finds id and the pair works on the
// store's clock, failing the test on any error other than ErrNotFound.
func clientWorks(t *testing.T, s *Store, id string) bool {
	t.Helper()
	c := findClient(t, s, id)
	return c != nil && pairWorks(c, s.Now())
}

func randomText() string { return rand.Text() }

// newToken builds the token the token endpoint stores for c: issued at
// now, expiring after lifetime, granted the integration's scopes and
// audience, under a fresh signature and request ID.
func newToken(c *Client, now time.Time, lifetime time.Duration) *Token {
	return &Token{
		Signature: "sig-" + randomText(),
		RequestID: "req-" + randomText(),
		Scopes:    c.Integration.Scopes,
		Audience:  c.Integration.Audience,
		IssuedAt:  now,
		ExpiresAt: now.Add(lifetime),
		Owner:     c,
	}
}

// issueToken stores an access token for the pair with client ID id, as the
// token endpoint does, and returns its signature.
func issueToken(t *testing.T, s *Store, clk *fakeClock, id string, lifetime time.Duration) string {
	t.Helper()
	tok := newToken(getClient(t, s, id), clk.Now(), lifetime)
	if err := s.CreateToken(t.Context(), tok, clk.Now()); err != nil {
		t.Fatalf("CreateToken for %q: %v", id, err)
	}
	return tok.Signature
}

// findToken returns the token GetToken finds under sig, or nil when it
// reports ErrNotFound; it fails the test on any other error.
func findToken(t *testing.T, s *Store, sig string) *Token {
	t.Helper()
	tok, err := s.GetToken(t.Context(), sig)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("GetToken(%q) = %v, want nil or ErrNotFound", sig, err)
	}
	return tok
}

// tokenLive is the oracle for whether a stored token is active at now, the
// rule server/oauth applies to what GetToken returns: it has not expired
// and its pair still works, for a token dies with its pair at the pair's
// grace deadline.
func tokenLive(tok *Token, now time.Time) bool {
	return tok.ExpiresAt.After(now) && pairWorks(tok.Owner, now)
}

// tokenActive reports whether GetToken finds sig and the token is live on
// the store's clock, failing the test on any error other than ErrNotFound.
func tokenActive(t *testing.T, s *Store, sig string) bool {
	t.Helper()
	tok := findToken(t, s, sig)
	return tok != nil && tokenLive(tok, s.Now())
}

// countRows runs a portable SELECT COUNT(*) query on the reader.
func countRows(t *testing.T, s *Store, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.r.WithContext(t.Context()).Raw(query, args...).Row().Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tableText returns every row of table as text, one string per row, for
// looking for values that must never be stored.
func tableText(t *testing.T, s *Store, table string) []string {
	t.Helper()
	var rows []map[string]any
	if err := s.r.WithContext(t.Context()).Raw("SELECT * FROM " + table).Scan(&rows).Error; err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	out := make([]string, len(rows))
	for i, row := range rows {
		var b strings.Builder
		for k, v := range row {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "%s=%s;", k, v)
			default:
				fmt.Fprintf(&b, "%s=%v;", k, v)
			}
		}
		out[i] = b.String()
	}
	return out
}

var allTables = []string{"integrations", "key_pairs", "access_tokens", "admins", "admin_tokens", "audit_events"}

// assertNotStored fails if any secret, in plain or in a common encoding,
// appears in any row of any table.
func assertNotStored(t *testing.T, s *Store, secrets ...string) {
	t.Helper()
	for _, table := range allTables {
		for _, row := range tableText(t, s, table) {
			for _, secret := range secrets {
				for _, enc := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), hex.EncodeToString([]byte(secret))} {
					if strings.Contains(row, enc) {
						t.Errorf("secret %q stored in %s: %s", secret, table, row)
					}
				}
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// deref shows a nullable setting: its value, or "nil".
func deref(p *int64) any {
	if p == nil {
		return "nil"
	}
	return *p
}

// --- Migrate ---

func testMigrateIdempotent(t *testing.T, s *Store, _ *fakeClock) {
	for i := range 2 {
		applied, err := s.Migrate(t.Context())
		if err != nil {
			t.Fatalf("Migrate #%d on a migrated store: %v", i+2, err)
		}
		if len(applied) != 0 {
			t.Errorf("Migrate #%d applied %v, want nothing", i+2, applied)
		}
	}
}

// testMigrateNewerSchema is a rolling upgrade seen from the replica still
// on the previous build: the next build's migration adds columns (the only
// kind of change migrations/README.md allows) while this store is running
// with its statements prepared, and everything keeps working, Migrate
// included.
func testMigrateNewerSchema(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	exercise := func(name string) {
		t.Helper()
		_, nk := createIntegration(t, s, IntegrationInput{Name: name, Scopes: []string{"read"}})
		sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
		if !tokenActive(t, s, sig) {
			t.Errorf("%s: token inactive", name)
		}
		if _, _, err := s.ListIntegrations(ctx, Page{}); err != nil {
			t.Errorf("%s: ListIntegrations: %v", name, err)
		}
		nk2 := regenerate(t, s, name, time.Minute)
		if !clientWorks(t, s, nk2.ClientID) || !clientWorks(t, s, nk.ClientID) {
			t.Errorf("%s: pairs do not work after regeneration with grace", name)
		}
		_, _, adminToken := createAdmin(t, s, name+"-admin", 30)
		if _, _, err := s.AuthenticateAdmin(ctx, adminToken); err != nil {
			t.Errorf("%s: AuthenticateAdmin: %v", name, err)
		}
		if _, _, err := s.ListAuditEvents(ctx, Page{}); err != nil {
			t.Errorf("%s: ListAuditEvents: %v", name, err)
		}
	}
	exercise("before") // prepares every statement on the old schema
	for _, stmt := range []string{
		"ALTER TABLE integrations ADD COLUMN owner_team TEXT NOT NULL DEFAULT ''",
		"ALTER TABLE key_pairs ADD COLUMN label TEXT",
		"ALTER TABLE access_tokens ADD COLUMN client_ip TEXT",
		"ALTER TABLE admins ADD COLUMN email TEXT",
		"ALTER TABLE admin_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'all'",
		"ALTER TABLE audit_events ADD COLUMN request_id TEXT",
		"INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', CURRENT_TIMESTAMP)",
	} {
		if err := s.w.WithContext(ctx).Exec(stmt).Error; err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	exercise("after")
	if applied, err := s.Migrate(ctx); err != nil || len(applied) != 0 {
		t.Errorf("Migrate on a newer schema = %v, %v; want nothing applied and no error", applied, err)
	}
}

func testMigrateRecordsEveryFile(t *testing.T, s *Store, _ *fakeClock) {
	ms, err := loadMigrations(s.dialect.migrationsDir())
	if err != nil {
		t.Fatalf("loadMigrations: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("no embedded migrations")
	}
	rows, err := s.r.WithContext(t.Context()).Raw("SELECT version, name FROM schema_migrations ORDER BY version").Rows()
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatalf("scan schema_migrations: %v", err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	var want []string
	for _, m := range ms {
		want = append(want, fmt.Sprintf("%d %s", m.version, m.name))
	}
	if !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %q, want one row per file %q", got, want)
	}
}

func testMigrateSeededDataSurvives(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "seeded", Scopes: []string{"read"}})
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	_, _, adminToken, err := s.CreateAdmin(ctx, "root", RoleOwner, NeverExpires, testActor)
	if err != nil {
		t.Fatalf("CreateAdmin: %v", err)
	}
	events := countRows(t, s, "SELECT COUNT(*) FROM audit_events")

	applied, err := s.Migrate(ctx)
	if err != nil || len(applied) != 0 {
		t.Fatalf("Migrate on a seeded database = %v, %v; want nothing applied", applied, err)
	}

	if got := getIntegration(t, s, "seeded"); !slices.Equal(got.Scopes, []string{"read"}) || got.KeyPair == nil || got.KeyPair.ClientID != nk.ClientID {
		t.Errorf("after Migrate, integration = %+v, want scopes [read] and key pair %s", got, nk.ClientID)
	}
	if !clientWorks(t, s, nk.ClientID) {
		t.Error("after Migrate, key pair no longer works")
	}
	if !tokenActive(t, s, sig) {
		t.Error("after Migrate, access token no longer active")
	}
	if _, _, err := s.AuthenticateAdmin(ctx, adminToken); err != nil {
		t.Errorf("after Migrate, AuthenticateAdmin: %v", err)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM audit_events"); got != events {
		t.Errorf("after Migrate, %d audit events, want %d", got, events)
	}
}

// --- Integrations ---

func testIntegrationCreate(t *testing.T, s *Store, _ *fakeClock) {
	now := s.Now()
	in := IntegrationInput{
		Name:                 "billing-sync",
		Description:          "nightly billing export",
		Scopes:               []string{"invoices:read", "customers:read", "invoices:read"},
		Audience:             []string{"https://api.example.com", "urn:ledger"},
		CanIntrospect:        true,
		TokenLifetimeSeconds: ptr[int64](3600),
		TokenRatePerMinute:   ptr[int64](0),
	}
	created, nk := createIntegration(t, s, in)

	if !credential.ValidClientID(nk.ClientID) {
		t.Errorf("client ID %q is not lk_ci_ + 26 base32 characters", nk.ClientID)
	}
	if !credential.ValidChecksummed(nk.ClientSecret, credential.ClientSecretPrefix) {
		t.Errorf("client secret %q is not a checksummed lk_cs_ secret", nk.ClientSecret)
	}
	if !nk.CreatedAt.Equal(now) {
		t.Errorf("key pair CreatedAt = %v, want %v", nk.CreatedAt, now)
	}
	if nk.PreviousExpiresAt != nil {
		t.Errorf("PreviousExpiresAt = %v for a first key pair, want nil", *nk.PreviousExpiresAt)
	}

	want := &Integration{
		Name: "billing-sync", Description: "nightly billing export",
		Scopes:        []string{"invoices:read", "customers:read"}, // duplicates dropped, order kept
		Audience:      []string{"https://api.example.com", "urn:ledger"},
		CanIntrospect: true, TokenLifetimeSeconds: ptr[int64](3600), TokenRatePerMinute: ptr[int64](0),
		CreatedBy: "alice", CreatedAt: now, UpdatedAt: now,
	}
	got := getIntegration(t, s, "billing-sync")
	for name, ig := range map[string]*Integration{"CreateIntegration": created, "GetIntegration": got} {
		assertIntegration(t, name, ig, want)
		if ig.ID == 0 {
			t.Errorf("%s: ID = 0", name)
		}
		if ig.KeyPair == nil || ig.KeyPair.ClientID != nk.ClientID {
			t.Fatalf("%s: KeyPair = %+v, want client ID %s", name, ig.KeyPair, nk.ClientID)
		}
		if !ig.KeyPair.CreatedAt.Equal(now) || ig.KeyPair.ExpiresAt != nil || ig.KeyPair.LastUsedAt != nil {
			t.Errorf("%s: KeyPair = %+v, want created %v, no expiry, never used", name, ig.KeyPair, now)
		}
		if ig.PreviousKeyPair != nil {
			t.Errorf("%s: PreviousKeyPair = %+v, want nil", name, ig.PreviousKeyPair)
		}
	}
	if created.ID != got.ID {
		t.Errorf("GetIntegration ID = %d, want %d", got.ID, created.ID)
	}

	// Fields left out take their zero values; a nil lifetime follows the
	// server's default.
	minimal, _ := createIntegration(t, s, IntegrationInput{Name: "m"})
	assertIntegration(t, "minimal", getIntegration(t, s, "m"), &Integration{
		Name: "m", Scopes: []string{}, Audience: []string{}, CreatedBy: "alice", CreatedAt: now, UpdatedAt: now,
	})
	if minimal.TokenLifetimeSeconds != nil {
		t.Errorf("TokenLifetimeSeconds = %d, want nil", *minimal.TokenLifetimeSeconds)
	}
	if minimal.TokenRatePerMinute != nil {
		t.Errorf("TokenRatePerMinute = %d, want nil", *minimal.TokenRatePerMinute)
	}

	if _, err := s.GetIntegration(t.Context(), "absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetIntegration(absent) = %v, want ErrNotFound", err)
	}
}

// assertIntegration compares the stored fields of an integration; key
// pairs are checked by the callers.
func assertIntegration(t *testing.T, label string, got, want *Integration) {
	t.Helper()
	lifetime := func(p *int64) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	rate := lifetime
	switch {
	case got.Name != want.Name:
		t.Errorf("%s: Name = %q, want %q", label, got.Name, want.Name)
	case got.Description != want.Description:
		t.Errorf("%s: Description = %q, want %q", label, got.Description, want.Description)
	case !slices.Equal(got.Scopes, want.Scopes) || got.Scopes == nil:
		t.Errorf("%s: Scopes = %#v, want %#v", label, got.Scopes, want.Scopes)
	case !slices.Equal(got.Audience, want.Audience) || got.Audience == nil:
		t.Errorf("%s: Audience = %#v, want %#v", label, got.Audience, want.Audience)
	case got.CanIntrospect != want.CanIntrospect:
		t.Errorf("%s: CanIntrospect = %v, want %v", label, got.CanIntrospect, want.CanIntrospect)
	case got.Disabled != want.Disabled:
		t.Errorf("%s: Disabled = %v, want %v", label, got.Disabled, want.Disabled)
	case lifetime(got.TokenLifetimeSeconds) != lifetime(want.TokenLifetimeSeconds):
		t.Errorf("%s: TokenLifetimeSeconds = %s, want %s", label, lifetime(got.TokenLifetimeSeconds), lifetime(want.TokenLifetimeSeconds))
	case rate(got.TokenRatePerMinute) != rate(want.TokenRatePerMinute):
		t.Errorf("%s: TokenRatePerMinute = %s, want %s", label, rate(got.TokenRatePerMinute), rate(want.TokenRatePerMinute))
	case got.CreatedBy != want.CreatedBy:
		t.Errorf("%s: CreatedBy = %q, want %q", label, got.CreatedBy, want.CreatedBy)
	case !got.CreatedAt.Equal(want.CreatedAt):
		t.Errorf("%s: CreatedAt = %v, want %v", label, got.CreatedAt, want.CreatedAt)
	case !got.UpdatedAt.Equal(want.UpdatedAt):
		t.Errorf("%s: UpdatedAt = %v, want %v", label, got.UpdatedAt, want.UpdatedAt)
	}
}

func testIntegrationCreateStoresOnlyHash(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "hashed"})

	var hash []byte
	err := s.r.WithContext(ctx).Raw("SELECT secret_hash FROM key_pairs WHERE client_id = ?", nk.ClientID).Row().Scan(&hash)
	if err != nil {
		t.Fatalf("read key_pairs row: %v", err)
	}
	if len(hash) != sha256.Size {
		t.Errorf("secret_hash has %d bytes, want %d (HMAC-SHA-256)", len(hash), sha256.Size)
	}
	if bytes.Contains(hash, []byte(nk.ClientSecret)) {
		t.Error("secret_hash holds the secret")
	}
	if plain := sha256.Sum256([]byte(nk.ClientSecret)); bytes.Equal(hash, plain[:]) {
		t.Error("secret_hash is an unkeyed SHA-256 of the secret")
	}
	if err := clientSecretHasher(testSecret).Compare(ctx, hash, []byte(nk.ClientSecret)); err != nil {
		t.Errorf("Compare(stored hash, secret) = %v, want nil", err)
	}
	if got := getClient(t, s, nk.ClientID).SecretHash; !bytes.Equal(got, hash) {
		t.Errorf("SecretHash = %x, want the stored hash %x", got, hash)
	}
	assertNotStored(t, s, nk.ClientSecret)
}

func testIntegrationCreateConflict(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	createIntegration(t, s, IntegrationInput{Name: "taken", Description: "first"})
	events := countRows(t, s, "SELECT COUNT(*) FROM audit_events")
	_, _, err := s.CreateIntegration(ctx, IntegrationInput{Name: "taken", Description: "second"}, testActor)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("CreateIntegration(taken) again = %v, want ErrConflict", err)
	}
	if got := getIntegration(t, s, "taken"); got.Description != "first" {
		t.Errorf("Description = %q after a conflicting create, want %q", got.Description, "first")
	}
	// The failed create rolled back entirely: no second key pair, no event.
	if got := countRows(t, s, "SELECT COUNT(*) FROM key_pairs"); got != 1 {
		t.Errorf("%d key pairs after a conflicting create, want 1", got)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM audit_events"); got != events {
		t.Errorf("%d audit events after a conflicting create, want %d", got, events)
	}
}

func testIntegrationCreateInvalid(t *testing.T, s *Store, _ *fakeClock) {
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	tests := []struct {
		name    string
		in      IntegrationInput
		wantErr error // nil: valid
	}{
		{"empty name", IntegrationInput{Name: ""}, ErrInvalid},
		{"uppercase name", IntegrationInput{Name: "Billing"}, ErrInvalid},
		{"name starts with dash", IntegrationInput{Name: "-billing"}, ErrInvalid},
		{"name starts with dot", IntegrationInput{Name: ".billing"}, ErrInvalid},
		{"name with space", IntegrationInput{Name: "bill ing"}, ErrInvalid},
		{"name with slash", IntegrationInput{Name: "bill/ing"}, ErrInvalid},
		{"non-ASCII name", IntegrationInput{Name: "café"}, ErrInvalid},
		{"name of 64 characters", IntegrationInput{Name: strings.Repeat("a", 64)}, ErrInvalid},
		{"name of 63 characters", IntegrationInput{Name: strings.Repeat("a", 63)}, nil},
		{"name with dot, dash, underscore", IntegrationInput{Name: "0a._-z"}, nil},
		{"description too long", IntegrationInput{Name: "d1", Description: strings.Repeat("x", MaxDescriptionLen+1)}, ErrInvalid},
		{"description at the limit", IntegrationInput{Name: "d2", Description: strings.Repeat("x", MaxDescriptionLen)}, nil},
		{"empty scope", IntegrationInput{Name: "s1", Scopes: []string{""}}, ErrInvalid},
		{"scope with space", IntegrationInput{Name: "s2", Scopes: []string{"a b"}}, ErrInvalid},
		{"scope with quote", IntegrationInput{Name: "s3", Scopes: []string{`a"b`}}, ErrInvalid},
		{"scope with backslash", IntegrationInput{Name: "s4", Scopes: []string{`a\b`}}, ErrInvalid},
		{"scope with newline", IntegrationInput{Name: "s5", Scopes: []string{"a\nb"}}, ErrInvalid},
		{"scope of 129 characters", IntegrationInput{Name: "s6", Scopes: []string{strings.Repeat("s", 129)}}, ErrInvalid},
		{"too many scopes", IntegrationInput{Name: "s7", Scopes: many(MaxScopes+1, func(i int) string { return fmt.Sprint("s", i) })}, ErrInvalid},
		{"most scopes allowed", IntegrationInput{Name: "s8", Scopes: many(MaxScopes, func(i int) string { return fmt.Sprint("s", i) })}, nil},
		{"empty audience", IntegrationInput{Name: "a1", Audience: []string{""}}, ErrInvalid},
		{"audience with space", IntegrationInput{Name: "a2", Audience: []string{"https://a b"}}, ErrInvalid},
		{"audience of 257 characters", IntegrationInput{Name: "a3", Audience: []string{strings.Repeat("a", 257)}}, ErrInvalid},
		{"too many audience values", IntegrationInput{Name: "a4", Audience: many(MaxAudience+1, func(i int) string { return fmt.Sprint("aud", i) })}, ErrInvalid},
		{"lifetime zero", IntegrationInput{Name: "l1", TokenLifetimeSeconds: ptr[int64](0)}, ErrInvalid},
		{"lifetime negative", IntegrationInput{Name: "l2", TokenLifetimeSeconds: ptr[int64](-1)}, ErrInvalid},
		{"lifetime below minimum", IntegrationInput{Name: "l3", TokenLifetimeSeconds: ptr[int64](MinTokenLifetimeSeconds - 1)}, ErrInvalid},
		{"lifetime above maximum", IntegrationInput{Name: "l4", TokenLifetimeSeconds: ptr[int64](MaxTokenLifetimeSeconds + 1)}, ErrInvalid},
		{"lifetime at minimum", IntegrationInput{Name: "l5", TokenLifetimeSeconds: ptr[int64](MinTokenLifetimeSeconds)}, nil},
		{"lifetime at maximum", IntegrationInput{Name: "l6", TokenLifetimeSeconds: ptr[int64](MaxTokenLifetimeSeconds)}, nil},
		{"rate negative", IntegrationInput{Name: "r1", TokenRatePerMinute: ptr[int64](-1)}, ErrInvalid},
		{"rate above maximum", IntegrationInput{Name: "r2", TokenRatePerMinute: ptr[int64](MaxTokenRatePerMinute + 1)}, ErrInvalid},
		{"rate zero, no cap", IntegrationInput{Name: "r3", TokenRatePerMinute: ptr[int64](0)}, nil},
		{"rate at maximum", IntegrationInput{Name: "r4", TokenRatePerMinute: ptr[int64](MaxTokenRatePerMinute)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.CreateIntegration(t.Context(), tc.in, testActor)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("CreateIntegration = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateIntegration = %v, want %v", err, tc.wantErr)
			}
			if _, err := s.GetIntegration(t.Context(), tc.in.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetIntegration after a rejected create = %v, want ErrNotFound", err)
			}
		})
	}
}

func testIntegrationList(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	clientIDs := map[string]string{}
	for _, name := range []string{"echo", "alpha", "delta", "bravo", "charlie"} {
		_, nk := createIntegration(t, s, IntegrationInput{Name: name, Scopes: []string{"read"}})
		clientIDs[name] = nk.ClientID
	}
	oldBravo := clientIDs["bravo"]
	clientIDs["bravo"] = regenerate(t, s, "bravo", time.Hour).ClientID

	var got [][]string
	var tokens []string
	page := Page{Limit: 2}
	for range 10 {
		items, next, err := s.ListIntegrations(ctx, page)
		if err != nil {
			t.Fatalf("ListIntegrations(%+v): %v", page, err)
		}
		var names []string
		for _, ig := range items {
			names = append(names, ig.Name)
			if ig.KeyPair == nil || ig.KeyPair.ClientID != clientIDs[ig.Name] {
				t.Errorf("%s: KeyPair = %+v, want client ID %s", ig.Name, ig.KeyPair, clientIDs[ig.Name])
			}
			switch {
			case ig.Name == "bravo" && (ig.PreviousKeyPair == nil || ig.PreviousKeyPair.ClientID != oldBravo):
				t.Errorf("bravo: PreviousKeyPair = %+v during grace, want client ID %s", ig.PreviousKeyPair, oldBravo)
			case ig.Name != "bravo" && ig.PreviousKeyPair != nil:
				t.Errorf("%s: PreviousKeyPair = %+v, want nil", ig.Name, ig.PreviousKeyPair)
			}
			if !slices.Equal(ig.Scopes, []string{"read"}) {
				t.Errorf("%s: Scopes = %q, want [read]", ig.Name, ig.Scopes)
			}
		}
		got = append(got, names)
		tokens = append(tokens, next)
		if next == "" {
			break
		}
		page.Token = next
	}
	want := [][]string{{"alpha", "bravo"}, {"charlie", "delta"}, {"echo"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	if tokens[len(tokens)-1] != "" || slices.Contains(tokens[:len(tokens)-1], "") {
		t.Errorf("next page tokens = %q, want non-empty except after the last page", tokens)
	}

	tests := []struct {
		name      string
		page      Page
		wantNames int
	}{
		{"default limit", Page{}, 5},
		{"negative limit means default", Page{Limit: -3}, 5},
		{"limit above maximum is clamped", Page{Limit: MaxPageLimit + 1}, 5},
		{"limit equal to count", Page{Limit: 5}, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, next, err := s.ListIntegrations(ctx, tc.page)
			if err != nil {
				t.Fatalf("ListIntegrations: %v", err)
			}
			if len(items) != tc.wantNames || next != "" {
				t.Errorf("ListIntegrations = %d items, next %q; want %d items and no next page", len(items), next, tc.wantNames)
			}
		})
	}

	for _, token := range []string{"!!!", "not a token", "a+b/c="} {
		if _, _, err := s.ListIntegrations(ctx, Page{Token: token}); !errors.Is(err, ErrInvalid) {
			t.Errorf("ListIntegrations(page token %q) = %v, want ErrInvalid", token, err)
		}
	}
}

func testIntegrationUpdate(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	base := IntegrationInput{
		Description: "before", Scopes: []string{"read", "write"}, Audience: []string{"api"},
		CanIntrospect: false, TokenLifetimeSeconds: ptr[int64](600), TokenRatePerMinute: ptr[int64](30),
	}
	tests := []struct {
		name   string
		patch  IntegrationPatch
		change func(want *Integration)
	}{
		{"description", IntegrationPatch{Description: ptr("after")}, func(w *Integration) { w.Description = "after" }},
		{"description emptied", IntegrationPatch{Description: ptr("")}, func(w *Integration) { w.Description = "" }},
		{"scopes", IntegrationPatch{Scopes: &[]string{"admin", "read", "admin"}}, func(w *Integration) { w.Scopes = []string{"admin", "read"} }},
		{"scopes emptied", IntegrationPatch{Scopes: &[]string{}}, func(w *Integration) { w.Scopes = []string{} }},
		{"audience", IntegrationPatch{Audience: &[]string{"other", "api"}}, func(w *Integration) { w.Audience = []string{"other", "api"} }},
		{"audience emptied", IntegrationPatch{Audience: &[]string{}}, func(w *Integration) { w.Audience = []string{} }},
		{"can introspect", IntegrationPatch{CanIntrospect: ptr(true)}, func(w *Integration) { w.CanIntrospect = true }},
		{"token lifetime", IntegrationPatch{TokenLifetimeSeconds: ptr[int64](7200)}, func(w *Integration) { w.TokenLifetimeSeconds = ptr[int64](7200) }},
		{"token lifetime back to the default", IntegrationPatch{ResetTokenLifetime: true}, func(w *Integration) { w.TokenLifetimeSeconds = nil }},
		{"token rate", IntegrationPatch{TokenRatePerMinute: ptr[int64](6000)}, func(w *Integration) { w.TokenRatePerMinute = ptr[int64](6000) }},
		{"token rate uncapped", IntegrationPatch{TokenRatePerMinute: ptr[int64](0)}, func(w *Integration) { w.TokenRatePerMinute = ptr[int64](0) }},
		{"token rate back to the default", IntegrationPatch{ResetTokenRate: true}, func(w *Integration) { w.TokenRatePerMinute = nil }},
		{"disabled", IntegrationPatch{Disabled: ptr(true)}, func(w *Integration) { w.Disabled = true }},
		{"enabled while enabled", IntegrationPatch{Disabled: ptr(false)}, func(*Integration) {}},
		{"everything", IntegrationPatch{
			Description: ptr("all"), Scopes: &[]string{"x"}, Audience: &[]string{"y"},
			CanIntrospect: ptr(true), TokenLifetimeSeconds: ptr[int64](60),
		}, func(w *Integration) {
			w.Description, w.Scopes, w.Audience, w.CanIntrospect, w.TokenLifetimeSeconds = "all", []string{"x"}, []string{"y"}, true, ptr[int64](60)
		}},
		{"nothing", IntegrationPatch{}, func(*Integration) {}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			in.Name = fmt.Sprintf("update-%d", i)
			created, nk := createIntegration(t, s, in)
			clk.Advance(time.Minute)

			want := *created
			tc.change(&want)
			// A patch that changes nothing writes nothing, updated_at included.
			if !reflect.DeepEqual(want, *created) {
				want.UpdatedAt = s.Now()
			}
			got, err := s.UpdateIntegration(ctx, in.Name, tc.patch, testActor)
			if err != nil {
				t.Fatalf("UpdateIntegration: %v", err)
			}
			assertIntegration(t, "UpdateIntegration", got, &want)
			assertIntegration(t, "GetIntegration", getIntegration(t, s, in.Name), &want)
			if got.ID != created.ID || got.KeyPair == nil || got.KeyPair.ClientID != nk.ClientID {
				t.Errorf("update changed identity or key pair: got ID %d, %+v; want ID %d, client %s", got.ID, got.KeyPair, created.ID, nk.ClientID)
			}
			// The key pair sees the new settings at once: the token
			// endpoint reads the rate from it.
			c := getClient(t, s, nk.ClientID)
			if !slices.Equal(c.Integration.Scopes, want.Scopes) || !slices.Equal(c.Integration.Audience, want.Audience) {
				t.Errorf("client scopes %q, audience %q; want %q, %q", c.Integration.Scopes, c.Integration.Audience, want.Scopes, want.Audience)
			}
			if got, want := fmt.Sprint(deref(c.Integration.TokenRatePerMinute)), fmt.Sprint(deref(want.TokenRatePerMinute)); got != want {
				t.Errorf("client token rate %s, want %s", got, want)
			}
			if got, want := fmt.Sprint(deref(c.Integration.TokenLifetimeSeconds)), fmt.Sprint(deref(want.TokenLifetimeSeconds)); got != want {
				t.Errorf("client token lifetime %s, want %s", got, want)
			}
		})
	}
}

func testIntegrationUpdateErrors(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	created, _ := createIntegration(t, s, IntegrationInput{Name: "stable", Description: "keep", Scopes: []string{"read"}})
	clk.Advance(time.Minute)
	tests := []struct {
		name    string
		target  string
		patch   IntegrationPatch
		wantErr error
	}{
		{"absent integration", "absent", IntegrationPatch{Description: ptr("x")}, ErrNotFound},
		{"absent integration, empty patch", "absent", IntegrationPatch{}, ErrNotFound},
		{"description too long", "stable", IntegrationPatch{Description: ptr(strings.Repeat("x", MaxDescriptionLen+1))}, ErrInvalid},
		{"bad scope", "stable", IntegrationPatch{Scopes: &[]string{"a b"}}, ErrInvalid},
		{"bad audience", "stable", IntegrationPatch{Audience: &[]string{""}}, ErrInvalid},
		{"lifetime too short", "stable", IntegrationPatch{TokenLifetimeSeconds: ptr[int64](1)}, ErrInvalid},
		{"lifetime too long", "stable", IntegrationPatch{TokenLifetimeSeconds: ptr[int64](MaxTokenLifetimeSeconds + 1)}, ErrInvalid},
		{"valid field with an invalid one", "stable", IntegrationPatch{Description: ptr("changed"), Scopes: &[]string{""}}, ErrInvalid},
		{"lifetime both set and reset", "stable", IntegrationPatch{TokenLifetimeSeconds: ptr[int64](600), ResetTokenLifetime: true}, ErrInvalid},
		{"rate negative", "stable", IntegrationPatch{TokenRatePerMinute: ptr[int64](-1)}, ErrInvalid},
		{"rate above maximum", "stable", IntegrationPatch{TokenRatePerMinute: ptr[int64](MaxTokenRatePerMinute + 1)}, ErrInvalid},
		{"rate both set and reset", "stable", IntegrationPatch{TokenRatePerMinute: ptr[int64](600), ResetTokenRate: true}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.UpdateIntegration(ctx, tc.target, tc.patch, testActor); !errors.Is(err, tc.wantErr) {
				t.Fatalf("UpdateIntegration = %v, want %v", err, tc.wantErr)
			}
			assertIntegration(t, "after a rejected update", getIntegration(t, s, "stable"), created)
		})
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM audit_events WHERE action = ?", "integration.update"); got != 0 {
		t.Errorf("%d integration.update events for rejected updates, want 0", got)
	}
}

// testIntegrationDelete deletes an integration with a current pair, a
// pair in its grace period and tokens for both: at once its pairs and
// tokens are not found (unlike a revoked pair's, which the store still
// reports, deadline and all), a token request that authenticated before
// cannot store a token, it is in no listing or scope list, and its name is
// free; Purge then deletes every row it left, and nothing else.
func testIntegrationDelete(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	created, nk := createIntegration(t, s, IntegrationInput{Name: "doomed", Scopes: []string{"doomed:only", "shared"}})
	prevSig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	prev := nk.ClientID
	nk = regenerate(t, s, "doomed", time.Hour)
	curSig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	authenticated := getClient(t, s, nk.ClientID)
	_, other := createIntegration(t, s, IntegrationInput{Name: "bystander", Scopes: []string{"shared"}})
	otherSig := issueToken(t, s, clk, other.ClientID, time.Hour)

	if err := s.DeleteIntegration(ctx, "doomed", testActor); err != nil {
		t.Fatalf("DeleteIntegration: %v", err)
	}
	if _, err := s.GetIntegration(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetIntegration after delete = %v, want ErrNotFound", err)
	}
	if items, _, err := s.ListIntegrations(ctx, Page{}); err != nil || len(items) != 1 || items[0].Name != "bystander" {
		t.Errorf("ListIntegrations after delete = %v, %v; want only bystander", items, err)
	}
	if got, err := s.Scopes(ctx); err != nil || !slices.Equal(got, []string{"shared"}) {
		t.Errorf("Scopes after delete = %q, %v; want [shared]", got, err)
	}
	for _, id := range []string{prev, nk.ClientID} {
		if c := findClient(t, s, id); c != nil {
			t.Errorf("GetClient(%s) = %+v after its integration was deleted, want ErrNotFound", id, c)
		}
	}
	for _, sig := range []string{prevSig, curSig} {
		if tok := findToken(t, s, sig); tok != nil {
			t.Errorf("GetToken(%s) = %+v after its integration was deleted, want ErrNotFound", sig, tok)
		}
	}
	late := newToken(authenticated, clk.Now(), time.Hour)
	if err := s.CreateToken(ctx, late, clk.Now()); !errors.Is(err, ErrKeyPairChanged) {
		t.Errorf("storing a token for a pair authenticated before the delete = %v, want ErrKeyPairChanged", err)
	}
	if _, err := s.UpdateIntegration(ctx, "doomed", IntegrationPatch{Description: ptr("x")}, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateIntegration after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.RegenerateKeyPair(ctx, "doomed", 0, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("RegenerateKeyPair after delete = %v, want ErrNotFound", err)
	}
	if !tokenActive(t, s, otherSig) || !clientWorks(t, s, other.ClientID) {
		t.Error("deleting one integration affected another")
	}
	if err := s.DeleteIntegration(ctx, "doomed", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteIntegration = %v, want ErrNotFound", err)
	}
	if err := s.DeleteIntegration(ctx, "never-existed", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteIntegration(never-existed) = %v, want ErrNotFound", err)
	}

	// The name is free at once, for an integration that owns nothing of
	// the old one.
	reborn, fresh := createIntegration(t, s, IntegrationInput{Name: "doomed"})
	freshSig := issueToken(t, s, clk, fresh.ClientID, time.Hour)
	if reborn.ID == created.ID || findClient(t, s, prev) != nil || findToken(t, s, curSig) != nil {
		t.Error("the new integration of the same name revived the deleted one")
	}
	if got := getIntegration(t, s, "doomed"); got.KeyPair == nil || got.KeyPair.ClientID != fresh.ClientID || got.PreviousKeyPair != nil {
		t.Errorf("new doomed = %+v, want only its own key pair %s", got, fresh.ClientID)
	}

	// Purge, a row at a time, deletes the deleted integration's two
	// tokens, two pairs and row; nothing of the live ones.
	if n, err := s.Purge(ctx, 1); err != nil || n != 5 {
		t.Errorf("Purge = %d, %v; want 5 rows (2 tokens, 2 key pairs, the integration)", n, err)
	}
	for _, q := range []string{
		"SELECT COUNT(*) FROM integrations WHERE id = ?",
		"SELECT COUNT(*) FROM key_pairs WHERE integration_id = ?",
		"SELECT COUNT(*) FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id WHERE k.integration_id = ?",
	} {
		if got := countRows(t, s, q, created.ID); got != 0 {
			t.Errorf("%s: %d after Purge, want 0", q, got)
		}
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM integrations"); got != 2 {
		t.Errorf("%d integrations after Purge, want 2 (bystander and the new doomed)", got)
	}
	if !tokenActive(t, s, otherSig) || !tokenActive(t, s, freshSig) {
		t.Error("Purge took a live integration's token")
	}
}

// testIntegrationDeleteSeenByPreviousRelease reads a deleted integration
// as the previous release does, which knows nothing of deleted_at (see
// migrations/README.md): its pairs have expired, so that release refuses
// them and reports their tokens inactive too. Its own way of deleting, a
// cascading DELETE, still works on this schema.
func testIntegrationDeleteSeenByPreviousRelease(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "gone"})
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	if err := s.DeleteIntegration(ctx, "gone", testActor); err != nil {
		t.Fatalf("DeleteIntegration: %v", err)
	}
	working := "(k.expires_at IS NULL OR k.expires_at > ?)"
	if n := countRows(t, s, "SELECT COUNT(*) FROM key_pairs k JOIN integrations i ON i.id = k.integration_id WHERE k.client_id = ? AND "+working,
		nk.ClientID, s.Now()); n != 0 {
		t.Error("the previous release's client lookup finds a working pair of a deleted integration")
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM access_tokens t JOIN key_pairs k ON k.id = t.key_pair_id
		JOIN integrations i ON i.id = k.integration_id WHERE t.signature = ? AND `+working, sig, s.Now()); n != 0 {
		t.Error("the previous release's token lookup finds a deleted integration's token with a working pair")
	}

	_, old := createIntegration(t, s, IntegrationInput{Name: "old-way"})
	issueToken(t, s, clk, old.ClientID, time.Hour)
	if err := s.w.WithContext(ctx).Exec("DELETE FROM integrations WHERE name = ?", "old-way").Error; err != nil {
		t.Fatalf("the previous release's DELETE: %v", err)
	}
	if c := findClient(t, s, old.ClientID); c != nil {
		t.Errorf("GetClient = %+v for a pair deleted the previous release's way, want ErrNotFound", c)
	}
}

func testIntegrationAudit(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	actors := []Actor{
		{Type: "admin", Name: "alice", RemoteAddr: "192.0.2.1:1000"},
		{Type: "admin", Name: "bob", RemoteAddr: "[2001:db8::1]:2000"},
		{Type: "admin", Name: "carol", RemoteAddr: "192.0.2.3:3000"},
		{Type: "system", Name: "cli", RemoteAddr: ""},
	}
	var times []time.Time
	step := func() { clk.Advance(time.Second); times = append(times, s.Now()) }

	step()
	_, first, err := s.CreateIntegration(ctx, IntegrationInput{Name: "audited", Scopes: []string{"read"}, TokenRatePerMinute: ptr[int64](0)}, actors[0])
	if err != nil {
		t.Fatalf("CreateIntegration: %v", err)
	}
	step()
	if _, err := s.UpdateIntegration(ctx, "audited", IntegrationPatch{Description: ptr("d"), CanIntrospect: ptr(true), ResetTokenRate: true}, actors[1]); err != nil {
		t.Fatalf("UpdateIntegration: %v", err)
	}
	step()
	second, err := s.RegenerateKeyPair(ctx, "audited", time.Hour, actors[2])
	if err != nil {
		t.Fatalf("RegenerateKeyPair: %v", err)
	}
	step()
	if err := s.DeleteIntegration(ctx, "audited", actors[3]); err != nil {
		t.Fatalf("DeleteIntegration: %v", err)
	}

	events, next, err := s.ListAuditEvents(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	if next != "" {
		t.Errorf("next page token %q, want none", next)
	}
	wantActions := []string{"integration.delete", "key_pair.regenerate", "integration.update", "integration.create"}
	if len(events) != len(wantActions) {
		t.Fatalf("%d audit events, want %d: %+v", len(events), len(wantActions), events)
	}
	for i, e := range events {
		j := len(events) - 1 - i // events are newest first
		if e.Action != wantActions[i] || e.ObjectType != "integration" || e.Object != "audited" {
			t.Errorf("event %d = %s %s/%s, want %s integration/audited", i, e.Action, e.ObjectType, e.Object, wantActions[i])
		}
		if e.ActorType != actors[j].Type || e.Actor != actors[j].Name || e.RemoteAddr != actors[j].RemoteAddr {
			t.Errorf("event %s actor = %s/%s from %q, want %+v", e.Action, e.ActorType, e.Actor, e.RemoteAddr, actors[j])
		}
		if !e.Time.Equal(times[j]) {
			t.Errorf("event %s time = %v, want %v", e.Action, e.Time, times[j])
		}
	}
	if got := events[3].Details["client_id"]; got != first.ClientID {
		t.Errorf("create details client_id = %v, want %s", got, first.ClientID)
	}
	if got := fmt.Sprint(events[3].Details["token_rate_per_minute"]); got != "0" {
		t.Errorf("create details token_rate_per_minute = %s, want 0 (uncapped)", got)
	}
	wantChanges := `{"can_introspect":{"new":true,"old":false},"description":{"new":"d","old":""},"token_rate_per_minute":{"new":null,"old":0}}`
	if got, _ := json.Marshal(events[2].Details["changes"]); string(got) != wantChanges {
		t.Errorf("update details changes = %s, want %s", got, wantChanges)
	}
	if got, want := events[1].Details["previous_client_id"], first.ClientID; got != want {
		t.Errorf("regenerate details previous_client_id = %v, want %s", got, want)
	}
	if got, want := events[1].Details["client_id"], second.ClientID; got != want {
		t.Errorf("regenerate details client_id = %v, want %s", got, want)
	}
	assertNotStored(t, s, first.ClientSecret, second.ClientSecret)
}

// --- Clients and key pairs ---

func testClientGet(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	ig, nk := createIntegration(t, s, IntegrationInput{
		Name: "svc", Scopes: []string{"read", "write"}, Audience: []string{"api"}, CanIntrospect: true,
	})
	c := getClient(t, s, nk.ClientID)
	if c.ClientID != nk.ClientID {
		t.Errorf("ClientID = %q, want %q", c.ClientID, nk.ClientID)
	}
	if c.KeyPairID == 0 || c.ExpiresAt != nil || c.LastUsedAt != nil {
		t.Errorf("KeyPairID = %d, ExpiresAt = %v, LastUsedAt = %v; want an ID, no expiry, never used", c.KeyPairID, c.ExpiresAt, c.LastUsedAt)
	}
	if c.Integration.ID != ig.ID || c.Integration.Name != "svc" || !c.Integration.CanIntrospect {
		t.Errorf("Integration = %+v, want svc (ID %d, can introspect)", c.Integration, ig.ID)
	}
	if got := c.Integration.Scopes; !slices.Equal(got, []string{"read", "write"}) {
		t.Errorf("Integration.Scopes = %q, want [read write]", got)
	}
	if got := c.Integration.Audience; !slices.Equal(got, []string{"api"}) {
		t.Errorf("Integration.Audience = %q, want [api]", got)
	}

	// The stored hash checks the secret as the token endpoint checks it.
	h := clientSecretHasher(testSecret)
	tests := []struct {
		name   string
		secret string
		wantOK bool
	}{
		{"its secret", nk.ClientSecret, true},
		{"another secret", credential.NewClientSecret(), false},
		{"one character changed", nk.ClientSecret[:20] + string(nk.ClientSecret[20]^1) + nk.ClientSecret[21:], false},
		{"truncated", nk.ClientSecret[:len(nk.ClientSecret)-1], false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		err := h.Compare(ctx, c.SecretHash, []byte(tc.secret))
		if gotOK := err == nil; gotOK != tc.wantOK {
			t.Errorf("%s: Compare = %v, want ok = %v", tc.name, err, tc.wantOK)
		}
	}
}

// testClientGetNotFound looks up IDs no pair has. The store does not check
// an ID's shape (server/oauth does, before the lookup): a malformed ID is
// simply not found, however close it is to a real one.
func testClientGetNotFound(t *testing.T, s *Store, _ *fakeClock) {
	_, nk := createIntegration(t, s, IntegrationInput{Name: "real"})
	body := strings.TrimPrefix(nk.ClientID, credential.ClientIDPrefix)
	tests := []struct{ name, id string }{
		{"empty", ""},
		{"prefix only", credential.ClientIDPrefix},
		{"garbage", "hello"},
		{"SQL", "' OR 1=1 --"},
		{"unknown well-formed", credential.NewClientID()},
		{"uppercase", strings.ToUpper(nk.ClientID)},
		{"extra character", nk.ClientID + "a"},
		{"missing character", nk.ClientID[:len(nk.ClientID)-1]},
		{"secret prefix", credential.ClientSecretPrefix + body},
		{"the secret", nk.ClientSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.GetClient(t.Context(), tc.id)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("GetClient(%q) = %v, %v; want ErrNotFound", tc.id, c, err)
			}
		})
	}
}

func testRegenerateImmediate(t *testing.T, s *Store, clk *fakeClock) {
	_, old := createIntegration(t, s, IntegrationInput{Name: "rotating"})
	clk.Advance(time.Minute)
	now := s.Now()
	nk := regenerate(t, s, "rotating", 0)

	if nk.ClientID == old.ClientID || nk.ClientSecret == old.ClientSecret {
		t.Fatal("regeneration kept the client ID or secret")
	}
	if !credential.ValidClientID(nk.ClientID) || !credential.ValidChecksummed(nk.ClientSecret, credential.ClientSecretPrefix) {
		t.Errorf("new pair %q / %q is malformed", nk.ClientID, nk.ClientSecret)
	}
	if !nk.CreatedAt.Equal(now) {
		t.Errorf("CreatedAt = %v, want %v", nk.CreatedAt, now)
	}
	if nk.PreviousExpiresAt != nil {
		t.Errorf("PreviousExpiresAt = %v, want nil: the old pair was revoked at once, it has no deadline", *nk.PreviousExpiresAt)
	}
	// The old pair is still found, revoked as of now: its deadline is
	// the regeneration time, so it works no longer.
	if oc := getClient(t, s, old.ClientID); oc.ExpiresAt == nil || !oc.ExpiresAt.Equal(now) {
		t.Errorf("old client ExpiresAt = %v, want now (%v)", oc.ExpiresAt, now)
	}
	if clientWorks(t, s, old.ClientID) {
		t.Error("old client ID still works after regeneration with grace 0")
	}
	c := getClient(t, s, nk.ClientID)
	if c.ExpiresAt != nil {
		t.Errorf("new client ExpiresAt = %v, want nil", *c.ExpiresAt)
	}
	h := clientSecretHasher(testSecret)
	if err := h.Compare(t.Context(), c.SecretHash, []byte(nk.ClientSecret)); err != nil {
		t.Errorf("new secret does not match the new pair: %v", err)
	}
	if err := h.Compare(t.Context(), c.SecretHash, []byte(old.ClientSecret)); err == nil {
		t.Error("old secret matches the new pair")
	}
	ig := getIntegration(t, s, "rotating")
	if ig.KeyPair == nil || ig.KeyPair.ClientID != nk.ClientID {
		t.Errorf("KeyPair = %+v, want %s", ig.KeyPair, nk.ClientID)
	}
	if ig.PreviousKeyPair != nil {
		t.Errorf("PreviousKeyPair = %+v after an immediate regeneration, want nil", ig.PreviousKeyPair)
	}
	assertNotStored(t, s, old.ClientSecret, nk.ClientSecret)
}

func testRegenerateWithGrace(t *testing.T, s *Store, clk *fakeClock) {
	_, old := createIntegration(t, s, IntegrationInput{Name: "graceful"})
	deadline := s.Now().Add(time.Hour)
	nk := regenerate(t, s, "graceful", time.Hour)
	if nk.PreviousExpiresAt == nil || !nk.PreviousExpiresAt.Equal(deadline) {
		t.Fatalf("PreviousExpiresAt = %v, want %v", nk.PreviousExpiresAt, deadline)
	}

	checkDuringGrace := func(when string) {
		t.Helper()
		oldClient := getClient(t, s, old.ClientID)
		if oldClient.ExpiresAt == nil || !oldClient.ExpiresAt.Equal(deadline) {
			t.Errorf("%s: old client ExpiresAt = %v, want %v", when, oldClient.ExpiresAt, deadline)
		}
		if c := getClient(t, s, nk.ClientID); c.ExpiresAt != nil {
			t.Errorf("%s: new client ExpiresAt = %v, want nil", when, *c.ExpiresAt)
		}
		ig := getIntegration(t, s, "graceful")
		if ig.KeyPair == nil || ig.KeyPair.ClientID != nk.ClientID {
			t.Errorf("%s: KeyPair = %+v, want %s", when, ig.KeyPair, nk.ClientID)
		}
		if p := ig.PreviousKeyPair; p == nil || p.ClientID != old.ClientID || p.ExpiresAt == nil || !p.ExpiresAt.Equal(deadline) {
			t.Errorf("%s: PreviousKeyPair = %+v, want %s until %v", when, p, old.ClientID, deadline)
		}
	}
	checkDuringGrace("at regeneration")
	clk.Advance(time.Hour - time.Microsecond)
	checkDuringGrace("just before the deadline")

	clk.Advance(time.Microsecond)
	// Past the deadline the store still reports the pair, deadline
	// unchanged, for its caller to refuse.
	if oc := getClient(t, s, old.ClientID); oc.ExpiresAt == nil || !oc.ExpiresAt.Equal(deadline) {
		t.Errorf("at the deadline: old client ExpiresAt = %v, want %v", oc.ExpiresAt, deadline)
	}
	if clientWorks(t, s, old.ClientID) {
		t.Error("old client ID works at its grace deadline")
	}
	if !clientWorks(t, s, nk.ClientID) {
		t.Error("new client ID stopped working")
	}
	if ig := getIntegration(t, s, "graceful"); ig.PreviousKeyPair != nil || ig.KeyPair == nil || ig.KeyPair.ClientID != nk.ClientID {
		t.Errorf("after the deadline: KeyPair %+v, PreviousKeyPair %+v; want %s and nil", ig.KeyPair, ig.PreviousKeyPair, nk.ClientID)
	}
}

func testRegenerateDuringGrace(t *testing.T, s *Store, clk *fakeClock) {
	_, a := createIntegration(t, s, IntegrationInput{Name: "twice"})
	b := regenerate(t, s, "twice", time.Hour)
	clk.Advance(10 * time.Minute)
	deadline := s.Now().Add(time.Hour)
	c := regenerate(t, s, "twice", time.Hour)

	if clientWorks(t, s, a.ClientID) {
		t.Error("the older previous pair still works after a second regeneration")
	}
	if !clientWorks(t, s, b.ClientID) || !clientWorks(t, s, c.ClientID) {
		t.Error("the replaced pair or the new pair does not work")
	}
	ig := getIntegration(t, s, "twice")
	if ig.KeyPair == nil || ig.KeyPair.ClientID != c.ClientID {
		t.Errorf("KeyPair = %+v, want %s", ig.KeyPair, c.ClientID)
	}
	if p := ig.PreviousKeyPair; p == nil || p.ClientID != b.ClientID || !p.ExpiresAt.Equal(deadline) {
		t.Errorf("PreviousKeyPair = %+v, want %s until %v", p, b.ClientID, deadline)
	}
	now := s.Now()
	if got := countRows(t, s, "SELECT COUNT(*) FROM key_pairs WHERE integration_id = ? AND (expires_at IS NULL OR expires_at > ?)", ig.ID, now); got != 2 {
		t.Errorf("%d working key pairs, want at most 2", got)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM key_pairs WHERE integration_id = ? AND expires_at IS NULL", ig.ID); got != 1 {
		t.Errorf("%d current key pairs, want 1", got)
	}
}

// testEndGrace: ending a grace revokes the pair in grace at once and
// leaves the current pair; with none in grace, or no integration, it is
// ErrNotFound.
func testEndGrace(t *testing.T, s *Store, clk *fakeClock) {
	_, old := createIntegration(t, s, IntegrationInput{Name: "graceful"})
	if err := s.EndGrace(t.Context(), "graceful", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndGrace with no pair in grace: %v, want ErrNotFound", err)
	}
	nk := regenerate(t, s, "graceful", time.Hour)
	clk.Advance(time.Minute)
	if err := s.EndGrace(t.Context(), "graceful", testActor); err != nil {
		t.Fatalf("EndGrace: %v", err)
	}
	if clientWorks(t, s, old.ClientID) {
		t.Error("the old client ID works after its grace was ended")
	}
	if !clientWorks(t, s, nk.ClientID) {
		t.Error("the new client ID stopped working")
	}
	if ig := getIntegration(t, s, "graceful"); ig.PreviousKeyPair != nil {
		t.Errorf("after ending the grace, PreviousKeyPair = %+v", ig.PreviousKeyPair)
	}
	if err := s.EndGrace(t.Context(), "graceful", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndGrace again: %v, want ErrNotFound", err)
	}
	if err := s.EndGrace(t.Context(), "nope", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("EndGrace of no integration: %v, want ErrNotFound", err)
	}
}

func testRegenerateErrors(t *testing.T, s *Store, _ *fakeClock) {
	_, nk := createIntegration(t, s, IntegrationInput{Name: "target"})
	tests := []struct {
		name    string
		target  string
		grace   time.Duration
		wantErr error
	}{
		{"absent integration", "absent", 0, ErrNotFound},
		{"negative grace", "target", -time.Second, ErrInvalid},
		{"grace above maximum", "target", MaxGrace + time.Second, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.RegenerateKeyPair(t.Context(), tc.target, tc.grace, testActor); !errors.Is(err, tc.wantErr) {
				t.Fatalf("RegenerateKeyPair = %v, want %v", err, tc.wantErr)
			}
			if !clientWorks(t, s, nk.ClientID) {
				t.Error("a rejected regeneration revoked the current pair")
			}
		})
	}
	if nk2 := regenerate(t, s, "target", MaxGrace); !clientWorks(t, s, nk.ClientID) || !clientWorks(t, s, nk2.ClientID) {
		t.Error("regeneration with the maximum grace did not keep both pairs working")
	}
}

// --- Access tokens ---

func testAccessTokenCreateGet(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	ig, nk := createIntegration(t, s, IntegrationInput{Name: "issuer", Scopes: []string{"read", "write"}, Audience: []string{"api", "other"}})
	clk.Advance(time.Minute)
	now := clk.Now()
	c := getClient(t, s, nk.ClientID)
	tok := newToken(c, now, time.Hour)
	tok.Scopes, tok.Audience = []string{"read"}, []string{"api"}
	if err := s.CreateToken(ctx, tok, now); err != nil {
		t.Fatalf("CreateToken: %v", err)
	}

	check := func(label string) {
		t.Helper()
		got, err := s.GetToken(ctx, tok.Signature)
		if err != nil {
			t.Fatalf("%s: GetToken: %v", label, err)
		}
		if got.Signature != tok.Signature || got.RequestID != tok.RequestID {
			t.Errorf("%s: signature %q, request ID %q; want %q, %q", label, got.Signature, got.RequestID, tok.Signature, tok.RequestID)
		}
		if !slices.Equal(got.Scopes, []string{"read"}) {
			t.Errorf("%s: scopes = %q, want [read]", label, got.Scopes)
		}
		if !slices.Equal(got.Audience, []string{"api"}) {
			t.Errorf("%s: audience = %q, want [api]", label, got.Audience)
		}
		if want := now.Truncate(time.Microsecond); !got.IssuedAt.Equal(want) {
			t.Errorf("%s: IssuedAt = %v, want %v", label, got.IssuedAt, want)
		}
		if want := now.Add(time.Hour).Truncate(time.Microsecond); !got.ExpiresAt.Equal(want) {
			t.Errorf("%s: ExpiresAt = %v, want %v", label, got.ExpiresAt, want)
		}
		// The owner is what introspection reports: the client ID, and the
		// integration name as the subject.
		o := got.Owner
		if o == nil {
			t.Fatalf("%s: no owner", label)
		}
		if o.ClientID != nk.ClientID || o.KeyPairID != c.KeyPairID || o.ExpiresAt != nil {
			t.Errorf("%s: owner %s (pair %d, expires %v), want %s (pair %d, no expiry)", label, o.ClientID, o.KeyPairID, o.ExpiresAt, nk.ClientID, c.KeyPairID)
		}
		if o.Integration.ID != ig.ID || o.Integration.Name != "issuer" {
			t.Errorf("%s: owner integration %d %q, want %d %q", label, o.Integration.ID, o.Integration.Name, ig.ID, "issuer")
		}
		if got.KeyID != "" {
			t.Errorf("%s: KeyID = %q, want \"\" (lookups do not read it)", label, got.KeyID)
		}
	}
	check("as stored")

	if kp := getIntegration(t, s, "issuer").KeyPair; kp.LastUsedAt == nil || !kp.LastUsedAt.Equal(s.Now()) {
		t.Errorf("key pair LastUsedAt = %v, want %v", kp.LastUsedAt, s.Now())
	}

	// A token keeps what it was granted when the integration changes.
	if _, err := s.UpdateIntegration(ctx, "issuer", IntegrationPatch{Scopes: &[]string{"write"}, Audience: &[]string{}}, testActor); err != nil {
		t.Fatalf("UpdateIntegration: %v", err)
	}
	check("after the integration changed")

	for _, sig := range []string{"sig-unknown", ""} {
		if got, err := s.GetToken(ctx, sig); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetToken(%q) = %+v, %v; want ErrNotFound", sig, got, err)
		}
	}

	// A JWT's signing key is stored with it, so the key stays published
	// (and unpurged) while the token lives; an opaque token names none.
	jwt := newToken(c, now, time.Hour)
	jwt.KeyID = "kid-" + randomText()
	if err := s.CreateToken(ctx, jwt, now); err != nil {
		t.Fatalf("CreateToken(JWT): %v", err)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM access_tokens WHERE signature = ? AND kid = ?", jwt.Signature, jwt.KeyID); got != 1 {
		t.Errorf("%d rows of the JWT with kid %s, want 1", got, jwt.KeyID)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM access_tokens WHERE signature = ? AND kid IS NULL", tok.Signature); got != 1 {
		t.Errorf("%d rows of the opaque token with no kid, want 1", got)
	}
}

// testAccessTokenInactive ends a token's life in each way there is. The
// store reports what it knows, and server/oauth decides: a token that
// expired or whose pair stopped working is still returned as stored, and
// tokenLive judges it; a deleted token, or one of a deleted integration,
// is not found.
func testAccessTokenInactive(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	tests := []struct {
		name   string
		revoke func(t *testing.T, name, sig string)
		gone   bool // GetToken reports ErrNotFound afterwards
	}{
		{"expired", func(t *testing.T, _, sig string) {
			clk.Advance(time.Hour - time.Microsecond)
			if !tokenActive(t, s, sig) {
				t.Fatal("token inactive just before its expiry")
			}
			clk.Advance(time.Microsecond)
		}, false},
		{"deleted by signature", func(t *testing.T, _, sig string) {
			if err := s.DeleteToken(ctx, sig); err != nil {
				t.Fatalf("DeleteToken: %v", err)
			}
		}, true},
		{"key pair regenerated without grace", func(t *testing.T, name, _ string) {
			regenerate(t, s, name, 0)
		}, false},
		{"grace deadline passed", func(t *testing.T, name, sig string) {
			regenerate(t, s, name, 10*time.Minute)
			clk.Advance(10*time.Minute - time.Microsecond)
			if !tokenActive(t, s, sig) {
				t.Fatal("token inactive during its pair's grace")
			}
			clk.Advance(time.Microsecond)
		}, false},
		{"integration deleted", func(t *testing.T, name, _ string) {
			if err := s.DeleteIntegration(ctx, name, testActor); err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
		}, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("inactive-%d", i)
			_, nk := createIntegration(t, s, IntegrationInput{Name: name})
			_, other := createIntegration(t, s, IntegrationInput{Name: name + "-other"})
			expires := clk.Now().Add(time.Hour).Truncate(time.Microsecond)
			sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
			otherSig := issueToken(t, s, clk, other.ClientID, 2*time.Hour)
			if !tokenActive(t, s, sig) {
				t.Fatal("fresh token inactive")
			}
			tc.revoke(t, name, sig)
			tok := findToken(t, s, sig)
			switch {
			case tc.gone && tok != nil:
				t.Errorf("GetToken = %+v, want ErrNotFound", tok)
			case !tc.gone && tok == nil:
				t.Error("GetToken = ErrNotFound, want the token as stored")
			case !tc.gone && !tok.ExpiresAt.Equal(expires):
				t.Errorf("ExpiresAt = %v, want %v as stored", tok.ExpiresAt, expires)
			case !tc.gone && tokenLive(tok, s.Now()):
				t.Errorf("token live: expires %v, pair deadline %v, now %v", tok.ExpiresAt, tok.Owner.ExpiresAt, s.Now())
			}
			if !tokenActive(t, s, otherSig) {
				t.Error("another integration's token became inactive")
			}
		})
	}
}

func testAccessTokenIssuedDuringGrace(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, old := createIntegration(t, s, IntegrationInput{Name: "overlap"})
	before := issueToken(t, s, clk, old.ClientID, 10*time.Hour)
	beforeExpiry := s.Now().Add(10 * time.Hour)
	deadline := s.Now().Add(30 * time.Minute)
	nk := regenerate(t, s, "overlap", 30*time.Minute)
	clk.Advance(20 * time.Minute)
	// A token for the old pair reaching past the deadline is refused: the
	// issuer authenticated before learning of the grace and must retry.
	long := newToken(getClient(t, s, old.ClientID), clk.Now(), 10*time.Hour)
	if err := s.CreateToken(ctx, long, clk.Now()); !errors.Is(err, ErrKeyPairChanged) {
		t.Fatalf("token outliving the grace deadline: err = %v, want ErrKeyPairChanged", err)
	}
	// The pair must work at the caller's now, not only on the store's
	// clock: a token issued as of the deadline is refused, though it
	// would not outlive the pair.
	late := newToken(getClient(t, s, old.ClientID), deadline, 0)
	if err := s.CreateToken(ctx, late, deadline); !errors.Is(err, ErrKeyPairChanged) {
		t.Fatalf("token issued at the grace deadline: err = %v, want ErrKeyPairChanged", err)
	}
	// Cut to the deadline, as the server does after authenticating again,
	// it is stored.
	during := issueToken(t, s, clk, old.ClientID, deadline.Sub(clk.Now()))
	short := issueToken(t, s, clk, old.ClientID, 5*time.Minute)
	fresh := issueToken(t, s, clk, nk.ClientID, 10*time.Hour)
	// The store reports each token's own expiry and its pair's deadline;
	// introspection reports the earlier of the two as exp.
	tests := []struct {
		name, sig    string
		wantExpiry   time.Time
		wantDeadline *time.Time
	}{
		{"issued before the regeneration", before, beforeExpiry, &deadline},
		{"issued during the grace", during, deadline, &deadline},
		{"expiring before the deadline", short, s.Now().Add(5 * time.Minute), &deadline},
		{"issued to the new pair", fresh, s.Now().Add(10 * time.Hour), nil},
	}
	for _, tc := range tests {
		tok := findToken(t, s, tc.sig)
		if tok == nil {
			t.Errorf("%s: GetToken during the grace = ErrNotFound", tc.name)
			continue
		}
		if !tok.ExpiresAt.Equal(tc.wantExpiry) {
			t.Errorf("%s: ExpiresAt = %v, want %v", tc.name, tok.ExpiresAt, tc.wantExpiry)
		}
		if got := tok.Owner.ExpiresAt; (got == nil) != (tc.wantDeadline == nil) || got != nil && !got.Equal(*tc.wantDeadline) {
			t.Errorf("%s: pair deadline = %v, want %v", tc.name, got, tc.wantDeadline)
		}
		if !tokenLive(tok, s.Now()) {
			t.Errorf("%s: token not live during the grace", tc.name)
		}
	}
	clk.Advance(10 * time.Minute)
	for _, sig := range []string{before, during, short} {
		if tokenActive(t, s, sig) {
			t.Errorf("token %s of the old pair outlived the grace deadline", sig)
		}
	}
	if !tokenActive(t, s, fresh) {
		t.Error("the new pair's token became inactive")
	}
}

// testAccessTokenDelete deletes one token by signature (how the revocation
// endpoint revokes, RFC 7009 §2.1): the pair's other tokens stay, and
// deleting what is gone succeeds.
func testAccessTokenDelete(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "revoker"})
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	kept := issueToken(t, s, clk, nk.ClientID, time.Hour)
	if err := s.DeleteToken(ctx, sig); err != nil {
		t.Fatalf("DeleteToken: %v", err)
	}
	if tok := findToken(t, s, sig); tok != nil {
		t.Errorf("GetToken of a deleted token = %+v, want ErrNotFound", tok)
	}
	if !tokenActive(t, s, kept) {
		t.Error("deleting one token took another of the same pair")
	}
	for _, sig := range []string{sig, "sig-unknown"} {
		if err := s.DeleteToken(ctx, sig); err != nil {
			t.Errorf("DeleteToken(%q) of nothing = %v, want nil", sig, err)
		}
	}
}

func testAccessTokenCreateForRevokedPair(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	tests := []struct {
		name   string
		revoke func(t *testing.T, name string)
	}{
		{"regenerated without grace", func(t *testing.T, name string) { regenerate(t, s, name, 0) }},
		{"grace deadline passed", func(t *testing.T, name string) {
			regenerate(t, s, name, time.Minute)
			clk.Advance(time.Minute)
		}},
		{"integration deleted", func(t *testing.T, name string) {
			if err := s.DeleteIntegration(ctx, name, testActor); err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
		}},
		{"integration disabled", func(t *testing.T, name string) { setDisabled(t, s, name, true) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("late-%d", i)
			_, nk := createIntegration(t, s, IntegrationInput{Name: name})
			// The token endpoint authenticated the client, then the pair was
			// revoked before the token was stored.
			c := getClient(t, s, nk.ClientID)
			tc.revoke(t, name)
			tok := newToken(c, clk.Now(), time.Hour)
			err := s.CreateToken(ctx, tok, clk.Now())
			if !errors.Is(err, ErrKeyPairChanged) {
				t.Fatalf("CreateToken = %v, want ErrKeyPairChanged", err)
			}
			// A refused token is the client's fault, not the database's:
			// the server answers invalid_client, not 503.
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("CreateToken = %v, which wraps ErrUnavailable", err)
			}
			if got := countRows(t, s, "SELECT COUNT(*) FROM access_tokens WHERE signature = ?", tok.Signature); got != 0 {
				t.Errorf("%d rows stored for a refused token, want 0", got)
			}
		})
	}
}

func testAccessTokenConcurrentRegenerate(t *testing.T, s *Store, clk *fakeClock) {
	concurrentRegenerate(t, s, s, clk)
}

// testAccessTokenConcurrentRegenerateOnReplica issues tokens through one
// store while another, on the same database, regenerates the pair: what
// two replicas do.
func testAccessTokenConcurrentRegenerateOnReplica(t *testing.T, s *Store, clk *fakeClock) {
	concurrentRegenerate(t, replicaOf(t, s), s, clk)
}

// concurrentRegenerate regenerates a pair through s while workers issue
// tokens for it through issuer: a token is stored only while its pair
// works, so none is stored for the old pair once RegenerateKeyPair has
// returned (CreateToken refuses a stale pair with ErrKeyPairChanged), and
// none stored before stays active.
func concurrentRegenerate(t *testing.T, issuer, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, old := createIntegration(t, s, IntegrationInput{Name: "busy", Scopes: []string{"read"}})
	stale := getClient(t, issuer, old.ClientID)

	const workers = 8
	const attemptsAfter = 5 // attempts each worker makes once regeneration returned
	var (
		regenerated atomic.Bool
		ready       sync.WaitGroup
		done        sync.WaitGroup
		mu          sync.Mutex
		issued      []string
	)
	ready.Add(workers)
	for w := range workers {
		done.Go(func() {
			readyOnce := sync.OnceFunc(ready.Done)
			defer readyOnce()
			after := 0
			for i := 0; after < attemptsAfter; i++ {
				if i > 10000 {
					t.Errorf("worker %d: regeneration never observed", w)
					return
				}
				startedAfter := regenerated.Load()
				if startedAfter {
					after++
				}
				// Odd workers look the client up for every token and refuse
				// a pair that no longer works, like the token endpoint; even
				// ones hold a client fetched before the regeneration, like a
				// request in flight, and leave the refusal to CreateToken.
				c := stale
				if w%2 == 1 {
					var err error
					c, err = issuer.GetClient(ctx, old.ClientID)
					if err != nil {
						// Regeneration keeps the old pair, revoked: it is
						// still found.
						t.Errorf("worker %d: GetClient: %v", w, err)
						return
					}
					if !pairWorks(c, issuer.Now()) {
						if !startedAfter {
							readyOnce() // never got a token in; do not hold up the test
						}
						continue
					}
					if startedAfter {
						t.Errorf("worker %d: GetClient reports the old pair working (deadline %v) after RegenerateKeyPair returned", w, c.ExpiresAt)
					}
				}
				tok := newToken(c, clk.Now(), time.Hour)
				tok.Signature = fmt.Sprintf("sig-%d-%d", w, i)
				err := issuer.CreateToken(ctx, tok, clk.Now())
				switch {
				case err == nil && startedAfter:
					t.Errorf("worker %d: token %s for the old pair stored after RegenerateKeyPair returned", w, tok.Signature)
				case err == nil:
					mu.Lock()
					issued = append(issued, tok.Signature)
					mu.Unlock()
					readyOnce()
				case errors.Is(err, ErrKeyPairChanged):
				default:
					t.Errorf("worker %d: CreateToken: %v", w, err)
					return
				}
			}
		})
	}

	ready.Wait() // every worker has a token in (or already lost its client)
	nk, err := s.RegenerateKeyPair(ctx, "busy", 0, testActor)
	regenerated.Store(true)
	if err != nil {
		t.Errorf("RegenerateKeyPair: %v", err)
	}
	done.Wait()
	if t.Failed() {
		return
	}

	if len(issued) == 0 {
		t.Fatal("no token was issued before the regeneration")
	}
	for _, sig := range issued {
		if tokenActive(t, s, sig) {
			t.Errorf("token %s of the old pair is active after regeneration", sig)
		}
	}
	if clientWorks(t, s, old.ClientID) {
		t.Error("old client ID works after regeneration")
	}
	if sig := issueToken(t, s, clk, nk.ClientID, time.Hour); !tokenActive(t, s, sig) {
		t.Error("the new pair's token is inactive")
	}
}

// testDatabaseUnavailable checks that a database failure is ErrUnavailable:
// on the OAuth path never mistaken for an unknown or revoked credential,
// and on every other path no bare driver error.
func testDatabaseUnavailable(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	_, nk := createIntegration(t, s, IntegrationInput{Name: "down"})
	c := getClient(t, s, nk.ClientID)
	sig := issueToken(t, s, clk, nk.ClientID, time.Hour)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrKeyPairChanged) {
			t.Errorf("%s on a closed store = %v, want ErrUnavailable only", op, err)
		}
	}
	_, err := s.GetClient(ctx, nk.ClientID)
	check("GetClient", err)
	_, err = s.GetToken(ctx, sig)
	check("GetToken", err)
	check("CreateToken", s.CreateToken(ctx, newToken(c, clk.Now(), time.Hour), clk.Now()))
	check("DeleteToken", s.DeleteToken(ctx, sig))
	check("Ping", s.Ping(ctx))
	// The admin operations report the same sentinel, so the admin API
	// answers 503 rather than 500; so do the janitor's and start-up's.
	_, err = s.GetIntegration(ctx, "down")
	check("GetIntegration", err)
	_, _, err = s.ListIntegrations(ctx, Page{})
	check("ListIntegrations", err)
	_, _, err = s.ListIntegrationTokens(ctx, "down", Page{})
	check("ListIntegrationTokens", err)
	_, _, err = s.CreateIntegration(ctx, IntegrationInput{Name: "other"}, testActor)
	check("CreateIntegration", err)
	_, err = s.RegenerateKeyPair(ctx, "down", 0, testActor)
	check("RegenerateKeyPair", err)
	check("DeleteIntegration", s.DeleteIntegration(ctx, "down", testActor))
	_, _, err = s.AuthenticateAdmin(ctx, credential.NewAdminToken())
	check("AuthenticateAdmin", err)
	_, _, err = s.ListAuditEvents(ctx, Page{})
	check("ListAuditEvents", err)
	_, _, err = s.ListAdmins(ctx, Page{})
	check("ListAdmins", err)
	_, _, err = s.ListAdminTokens(ctx, 1, Page{})
	check("ListAdminTokens", err)
	check("DeleteAdmin", s.DeleteAdmin(ctx, "down", testActor))
	_, err = s.SetAdminRole(ctx, "down", RoleAuditor, testActor)
	check("SetAdminRole", err)
	_, err = s.GetAdmin(ctx, "down")
	check("GetAdmin", err)
	_, err = s.SigningKeys(ctx)
	check("SigningKeys", err)
	_, err = s.EnsureSigningKey(ctx, ES256)
	check("EnsureSigningKey", err)
	_, err = s.RotateSigningKeyIfOlder(ctx, ES256, time.Hour)
	check("RotateSigningKeyIfOlder", err)
	_, err = s.Purge(ctx, 100)
	check("Purge", err)
	_, err = s.Migrate(ctx)
	check("Migrate", err)
}

// --- Admins ---

func createAdmin(t *testing.T, s *Store, name string, days int) (*Admin, *AdminToken, string) {
	t.Helper()
	a, tok, secret, err := s.CreateAdmin(t.Context(), name, RoleOwner, days, testActor)
	if err != nil {
		t.Fatalf("CreateAdmin(%q, %d): %v", name, days, err)
	}
	return a, tok, secret
}

func createAdminToken(t *testing.T, s *Store, a *Admin, description string, days int) (*AdminToken, string) {
	t.Helper()
	tok, secret, err := s.CreateAdminToken(t.Context(), a, description, days, nil, testActor)
	if err != nil {
		t.Fatalf("CreateAdminToken(%q, %q, %d): %v", a.Name, description, days, err)
	}
	return tok, secret
}

// adminAuthenticates reports whether token authenticates, as the admin
// called want; it fails the test on errors other than ErrNotFound.
func adminAuthenticates(t *testing.T, s *Store, token, want string) bool {
	t.Helper()
	a, _, err := s.AuthenticateAdmin(t.Context(), token)
	if errors.Is(err, ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("AuthenticateAdmin: %v", err)
	}
	if a.Name != want {
		t.Fatalf("AuthenticateAdmin = admin %q, want %q", a.Name, want)
	}
	return true
}

func listAdminTokens(t *testing.T, s *Store, adminID int64) []*AdminToken {
	t.Helper()
	toks, next, err := s.ListAdminTokens(t.Context(), adminID, Page{})
	if err != nil || next != "" {
		t.Fatalf("ListAdminTokens = %d tokens, next %q, %v", len(toks), next, err)
	}
	return toks
}

func testAdminCreateAuthenticate(t *testing.T, s *Store, _ *fakeClock) {
	now := s.Now()
	a, tok, secret := createAdmin(t, s, "alice", DefaultAdminTokenDays)
	if a.ID == 0 || a.Name != "alice" || !a.CreatedAt.Equal(now) {
		t.Errorf("admin = %+v, want alice created %v", a, now)
	}
	if !credential.ValidChecksummed(secret, credential.AdminTokenPrefix) {
		t.Errorf("admin token %q is not a checksummed lk_adm_ token", secret)
	}
	if !strings.HasPrefix(tok.ID, "adt_") || tok.AdminID != a.ID || !tok.CreatedAt.Equal(now) {
		t.Errorf("token = %+v, want an adt_ ID for admin %d created %v", tok, a.ID, now)
	}
	if want := now.Add(DefaultAdminTokenDays * 24 * time.Hour); tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(want) {
		t.Errorf("token ExpiresAt = %v, want %v", tok.ExpiresAt, want)
	}
	if strings.Contains(tok.ID, secret[len(credential.AdminTokenPrefix):len(credential.AdminTokenPrefix)+8]) {
		t.Error("the token's public ID is derived from the token")
	}

	got, _, err := s.AuthenticateAdmin(t.Context(), secret)
	if err != nil {
		t.Fatalf("AuthenticateAdmin: %v", err)
	}
	if got.ID != a.ID || got.Name != "alice" || !got.CreatedAt.Equal(now) {
		t.Errorf("AuthenticateAdmin = %+v, want %+v", got, a)
	}

	// A second token authenticates as the same admin, independently.
	_, second := createAdminToken(t, s, a, "laptop", 30)
	if !adminAuthenticates(t, s, second, "alice") || !adminAuthenticates(t, s, secret, "alice") {
		t.Error("an admin with two tokens cannot use both")
	}
	_, _, bobSecret := createAdmin(t, s, "bob", 1)
	if !adminAuthenticates(t, s, bobSecret, "bob") {
		t.Error("second admin cannot authenticate")
	}
	assertNotStored(t, s, secret, second, bobSecret)
}

func testAdminCreateErrors(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	alice, _, _ := createAdmin(t, s, "alice", 1)
	tests := []struct {
		name    string
		admin   string
		days    int
		wantErr error
	}{
		{"taken name", "alice", 1, ErrConflict},
		{"empty name", "", 1, ErrInvalid},
		{"uppercase name", "Alice", 1, ErrInvalid},
		{"zero days", "a0", 0, ErrInvalid},
		{"minus two days", "a1", -2, ErrInvalid},
		{"days above maximum", "a2", MaxAdminTokenDays + 1, ErrInvalid},
		{"days at maximum", "a3", MaxAdminTokenDays, nil},
		{"never expires", "a4", NeverExpires, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, secret, err := s.CreateAdmin(ctx, tc.admin, RoleOwner, tc.days, testActor)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateAdmin(%q, %d) = %v, want %v", tc.admin, tc.days, err, tc.wantErr)
			}
			if (err == nil) != (secret != "") {
				t.Errorf("CreateAdmin returned token %q with error %v", secret, err)
			}
		})
	}
	tokenTests := []struct {
		name        string
		description string
		days        int
		wantErr     error
	}{
		{"description too long", strings.Repeat("x", MaxDescriptionLen+1), 1, ErrInvalid},
		{"zero days", "d", 0, ErrInvalid},
		{"days above maximum", "d", MaxAdminTokenDays + 1, ErrInvalid},
	}
	for _, tc := range tokenTests {
		t.Run("token "+tc.name, func(t *testing.T) {
			if _, _, err := s.CreateAdminToken(ctx, alice, tc.description, tc.days, nil, testActor); !errors.Is(err, tc.wantErr) {
				t.Errorf("CreateAdminToken = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if got := len(listAdminTokens(t, s, alice.ID)); got != 1 {
		t.Errorf("alice has %d tokens after rejected creates, want 1", got)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM admins WHERE name = ?", "alice"); got != 1 {
		t.Errorf("%d admins called alice, want 1", got)
	}
}

// testAdminAuthenticateRejects offers tokens no admin holds. The store no
// longer checks a token's checksum (the admin API does, before the
// lookup): a malformed token is refused because no stored hash matches it.
func testAdminAuthenticateRejects(t *testing.T, s *Store, _ *fakeClock) {
	_, _, secret := createAdmin(t, s, "alice", NeverExpires)
	_, nk := createIntegration(t, s, IntegrationInput{Name: "svc"})
	tests := []struct{ name, token string }{
		{"empty", ""},
		{"prefix only", credential.AdminTokenPrefix},
		{"garbage", "hello"},
		{"with Bearer", "Bearer " + secret},
		{"one character short", secret[:len(secret)-1]},
		{"one character long", secret + "A"},
		{"one character changed", secret[:12] + string(secret[12]^1) + secret[13:]},
		{"unknown well-formed token", credential.NewAdminToken()},
		{"client secret", nk.ClientSecret},
		{"client ID", nk.ClientID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a, _, err := s.AuthenticateAdmin(t.Context(), tc.token); !errors.Is(err, ErrNotFound) {
				t.Errorf("AuthenticateAdmin(%q) = %+v, %v; want ErrNotFound", tc.token, a, err)
			}
		})
	}
}

func testAdminLastUsed(t *testing.T, s *Store, clk *fakeClock) {
	a, _, secret := createAdmin(t, s, "alice", DefaultAdminTokenDays)
	other, _ := createAdminToken(t, s, a, "unused", 10)
	lastUsed := func() *time.Time {
		t.Helper()
		for _, tok := range listAdminTokens(t, s, a.ID) {
			if tok.ID != other.ID {
				return tok.LastUsedAt
			}
		}
		t.Fatal("token missing from listing")
		return nil
	}
	if got := lastUsed(); got != nil {
		t.Fatalf("LastUsedAt = %v before use, want nil", *got)
	}
	clk.Advance(time.Second)
	first := s.Now()
	adminAuthenticates(t, s, secret, "alice")
	if got := lastUsed(); got == nil || !got.Equal(first) {
		t.Fatalf("LastUsedAt = %v after use, want %v", got, first)
	}
	// Refreshed at most once a minute.
	clk.Advance(30 * time.Second)
	adminAuthenticates(t, s, secret, "alice")
	if got := lastUsed(); got == nil || !got.Equal(first) {
		t.Errorf("LastUsedAt = %v 30 s later, want unchanged %v", got, first)
	}
	clk.Advance(30 * time.Second)
	adminAuthenticates(t, s, secret, "alice")
	if got, want := lastUsed(), first.Add(time.Minute); got == nil || !got.Equal(want) {
		t.Errorf("LastUsedAt = %v a minute later, want %v", got, want)
	}
	for _, tok := range listAdminTokens(t, s, a.ID) {
		if tok.ID == other.ID && tok.LastUsedAt != nil {
			t.Errorf("unused token LastUsedAt = %v, want nil", *tok.LastUsedAt)
		}
	}
}

func testAdminTokenExpiry(t *testing.T, s *Store, clk *fakeClock) {
	a, tok, secret := createAdmin(t, s, "alice", DefaultAdminTokenDays)
	_, never := createAdminToken(t, s, a, "never", NeverExpires)
	clk.Advance(DefaultAdminTokenDays*24*time.Hour - time.Microsecond)
	if !adminAuthenticates(t, s, secret, "alice") {
		t.Fatal("token rejected just before its expiry")
	}
	clk.Advance(time.Microsecond)
	if adminAuthenticates(t, s, secret, "alice") {
		t.Error("token accepted at its expiry")
	}
	var listed bool
	for _, got := range listAdminTokens(t, s, a.ID) {
		if got.ID == tok.ID {
			listed = true
			if got.ExpiresAt == nil || got.ExpiresAt.After(s.Now()) {
				t.Errorf("expired token listed with ExpiresAt %v, want its past expiry", got.ExpiresAt)
			}
		}
	}
	if !listed {
		t.Error("expired token no longer listed; it stays for ExpiredAdminTokenRetention")
	}
	if !adminAuthenticates(t, s, never, "alice") {
		t.Error("the admin's other token stopped working")
	}
}

func testAdminTokenNeverExpires(t *testing.T, s *Store, clk *fakeClock) {
	a, first, secret := createAdmin(t, s, "alice", NeverExpires)
	if first.ExpiresAt != nil {
		t.Errorf("initial token ExpiresAt = %v, want nil (never)", *first.ExpiresAt)
	}
	tok, second := createAdminToken(t, s, a, "ci", NeverExpires)
	if tok.ExpiresAt != nil || tok.Description != "ci" {
		t.Errorf("token = %+v, want description ci and no expiry", tok)
	}
	clk.Advance(20 * 365 * 24 * time.Hour)
	for _, token := range []string{secret, second} {
		if !adminAuthenticates(t, s, token, "alice") {
			t.Error("a never-expiring token expired")
		}
	}
	if got := len(listAdminTokens(t, s, a.ID)); got != 2 {
		t.Errorf("%d tokens listed, want 2", got)
	}
}

func testAdminRevokeToken(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	alice, _, aliceFirst := createAdmin(t, s, "alice", 30)
	bob, _, bobFirst := createAdmin(t, s, "bob", 30)
	tok, aliceSecond := createAdminToken(t, s, alice, "script", 30)

	if err := s.RevokeAdminToken(ctx, bob.ID, tok.ID, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAdminToken of another admin's token = %v, want ErrNotFound", err)
	}
	if !adminAuthenticates(t, s, aliceSecond, "alice") {
		t.Fatal("another admin revoked alice's token")
	}
	if err := s.RevokeAdminToken(ctx, alice.ID, tok.ID, testActor); err != nil {
		t.Fatalf("RevokeAdminToken of own token: %v", err)
	}
	if adminAuthenticates(t, s, aliceSecond, "alice") {
		t.Error("revoked token still authenticates")
	}
	if !adminAuthenticates(t, s, aliceFirst, "alice") || !adminAuthenticates(t, s, bobFirst, "bob") {
		t.Error("revoking one token affected others")
	}
	for _, tc := range []struct{ name, id string }{{"already revoked", tok.ID}, {"unknown", "adt_unknown"}, {"empty", ""}} {
		if err := s.RevokeAdminToken(ctx, alice.ID, tc.id, testActor); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeAdminToken(%s) = %v, want ErrNotFound", tc.name, err)
		}
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM audit_events WHERE action = ? AND object = ?", "admin_token.revoke", tok.ID); got != 1 {
		t.Errorf("%d admin_token.revoke events, want 1", got)
	}
}

func testAdminDelete(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	alice, _, first := createAdmin(t, s, "alice", 30)
	_, second := createAdminToken(t, s, alice, "other", NeverExpires)
	_, _, bobToken := createAdmin(t, s, "bob", 30)

	if err := s.DeleteAdmin(ctx, "alice", testActor); err != nil {
		t.Fatalf("DeleteAdmin: %v", err)
	}
	for _, token := range []string{first, second} {
		if adminAuthenticates(t, s, token, "alice") {
			t.Error("a deleted admin's token still authenticates")
		}
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM admin_tokens WHERE admin_id = ?", alice.ID); got != 0 {
		t.Errorf("%d admin_tokens rows left for the deleted admin, want 0", got)
	}
	if !adminAuthenticates(t, s, bobToken, "bob") {
		t.Error("deleting alice affected bob")
	}
	if err := s.DeleteAdmin(ctx, "alice", testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteAdmin = %v, want ErrNotFound", err)
	}
	if _, _, err := s.CreateAdminToken(ctx, alice, "late", 1, nil, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("CreateAdminToken for a deleted admin = %v, want ErrNotFound", err)
	}
	// The name can be reused; the new admin does not inherit old tokens.
	createAdmin(t, s, "alice", 30)
	if adminAuthenticates(t, s, first, "alice") {
		t.Error("an old token authenticates as the re-created admin")
	}
}

func testAdminEnsure(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	first, err := s.EnsureAdmin(ctx, BootstrapAdmin)
	if err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	if first.ID == 0 || first.Name != BootstrapAdmin || !first.CreatedAt.Equal(s.Now()) {
		t.Errorf("EnsureAdmin = %+v, want %s created now", first, BootstrapAdmin)
	}
	clk.Advance(time.Hour)
	again, err := s.EnsureAdmin(ctx, BootstrapAdmin)
	if err != nil {
		t.Fatalf("EnsureAdmin again: %v", err)
	}
	if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("EnsureAdmin again = %+v, want the existing %+v", again, first)
	}
	created, _, _ := createAdmin(t, s, "alice", 1)
	if got, err := s.EnsureAdmin(ctx, "alice"); err != nil || got.ID != created.ID {
		t.Errorf("EnsureAdmin(alice) = %+v, %v; want the admin CreateAdmin made (ID %d)", got, err, created.ID)
	}
	if _, err := s.EnsureAdmin(ctx, "Not Valid"); !errors.Is(err, ErrInvalid) {
		t.Errorf("EnsureAdmin(bad name) = %v, want ErrInvalid", err)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM admins"); got != 2 {
		t.Errorf("%d admins, want 2", got)
	}
}

func testAdminListTokens(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	alice, first, _ := createAdmin(t, s, "alice", 30)
	want := []string{first.ID}
	for i := range 4 {
		clk.Advance(time.Second)
		tok, _ := createAdminToken(t, s, alice, fmt.Sprintf("token %d", i), 30)
		want = append(want, tok.ID)
	}
	bob, _, _ := createAdmin(t, s, "bob", 30)

	var got []string
	var pages []int
	page := Page{Limit: 2}
	for range 10 {
		toks, next, err := s.ListAdminTokens(ctx, alice.ID, page)
		if err != nil {
			t.Fatalf("ListAdminTokens(%+v): %v", page, err)
		}
		pages = append(pages, len(toks))
		for _, tok := range toks {
			if tok.AdminID != alice.ID {
				t.Errorf("token %s of admin %d listed for alice", tok.ID, tok.AdminID)
			}
			got = append(got, tok.ID)
		}
		if next == "" {
			break
		}
		page.Token = next
	}
	if !slices.Equal(got, want) {
		t.Errorf("tokens = %q, want oldest first %q", got, want)
	}
	if !slices.Equal(pages, []int{2, 2, 1}) {
		t.Errorf("page sizes = %v, want [2 2 1]", pages)
	}
	if got := len(listAdminTokens(t, s, bob.ID)); got != 1 {
		t.Errorf("bob has %d tokens listed, want 1", got)
	}
	for _, token := range []string{"!!!", pageToken("not-a-number")} {
		if _, _, err := s.ListAdminTokens(ctx, alice.ID, Page{Token: token}); !errors.Is(err, ErrInvalid) {
			t.Errorf("ListAdminTokens(page token %q) = %v, want ErrInvalid", token, err)
		}
	}

	// Expired tokens stay listed for ExpiredAdminTokenRetention, then
	// drop out even before the janitor deletes them.
	createAdminToken(t, s, alice, "short", 1)
	clk.Advance(24 * time.Hour)
	if got := len(listAdminTokens(t, s, alice.ID)); got != 6 {
		t.Errorf("%d tokens listed after one expired, want 6", got)
	}
	clk.Advance(ExpiredAdminTokenRetention)
	if got := len(listAdminTokens(t, s, alice.ID)); got != 5 {
		t.Errorf("%d tokens listed once the expired one's retention ended, want 5", got)
	}
}

func testAdminList(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	for _, name := range []string{"dave", "alice", "carol", "bob", "erin"} {
		createAdmin(t, s, name, 1)
	}
	var got []string
	page := Page{Limit: 2}
	for range 10 {
		admins, next, err := s.ListAdmins(ctx, page)
		if err != nil {
			t.Fatalf("ListAdmins(%+v): %v", page, err)
		}
		for _, a := range admins {
			got = append(got, a.Name)
		}
		if next == "" {
			break
		}
		page.Token = next
	}
	if want := []string{"alice", "bob", "carol", "dave", "erin"}; !slices.Equal(got, want) {
		t.Errorf("admins = %q, want %q", got, want)
	}
	if _, _, err := s.ListAdmins(ctx, Page{Token: "!!!"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ListAdmins(bad page token) = %v, want ErrInvalid", err)
	}
}

func testAdminAudit(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	root := Actor{Type: "admin", Name: BootstrapAdmin, RemoteAddr: "192.0.2.9:9999"}
	alice, initial, first, err := s.CreateAdmin(ctx, "alice", RoleOperator, 30, root)
	if err != nil {
		t.Fatalf("CreateAdmin: %v", err)
	}
	self := Actor{Type: "admin", Name: "alice", RemoteAddr: "192.0.2.1:1"}
	tok, second, err := s.CreateAdminToken(ctx, alice, "laptop", 7, nil, self)
	if err != nil {
		t.Fatalf("CreateAdminToken: %v", err)
	}
	if err := s.RevokeAdminToken(ctx, alice.ID, tok.ID, self); err != nil {
		t.Fatalf("RevokeAdminToken: %v", err)
	}
	if err := s.DeleteAdmin(ctx, "alice", root); err != nil {
		t.Fatalf("DeleteAdmin: %v", err)
	}
	events, _, err := s.ListAuditEvents(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	type ev struct{ action, objectType, object, actor string }
	var got []ev
	for _, e := range events {
		got = append(got, ev{e.Action, e.ObjectType, e.Object, e.Actor})
		if e.Action == "admin_token.create" && e.Object == tok.ID && e.RemoteAddr != self.RemoteAddr {
			t.Errorf("admin_token.create remote address = %q, want %q", e.RemoteAddr, self.RemoteAddr)
		}
	}
	want := []ev{
		{"admin.delete", "admin", "alice", BootstrapAdmin},
		{"admin_token.revoke", "admin_token", tok.ID, "alice"},
		{"admin_token.create", "admin_token", tok.ID, "alice"},
		{"admin_token.create", "admin_token", initial.ID, BootstrapAdmin},
		{"admin.create", "admin", "alice", BootstrapAdmin},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit events =\n%v\nwant\n%v", got, want)
	}
	assertNotStored(t, s, first, second)
}

// --- Audit ---

func testAuditByIntegration(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	by := Actor{Type: "admin", Name: "alice", RemoteAddr: "198.51.100.7"}
	write := func(action, objectType, object string) {
		t.Helper()
		clk.Advance(time.Second)
		if err := s.audit(s.w.WithContext(ctx), by, action, objectType, object, nil); err != nil {
			t.Fatalf("audit: %v", err)
		}
	}
	write("integration.create", "integration", "billing")
	write("integration.create", "integration", "billing-2")
	write("key_pair.regenerate", "integration", "billing")
	write("admin.create", "admin", "billing") // an admin that shares the name
	write("integration.delete", "integration", "billing")

	var got []string
	page := Page{Limit: 2}
	for range 10 {
		events, next, err := s.FindAuditEvents(ctx, AuditFilter{Integration: "billing"}, page)
		if err != nil {
			t.Fatalf("FindAuditEvents: %v", err)
		}
		for _, e := range events {
			got = append(got, e.Action+" "+e.ObjectType+"/"+e.Object)
		}
		if next == "" {
			break
		}
		page.Token = next
	}
	want := []string{"integration.delete integration/billing", "key_pair.regenerate integration/billing", "integration.create integration/billing"}
	if !slices.Equal(got, want) {
		t.Errorf("events about billing = %q, want %q (newest first, nothing else)", got, want)
	}
	all, _, err := s.FindAuditEvents(ctx, AuditFilter{}, Page{})
	if err != nil || len(all) != 5 {
		t.Errorf("no filter: %d events, %v; want all 5", len(all), err)
	}
}

func testAuditList(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	by := Actor{Type: "integration", Name: "svc", RemoteAddr: "198.51.100.7:443"}
	var times []time.Time
	for i := range 5 {
		clk.Advance(time.Second)
		times = append(times, s.Now())
		if err := s.audit(s.w.WithContext(ctx), by, "access_token.revoke", "access_token", fmt.Sprintf("req-%d", i), map[string]any{"n": i}); err != nil {
			t.Fatalf("Audit: %v", err)
		}
	}
	var got []AuditEvent
	var pages []int
	page := Page{Limit: 2}
	for range 10 {
		events, next, err := s.ListAuditEvents(ctx, page)
		if err != nil {
			t.Fatalf("ListAuditEvents(%+v): %v", page, err)
		}
		pages = append(pages, len(events))
		got = append(got, events...)
		if next == "" {
			break
		}
		page.Token = next
	}
	if !slices.Equal(pages, []int{2, 2, 1}) {
		t.Errorf("page sizes = %v, want [2 2 1]", pages)
	}
	if len(got) != 5 {
		t.Fatalf("%d events, want 5", len(got))
	}
	for i, e := range got {
		n := 4 - i // newest first
		if e.Object != fmt.Sprintf("req-%d", n) || e.Action != "access_token.revoke" || e.ObjectType != "access_token" {
			t.Errorf("event %d = %s %s/%s, want access_token.revoke access_token/req-%d", i, e.Action, e.ObjectType, e.Object, n)
		}
		if e.ActorType != by.Type || e.Actor != by.Name || e.RemoteAddr != by.RemoteAddr {
			t.Errorf("event %d actor = %s/%s from %s, want %+v", i, e.ActorType, e.Actor, e.RemoteAddr, by)
		}
		if !e.Time.Equal(times[n]) {
			t.Errorf("event %d time = %v, want %v", i, e.Time, times[n])
		}
		if got, want := e.Details["n"], float64(n); got != want {
			t.Errorf("event %d details n = %v, want %v", i, got, want)
		}
		if i > 0 && e.ID >= got[i-1].ID {
			t.Errorf("event IDs not descending: %d after %d", e.ID, got[i-1].ID)
		}
	}

	if err := s.audit(s.w.WithContext(ctx), by, "noop", "thing", "x", nil); err != nil {
		t.Fatalf("Audit with nil details: %v", err)
	}
	events, _, err := s.ListAuditEvents(ctx, Page{Limit: 1})
	if err != nil || len(events) != 1 || events[0].Action != "noop" || len(events[0].Details) != 0 {
		t.Errorf("ListAuditEvents(limit 1) = %+v, %v; want the noop event with no details", events, err)
	}

	for _, token := range []string{"!!!", pageToken("abc")} {
		if _, _, err := s.ListAuditEvents(ctx, Page{Token: token}); !errors.Is(err, ErrInvalid) {
			t.Errorf("ListAuditEvents(page token %q) = %v, want ErrInvalid", token, err)
		}
	}
}

// --- Purge ---

func testPurgeBatches(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	const n = 5

	// Admin tokens: n expire after a day; two never do or outlive the test.
	ops, _, neverToken := createAdmin(t, s, "ops", NeverExpires)
	for i := range n {
		createAdminToken(t, s, ops, fmt.Sprint("short ", i), 1)
	}
	_, monthToken := createAdminToken(t, s, ops, "month", 30)

	// A live pair with n tokens that expire and one that does not.
	_, live := createIntegration(t, s, IntegrationInput{Name: "live"})
	for range n {
		issueToken(t, s, clk, live.ClientID, time.Minute)
	}
	liveSig := issueToken(t, s, clk, live.ClientID, 10*24*time.Hour)

	// n revoked pairs; the first holds n long-lived tokens.
	rotated, first := createIntegration(t, s, IntegrationInput{Name: "rotated"})
	for range n {
		issueToken(t, s, clk, first.ClientID, 10*24*time.Hour)
	}
	var current *NewKeyPair
	for range n {
		current = regenerate(t, s, "rotated", 0)
	}
	currentSig := issueToken(t, s, clk, current.ClientID, 10*24*time.Hour)

	// A pair still in its grace period, with a token.
	_, graced := createIntegration(t, s, IntegrationInput{Name: "graced"})
	gracedSig := issueToken(t, s, clk, graced.ClientID, 10*24*time.Hour)
	regenerate(t, s, "graced", 7*24*time.Hour)

	clk.Advance(2 * 24 * time.Hour)
	before := map[string]int64{}
	for _, table := range []string{"access_tokens", "key_pairs", "admin_tokens"} {
		before[table] = countRows(t, s, "SELECT COUNT(*) FROM "+table)
	}

	got, err := s.Purge(ctx, 2)
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	// n expired tokens + n tokens of revoked pairs + n revoked pairs; the
	// admin tokens expired a day ago stay listed for
	// ExpiredAdminTokenRetention (testPurgeExpiredAdminTokens).
	if want := int64(3 * n); got != want {
		t.Errorf("Purge deleted %d rows, want %d", got, want)
	}
	wantLeft := map[string]int64{
		"access_tokens": before["access_tokens"] - 2*n, // live, current, graced remain
		"key_pairs":     before["key_pairs"] - n,       // live, rotated's current, graced's two
		"admin_tokens":  before["admin_tokens"],        // never, month, the n expired
	}
	for table, want := range wantLeft {
		if got := countRows(t, s, "SELECT COUNT(*) FROM "+table); got != want {
			t.Errorf("%s: %d rows after Purge, want %d", table, got, want)
		}
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM access_tokens"); got != 3 {
		t.Errorf("%d access tokens left, want 3", got)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM key_pairs WHERE integration_id = ?", rotated.ID); got != 1 {
		t.Errorf("rotated has %d key pairs left, want 1", got)
	}
	for _, sig := range []string{liveSig, currentSig, gracedSig} {
		if !tokenActive(t, s, sig) {
			t.Errorf("live token %s purged or inactive", sig)
		}
	}
	for _, id := range []string{live.ClientID, current.ClientID, graced.ClientID} {
		if !clientWorks(t, s, id) {
			t.Errorf("working pair %s purged", id)
		}
	}
	for _, token := range []string{neverToken, monthToken} {
		if !adminAuthenticates(t, s, token, "ops") {
			t.Error("live admin token purged")
		}
	}

	if got, err := s.Purge(ctx, 2); err != nil || got != 0 {
		t.Errorf("second Purge = %d, %v; want 0, nil", got, err)
	}
}

// testPurgeExpiredAdminTokens: an expired admin token is listed, and
// refused, until ExpiredAdminTokenRetention after its expiry, when the
// janitor deletes it; a token that never expires is never purged.
func testPurgeExpiredAdminTokens(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	a, _, never := createAdmin(t, s, "ops", NeverExpires)
	short, secret := createAdminToken(t, s, a, "short", 1)
	listed := func() bool {
		t.Helper()
		for _, tok := range listAdminTokens(t, s, a.ID) {
			if tok.ID == short.ID {
				return true
			}
		}
		return false
	}

	clk.Advance(24*time.Hour + ExpiredAdminTokenRetention - time.Microsecond)
	if got, err := s.Purge(ctx, 10); err != nil || got != 0 {
		t.Errorf("Purge just before the retention ends = %d, %v; want 0, nil", got, err)
	}
	if !listed() {
		t.Error("a token expired for less than the retention is no longer listed")
	}
	if adminAuthenticates(t, s, secret, "ops") {
		t.Error("an expired token kept for the listing authenticates")
	}

	clk.Advance(time.Microsecond)
	if got, err := s.Purge(ctx, 10); err != nil || got != 1 {
		t.Errorf("Purge when the retention ends = %d, %v; want 1, nil", got, err)
	}
	if listed() {
		t.Error("a token expired for the whole retention is still listed")
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM admin_tokens WHERE admin_id = ?", a.ID); got != 1 {
		t.Errorf("ops has %d admin tokens left, want 1 (the one that never expires)", got)
	}
	if !adminAuthenticates(t, s, never, "ops") {
		t.Error("the token that never expires was purged")
	}
}

func testPurgeArguments(t *testing.T, s *Store, clk *fakeClock) {
	_, nk := createIntegration(t, s, IntegrationInput{Name: "p"})
	issueToken(t, s, clk, nk.ClientID, time.Minute)
	clk.Advance(time.Hour)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Purge(cancelled, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Purge with a cancelled context = %v, want context.Canceled", err)
	}
	for _, batch := range []int{0, -1} {
		if _, err := s.Purge(t.Context(), batch); !errors.Is(err, ErrInvalid) {
			t.Errorf("Purge(batch %d) = %v, want ErrInvalid", batch, err)
		}
	}
	if got, err := s.Purge(t.Context(), 1); err != nil || got != 1 {
		t.Errorf("Purge(batch 1) = %d, %v; want 1, nil", got, err)
	}
}

// --- Replicas: two stores on one database ---

func testReplicaSeesChangesAtOnce(t *testing.T, a *Store, clk *fakeClock) {
	ctx := t.Context()
	b := replicaOf(t, a)

	_, first := createIntegration(t, a, IntegrationInput{Name: "shared", CanIntrospect: true})
	if !clientWorks(t, b, first.ClientID) {
		t.Fatal("a pair created on A does not work on B")
	}
	sig := issueToken(t, a, clk, first.ClientID, time.Hour)
	if !tokenActive(t, b, sig) {
		t.Fatal("a token issued on A is inactive on B")
	}

	second := regenerate(t, b, "shared", 0)
	if clientWorks(t, a, first.ClientID) {
		t.Error("the pair regenerated away on B still works on A")
	}
	if tokenActive(t, a, sig) {
		t.Error("the old pair's token is active on A after regeneration on B")
	}
	if !clientWorks(t, a, second.ClientID) {
		t.Error("the new pair made on B does not work on A")
	}

	sig2 := issueToken(t, b, clk, second.ClientID, time.Hour)
	if err := a.DeleteToken(ctx, sig2); err != nil {
		t.Fatalf("DeleteToken on A: %v", err)
	}
	if tok := findToken(t, b, sig2); tok != nil {
		t.Errorf("a token deleted on A is found on B: %+v", tok)
	}

	admin, _, adminToken := createAdmin(t, a, "carol", 30)
	if got, _, err := b.AuthenticateAdmin(ctx, adminToken); err != nil || got.ID != admin.ID {
		t.Errorf("B.AuthenticateAdmin(token made on A) = %v, %v; want admin %d", got, err, admin.ID)
	}

	sig3 := issueToken(t, a, clk, second.ClientID, time.Hour)
	if err := b.DeleteIntegration(ctx, "shared", testActor); err != nil {
		t.Fatalf("DeleteIntegration on B: %v", err)
	}
	if findToken(t, a, sig3) != nil || findClient(t, a, second.ClientID) != nil {
		t.Error("the deleted integration's pair or token is still found on A")
	}
}

// testReplicaConcurrentRegenerate regenerates one integration from two
// stores at once: every call succeeds, and exactly one pair is current
// afterwards, the one the last regeneration made; every other pair made on
// the way is revoked.
func testReplicaConcurrentRegenerate(t *testing.T, a *Store, clk *fakeClock) {
	ctx := t.Context()
	b := replicaOf(t, a)
	_, first := createIntegration(t, a, IntegrationInput{Name: "contested"})

	const perStore, rounds = 4, 5
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = []string{first.ClientID}
	)
	for w := range 2 * perStore {
		st := a
		if w%2 == 1 {
			st = b
		}
		wg.Go(func() {
			for range rounds {
				nk, err := st.RegenerateKeyPair(ctx, "contested", 0, testActor)
				if err != nil {
					t.Errorf("RegenerateKeyPair: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, nk.ClientID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := countRows(t, a, "SELECT COUNT(*) FROM key_pairs WHERE expires_at IS NULL"); got != 1 {
		t.Fatalf("%d current key pairs after concurrent regeneration, want exactly 1", got)
	}
	current := getIntegration(t, b, "contested").KeyPair.ClientID
	working := 0
	for _, id := range ids {
		if clientWorks(t, a, id) {
			working++
			if id != current {
				t.Errorf("client %s works but is not the current pair %s", id, current)
			}
		}
	}
	if working != 1 {
		t.Errorf("%d of %d pairs work, want exactly 1", working, len(ids))
	}
	if got, want := countRows(t, a, "SELECT COUNT(*) FROM audit_events WHERE action = ?", "key_pair.regenerate"), int64(2*perStore*rounds); got != want {
		t.Errorf("%d regeneration audit events, want %d", got, want)
	}
}
