package storagetest

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" database/sql driver
)

// seedBatch is how many rows one statement inserts: large enough that a
// few hundred thousand rows take a handful of statements, small enough
// that no statement holds the SQLite writer for long.
const seedBatch = 50_000

// SeedTokens inserts n access-token rows for the key pair with client ID
// clientID straight into the database at dsn (a SQLite file path or a
// postgres:// DSN, as the test opened it), issued at issued and expiring at
// expires. The rows are real rows of a real key pair, as the janitor and a
// deletion see them, but their signatures are random: no token string
// matches them. Tests use it to give an integration the hundreds of
// thousands of tokens that issuing them over HTTP would take minutes for.
//
// The database must be migrated and hold the key pair; the server may be
// running on it.
func SeedTokens(t testing.TB, dsn, clientID string, n int, issued, expires time.Time) {
	t.Helper()
	driver, insert, find := "sqlite3", sqliteSeed, `SELECT id FROM key_pairs WHERE client_id = ?`
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		driver, insert, find = "pgx", postgresSeed, `SELECT id FROM key_pairs WHERE client_id = $1`
	} else {
		// WAL and a busy timeout as latchkey opens the file, so the two
		// may write to it in turn.
		dsn = "file:" + dsn + "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&mode=rw"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("seed tokens: open: %v", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var kpID int64
	if err := db.QueryRow(find, clientID).Scan(&kpID); err != nil {
		t.Fatalf("seed tokens: find key pair %s: %v", clientID, err)
	}
	// Times are bound as time.Time, as latchkey binds them, so each driver
	// stores them as latchkey's own rows are stored (text on SQLite, which
	// the janitor compares as text).
	issued, expires = issued.UTC().Truncate(time.Microsecond), expires.UTC().Truncate(time.Microsecond)
	for done := 0; done < n; {
		rows := min(seedBatch, n-done)
		res, err := db.Exec(insert, rows, kpID, issued, expires)
		if err != nil {
			t.Fatalf("seed tokens: after %d rows: %v", done, err)
		}
		if got, err := res.RowsAffected(); err != nil || got != int64(rows) {
			t.Fatalf("seed tokens: inserted %d rows (%v), want %d", got, err, rows)
		}
		done += rows
	}
}

// The statements make a whole batch inside the database, sorted by
// signature so the primary key fills in order (cmd/latchkey-bench's seed
// does the same, for the benchmarks).
const (
	sqliteSeed = `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
		INSERT INTO access_tokens (signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
		SELECT substr(lower(hex(randomblob(22))), 1, 43) AS signature, lower(hex(randomblob(16))), ?, NULL, '', '', ?, ?
		FROM seq ORDER BY signature`
	postgresSeed = `INSERT INTO access_tokens (signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
		SELECT md5(random()::text) || md5(random()::text), gen_random_uuid()::text, $2, NULL, '', '', $3, $4
		FROM generate_series(1, $1) ORDER BY 1`
)
