#!/usr/bin/env bash
# Runs every test, as `go test -race ./...` does, and ends with the tests
# that were skipped and why: without LATCHKEY_TEST_POSTGRES_DSN the
# PostgreSQL tests skip, and plain `go test` would say only "ok".
# Arguments go to go test (e.g. scripts/test.sh -run TestX).
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp "${TMPDIR:-/tmp}/latchkey-testreport.XXXXXX")
trap 'rm -f "$report"' EXIT
go build -o "$report" ./scripts/testreport
go test -race -json "$@" ./... | "$report"
