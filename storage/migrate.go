package storage

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations
var migrationFS embed.FS

// migration is one embedded SQL file. Files are named NNNN_description.sql;
// the number orders them and is what schema_migrations records. Files are
// append-only: a released migration is never edited.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the migrations embedded in dir, in order.
func loadMigrations(dir string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s: name must be NNNN_description.sql", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// Migrate applies every embedded migration the database has not recorded,
// in order, each in its own transaction together with its record in
// schema_migrations. Running it again is a no-op. It returns the versions
// it applied.
//
// On PostgreSQL it holds an advisory lock throughout, so replicas that
// start together migrate once, one after the other. A database migrated by
// a newer build is left alone: migrations only ever add (see
// migrations/README.md), so this build keeps working on it.
func (s *Store) Migrate(ctx context.Context) ([]int, error) {
	ms, err := loadMigrations(s.dialect.migrationsDir())
	if err != nil {
		return nil, err
	}
	// Plain database/sql: a migration file holds several statements, and
	// gorm's prepared-statement cache would compile only the first.
	var applied []int
	err = s.dialect.exclusive(ctx, s.wdb, lockMigrate, true, func(q querier) error {
		var err error
		applied, err = s.migrate(ctx, q, ms)
		return err
	})
	if err != nil {
		return applied, unavailable("migrate", err)
	}
	return applied, nil
}

func (s *Store) migrate(ctx context.Context, conn querier, ms []migration) ([]int, error) {
	if _, err := conn.ExecContext(ctx, s.dialect.schemaMigrationsSQL()); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	var applied []int
	for _, m := range ms {
		done, err := s.applyMigration(ctx, conn, m)
		if err != nil {
			return applied, fmt.Errorf("apply migration %s: %w", m.name, err)
		}
		if done {
			applied = append(applied, m.version)
		}
	}
	var newest sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&newest); err != nil {
		return applied, fmt.Errorf("read schema version: %w", err)
	}
	if known := ms[len(ms)-1].version; newest.Int64 > int64(known) {
		s.log.Info("the database schema is newer than this build; running on it unchanged",
			"database_version", newest.Int64, "build_version", known)
	}
	return applied, nil
}

// applyMigration runs m unless it is recorded, and reports whether it ran.
func (s *Store) applyMigration(ctx context.Context, conn querier, m migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", m.version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
		m.version, m.name, s.clock()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
