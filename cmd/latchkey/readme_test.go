package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEWalkthrough runs the README's walk-through, as README.md has
// it (not a copy): the server block's environment starts a server, and the
// blocks after it run in one bash, twice in a row against that server and
// its database, with `go run ./cmd/latchkey` standing for the built
// binary. Each run must end with every credential the walk-through makes
// in hand and the answers its comments promise.
func TestREADMEWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("LATCHKEY_TEST_WALKTHROUGH") == "1" {
				t.Fatalf("the README walk-through needs %s", tool)
			}
			t.Skipf("the README walk-through needs %s (apt-get install curl jq)", tool)
		}
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## The life of a key pair, with curl\n")
	if !ok {
		t.Fatal("README.md has no walk-through section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 3 || !strings.Contains(blocks[0], "go run ./cmd/latchkey serve") {
		t.Fatalf("want the server block and two more, got %d blocks", len(blocks))
	}

	// The server block is VAR=value … go run ./cmd/latchkey serve.
	env := []string{"LATCHKEY_DATABASE", "sqlite://" + filepath.Join(t.TempDir(), "walkthrough.db")}
	for _, f := range strings.Fields(strings.TrimSpace(blocks[0])) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			break
		}
		env = append(env, k, v)
	}
	sv := startServing(t, environ(env...))

	shim := t.TempDir()
	err = os.WriteFile(filepath.Join(shim, "go"), []byte(`#!/bin/sh
if [ "$1" = run ] && [ "$2" = ./cmd/latchkey ]; then shift 2; exec "$LATCHKEY_BIN" "$@"; fi
echo "walk-through: unexpected go $*" >&2; exit 2
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	script := "set -euo pipefail\n" + strings.ReplaceAll(strings.Join(blocks[1:], "\n"), "http://localhost:8080", sv.base) + `
for v in ADMIN:lk_adm_ CLIENT_SECRET:lk_cs_ API_SECRET:lk_cs_ TOKEN:lk_at_ REPORTS_TOKEN:lk_at_; do
  name=${v%%:*} prefix=${v#*:}
  [[ ${!name} == "$prefix"* ]] || { echo "WALKTHROUGH: $name is ${!name:0:12}…, not a $prefix credential" >&2; exit 1; }
done
`
	for run := 1; run <= 2; run++ {
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+shim+string(os.PathListSeparator)+os.Getenv("PATH"),
			"LATCHKEY_BIN="+latchkeyBinary(t), "LATCHKEY_ENDPOINT="+sv.base)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		for _, want := range []string{`"active": true`, `"error": "invalid_client"`, `"active": false`,
			`"action": "integration.create"`, `"action": "integration.update"`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("run %d: the output has no %s:\n%s", run, want, out)
			}
		}
	}
}

// TestREADMEKeyless runs the README's private_key_jwt example, as
// README.md has it, twice against one server: with openssl it makes a
// key, registers it, signs assertions in bash and gets a token; the
// replayed assertion is refused.
func TestREADMEKeyless(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq", "openssl", "basenc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("LATCHKEY_TEST_WALKTHROUGH") == "1" {
				t.Fatalf("the README's keyless example needs %s", tool)
			}
			t.Skipf("the README's keyless example needs %s", tool)
		}
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Keyless integrations (private_key_jwt)\n")
	if !ok {
		t.Fatal("README.md has no keyless section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 1 {
		t.Fatalf("want one sh block in the keyless section, got %d", len(blocks))
	}
	const boot = "keyless-bootstrap-token-change-me-0123456789"
	sv := startServing(t, environ("LATCHKEY_DATABASE", "sqlite://"+filepath.Join(t.TempDir(), "keyless.db"),
		"LATCHKEY_BOOTSTRAP_TOKEN", boot))
	// LK and ADMIN come from the walk-through; the bootstrap admin may
	// create integrations.
	script := "set -euo pipefail\nLK=" + sv.base + "\nADMIN=" + boot + "\n" + blocks[0][1]
	for run := 1; run <= 2; run++ {
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out)
		}
		for _, want := range []string{`"access_token": "lk_at_`, `"token_type": "bearer"`,
			`{"token_type":"bearer","error":null}`, `{"token_type":null,"error":"invalid_client"}`} {
			if !strings.Contains(string(out), want) {
				t.Errorf("run %d: the output has no %s:\n%s", run, want, out)
			}
		}
	}
}
