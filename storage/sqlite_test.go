package storage

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server/oauth/credential"
)

// testSecret is a system secret of the minimum length.
var testSecret = []byte(strings.Repeat("s", 32))

// storeOptions are the Options latchkey opens the store with for the
// given system secrets, current first: credentials minted and hashed under
// keys derived from them, and signing keys sealed under others.
func storeOptions(driver, dsn string, now func() time.Time, secrets ...[]byte) Options {
	return Options{
		Driver: driver, DSN: dsn, Now: now,
		Credentials: credential.NewMinter(secrets),
		SealingKeys: credential.SealingKeys(secrets),
	}
}

// clientSecretHasher checks client secrets against the hashes a store
// opened with secrets keeps, as the token endpoint does.
func clientSecretHasher(secrets ...[]byte) *credential.Hasher {
	return credential.NewMinter(secrets).Checking(credential.ClientSecretPrefix)
}

func TestSQLite(t *testing.T) {
	runConformance(t, newSQLiteStore)
}

// newSQLiteStore opens and migrates a store on a fresh SQLite file.
func newSQLiteStore(t *testing.T, now func() time.Time) *Store {
	return newStoreOn(t, "sqlite", filepath.Join(t.TempDir(), "latchkey.db"), now)
}

// openSQLite opens the SQLite database at path with the given system
// secrets, migrates it, and closes it when the test ends.
func openSQLite(t *testing.T, path string, now func() time.Time, secrets ...[]byte) (*Store, []int) {
	return openStore(t, "sqlite", path, now, secrets...)
}

// newStoreOn opens and migrates a store on an empty database, checks that
// every migration ran, and registers how to open a replica of it.
func newStoreOn(t *testing.T, driver, dsn string, now func() time.Time) *Store {
	t.Helper()
	s, applied := openStore(t, driver, dsn, now, testSecret)
	if want := allMigrationVersions(t, driver); !slices.Equal(applied, want) {
		t.Fatalf("Migrate on an empty %s database applied %v, want %v", driver, applied, want)
	}
	replicas.Store(s, func(t *testing.T) *Store {
		r, _ := openStore(t, driver, dsn, now, testSecret)
		return r
	})
	t.Cleanup(func() { replicas.Delete(s) })
	return s
}

// openStore opens the database, migrates it, and closes it when the test
// ends.
func openStore(t testing.TB, driver, dsn string, now func() time.Time, secrets ...[]byte) (*Store, []int) {
	t.Helper()
	s, err := Open(t.Context(), storeOptions(driver, dsn, now, secrets...))
	if err != nil {
		t.Fatalf("Open(%s): %v", driver, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	applied, err := s.Migrate(t.Context())
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s, applied
}

func allMigrationVersions(t *testing.T, dialect string) []int {
	t.Helper()
	ms, err := loadMigrations("migrations/" + dialect)
	if err != nil {
		t.Fatalf("loadMigrations(%s): %v", dialect, err)
	}
	var out []int
	for _, m := range ms {
		out = append(out, m.version)
	}
	return out
}

// TestSQLiteReopen checks that a database written by one process is
// usable, and not migrated again, by the next.
func TestSQLiteReopen(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "data", "latchkey.db") // Open creates the directory
	first, _ := openSQLite(t, path, clk.Now, testSecret)
	_, nk := createIntegration(t, first, IntegrationInput{Name: "kept", Scopes: []string{"read"}})
	sig := issueToken(t, first, clk, nk.ClientID, time.Hour)
	_, _, adminToken := createAdmin(t, first, "root", NeverExpires)
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second, applied := openSQLite(t, path, clk.Now, testSecret)
	if len(applied) != 0 {
		t.Errorf("Migrate after reopening applied %v, want nothing", applied)
	}
	if ig := getIntegration(t, second, "kept"); ig.KeyPair == nil || ig.KeyPair.ClientID != nk.ClientID {
		t.Errorf("after reopening, integration = %+v, want key pair %s", ig, nk.ClientID)
	}
	if err := clientSecretHasher(testSecret).Compare(t.Context(), getClient(t, second, nk.ClientID).SecretHash, []byte(nk.ClientSecret)); err != nil {
		t.Errorf("after reopening, the client secret does not match: %v", err)
	}
	if !tokenActive(t, second, sig) {
		t.Error("after reopening, the access token is inactive")
	}
	if !adminAuthenticates(t, second, adminToken, "root") {
		t.Error("after reopening, the admin token is rejected")
	}
}

// TestSQLiteSecretRotation checks that hashes made under a retired system
// secret still verify while it is listed second, and not once it is gone.
func TestSQLiteSecretRotation(t *testing.T) {
	clk := newFakeClock()
	path := filepath.Join(t.TempDir(), "latchkey.db")
	oldSecret, newSecret := testSecret, []byte(strings.Repeat("n", 32))

	before, _ := openSQLite(t, path, clk.Now, oldSecret)
	_, nk := createIntegration(t, before, IntegrationInput{Name: "svc"})
	_, _, adminToken := createAdmin(t, before, "root", NeverExpires)
	before.Close()

	rotated, _ := openSQLite(t, path, clk.Now, newSecret, oldSecret)
	if err := clientSecretHasher(newSecret, oldSecret).Compare(t.Context(), getClient(t, rotated, nk.ClientID).SecretHash, []byte(nk.ClientSecret)); err != nil {
		t.Errorf("client secret hashed under the old system secret: Compare = %v, want nil", err)
	}
	if !adminAuthenticates(t, rotated, adminToken, "root") {
		t.Error("admin token hashed under the old system secret is rejected")
	}
	_, _, newToken := createAdmin(t, rotated, "fresh", NeverExpires)
	rotated.Close()

	retired, _ := openSQLite(t, path, clk.Now, newSecret)
	if adminAuthenticates(t, retired, adminToken, "root") {
		t.Error("admin token hashed under a retired system secret still authenticates")
	}
	if !adminAuthenticates(t, retired, newToken, "fresh") {
		t.Error("admin token hashed under the current system secret is rejected")
	}
	if err := clientSecretHasher(newSecret).Compare(t.Context(), getClient(t, retired, nk.ClientID).SecretHash, []byte(nk.ClientSecret)); err == nil {
		t.Error("client secret hashed under a retired system secret still matches")
	}
}

// TestSQLiteReaderIsReadOnly checks that the reader pool cannot write, so a
// write sent to it by mistake fails instead of racing the writer.
func TestSQLiteReaderIsReadOnly(t *testing.T) {
	s := newSQLiteStore(t, newFakeClock().Now)
	if err := s.r.WithContext(t.Context()).Exec("DELETE FROM admins").Error; err == nil {
		t.Error("a write through the reader pool succeeded")
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latchkey.db")
	ok := storeOptions("sqlite", path, nil, testSecret)
	with := func(f func(o *Options)) Options {
		o := ok
		f(&o)
		return o
	}
	tests := []struct {
		name string
		o    Options
	}{
		{"no credentials", with(func(o *Options) { o.Credentials = nil })},
		{"no sealing keys", with(func(o *Options) { o.SealingKeys = nil })},
		{"unknown driver", with(func(o *Options) { o.Driver = "mysql" })},
		{"empty driver", with(func(o *Options) { o.Driver = "" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open = nil error")
			}
		})
	}
}
