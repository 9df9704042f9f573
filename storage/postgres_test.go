package storage

import (
	"database/sql"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage/storagetest"
)

func TestPostgres(t *testing.T) {
	runConformance(t, newPostgresStore)
}

// newPostgresStore opens and migrates a store on a fresh schema.
func newPostgresStore(t *testing.T, now func() time.Time) *Store {
	return newStoreOn(t, "postgres", storagetest.PostgresDSN(t), now)
}

// TestPostgresMigrateConcurrently starts several replicas' migrations on
// an empty schema at once: the advisory lock lets exactly one apply each
// migration, and every one of them returns without error.
func TestPostgresMigrateConcurrently(t *testing.T) {
	dsn := storagetest.PostgresDSN(t)
	const replicas = 6
	stores := make([]*Store, replicas)
	for i := range stores {
		s, err := Open(t.Context(), storeOptions("postgres", dsn, nil, testSecret))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	applied := make([][]int, replicas)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			var err error
			if applied[i], err = s.Migrate(t.Context()); err != nil {
				t.Errorf("replica %d: Migrate: %v", i, err)
			}
		})
	}
	wg.Wait()
	var all []int
	for _, a := range applied {
		all = append(all, a...)
	}
	slices.Sort(all)
	if want := allMigrationVersions(t, "postgres"); !slices.Equal(all, want) {
		t.Errorf("migrations applied across replicas = %v, want each of %v exactly once", all, want)
	}
	if got := countRows(t, stores[0], "SELECT COUNT(*) FROM schema_migrations"); got != int64(len(all)) {
		t.Errorf("schema_migrations holds %d rows, want %d", got, len(all))
	}
}

// TestPostgresJanitorLock checks that a replica whose janitor finds another
// replica's janitor running deletes nothing, and purges once it is free.
func TestPostgresJanitorLock(t *testing.T) {
	clk := newFakeClock()
	dsn := storagetest.PostgresDSN(t)
	s, _ := openStore(t, "postgres", dsn, clk.Now, testSecret)
	_, nk := createIntegration(t, s, IntegrationInput{Name: "janitor"})
	issueToken(t, s, clk, nk.ClientID, time.Minute)
	clk.Advance(2 * time.Minute)

	other, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lock := func(fn string) {
		t.Helper()
		if _, err := conn.ExecContext(t.Context(), "SELECT "+fn+"($1, hashtext(current_schema()))", lockJanitor); err != nil {
			t.Fatalf("%s: %v", fn, err)
		}
	}
	lock("pg_advisory_lock")
	n, err := s.Purge(t.Context(), 10)
	if err != nil || n != 0 {
		t.Errorf("Purge while another janitor runs = %d, %v; want 0, nil", n, err)
	}
	if got := countRows(t, s, "SELECT COUNT(*) FROM access_tokens"); got != 1 {
		t.Errorf("%d tokens left, want the expired one untouched", got)
	}
	lock("pg_advisory_unlock")
	if n, err := s.Purge(t.Context(), 10); err != nil || n != 1 {
		t.Errorf("Purge once the lock is free = %d, %v; want 1, nil", n, err)
	}
}
