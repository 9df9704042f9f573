package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/latchkey/latchkey/storage/storagetest"
)

// postgresDSN is a fresh PostgreSQL schema for one test; see storagetest.
func postgresDSN(t testing.TB) string { return storagetest.PostgresDSN(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	if binaryPath != "" && binaryErr == nil {
		os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// latchkeyBinary builds the latchkey command once per test run, for tests
// that need real processes (signals, several replicas). The flags are the
// Dockerfile's, so this build and TestDockerCompose's share the build cache.
func latchkeyBinary(t testing.TB) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latchkey-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "latchkey")
		out, err := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = err
			binaryPath = string(out)
		}
	})
	if binaryErr != nil {
		t.Fatalf("go build: %v\n%s", binaryErr, binaryPath)
	}
	return binaryPath
}
