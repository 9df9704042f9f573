//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withUmask runs the rest of the test under mask, the common default 022
// unless a test says otherwise, so that what it checks does not depend on
// the umask of whoever runs the tests.
func withUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestDataFilesPrivate checks that everything serve keeps on disk with
// SQLite is for its own user only: the database and its WAL and
// shared-memory files (which hold credential hashes and sealed signing
// keys), the generated secret, and the data directory it creates.
func TestDataFilesPrivate(t *testing.T) {
	withUmask(t, 0o022)
	parent := filepath.Join(t.TempDir(), "var")
	dir := filepath.Join(parent, "latchkey")
	db := filepath.Join(dir, "latchkey.db")
	const boot = "files-bootstrap-token-0123456789abcdef"
	base, stop := startServe(t, environ("LATCHKEY_BOOTSTRAP_TOKEN", boot), "--database", "sqlite://"+db)
	admin := environ("LATCHKEY_ENDPOINT", base, "LATCHKEY_ADMIN_TOKEN", boot)
	mustCLI(t, admin, "integration", "create", "svc")

	// While serve runs: the WAL and shared-memory files go away when the
	// last connection closes.
	for _, f := range []string{db, db + "-wal", db + "-shm", filepath.Join(dir, secretFile)} {
		if got := fileMode(t, f); got != 0o600 {
			t.Errorf("%s has mode %04o; want 0600", filepath.Base(f), got)
		}
	}
	for _, d := range []string{parent, dir} {
		if got := fileMode(t, d); got != 0o700 {
			t.Errorf("data directory %s has mode %04o; want 0700", d, got)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// With a configured secret, the database is what creates the
	// directory.
	dir = filepath.Join(t.TempDir(), "configured")
	db = filepath.Join(dir, "latchkey.db")
	mustCLI(t, environ("LATCHKEY_SECRET", strings.Repeat("s", 32)), "migrate", "--database", "sqlite://"+db)
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("data directory %s has mode %04o; want 0700", dir, got)
	}
	if got := fileMode(t, db); got != 0o600 {
		t.Errorf("%s has mode %04o; want 0600", db, got)
	}
}

// TestDatabaseModeWarning checks that a database others may read, as
// earlier versions created it, is pointed out at start-up with the fix.
func TestDatabaseModeWarning(t *testing.T) {
	withUmask(t, 0o022)
	db := filepath.Join(t.TempDir(), "latchkey.db")
	env := environ("LATCHKEY_SECRET", strings.Repeat("s", 32))
	migrate := func() string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), []string{"latchkey", "migrate", "--database", "sqlite://" + db}, env, strings.NewReader(""), &stdout, &stderr); err != nil {
			t.Fatalf("migrate: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
	if log := migrate(); strings.Contains(log, "chmod") {
		t.Fatalf("a new database is pointed out as exposed:\n%s", log)
	}
	if err := os.Chmod(db, 0o644); err != nil {
		t.Fatal(err)
	}
	log := migrate()
	for _, want := range []string{"level=WARN", "chmod 600", db, "mode=0644"} {
		if !strings.Contains(log, want) {
			t.Errorf("migrate on a 0644 database logged no %q:\n%s", want, log)
		}
	}
}

// TestSecretFileMode checks that serve refuses a generated secret that
// other users can read or replace, with one line that says how to fix it.
func TestSecretFileMode(t *testing.T) {
	withUmask(t, 0o022)
	tests := []struct {
		mode os.FileMode
		want string // "" when the file is accepted
	}{
		{0o600, ""},
		{0o400, ""},
		{0o700, ""},
		{0o644, "readable by group and others"},
		{0o604, "readable by others"},
		{0o640, "readable by group"},
		{0o620, "writable by group"},
		{0o602, "writable by others"},
		{0o666, "readable and writable by group and others"},
		{0o660, "readable and writable by group"},
		{0o646, "readable by group and others, writable by others"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, secretFile)
			if err := os.WriteFile(path, []byte(strings.Repeat("s", 64)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			db := "sqlite://" + filepath.Join(dir, "latchkey.db")
			if tt.want == "" {
				mustCLI(t, environ(), "migrate", "--database", db)
				return
			}
			err := serveBriefly(t, "--database", db)
			if err == nil {
				t.Fatalf("serve started with the secret file at mode %04o", tt.mode)
			}
			want := fmt.Sprintf("secret: %s is %s (mode %04o); run chmod 600 %s", path, tt.want, tt.mode, path)
			if err.Error() != want {
				t.Errorf("serve failed with\n%s\nwant\n%s", err, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "latchkey.db")); err == nil {
				t.Error("the database was created although start-up was refused")
			}
		})
	}
}

// serveBriefly runs `latchkey serve` in-process and returns its error, or
// nil when it was still serving after a few seconds and stopped cleanly.
func serveBriefly(t *testing.T, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	return run(ctx, append([]string{"latchkey", "serve", "--listen", "127.0.0.1:0"}, args...), environ(), strings.NewReader(""), &stdout, &stderr)
}
