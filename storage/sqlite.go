package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqliteDriver is mattn/go-sqlite3 with automatic WAL checkpoints turned
// off on every connection: a checkpoint copies the WAL into the database
// and syncs it to disk, and run by the writer it would stall every write
// queued behind it. The checkpointer below does that work on a connection
// of its own instead.
const sqliteDriver = "sqlite3_latchkey"

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec("PRAGMA wal_autocheckpoint = 0", nil)
			return err
		},
	})
}

func (s *Store) openSQLite(path string, pool Pool) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("open sqlite %s: %w", path, err)
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// A database from before files were created private, or one
		// loosened by hand: refusing it would stop an upgrade, so it is
		// only pointed out.
		s.log.Warn("sqlite: users other than the owner may read or write the database, which holds credential hashes and sealed signing keys; run chmod 600 on it and on its -wal and -shm files",
			"file", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	if err := createPrivate(path); err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// _txlock=immediate takes the write lock at BEGIN, so two transactions
	// never both read and then deadlock upgrading to write.
	base := "file:" + path + "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&_synchronous=NORMAL"
	w, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: sqliteDriver, DSN: base + "&_txlock=immediate"}), s.gormConfig())
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	wdb, err := w.DB()
	if err != nil {
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	// The writer must exist first: it switches the file to WAL before any
	// reader opens it read-only-ish.
	if err := wdb.Ping(); err != nil {
		wdb.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := gorm.Open(sqlite.New(sqlite.Config{DriverName: sqliteDriver, DSN: base + "&_query_only=true"}), s.gormConfig())
	if err != nil {
		wdb.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	rdb, err := r.DB()
	if err != nil {
		wdb.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	pool.apply(rdb, 4, 0, 0)
	cdb, err := sql.Open(sqliteDriver, base)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return fmt.Errorf("open sqlite %s: %w", path, err)
	}
	cdb.SetMaxOpenConns(1)
	s.w, s.r, s.wdb, s.rdb = w, r, wdb, rdb
	s.commits = newGroupCommit(s, wdb)
	s.checkpoints = newCheckpointer(cdb, s.log)
	return nil
}

// sqliteDialect is the dialect of a SQLite file that one process serves,
// with a single writer connection: writes never interleave, and there are
// no replicas to take turns with.
type sqliteDialect struct{}

func (sqliteDialect) migrationsDir() string { return "migrations/sqlite" }

func (sqliteDialect) schemaMigrationsSQL() string {
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at DATETIME NOT NULL)`
}

func (sqliteDialect) driverCachesStatements() bool { return false }

func (sqliteDialect) forShare() string { return "" }

func (sqliteDialect) txOptions(sql.IsolationLevel) *sql.TxOptions { return nil }

// retryable is false: with one writer, no two transactions conflict.
func (sqliteDialect) retryable(error) bool { return false }

// exclusive runs fn at once, since no replica shares the file. fn gets the
// writer pool itself rather than a connection taken from it: a Purge that
// held the pool's only connection would wait forever for its own batches.
func (sqliteDialect) exclusive(_ context.Context, db *sql.DB, _ int32, _ bool, fn func(querier) error) error {
	return fn(db)
}

// createPrivate creates the database file, empty and readable by its owner
// only, unless it exists. SQLite would create it 0644 less the umask, and
// gives the -wal and -shm files beside it the database file's mode, so all
// three holding credential hashes and sealed signing keys stay private.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// checkpointer copies the WAL into the database file every
// checkpointInterval, beside the writer rather than in its way (a PASSIVE
// checkpoint never waits for the writer or for readers). With the WAL
// checkpointed, the writer starts it over, so it stays small.
type checkpointer struct {
	db   *sql.DB
	quit chan struct{}
	done chan struct{}
}

const checkpointInterval = 250 * time.Millisecond

func newCheckpointer(db *sql.DB, log *slog.Logger) *checkpointer {
	c := &checkpointer{db: db, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(checkpointInterval)
		defer t.Stop()
		for {
			select {
			case <-c.quit:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
				log.Warn("sqlite: WAL checkpoint failed", "err", err)
			}
			cancel()
		}
	}()
	return c
}

// close stops the checkpointer and closes its connection. The last
// connection to close checkpoints what is left and removes the WAL.
func (c *checkpointer) close() error {
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
	<-c.done
	return c.db.Close()
}
