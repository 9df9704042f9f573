#!/usr/bin/env bash
# Benchmarks a freshly built latchkey, or several builds side by side (before
# and after a change), against a "floor": the fastest answer a Go net/http
# server gives on this machine (latchkey-bench floor), measured the same way.
# latchkey's throughput as a share of the floor's is a figure that survives a
# change of machine, which raw requests/s do not.
#
#   scripts/bench.sh [duration, default 15s] [connections, default 32] [rounds, default 3]
#
# Each round runs, one after the other and each on a fresh SQLite data
# directory: the floor (driven by latchkey-bench, then by wrk), then for
# every build in BENCH_REVS latchkey with opaque tokens (POST /oauth2/token,
# then POST /oauth2/introspect on the same server) and latchkey with JWT
# access tokens (POST /oauth2/token). Rounds interleave the servers and the
# builds, so a disturbance in the middle of the run (another process, a CPU
# frequency change) shows up in one round of each rather than in all rounds
# of one; the final table gives the median of the rounds. When more than one
# build is measured, latchkey's names carry the build's label ("opaque token
# @23557a7"), and the table puts the builds' rows for each measurement
# together. Every server runs on one core (taskset, GOMAXPROCS=1, log level
# warn) and the load generator on another, so they never compete for a CPU.
# After the runs on a server, its resident memory (VmRSS, and the peak
# VmHWM) is read from /proc.
#
# wrk drives the floor too: when latchkey-bench gets at least what wrk gets
# out of the same server from the same core, the tool is not what limits
# the figures. "client CPU" is the share of its core the tool used.
#
# Environment:
#   BENCH_REVS      what to measure, side by side: git revisions (each
#                   exported with git archive into the scratch directory and
#                   built there) or paths to latchkey binaries (relative to
#                   the repository's root); "." is this checkout as it is.
#                   Default ".". For before and after: BENCH_REVS="23557a7 ."
#                   or "main .". A label given twice gets "#N", N its place
#                   in BENCH_REVS. latchkey-bench is always this checkout's.
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU  cores for the server and the load (0 and 1)
#   BENCH_SCALE=1   also the scale runs, once each: introspection and token
#                   issuance on an empty database and with BENCH_LIVE_TOKENS
#                   (5000000) live tokens seeded; introspection while the
#                   janitor (janitor_interval 1s) purges BENCH_EXPIRED_TOKENS
#                   (1000000) expired tokens, and after it has finished (if
#                   the purge ends within the run, the run is partly a quiet
#                   one: the rows left at its end are printed). They need
#                   2 GB of disk and about five minutes more, and measure
#                   only the last build in BENCH_REVS (this checkout's
#                   latchkey-bench seeds its database, so it had best be
#                   ".", or share its schema).
#   BENCH_PORT      the port the servers listen on (19480), on 127.0.0.1
#
# Needs go (and gcc, for SQLite), taskset, curl and jq (and git for a
# revision in BENCH_REVS); wrk for the
# comparison (apt-get install wrk), which is skipped without it.
# Other load on the machine moves the figures: run it on a quiet machine,
# and compare figures from one run, not across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-15s}
connections=${2:-32}
rounds=${3:-3}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
port=${BENCH_PORT:-19480}
live_tokens=${BENCH_LIVE_TOKENS:-5000000}
expired_tokens=${BENCH_EXPIRED_TOKENS:-1000000}
read -r -a revs <<<"${BENCH_REVS:-.}"
((${#revs[@]} > 0)) || { echo "bench.sh: BENCH_REVS names nothing to measure" >&2; exit 2; }

. scripts/lib.sh
need go taskset curl jq
have_wrk=1
command -v wrk >/dev/null || { have_wrk=0; echo "bench.sh: no wrk (apt-get install wrk): skipping the wrk comparison" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench.XXXXXX")

cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
exit_on_signals

build_bench
# The builds to measure: bins[b] is the binary, labels[b] its label.
build_revs "${revs[@]}"
# at[b]: what build b's names carry, " @label" when there is more than one
# build (else nothing, as before BENCH_REVS); a label given earlier in
# BENCH_REVS gets "#N", so that two builds never share a row.
at=()
for b in "${!bins[@]}"; do
  if ((${#bins[@]} == 1)); then
    at+=("")
    continue
  fi
  for ((c = 0; c < b; c++)); do
    [[ ${labels[$c]} != "${labels[$b]}" ]] || { labels[$b]+="#$((b + 1))"; break; }
  done
  at+=(" @${labels[$b]}")
done
# The width of a name in the lines printed as the runs go.
namew=28
for b in "${!at[@]}"; do
  n="opaque introspect${at[$b]}"
  ((${#n} <= namew)) || namew=${#n}
done

results=$work/results.tsv # round, server, name, req/s, p99 ms, non-2xx, errors, client CPU
memory=$work/memory.tsv   # round, server, VmRSS kB, VmHWM kB
: >"$results"
: >"$memory"

start_floor() {
  (exec env GOMAXPROCS=1 taskset -c "$server_cpu" "$bench" floor -listen "127.0.0.1:$port") >"$work/floor.log" 2>&1 &
  server_pid=$!
  wait_ready "$base/" "$work/floor.log" POST
}

# memory ROUND SERVER: records the running server's resident memory.
memory() {
  local rss hwm
  read -r rss hwm < <(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$server_pid/status")
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$rss" "$hwm" >>"$memory"
  awk -v n="$2 memory" -v w="$namew" -v r="$rss" -v h="$hwm" 'BEGIN { printf "  %-" w "s RSS %6.1f MB (peak %.1f MB)\n", n, r / 1024, h / 1024 }'
}

# record ROUND SERVER NAME RPS P99 NON2XX ERRORS CPU
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"
  local warn= cpu=n/a
  [[ $6 == 0 && $7 == 0 ]] || warn="  !! $6 non-2xx, $7 transport errors"
  [[ $8 == -1 ]] || cpu=$(printf '%.2f' "$8")
  printf "  %-${namew}s %9.0f req/s   p99 %7.2f ms   client CPU %s%s\n" "$3" "$4" "$5" "$cpu" "$warn"
}

# load ROUND SERVER NAME MODE [FLAG...]: one measured run of latchkey-bench.
load() {
  local round=$1 server=$2 name=$3 mode=$4 rps p99 bad errs cpu
  shift 4
  # Tens of thousands of tokens a second: the issuance cap would be what
  # is measured, not the server.
  [[ $mode == floor ]] || set -- -no-token-cap "$@"
  LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$load_cpu" "$bench" load -url "$base" -mode "$mode" \
    -c "$connections" -d "$duration" -json "$@" >"$work/load.json"
  read -r rps p99 bad errs cpu < <(jq -r '[.requests_per_second, .latency_ms.p99, .non_2xx,
    .transport_errors + .stalled_at_end, .client_cpu_cores] | @tsv' "$work/load.json")
  record "$round" "$server" "$name" "$rps" "$p99" "$bad" "$errs" "$cpu"
}

# The same request as latchkey-bench's floor mode: a token request's form
# and headers, with credentials of the same length.
basic=$(printf 'lk_ci_%s:lk_cs_%s' "$(printf 'a%.0s' {1..26})" "$(printf 'b%.0s' {1..49})" | base64 -w0)
cat >"$work/floor.lua" <<LUA
wrk.method = "POST"
wrk.body   = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic $basic"
wrk.headers["User-Agent"] = "latchkey-bench"
LUA

# wrk_floor ROUND: wrk on the running floor, one thread on the load core.
wrk_floor() {
  local out rps p99 bad errs cpu
  out=$(taskset -c "$load_cpu" wrk -t1 -c"$connections" -d"$duration" --latency -s "$work/floor.lua" "$base/")
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { v = $2; n = v + 0; if (v ~ /us$/) n /= 1000; else if (v !~ /ms$/) n *= 1000; print n }' <<<"$out")
  bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
  errs=$(awk '/Socket errors/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' <<<"$out")
  record "$1" floor "floor (wrk)" "$rps" "$p99" "${bad:-0}" "${errs:-0}" -1
}

describe
((${#bins[@]} == 1)) || echo "builds: $(for b in "${!bins[@]}"; do printf '%s (%s)  ' "${labels[$b]}" "${revs[$b]}"; done)"
echo "servers on CPU $server_cpu, load on CPU $load_cpu; $connections connections, $duration per run (after a 1s warm-up), $rounds rounds"

for round in $(seq "$rounds"); do
  echo "== round $round"

  start_floor
  # wrk and latchkey-bench take turns going first; wrk has no warm-up of
  # its own, so it gets a short unmeasured run when it goes first.
  if ((round % 2 == 1)) || ((have_wrk == 0)); then
    load "$round" floor "floor (latchkey-bench)" floor
    ((have_wrk == 0)) || wrk_floor "$round"
  else
    taskset -c "$load_cpu" wrk -t1 -c"$connections" -d1s -s "$work/floor.lua" "$base/" >/dev/null
    wrk_floor "$round"
    load "$round" floor "floor (latchkey-bench)" floor
  fi
  memory "$round" floor
  stop_server

  for b in "${!bins[@]}"; do
    latchkey=${bins[$b]} start_latchkey "$work/round$round-opaque-$b"
    load "$round" "opaque${at[$b]}" "opaque token${at[$b]}" token
    load "$round" "opaque${at[$b]}" "opaque introspect${at[$b]}" introspect
    memory "$round" "opaque${at[$b]}"
    stop_server

    latchkey=${bins[$b]} start_latchkey "$work/round$round-jwt-$b" LATCHKEY_TOKEN_FORMAT=jwt
    load "$round" "jwt${at[$b]}" "jwt token${at[$b]}" token
    memory "$round" "jwt${at[$b]}"
    stop_server
  done
done

# The table's order: the floor, then each measurement with the builds'
# rows together; a name not listed here would follow in the order it was
# first measured.
order="floor (latchkey-bench)"$'\n'"floor (wrk)"
for kind in "opaque token" "opaque introspect" "jwt token"; do
  for b in "${!bins[@]}"; do order+=$'\n'"$kind${at[$b]}"; done
done

echo
echo "== median of $rounds rounds; x floor is req/s over the floor's (latchkey-bench) in the same round"
awk -F'\t' -v order="$order" '
  function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  FILENAME ~ /memory/ { rss[$2] = rss[$2] " " $3; hwm[$2] = hwm[$2] " " $4; next }
  {
    if (!($3 in server)) seen[++names] = $3
    server[$3] = $2; round[NR] = $1; name[NR] = $3; rate[NR] = $4
    rps[$3] = rps[$3] " " $4; p99[$3] = p99[$3] " " $5
    bad[$3] += $6 + $7
    if ($3 == "floor (latchkey-bench)") floor[$1] = $4
  }
  END {
    for (i = 1; i <= NR; i++) if (name[i] != "" && floor[round[i]] > 0) ratio[name[i]] = ratio[name[i]] " " rate[i] / floor[round[i]]
    listed = split(order, list, "\n")
    for (i = 1; i <= listed; i++) if (list[i] in server) { sorted[++m] = list[i]; done[list[i]] = 1 }
    for (i = 1; i <= names; i++) if (!(seen[i] in done)) sorted[++m] = seen[i]
    w = 24
    for (i = 1; i <= m; i++) if (length(sorted[i]) > w) w = length(sorted[i])
    printf "%-" w "s %10s %8s %10s %10s %10s  %s\n", "", "req/s", "x floor", "p99 ms", "RSS MB", "peak MB", "failures"
    for (i = 1; i <= m; i++) {
      n = sorted[i]; s = server[n]
      printf "%-" w "s %10.0f %8.3f %10.2f %10.1f %10.1f  %s\n", n, median(rps[n]), median(ratio[n]), median(p99[n]),
        median(rss[s]) / 1024, median(hwm[s]) / 1024, bad[n] ? bad[n] : "none"
    }
  }' "$memory" "$results"

if [[ ${BENCH_SCALE:-0} == 1 ]]; then
  # The last build only.
  latchkey=${bins[${#bins[@]} - 1]}
  : >"$results"
  echo
  echo "== scale: $live_tokens live tokens (one run each)${at[${#at[@]} - 1]:+, latchkey${at[${#at[@]} - 1]}}"
  dir=$work/scale-live
  start_latchkey "$dir"
  # The seeded tokens belong to an integration of their own: one the load
  # runs delete would take its millions of tokens with it.
  curl -fs -o /dev/null -X POST "$base/admin/integrations" -H "Authorization: Bearer $boot" -d '{"name":"seed-owner"}'
  load s live "introspect, empty" introspect
  load s live "token, empty" token
  "$bench" seed -database "sqlite://$dir/latchkey.db" -tokens "$live_tokens" 2>/dev/null | sed 's/^/  /'
  echo "  database $(du -h "$dir/latchkey.db" | cut -f1)"
  load s live "introspect, $live_tokens live" introspect
  load s live "token, $live_tokens live" token
  memory s "with $live_tokens tokens"
  stop_server

  echo
  echo "== scale: introspection while the janitor purges $expired_tokens expired tokens"
  dir=$work/scale-janitor
  start_latchkey "$dir"
  curl -fs -o /dev/null -X POST "$base/admin/integrations" -H "Authorization: Bearer $boot" -d '{"name":"seed-owner"}'
  stop_server
  "$bench" seed -database "sqlite://$dir/latchkey.db" -tokens "$expired_tokens" -expired 2>/dev/null | sed 's/^/  /'
  # Counted from the load's core, never the server's.
  expired() { taskset -c "$load_cpu" "$bench" count -database "sqlite://$dir/latchkey.db" | awk '{ gsub(/[(,]/, ""); print $6 }'; }
  # The janitor's first purge starts a second after start-up, within the
  # load's warm-up, and runs until every expired row is gone.
  started=$SECONDS
  start_latchkey "$dir" LATCHKEY_JANITOR_INTERVAL=1s
  load s janitor "introspect, during purge" introspect
  echo "  expired rows left when the run ended: $(expired)"
  for _ in $(seq 1800); do [[ $(expired) == 0 ]] && break; sleep 1; done
  echo "  the purge ended after about $((SECONDS - started)) s"
  load s janitor "introspect, after purge" introspect
  memory s "janitor server"
  stop_server
fi
