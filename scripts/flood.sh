#!/usr/bin/env bash
# Shows what a flood of wrong secrets does to everyone else: while one
# address hammers the token endpoint with wrong secrets for one client,
# do correct requests from another client, at another address, keep their
# normal latency? latchkey limits failed client authentications per client
# ID and per address (rate_limit_failures a minute, rate_limit_failures_burst
# at once, then 429 with Retry-After), which should make the flood cheap.
#
#   scripts/flood.sh [duration, default 10s] [good connections, default 8] [flood connections, default 32]
#
# Four runs, each on a freshly started latchkey with a fresh SQLite data
# directory (opaque tokens):
#   rate limit on (latchkey's defaults):
#     alone         latchkey-bench token for client B from 127.0.0.1
#     during flood  the same, while latchkey-bench badsecret (wrong secrets
#                   for another client, at full speed: it ignores
#                   Retry-After) runs from 127.0.0.2
#   rate limit off (LATCHKEY_RATE_LIMIT_FAILURES=0): the same two runs.
# The flood starts 2 s before the good client and runs 3 s longer, so it
# covers the good client's warm-up and measurement; its figures are over
# its own, longer, window. Both generators bind to their source address
# with latchkey-bench load -source (any 127.0.0.0/8 address is loopback on
# Linux), so latchkey sees two remote addresses.
#
# The server runs on one core (taskset, GOMAXPROCS=1, log level warn), as
# in scripts/bench.sh. Both load generators share another core; the flood
# runs under nice 19, so that the good client gets that core when it needs
# it and its latency figures (which include its own wait for a CPU) are the
# server's doing, while the flood still takes all the CPU the good client
# leaves (a nice flood yields to every other process on its core too: a
# flood far slower in one run than in the others means a busy machine).
# FLOOD_CPU gives the flood cores of its own instead, FLOOD_NICE=0 takes
# the nice away. A latchkey without rate limiting still runs: the "on"
# runs then see 401s, no 429s.
#
# The flood is closed-loop, like any latchkey-bench load: each connection
# sends its next request as soon as it has its answer, so it keeps the
# server's core busy whatever an answer costs. What the limit changes is
# how much of that core each refused request takes, and so how much is
# left for the good client.
#
# Environment:
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU  cores for the server and the load (0 and 1)
#   FLOOD_CPU       cores for the flood (default BENCH_LOAD_CPU, shared)
#   FLOOD_NICE      the flood's niceness (19)
#   BENCH_PORT      the port latchkey listens on (19480), on 127.0.0.1
#   FLOOD_SOURCE    the flood's source address (127.0.0.2)
#
# Needs go (and gcc, for SQLite), taskset, curl and jq. Other load on the
# machine moves the figures: compare the rows of one run with each other.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
good_conns=${2:-8}
flood_conns=${3:-32}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
flood_cpu=${FLOOD_CPU:-$load_cpu}
flood_nice=${FLOOD_NICE:-19}
port=${BENCH_PORT:-19480}
good_source=127.0.0.1
flood_source=${FLOOD_SOURCE:-127.0.0.2}

secs=${duration%s}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "flood.sh: duration $duration: want whole seconds, like 10s" >&2; exit 2; }
. scripts/lib.sh
need go taskset curl jq

work=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-flood.XXXXXX")
cleanup() {
  stop_flood
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
exit_on_signals

build

good=$work/good.tsv   # limit, run, req/s, p50, p99, max, non-2xx, errors
flood=$work/flood.tsv # limit, req/s, 401, 429, other statuses, errors
: >"$good"
: >"$flood"

# good_load OUT: the good client, in the foreground.
good_load() {
  LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$load_cpu" "$bench" load -url "$base" -mode token -no-token-cap \
    -source "$good_source" -c "$good_conns" -d "${secs}s" -json >"$1"
}

# record_good LIMIT RUN JSON: a row of the good client's table.
record_good() {
  local row
  row=$(jq -r --arg l "$1" --arg r "$2" '[$l, $r, .requests_per_second, .latency_ms.p50, .latency_ms.p99,
    .latency_ms.max, .non_2xx, .transport_errors + .stalled_at_end] | @tsv' "$3")
  printf '%s\n' "$row" >>"$good"
  awk -F'\t' '{ printf "  good client, %-13s %8.0f req/s   p50 %6.2f ms   p99 %6.2f ms   max %7.2f ms%s\n",
    $2, $3, $4, $5, $6, ($7 + $8 > 0) ? "   !! " $7 " non-2xx, " $8 " transport errors" : "" }' <<<"$row"
}

# pair LIMIT [VAR=value...]: the good client alone, then during a flood,
# each on a fresh server with the given settings.
pair() {
  local limit=$1 row
  shift
  start_latchkey "$work/$limit-alone" "$@"
  good_load "$work/$limit-alone.json"
  record_good "$limit" alone "$work/$limit-alone.json"
  stop_server

  start_latchkey "$work/$limit-flood" "$@"
  LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$flood_cpu" nice -n "$flood_nice" "$bench" load -url "$base" \
    -mode badsecret -source "$flood_source" -c "$flood_conns" -d "$((secs + 3))s" -json \
    >"$work/$limit-flood-attacker.json" 2>"$work/$limit-flood-attacker.log" &
  flood_pid=$!
  sleep 2
  good_load "$work/$limit-flood.json"
  if ! wait "$flood_pid"; then
    flood_pid=
    echo "flood.sh: the flood failed:" >&2
    cat "$work/$limit-flood-attacker.log" >&2
    exit 1
  fi
  flood_pid=
  record_good "$limit" "during flood" "$work/$limit-flood.json"
  row=$(jq -r --arg l "$limit" '[$l, .requests_per_second, .status["401"] // 0, .status["429"] // 0,
    ([.status | to_entries[] | select(.key != "401" and .key != "429") | .value] | add // 0),
    .transport_errors + .stalled_at_end] | @tsv' "$work/$limit-flood-attacker.json")
  printf '%s\n' "$row" >>"$flood"
  awk -F'\t' '{ printf "  flood               %8.0f req/s   401: %d   429: %d%s\n",
    $2, $3, $4, ($5 + $6 > 0) ? "   other statuses: " $5 ", transport errors: " $6 : "" }' <<<"$row"
  stop_server
}

describe
echo "server on CPU $server_cpu; good client on CPU $load_cpu, flood on CPU $flood_cpu at nice $flood_nice;" \
  "${secs}s per run (after a 1s warm-up)"
echo "good client: token, $good_conns connections from $good_source; flood: badsecret, $flood_conns connections from $flood_source"
# Read whole: with pipefail, grep -q closing the pipe early would fail it.
help=$("$work/latchkey" serve -h 2>&1 || true)
if [[ $help != *-rate-limit-failures* ]]; then
  echo "this latchkey has no rate limiting: the runs with the limit on are like those with it off"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== rate limit on (latchkey's defaults)"
pair on
echo "== rate limit off (LATCHKEY_RATE_LIMIT_FAILURES=0)"
pair off LATCHKEY_RATE_LIMIT_FAILURES=0

echo
echo "== good client (token, $good_conns connections, from $good_source): alone and during the flood"
awk -F'\t' '
  BEGIN { printf "%-6s %-13s %9s %8s %8s %9s %8s %7s %12s\n", "limit", "run", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "errors", "p99 x alone" }
  {
    if ($2 == "alone") alone[$1] = $5
    ratio = alone[$1] > 0 ? sprintf("%.2f", $5 / alone[$1]) : "-"
    printf "%-6s %-13s %9.0f %8.2f %8.2f %9.2f %8d %7d %12s\n", $1, $2, $3, $4, $5, $6, $7, $8, ratio
  }' "$good"
echo
echo "== flood (badsecret, $flood_conns connections, from $flood_source, over $((secs + 3))s)"
awk -F'\t' '
  BEGIN { printf "%-6s %9s %9s %9s %9s %7s\n", "limit", "req/s", "401", "429", "other", "errors" }
  { printf "%-6s %9.0f %9d %9d %9d %7d\n", $1, $2, $3, $4, $5, $6 }' "$flood"
echo "(errors: transport errors and requests stalled at the end of the run)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (the runs' own load included)"
