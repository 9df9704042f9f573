// Package storage keeps latchkey's state: integrations and their key pairs,
// access tokens, admins and their tokens, and the audit log. One Store
// serves both the admin operations and fosite's storage interfaces, on
// SQLite (the embedded default) or PostgreSQL.
//
// Every method translates database errors at this boundary: callers see the
// sentinels below, never a gorm or driver error type.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var (
	// ErrNotFound means the object does not exist (or is no longer usable,
	// for credentials).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique name is already taken.
	ErrConflict = errors.New("already exists")
	// ErrInvalid means the input breaks a rule; the error is an
	// *InvalidError, whose Reason says which.
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable wraps a database failure, so the server answers 503
	// instead of mistaking an outage for a bad credential or a bad request.
	ErrUnavailable = errors.New("database unavailable")
	// ErrKeyPairChanged means a key pair was revoked or regenerated between
	// authenticating with it and storing the token issued to it.
	ErrKeyPairChanged = errors.New("key pair changed")
)

// Options configures Open.
type Options struct {
	// Driver is "sqlite", with DSN the database file path, or "postgres",
	// with DSN a postgres:// URL.
	Driver, DSN string
	// Pool sizes the connection pool: PostgreSQL's, or SQLite's readers
	// (SQLite always has exactly one writer).
	Pool Pool
	// Secrets are the system secrets, current first. Hashes of stored
	// credentials are keyed by keys derived from them.
	Secrets [][]byte
	// Now is the clock; nil means time.Now. Tests inject one to move past
	// grace deadlines and expiries without sleeping.
	Now func() time.Time
	// Logger receives only unexpected conditions; nil discards.
	Logger *slog.Logger
}

// Pool holds connection pool limits; a zero field takes its default.
type Pool struct {
	MaxConns        int           // open connections; default 2×GOMAXPROCS, at least 4 (SQLite) or 10 (PostgreSQL)
	MaxIdleConns    int           // default MaxConns
	ConnMaxLifetime time.Duration // default 30 minutes on PostgreSQL, unlimited on SQLite
	ConnMaxIdleTime time.Duration // default 5 minutes on PostgreSQL, unlimited on SQLite
}

func (p Pool) apply(db *sql.DB, minConns int, lifetime, idle time.Duration) {
	n := p.MaxConns
	if n == 0 {
		n = max(minConns, runtime.GOMAXPROCS(0)*2)
	}
	idleN := p.MaxIdleConns
	if idleN == 0 {
		idleN = n
	}
	if p.ConnMaxLifetime != 0 {
		lifetime = p.ConnMaxLifetime
	}
	if p.ConnMaxIdleTime != 0 {
		idle = p.ConnMaxIdleTime
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(min(idleN, n))
	db.SetConnMaxLifetime(lifetime)
	db.SetConnMaxIdleTime(idle)
}

// Store is latchkey's persistence. It is safe for concurrent use.
//
// On SQLite it holds one writer connection and a pool of readers: writes
// queue in Go instead of spinning on SQLITE_BUSY, and WAL lets readers run
// beside the writer. On PostgreSQL both are one pool, and the database's
// locks order concurrent writers, including those of other replicas.
type Store struct {
	w, r    *gorm.DB
	dialect string // "sqlite" or "postgres"
	// insertSQL is insertTokenSQL with the dialect's row lock, built once:
	// every token request runs it.
	insertSQL string
	// wdb and rdb are the pools under w and r, for the hot paths that
	// skip gorm.
	wdb, rdb *sql.DB
	// commits batches token inserts on SQLite; nil on PostgreSQL, where
	// concurrent inserts need no batching.
	commits *groupCommit
	// checkpoints runs SQLite's WAL checkpoints; nil on PostgreSQL.
	checkpoints *checkpointer
	// stmts caches the hot paths' prepared statements on SQLite, keyed by
	// pool and query; pgx caches them by itself.
	stmts   sync.Map // stmtKey → *sql.Stmt
	now     func() time.Time
	log     *slog.Logger
	hasher  *Hasher // admin tokens and client secrets
	secrets *Hasher // client secrets, as given to fosite
	// keyEncryption seals signing keys; one AES-256 key per system
	// secret, current first.
	keyEncryption [][]byte
}

// Open connects to the database. It does not migrate; call Migrate.
func Open(ctx context.Context, o Options) (*Store, error) {
	if len(o.Secrets) == 0 {
		return nil, errors.New("open storage: no system secret")
	}
	keys := make([][]byte, len(o.Secrets))
	for i, s := range o.Secrets {
		keys[i] = DeriveKey(s, "credential-hash")
	}
	s := &Store{now: o.Now, log: o.Logger, hasher: NewHasher(keys...)}
	for _, sec := range o.Secrets {
		s.keyEncryption = append(s.keyEncryption, DeriveKey(sec, "signing-key-encryption"))
	}
	s.secrets = s.hasher.Checking(ClientSecretPrefix)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dialect = o.Driver
	s.insertSQL = insertTokenSQL + s.forShare()
	switch o.Driver {
	case "sqlite":
		if err := s.openSQLite(o.DSN, o.Pool); err != nil {
			return nil, err
		}
	case "postgres":
		if err := s.openPostgres(o.DSN, o.Pool); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("open storage: unsupported driver %q", o.Driver)
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// gormConfig is the configuration of every gorm handle. On PostgreSQL,
// gorm's prepared-statement cache stays off: pgx caches statements per
// connection already, and statements gorm prepares inside a transaction
// are deallocated at commit with pgx's own 5 s timeout, which an
// unreachable database would add to the request after its commit.
func (s *Store) gormConfig() *gorm.Config {
	return &gorm.Config{
		// gorm's logger prints statements with their arguments, which
		// include credential hashes: it stays silent.
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return s.clock() },
		SkipDefaultTransaction: true,
		PrepareStmt:            s.dialect != "postgres",
		TranslateError:         true,
		// Name every column instead of SELECT *: a column added by a newer
		// replica's migration must not change what an older one reads.
		QueryFields: true,
	}
}

type stmtKey struct {
	db    *sql.DB
	query string
}

// prepared returns query prepared on db, preparing it on first use. On
// PostgreSQL it returns nil: call db directly and let pgx cache.
func (s *Store) prepared(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	if s.dialect == "postgres" {
		return nil, nil
	}
	k := stmtKey{db, query}
	if st, ok := s.stmts.Load(k); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(k, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow runs a one-row query on db through its prepared statement.
func (s *Store) queryRow(ctx context.Context, db *sql.DB, query string, args ...any) *sql.Row {
	st, err := s.prepared(ctx, db, query)
	if err != nil || st == nil {
		// A failed prepare fails the same way here, as a row error.
		return db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Close releases the database connections.
func (s *Store) Close() error {
	if s.commits != nil {
		s.commits.close()
	}
	var errs []error
	if s.checkpoints != nil {
		errs = append(errs, s.checkpoints.close())
	}
	s.stmts.Range(func(k, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		s.stmts.Delete(k)
		return true
	})
	for _, db := range []*gorm.DB{s.r, s.w} {
		if db == nil {
			continue
		}
		if sqlDB, err := db.DB(); err == nil {
			errs = append(errs, sqlDB.Close())
		}
	}
	return errors.Join(errs...)
}

// Ping reports whether the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.WithContext(ctx).Raw("SELECT 1").Scan(&one).Error; err != nil {
		return unavailable("ping database", err)
	}
	return nil
}

// Pools returns the connection pools by role, for their statistics: on
// SQLite the single writer and the readers, on PostgreSQL the one pool.
func (s *Store) Pools() map[string]*sql.DB {
	if s.wdb == s.rdb {
		return map[string]*sql.DB{"main": s.wdb}
	}
	return map[string]*sql.DB{"writer": s.wdb, "reader": s.rdb}
}

// Now returns the store's clock reading, in UTC and truncated to the
// microsecond every backend can store.
func (s *Store) Now() time.Time { return s.clock() }

func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// ClientSecretHasher returns the fosite.Hasher that checks client secrets:
// it rejects a malformed or mistyped secret from its checksum alone.
func (s *Store) ClientSecretHasher() *Hasher { return s.secrets }

// tx runs fn in one write transaction that behaves as if it ran alone. On
// SQLite the single writer guarantees that. On PostgreSQL the transaction
// is SERIALIZABLE, and fn runs again (up to maxTxAttempts times) when the
// database reports a serialization failure or deadlock, so fn must set all
// its results afresh on every run.
func (s *Store) tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.runTx(ctx, sql.LevelSerializable, fn)
}

// lockingTx is tx at READ COMMITTED, for a change that orders itself
// against concurrent ones by locking rows (SELECT … FOR UPDATE) before it
// reads what it acts on: each statement then sees every change committed
// before its lock was granted. Writers of one hot row queue on the lock
// instead of failing and retrying, as they would under SERIALIZABLE.
func (s *Store) lockingTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.runTx(ctx, sql.LevelReadCommitted, fn)
}

func (s *Store) runTx(ctx context.Context, iso sql.IsolationLevel, fn func(tx *gorm.DB) error) error {
	if s.dialect != "postgres" {
		return s.w.WithContext(ctx).Transaction(fn)
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = s.w.WithContext(ctx).Transaction(fn, &sql.TxOptions{Isolation: iso})
		if !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		// Jittered backoff, so the transactions that collided do not
		// collide again in lockstep.
		d := time.Duration(attempt*attempt) * time.Millisecond
		d += time.Duration(rand.Int64N(int64(d)))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d):
		}
	}
}

// maxTxAttempts bounds the retries of a serializable transaction; conflicts
// come from admin operations on the same object, which are rare.
const maxTxAttempts = 10
