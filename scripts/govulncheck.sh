#!/usr/bin/env bash
# govulncheck without vuln.go.dev, which CI cannot reach. The database's
# source, golang.org/x/vulndb, holds every OSV report under data/osv and comes
# through the module proxy like any module; its own indexdb command lays those
# reports out as the database that govulncheck reads with -db file://.
#
#   scripts/govulncheck.sh
#
# Fails when the code calls a vulnerable symbol that .ci/govulncheck-accepted
# does not name (scripts/vulngate decides; govulncheck's exit status cannot
# tell an accepted finding from a new one).
#
# Both versions are pinned so that a run's verdict changes only with the code
# or with a commit that moves a pin. vulndb has no tags: its newest
# pseudo-version is `go list -m golang.org/x/vulndb@latest`.
set -euo pipefail
cd "$(dirname "$0")/.."

govulncheck_version=v1.10.0
vulndb_version=v0.0.0-20261105234957-e22db6528018

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

src=$(go mod download -json "golang.org/x/vulndb@$vulndb_version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [[ ! -d $src/data/osv ]]; then
  echo "govulncheck.sh: golang.org/x/vulndb@$vulndb_version has no data/osv" >&2
  exit 1
fi
go run "golang.org/x/vulndb/cmd/indexdb@$vulndb_version" -vulns "$src/data/osv" -out "$work/db"
# The reports in data/osv carry no modified time (vulndb's publishing sets it
# from its git history), so the database dates itself to year 1: the pin is
# what says how recent it is.
echo "vulnerability database: golang.org/x/vulndb@$vulndb_version, $(find "$src/data/osv" -name 'GO-*.json' | wc -l) reports"

go run "golang.org/x/vuln/cmd/govulncheck@$govulncheck_version" -db "file://$work/db" -format json ./... >"$work/findings.json"
go run ./scripts/vulngate -accepted .ci/govulncheck-accepted <"$work/findings.json"
