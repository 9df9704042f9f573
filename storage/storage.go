// Package storage keeps latchkey's state: integrations and their key pairs,
// access tokens, admins and their tokens, signing keys and the audit log.
// One Store serves both the admin operations and the OAuth endpoints, on
// SQLite (the embedded default) or PostgreSQL. It speaks only its own types
// and errors: the OAuth layer (server/oauth) adapts them to fosite, makes
// the credentials (Credentials) and decides when a key pair or a token
// stops working; the store keeps the facts those decisions read.
//
// Every method translates database errors at this boundary: callers see the
// sentinels below, never a gorm or driver error type.
//
// Queries come in two styles, one per path:
//
//   - The OAuth hot path, run on every token and introspection request
//     (client and token lookups, token inserts, the SQLite group commit),
//     uses database/sql directly, through the statements Store.prepared
//     keeps: gorm's reflection cost more than those queries. So do the
//     statements that need a connection of their own (migrations, advisory
//     locks, WAL checkpoints). These queries are constants with $1, $2, …
//     placeholders, which both drivers accept. SQLite numbers them in order
//     of first appearance, not by their digits, so a query uses them in
//     ascending order.
//   - Everything else (admins, integrations, the audit log, signing keys,
//     purging) uses gorm: its models and builder where they fit, a constant
//     query in Raw or Exec where they do not, always with ? placeholders,
//     which gorm rewrites for the database. Row locks are gorm's
//     clause.Locking, which its SQLite driver leaves out.
//
// Neither style assembles SQL from strings at run time; the one exception
// is the token insert's row lock, appended once by Open.
//
// What differs between SQLite and PostgreSQL, once they are open, is behind
// the dialect interface, chosen once by Open.
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
	// Credentials makes the client IDs, client secrets and admin tokens
	// the store hands out, and hashes them; the store keeps only hashes.
	Credentials Credentials
	// SealingKeys are the AES-256 keys that seal signing keys at rest,
	// current first; a key sealed under any of them opens.
	SealingKeys [][]byte
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
	dialect dialect
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
	stmts       sync.Map // stmtKey → *sql.Stmt
	now         func() time.Time
	log         *slog.Logger
	creds       Credentials
	sealingKeys [][]byte
}

// Credentials makes and hashes the credentials the store hands out.
// server/oauth/credential's Minter is latchkey's.
type Credentials interface {
	NewClientID() string
	NewClientSecret() string
	NewAdminToken() string
	// HashSecret is what the store keeps of secret.
	HashSecret(secret string) []byte
	// SecretHashes are secret's hashes under every key still accepted,
	// for lookups.
	SecretHashes(secret string) [][]byte
}

// dialect is everything that differs between SQLite (sqliteDialect) and
// PostgreSQL (postgresDialect). Each method is named after what it decides,
// so a caller reads the same on both.
type dialect interface {
	// migrationsDir names the embedded directory of the migrations written
	// for this database.
	migrationsDir() string
	// schemaMigrationsSQL creates the table that records applied
	// migrations, unless it exists.
	schemaMigrationsSQL() string
	// driverCachesStatements reports whether the driver keeps statements
	// prepared on each connection by itself, so that neither gorm nor
	// Store.prepared should.
	driverCachesStatements() bool
	// forShare is the clause that makes a read wait for, and hold off, a
	// concurrent change of the rows it read; empty where writes cannot
	// interleave anyway.
	forShare() string
	// txOptions returns the options of a write transaction that asks for
	// isolation level iso, or nil where the writer alone isolates it.
	txOptions(iso sql.IsolationLevel) *sql.TxOptions
	// retryable reports whether a transaction that failed with err may
	// simply run again.
	retryable(err error) bool
	// exclusive runs fn while no other replica runs a job of class, giving
	// fn the connection of db its statements must run on. With wait false
	// it returns nil at once, without running fn, while another replica
	// runs one.
	exclusive(ctx context.Context, db *sql.DB, class int32, wait bool, fn func(querier) error) error
}

// querier is what a job given by dialect.exclusive runs statements on: a
// connection held for it, or a pool whose one connection is as good.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// Open connects to the database. It does not migrate; call Migrate.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Credentials == nil || len(o.SealingKeys) == 0 {
		return nil, errors.New("open storage: no credentials or sealing keys")
	}
	s := &Store{now: o.Now, log: o.Logger, creds: o.Credentials, sealingKeys: o.SealingKeys}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var open func(dsn string, pool Pool) error
	switch o.Driver {
	case "sqlite":
		s.dialect, open = sqliteDialect{}, s.openSQLite
	case "postgres":
		s.dialect, open = postgresDialect{}, s.openPostgres
	default:
		return nil, fmt.Errorf("open storage: unsupported driver %q", o.Driver)
	}
	s.insertSQL = insertTokenSQL + s.dialect.forShare()
	if err := open(o.DSN, o.Pool); err != nil {
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// gormConfig is the configuration of every gorm handle.
func (s *Store) gormConfig() *gorm.Config {
	return &gorm.Config{
		// gorm's logger prints statements with their arguments, which
		// include credential hashes: it stays silent.
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return s.clock() },
		SkipDefaultTransaction: true,
		PrepareStmt:            !s.dialect.driverCachesStatements(),
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

// prepared returns query prepared on db, preparing it on first use. Where
// the driver caches statements itself it returns nil: call db directly.
func (s *Store) prepared(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	if s.dialect.driverCachesStatements() {
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
	opts := s.dialect.txOptions(iso)
	for attempt := 1; ; attempt++ {
		err := s.w.WithContext(ctx).Transaction(fn, opts)
		if !s.dialect.retryable(err) || attempt == maxTxAttempts {
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
