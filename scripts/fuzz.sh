#!/usr/bin/env bash
# Runs every fuzz target in turn for the given time each (Go's -fuzztime:
# a duration such as 30s or 10m, or a count such as 5000x).
#
#   scripts/fuzz.sh [fuzztime, default 30s] [parallel workers, default GOMAXPROCS]
#
# A failing input is written under the package's testdata/fuzz/<Target>/
# and the script stops with go test's report; once the bug is fixed, commit
# that file: it then runs as a regression case with every `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-30s}
parallel=()
[[ -n ${2:-} ]] && parallel=(-parallel "$2")

targets=(
  ./server:FuzzTokenRequest
  ./server:FuzzClientAuthentication
  ./server:FuzzIntrospect
  ./server:FuzzAdminJSON
  ./server/oauth/credential:FuzzSecretFormat
)
for t in "${targets[@]}"; do
  pkg=${t%%:*} name=${t#*:}
  echo "== $name ($pkg) for $fuzztime"
  go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "${parallel[@]}"
done
