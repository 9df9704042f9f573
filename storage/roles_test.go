package storage

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage/storagetest"
)

// The conformance tests of roles, admin token permissions and the last
// owner; runConformance lists them.

func createAdminAs(t *testing.T, s *Store, name string, role Role) (*Admin, string) {
	t.Helper()
	a, _, secret, err := s.CreateAdmin(t.Context(), name, role, 30, testActor)
	if err != nil {
		t.Fatalf("CreateAdmin(%q, %s): %v", name, role, err)
	}
	return a, secret
}

func roleOf(t *testing.T, s *Store, name string) Role {
	t.Helper()
	a, err := s.GetAdmin(t.Context(), name)
	if err != nil {
		t.Fatalf("GetAdmin(%q): %v", name, err)
	}
	return a.Role
}

func testAdminRoles(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	for _, r := range Roles {
		a, secret := createAdminAs(t, s, "a-"+string(r), r)
		if a.Role != r {
			t.Errorf("CreateAdmin(%s) = role %q", r, a.Role)
		}
		got, tok, err := s.AuthenticateAdmin(ctx, secret)
		if err != nil {
			t.Fatalf("AuthenticateAdmin: %v", err)
		}
		if got.Role != r || tok.Permissions != nil || tok.AdminID != a.ID {
			t.Errorf("AuthenticateAdmin = %+v, token %+v; want role %s and a token following it", got, tok, r)
		}
		if eff := EffectivePermissions(got.Role, tok.Permissions); !slices.Equal(eff, RolePermissions(r)) {
			t.Errorf("%s's first token may %v, want the role's %v", r, eff, RolePermissions(r))
		}
	}
	for _, bad := range []Role{"", "root", "Owner"} {
		if _, _, _, err := s.CreateAdmin(ctx, "bad", bad, 30, testActor); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateAdmin(role %q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := s.SetAdminRole(ctx, "a-owner", bad, testActor); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetAdminRole(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if n := countRows(t, s, "SELECT COUNT(*) FROM admins WHERE name = ?", "bad"); n != 0 {
		t.Errorf("an admin with a bad role was stored")
	}
	admins, _, err := s.ListAdmins(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAdmins: %v", err)
	}
	var got []string
	for _, a := range admins {
		got = append(got, a.Name+"="+string(a.Role))
	}
	if want := []string{"a-auditor=auditor", "a-operator=operator", "a-owner=owner"}; !slices.Equal(got, want) {
		t.Errorf("ListAdmins = %v, want %v", got, want)
	}
	if _, err := s.GetAdmin(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAdmin(nobody) = %v, want ErrNotFound", err)
	}
	boot, err := s.EnsureAdmin(ctx, BootstrapAdmin)
	if err != nil || boot.Role != RoleOwner {
		t.Errorf("EnsureAdmin(bootstrap) = %+v, %v; want an owner", boot, err)
	}

	// A role change is audited with the old and the new role; setting the
	// role an admin has is no change.
	if a, err := s.SetAdminRole(ctx, "a-operator", RoleAuditor, testActor); err != nil || a.Role != RoleAuditor {
		t.Fatalf("SetAdminRole = %+v, %v; want an auditor", a, err)
	}
	if _, err := s.SetAdminRole(ctx, "a-operator", RoleAuditor, testActor); err != nil {
		t.Fatalf("SetAdminRole to the same role: %v", err)
	}
	if got := roleOf(t, s, "a-operator"); got != RoleAuditor {
		t.Errorf("role after SetAdminRole = %s, want auditor", got)
	}
	events, _, err := s.ListAuditEvents(ctx, Page{})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	var updates []string
	for _, e := range events {
		if e.Action == "admin.update" {
			updates = append(updates, fmt.Sprint(e.Object, e.Details))
		}
	}
	if want := []string{"a-operatormap[role:map[new:auditor old:operator]]"}; !slices.Equal(updates, want) {
		t.Errorf("admin.update events = %q, want %q", updates, want)
	}
	if _, err := s.SetAdminRole(ctx, "nobody", RoleOwner, testActor); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetAdminRole(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := s.SetAdminRole(ctx, BootstrapAdmin, RoleAuditor, testActor); !errors.Is(err, ErrConflict) {
		t.Errorf("SetAdminRole(bootstrap) = %v, want ErrConflict", err)
	}
}

func testAdminTokenPermissions(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	op, _ := createAdminAs(t, s, "op", RoleOperator)
	tests := []struct {
		name    string
		perms   []Permission
		want    []Permission
		wantErr error
	}{
		{"following the role", nil, nil, nil},
		{"one", []Permission{IntegrationsRead}, []Permission{IntegrationsRead}, nil},
		{"deduplicated in the table's order", []Permission{AuditRead, IntegrationsRead, AuditRead},
			[]Permission{IntegrationsRead, AuditRead}, nil},
		{"none", []Permission{}, []Permission{}, nil},
		{"unknown", []Permission{"integrations:admin"}, nil, ErrInvalid},
		{"beyond the role", []Permission{IntegrationsRead, SigningKeysWrite}, nil, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, secret, err := s.CreateAdminToken(ctx, op, tc.name, 1, tc.perms, testActor)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateAdminToken(%v) = %v, want %v", tc.perms, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if !slices.Equal(tok.Permissions, tc.want) || (tok.Permissions == nil) != (tc.want == nil) {
				t.Errorf("created token permissions = %#v, want %#v", tok.Permissions, tc.want)
			}
			_, got, err := s.AuthenticateAdmin(ctx, secret)
			if err != nil {
				t.Fatalf("AuthenticateAdmin: %v", err)
			}
			if !slices.Equal(got.Permissions, tc.want) || (got.Permissions == nil) != (tc.want == nil) {
				t.Errorf("authenticated token permissions = %#v, want %#v", got.Permissions, tc.want)
			}
			for _, listed := range listAdminTokens(t, s, op.ID) {
				if listed.ID == tok.ID && (!slices.Equal(listed.Permissions, tc.want) || (listed.Permissions == nil) != (tc.want == nil)) {
					t.Errorf("listed token permissions = %#v, want %#v", listed.Permissions, tc.want)
				}
			}
		})
	}

	// A token follows its admin's role: demoting the admin narrows it.
	ownerAdmin, _ := createAdminAs(t, s, "boss", RoleOwner)
	createAdminAs(t, s, "other-owner", RoleOwner)
	wide, _, err := s.CreateAdminToken(ctx, ownerAdmin, "wide", 1, []Permission{SigningKeysWrite, IntegrationsWrite}, testActor)
	if err != nil {
		t.Fatalf("CreateAdminToken: %v", err)
	}
	if _, err := s.SetAdminRole(ctx, "boss", RoleOperator, testActor); err != nil {
		t.Fatalf("SetAdminRole: %v", err)
	}
	if got := EffectivePermissions(RoleOperator, wide.Permissions); !slices.Equal(got, []Permission{IntegrationsWrite}) {
		t.Errorf("after demotion, a token narrowed to signing-keys:write and integrations:write may %v, want integrations:write", got)
	}
	if got := EffectivePermissions(RoleAuditor, nil); !slices.Equal(got, RolePermissions(RoleAuditor)) {
		t.Errorf("EffectivePermissions(auditor, nil) = %v", got)
	}

	// The bootstrap admin holds no tokens.
	boot, err := s.EnsureAdmin(ctx, BootstrapAdmin)
	if err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	if _, _, err := s.CreateAdminToken(ctx, boot, "break-glass", 1, nil, testActor); !errors.Is(err, ErrInvalid) {
		t.Errorf("CreateAdminToken(bootstrap) = %v, want ErrInvalid", err)
	}
	if n := countRows(t, s, "SELECT COUNT(*) FROM admin_tokens WHERE admin_id = ?", boot.ID); n != 0 {
		t.Errorf("bootstrap holds %d tokens, want 0", n)
	}

	// The audit event names the permissions of a narrowed token.
	events, _, err := s.ListAuditEvents(ctx, Page{Limit: MaxPageLimit})
	if err != nil {
		t.Fatalf("ListAuditEvents: %v", err)
	}
	for _, e := range events {
		if e.Action == "admin_token.create" && e.Object == wide.ID {
			if got := fmt.Sprint(e.Details["permissions"]); got != "[integrations:write signing-keys:write]" {
				t.Errorf("audited permissions = %s, want [integrations:write signing-keys:write]", got)
			}
		}
	}
}

func testAdminLastOwner(t *testing.T, s *Store, _ *fakeClock) {
	ctx := t.Context()
	if _, err := s.EnsureAdmin(ctx, BootstrapAdmin); err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	createAdminAs(t, s, "alice", RoleOwner)
	createAdminAs(t, s, "bob", RoleOperator)
	createAdminAs(t, s, "carol", RoleAuditor)

	// alice is the only owner; bootstrap, an owner too, does not count.
	lastOwner := func(what string, err error) {
		t.Helper()
		var conflict *ConflictError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &conflict) {
			t.Fatalf("%s = %v, want a *ConflictError", what, err)
		}
	}
	lastOwner("DeleteAdmin(last owner)", s.DeleteAdmin(ctx, "alice", testActor))
	for _, r := range []Role{RoleOperator, RoleAuditor} {
		_, err := s.SetAdminRole(ctx, "alice", r, testActor)
		lastOwner("SetAdminRole(last owner, "+string(r)+")", err)
	}
	if got := roleOf(t, s, "alice"); got != RoleOwner {
		t.Fatalf("alice is %s after refused changes, want owner", got)
	}
	if _, err := s.SetAdminRole(ctx, "alice", RoleOwner, testActor); err != nil {
		t.Errorf("SetAdminRole(last owner, owner) = %v, want nil: it stays an owner", err)
	}
	// Admins who are not owners come and go.
	if _, err := s.SetAdminRole(ctx, "carol", RoleOperator, testActor); err != nil {
		t.Errorf("SetAdminRole(carol) = %v", err)
	}
	if err := s.DeleteAdmin(ctx, "carol", testActor); err != nil {
		t.Errorf("DeleteAdmin(carol) = %v", err)
	}
	// With a second owner, either may go.
	if _, err := s.SetAdminRole(ctx, "bob", RoleOwner, testActor); err != nil {
		t.Fatalf("SetAdminRole(bob, owner) = %v", err)
	}
	if _, err := s.SetAdminRole(ctx, "alice", RoleAuditor, testActor); err != nil {
		t.Fatalf("demote alice with bob an owner = %v", err)
	}
	_, err := s.SetAdminRole(ctx, "bob", RoleOperator, testActor)
	lastOwner("SetAdminRole(bob, now the last owner)", err)
	if _, err := s.SetAdminRole(ctx, "alice", RoleOwner, testActor); err != nil {
		t.Fatalf("promote alice = %v", err)
	}
	if err := s.DeleteAdmin(ctx, "bob", testActor); err != nil {
		t.Fatalf("delete bob with alice an owner = %v", err)
	}
	lastOwner("DeleteAdmin(alice, the last owner again)", s.DeleteAdmin(ctx, "alice", testActor))
	// The bootstrap admin may go (the server refuses while it is
	// configured): it never was the owner that counts.
	if err := s.DeleteAdmin(ctx, BootstrapAdmin, testActor); err != nil {
		t.Errorf("DeleteAdmin(bootstrap) = %v", err)
	}
	if n := countRows(t, s, "SELECT COUNT(*) FROM admins WHERE role = ?", RoleOwner); n != 1 {
		t.Errorf("%d owners, want alice alone", n)
	}
}

// testAdminLastOwnerConcurrent demotes or deletes the last two owners at
// once, from two stores (two replicas, on PostgreSQL two connections): one
// change wins, the other is refused, and an owner is left, every round.
func testAdminLastOwnerConcurrent(t *testing.T, a *Store, _ *fakeClock) {
	ctx := t.Context()
	b := replicaOf(t, a)
	const rounds = 8
	for i := range rounds {
		x, y := fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i)
		createAdminAs(t, a, x, RoleOwner)
		createAdminAs(t, a, y, RoleOwner)
		if i > 0 {
			// The owners of the round before step down, leaving x and y.
			for _, name := range []string{fmt.Sprintf("x%d", i-1), fmt.Sprintf("y%d", i-1)} {
				if err := a.DeleteAdmin(ctx, name, testActor); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("DeleteAdmin(%s): %v", name, err)
				}
			}
		}
		change := func(s *Store, name string) error {
			if i%2 == 0 {
				_, err := s.SetAdminRole(ctx, name, RoleOperator, testActor)
				return err
			}
			return s.DeleteAdmin(ctx, name, testActor)
		}
		var errX, errY error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; errX = change(a, x) })
		wg.Go(func() { <-start; errY = change(b, y) })
		close(start)
		wg.Wait()
		for _, err := range []error{errX, errY} {
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Fatalf("round %d: unexpected error %v", i, err)
			}
		}
		if (errX == nil) == (errY == nil) {
			t.Fatalf("round %d: results %v and %v, want exactly one refused", i, errX, errY)
		}
		if n := countRows(t, a, "SELECT COUNT(*) FROM admins WHERE role = ? AND name IN (?, ?)", RoleOwner, x, y); n != 1 {
			t.Fatalf("round %d: %d owners left, want 1", i, n)
		}
	}
}

// freshDSN makes an empty database of each kind.
var freshDSN = map[string]func(t *testing.T) string{
	"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "latchkey.db") },
	"postgres": func(t *testing.T) string { return storagetest.PostgresDSN(t) },
}

// storeAtVersion opens a store of s's kind on a fresh database migrated up
// to version and no further: the schema the release that shipped it
// writes.
func storeAtVersion(t *testing.T, s *Store, now func() time.Time, version int) *Store {
	t.Helper()
	driver := path.Base(s.dialect.migrationsDir())
	old, err := Open(t.Context(), storeOptions(driver, freshDSN[driver](t), now, testSecret))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { old.Close() })
	ms, err := loadMigrations(old.dialect.migrationsDir())
	if err != nil {
		t.Fatal(err)
	}
	ms = slices.DeleteFunc(ms, func(m migration) bool { return m.version > version })
	err = old.dialect.exclusive(t.Context(), old.wdb, lockMigrate, true, func(q querier) error {
		_, err := old.migrate(t.Context(), q, ms)
		return err
	})
	if err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
	return old
}

// testMigrateRoles runs migration 0008 on admins and tokens as the release
// before it wrote them: every admin becomes an owner, every token follows
// its admin's role, and the bootstrap admin's tokens are gone. After it,
// what that release still writes during a rolling upgrade reads right: its
// admins are owners, and a token it mints for bootstrap is refused.
func testMigrateRoles(t *testing.T, s *Store, clk *fakeClock) {
	ctx := t.Context()
	old := storeAtVersion(t, s, clk.Now, 7)
	// The previous release's statements, naming only its columns.
	insertAdmin := func(name string) int64 {
		t.Helper()
		if err := old.w.WithContext(ctx).Exec("INSERT INTO admins (name, created_at) VALUES (?, ?)", name, old.Now()).Error; err != nil {
			t.Fatalf("insert admin %s: %v", name, err)
		}
		var id int64
		if err := old.r.WithContext(ctx).Raw("SELECT id FROM admins WHERE name = ?", name).Scan(&id).Error; err != nil {
			t.Fatal(err)
		}
		return id
	}
	insertToken := func(adminID int64) string {
		t.Helper()
		secret := old.creds.NewAdminToken()
		err := old.w.WithContext(ctx).Exec("INSERT INTO admin_tokens (public_id, admin_id, token_hash, description, created_at) VALUES (?, ?, ?, ?, ?)",
			newPublicID(), adminID, old.creds.HashSecret(secret), "old", old.Now()).Error
		if err != nil {
			t.Fatalf("insert admin token: %v", err)
		}
		return secret
	}
	alice := insertAdmin("alice")
	aliceToken := insertToken(alice)
	boot := insertAdmin(BootstrapAdmin)
	insertToken(boot)
	insertToken(boot)

	applied, err := old.Migrate(ctx)
	if err != nil || len(applied) == 0 || applied[0] != 8 {
		t.Fatalf("Migrate = %v, %v; want 0008 and after applied", applied, err)
	}
	for _, name := range []string{"alice", BootstrapAdmin} {
		if got := roleOf(t, old, name); got != RoleOwner {
			t.Errorf("%s is %q after the migration, want owner", name, got)
		}
	}
	if n := countRows(t, old, "SELECT COUNT(*) FROM admin_tokens WHERE admin_id = ?", boot); n != 0 {
		t.Errorf("bootstrap still holds %d tokens after the migration", n)
	}
	a, tok, err := old.AuthenticateAdmin(ctx, aliceToken)
	if err != nil || a.Role != RoleOwner || tok.Permissions != nil {
		t.Errorf("alice's old token: AuthenticateAdmin = %+v, %+v, %v; want an owner's token following the role", a, tok, err)
	}

	// The previous release, still running beside this one.
	insertAdmin("dave")
	if got := roleOf(t, old, "dave"); got != RoleOwner {
		t.Errorf("an admin the previous release made is %q, want owner", got)
	}
	late := insertToken(boot)
	if _, _, err := old.AuthenticateAdmin(ctx, late); !errors.Is(err, ErrNotFound) {
		t.Errorf("a bootstrap token the previous release minted: AuthenticateAdmin = %v, want ErrNotFound", err)
	}
}
