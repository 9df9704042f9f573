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

// retryable reports whether err is a PostgreSQL serialization failure or
// deadlock, after which the whole transaction may simply run again.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// withAdvisoryLock runs fn while this process holds the PostgreSQL
// session-level advisory lock of class, on a connection kept aside for it.
// With wait false it returns (false, nil) at once when another session
// holds the lock. The lock dies with its connection, so a replica that
// crashes never leaves it held.
func (s *Store) withAdvisoryLock(ctx context.Context, class int32, wait bool, fn func(conn *sql.Conn) error) (bool, error) {
	db, err := s.w.DB()
	if err != nil {
		return false, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	if wait {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, class); err != nil {
			return false, err
		}
	} else {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1, hashtext(current_schema()))`, class).Scan(&got); err != nil || !got {
			return false, err
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
	return true, fnErr
}

// forShare is the row-lock clause that makes a read wait for, and hold off,
// a concurrent change of the rows it read; SQLite's single writer needs none.
func (s *Store) forShare() string {
	if s.dialect == "postgres" {
		return " FOR SHARE"
	}
	return ""
}

// forUpdate is the row-lock clause that makes a read wait for, and hold off,
// every other writer of the rows it read.
func (s *Store) forUpdate() string {
	if s.dialect == "postgres" {
		return " FOR UPDATE"
	}
	return ""
}
