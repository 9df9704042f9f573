package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// Advisory lock classes. The second key of each lock is the hash of the
// current schema, so deployments in different schemas of one database never
// wait on each other.
const (
	lockMigrate = 0x6c6b0001
	lockJanitor = 0x6c6b0002
)

// connectTimeout applies when the DSN names none: a replica pointed at a
// host that drops packets must fail a connection attempt in seconds, not
// wait for the kernel's TCP timeout.
const connectTimeout = "5"

func (s *Store) openPostgres(dsn string, pool Pool) error {
	u, err := url.Parse(dsn)
	if err != nil {
		// The message would echo the DSN and with it the password.
		return errors.New("open postgres: the database URL does not parse")
	}
	q := u.Query()
	if !q.Has("connect_timeout") {
		q.Set("connect_timeout", connectTimeout)
	}
	if !q.Has("application_name") {
		q.Set("application_name", "latchkey")
	}
	u.RawQuery = q.Encode()
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: u.String()}), s.gormConfig())
	if err != nil {
		return fmt.Errorf("open postgres %s: %w", u.Redacted(), err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return fmt.Errorf("open postgres %s: %w", u.Redacted(), err)
	}
	pool.apply(sqlDB, 10, 30*time.Minute, 5*time.Minute)
	s.w, s.r, s.wdb, s.rdb = db, db, sqlDB, sqlDB
	return nil
}

// postgresDialect is the dialect of a PostgreSQL database that several
// replicas share.
type postgresDialect struct{}

func (postgresDialect) migrationsDir() string { return "migrations/postgres" }

func (postgresDialect) schemaMigrationsSQL() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL)`
}

// driverCachesStatements is true: pgx caches statements per connection
// already, and statements gorm prepares inside a transaction are
// deallocated at commit with pgx's own 5 s timeout, which an unreachable
// database would add to the request after its commit.
func (postgresDialect) driverCachesStatements() bool { return true }

// forShare lets the token requests of one key pair store their tokens side
// by side, while each queues with a regeneration or deletion of the pair,
// which locks it FOR UPDATE.
func (postgresDialect) forShare() string { return " FOR SHARE" }

func (postgresDialect) txOptions(iso sql.IsolationLevel) *sql.TxOptions {
	return &sql.TxOptions{Isolation: iso}
}

// retryable is true for a serialization failure or a deadlock, after which
// the whole transaction may simply run again.
func (postgresDialect) retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// exclusive holds the session-level advisory lock of class while fn runs
// on the connection that holds it. The lock dies with its connection, so a
// replica that crashes never leaves it held.
func (postgresDialect) exclusive(ctx context.Context, db *sql.DB, class int32, wait bool, fn func(querier) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if wait {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, class); err != nil {
			return err
		}
	} else {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, class).Scan(&got); err != nil || !got {
			return err
		}
	}
	fnErr := fn(conn)
	// Unlock on a fresh context: the caller's may be done, and a lock left
	// on a pooled connection would block every other replica.
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1, hashtext(current_schema()))`, class); err != nil {
		// Closing the session is the other way to release the lock.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return fnErr
}
