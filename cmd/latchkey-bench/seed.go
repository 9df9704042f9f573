package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"
)

const seedUsage = `Usage: latchkey-bench seed -database DSN -tokens N [-expired] [flags]

Inserts N access-token rows straight into latchkey's database (sqlite://PATH
or postgres://…), for tests of how latchkey behaves with a large table. The
rows are valid: random signatures and request IDs, attached to an existing
key pair (the oldest current one, or -client-id's), without a signing key
(as opaque tokens). Live tokens expire spread over the last nine tenths of
the next -lifetime; with -expired, they expired spread over the last day,
for the janitor.
The database must be migrated and hold the key pair: start latchkey on it
and create an integration first. Seeding while latchkey runs is safe.

Flags:
`

const countUsage = `Usage: latchkey-bench count -database DSN

Prints how many access-token rows the database holds, live and expired.

Flags:
`

func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, seedUsage); fs.PrintDefaults() }
	dsn := fs.String("database", "", "sqlite://PATH or postgres://… (required)")
	n := fs.Int64("tokens", 0, "how many rows to insert (required)")
	expired := fs.Bool("expired", false, "insert tokens that have already expired")
	clientID := fs.String("client-id", "", "the key pair the tokens belong to (default: the oldest current one)")
	lifetime := fs.Duration("lifetime", 10*time.Hour, "token lifetime: live tokens expire within it")
	batch := fs.Int64("batch", 250000, "rows per statement and transaction")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dsn == "" || *n < 1 || *batch < 1 || *lifetime <= 0 {
		return usageError{"seed: -database and a positive -tokens are required; -batch and -lifetime must be positive"}
	}
	db, dialect, err := openDatabase(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()

	var kpID int64
	var kpClient string
	q := `SELECT id, client_id FROM key_pairs WHERE expires_at IS NULL ORDER BY id LIMIT 1`
	qArgs := []any{}
	if *clientID != "" {
		q, qArgs = `SELECT id, client_id FROM key_pairs WHERE client_id = `+placeholder(dialect, 1), []any{*clientID}
	}
	if err := db.QueryRowContext(ctx, q, qArgs...).Scan(&kpID, &kpClient); errors.Is(err, sql.ErrNoRows) {
		return errors.New("seed: no such key pair: create an integration first (or check -client-id)")
	} else if err != nil {
		return fmt.Errorf("seed: find the key pair: %w", err)
	}

	insert := sqliteInsert
	if dialect == "postgres" {
		insert = postgresInsert
	}
	batches := (*n + *batch - 1) / *batch
	began := time.Now()
	var done int64
	for b := int64(0); done < *n; b++ {
		rows := min(*batch, *n-done)
		// One issue time per batch, the batches spread over the window:
		// the expiry index then looks like that of a busy server, and the
		// janitor finds the expired rows in order of age. Live tokens
		// keep at least a tenth of their lifetime, so none expires while
		// a long seed or the benchmark after it runs.
		frac := float64(b) / float64(batches)
		now := time.Now().UTC()
		var issued time.Time
		if *expired {
			issued = now.Add(-time.Minute - time.Duration(frac*float64(24*time.Hour)) - *lifetime)
		} else {
			issued = now.Add(-time.Duration(0.9 * frac * float64(*lifetime)))
		}
		// latchkey stores microseconds (storage/oauth.go); so do we.
		issued = issued.Truncate(time.Microsecond)
		expires := issued.Add(*lifetime)
		if err := seedBatch(ctx, db, insert, kpID, issued, expires, rows); err != nil {
			return fmt.Errorf("seed: after %d rows: %w", done, err)
		}
		done += rows
		fmt.Fprintf(stderr, "seed: %d of %d rows\n", done, *n)
	}
	took := time.Since(began)
	state := "live"
	if *expired {
		state = "expired"
	}
	fmt.Fprintf(stdout, "seeded %d %s tokens for key pair %s in %s (%.0f rows/s)\n",
		done, state, kpClient, took.Round(time.Millisecond), float64(done)/took.Seconds())
	return printCount(ctx, db, dialect, stdout)
}

// The insert statements make a whole batch in the database, with no
// round trip per row, sorted by signature: the primary key and the two
// indexes that end with it then fill in order instead of at random places,
// which makes seeding several times faster. Times are bound as time.Time
// parameters, so each driver stores them exactly as it stores latchkey's
// own: on SQLite the text that mattn/go-sqlite3 writes, which the janitor
// compares as text.
const (
	sqliteInsert = `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
		INSERT INTO access_tokens (signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
		SELECT substr(lower(hex(randomblob(22))), 1, 43) AS signature,
			substr(u, 1, 8) || '-' || substr(u, 9, 4) || '-' || substr(u, 13, 4) || '-' || substr(u, 17, 4) || '-' || substr(u, 21),
			?, NULL, 'read', '', ?, ?
		FROM (SELECT lower(hex(randomblob(16))) AS u FROM seq)
		ORDER BY signature`
	postgresInsert = `INSERT INTO access_tokens (signature, request_id, key_pair_id, kid, scopes, audience, issued_at, expires_at)
		SELECT rtrim(translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/', '-_'), '='),
			gen_random_uuid()::text, $2, NULL, 'read', '', $3, $4 FROM generate_series(1, $1)
		ORDER BY 1`
)

func seedBatch(ctx context.Context, db *sql.DB, insert string, kpID int64, issued, expires time.Time, rows int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, insert, rows, kpID, issued, expires)
	if err != nil {
		return err
	}
	if got, err := res.RowsAffected(); err == nil && got != rows {
		return fmt.Errorf("inserted %d rows, not %d", got, rows)
	}
	return tx.Commit()
}

func runCount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("count", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, countUsage); fs.PrintDefaults() }
	dsn := fs.String("database", "", "sqlite://PATH or postgres://… (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dsn == "" {
		return usageError{"count: -database is required"}
	}
	db, dialect, err := openDatabase(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return printCount(ctx, db, dialect, stdout)
}

// printCount prints "access_tokens: N rows (L live, E expired)".
func printCount(ctx context.Context, db *sql.DB, dialect string, w io.Writer) error {
	var total, expired int64
	// One statement, so both figures come from one snapshot while the
	// janitor deletes. The parameter is bound like latchkey binds it, so
	// on SQLite the text comparison is the janitor's own.
	err := db.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN expires_at <= `+placeholder(dialect, 1)+` THEN 1 END)
		FROM access_tokens`, time.Now().UTC()).Scan(&total, &expired)
	if err != nil {
		return fmt.Errorf("count: %w", err)
	}
	fmt.Fprintf(w, "access_tokens: %d rows (%d live, %d expired)\n", total, total-expired, expired)
	return nil
}

// openDatabase opens latchkey's database by its configured DSN.
func openDatabase(dsn string) (*sql.DB, string, error) {
	var db *sql.DB
	var err error
	var dialect string
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		dialect = "sqlite"
		path := strings.TrimPrefix(dsn, "sqlite://")
		// WAL and the busy timeout as latchkey opens it, so the two may
		// work on the file at once. No fsync, and a page cache of up to
		// 2 GB, because a seeded database is scratch for a benchmark and
		// random signatures touch the whole primary-key index.
		db, err = sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&_synchronous=OFF&_cache_size=-2097152&mode=rw")
		if err == nil {
			// One connection, so the pragmas above are the ones in force.
			db.SetMaxOpenConns(1)
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		dialect = "postgres"
		db, err = sql.Open("pgx", dsn)
	default:
		return nil, "", usageError{"-database: want sqlite://PATH or postgres://…"}
	}
	if err != nil {
		return nil, "", fmt.Errorf("open database: %w", err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, "", fmt.Errorf("open database: %w", err)
	}
	return db, dialect, nil
}

func placeholder(dialect string, i int) string {
	if dialect == "postgres" {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}
