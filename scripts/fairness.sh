#!/usr/bin/env bash
# Measures what hostile or crowded traffic does to everyone else, for one
# build of latchkey or for several side by side (a failure limiter before
# and after a change), and prints one table:
#
#   scripts/fairness.sh [duration, default 10s] [good connections, default 8] [flood connections, default 32]
#
# 1. Shared address (latchkey-bench nat, on a fresh server with latchkey's
#    default limits): 30 integrations asking for 10 tokens each over the
#    duration, a resource server introspecting 10 times a second, and the
#    new key pair of a regenerated integration asking for 10 tokens, all
#    from one address (127.0.0.3) while the integration's stale deployment
#    retries the revoked pair 4 times a second (after retrying alone for
#    10 s first). The DESIGN's contract: a request with correct
#    credentials is never refused because of someone else's failures, so
#    every token and introspection should succeed, and the stale client
#    should be slowed and still told 401.
# 2. A good client's token requests (latchkey-bench token, from 127.0.0.1,
#    closed loop on the good connections): alone, during a flood of wrong
#    secrets from one address (badsecret from FLOOD_SOURCE, 127.0.0.2), and
#    during one from a great many (badsecret -sources, a fresh connection
#    and address of MANY_SOURCES, 127.64.0.0/10, for every request), each
#    on a fresh server. As in flood.sh: the flood starts 2 s before the
#    good client, ends 3 s after it, shares its core at nice 19, and both
#    are closed loops that keep the server's core busy; what the limits
#    change is how much of the core each refused request takes.
# 3. The worst request: crafted POST /oauth2/token requests within the
#    limits of the DESIGN (16 KiB bodies, 64 KiB of headers): a body full
#    of distinct scope values (with the client's secret, and with another
#    client's, which is well formed and wrong), of distinct audience values,
#    of distinct parameters, and a 45 KiB Basic header; and a 1 MiB body of
#    scope values, which a latchkey that accepts 1 MiB bodies takes a long
#    time over (curl gives up after 120 s). Each is sent FAIRNESS_REPEAT
#    times (once when it takes over a second), each time from an address of
#    its own so that no failure limit answers in its place; the server's
#    CPU time is read from /proc/PID/stat (utime + stime, in clock ticks:
#    10 ms on most systems, hence the repeats) before and after, once the
#    server has gone idle again; the wall time is curl's.
#
# Environment:
#   FAIRNESS_REVS    what to measure, side by side: git revisions (each
#                    exported with git archive into the scratch directory
#                    and built there) or paths to latchkey binaries
#                    (relative to the repository's root); "." is
#                    this checkout as it is. Default ".". For before and
#                    after: FAIRNESS_REVS="6a7989d ." or "main measure".
#                    The scenarios run in turn on every build, so that a
#                    disturbance of the machine hits all builds alike.
#                    latchkey-bench is always this checkout's.
#   FAIRNESS_REV     shorthand for FAIRNESS_REVS="$FAIRNESS_REV .": that
#                    revision (or binary) before this checkout
#   FAIRNESS_SECTIONS  which of nat, good and crafted to run (all three)
#   FAIRNESS_REPEAT  requests per crafted variant (20)
#   MANY_SOURCES     the many-address flood's range (127.64.0.0/10)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU  cores for the server and the load (0 and 1)
#   FLOOD_CPU        cores for the floods (default BENCH_LOAD_CPU, shared)
#   FLOOD_NICE       the floods' niceness (19)
#   FLOOD_SOURCE     the one-address flood's source address (127.0.0.2)
#   BENCH_PORT       the port latchkey listens on (19490), on 127.0.0.1
#
# The server runs on one core (taskset, GOMAXPROCS=1, log level warn), as
# in the other scripts. When the server accepts the integration field
# token_rate_per_minute, the good client's integration is made with 0 (no
# cap on tokens issued): a closed loop of token requests would otherwise
# measure the cap. The shared-address scenario keeps the server's default
# cap: its integrations ask for a token a second each, and a cap that
# refused them would show in its row like any other refusal.
#
# Needs go (and gcc, for SQLite), git, taskset, curl and jq. Other load on
# the machine moves the figures: compare builds within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
good_conns=${2:-8}
flood_conns=${3:-32}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
flood_cpu=${FLOOD_CPU:-$load_cpu}
flood_nice=${FLOOD_NICE:-19}
port=${BENCH_PORT:-19490}
good_source=127.0.0.1
flood_source=${FLOOD_SOURCE:-127.0.0.2}
nat_source=127.0.0.3
many_sources=${MANY_SOURCES:-127.64.0.0/10}
repeat=${FAIRNESS_REPEAT:-20}
default_revs=.
[[ -z ${FAIRNESS_REV:-} ]] || default_revs="$FAIRNESS_REV ."
read -r -a revs <<<"${FAIRNESS_REVS:-$default_revs}"
sections=" ${FAIRNESS_SECTIONS:-nat good crafted} "

secs=${duration%s}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "fairness.sh: duration $duration: want whole seconds, like 10s" >&2; exit 2; }
[[ $repeat =~ ^[1-9][0-9]*$ ]] && ((repeat <= 250)) || { echo "fairness.sh: FAIRNESS_REPEAT=$repeat: want 1 to 250" >&2; exit 2; }
((${#revs[@]} > 0)) || { echo "fairness.sh: FAIRNESS_REVS names nothing to measure" >&2; exit 2; }
. scripts/lib.sh
need go git taskset curl jq
tick=$(getconf CLK_TCK)

work=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-fairness.XXXXXX")
cleanup() {
  stop_flood
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
exit_on_signals

build_bench

# The builds to measure: bins[i] is the binary, labels[i] its column.
build_revs "${revs[@]}"

# put I KEY VALUE: one figure of build I, for the table; get I KEY reads
# it back ("-" when there is none).
put() { printf '%s\t%s\n' "$2" "$3" >>"$work/results-$1.tsv"; }
get() { awk -F'\t' -v k="$2" '$1 == k { v = $2 } END { print v == "" ? "-" : v }' "$work/results-$1.tsv"; }

# start I NAME [VAR=value...]: build I on a fresh data directory.
start() {
  local i=$1 name=$2
  shift 2
  # A server someone else left on the port would answer in its place.
  if curl -s -o /dev/null --max-time 2 "$base/healthz"; then
    echo "fairness.sh: something already listens on 127.0.0.1:$port (set BENCH_PORT)" >&2
    exit 1
  fi
  latchkey=${bins[$i]} start_latchkey "$work/$name-$i" "$@"
}

# admin METHOD PATH [JSON]: the admin API as the bootstrap admin; prints
# the body, then the status on a line of its own.
admin() {
  curl -s -w '\n%{http_code}' -X "$1" "$base$2" -H "Authorization: Bearer $boot" \
    -H 'Content-Type: application/json' ${3:+-d "$3"}
}

# token_cap_flag: -no-token-cap when the running server accepts the
# integration field token_rate_per_minute, else nothing.
token_cap_flag() {
  local out
  out=$(admin POST /admin/integrations '{"name":"fairness-probe","token_rate_per_minute":0}')
  if [[ ${out##*$'\n'} == 201 ]]; then
    admin DELETE /admin/integrations/fairness-probe >/dev/null
    echo -no-token-cap
  fi
}

# nat I: the shared-address scenario on build I.
nat() {
  local i=$1 out=$work/nat-$1.json
  start "$i" nat
  if ! LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$load_cpu" "$bench" nat -url "$base" -source "$nat_source" \
    -d "${secs}s" -json >"$out" 2>"$work/nat-$i.log"; then
    echo "fairness.sh: latchkey-bench nat failed:" >&2
    cat "$work/nat-$i.log" >&2
    exit 1
  fi
  stop_server
  put "$i" nat.healthy "$(jq -r '"\(.healthy.ok)/\(.healthy.attempts)"' "$out")"
  put "$i" nat.new "$(jq -r '"\(.new_pair.ok)/\(.new_pair.attempts)"' "$out")"
  put "$i" nat.introspect "$(jq -r '"\(.introspect.ok)/\(.introspect.attempts)"' "$out")"
  put "$i" nat.stale "$(jq -r '.stale.status as $s | "\($s["401"] // 0) / \($s["429"] // 0) / \([$s | to_entries[] | select(.key != "401" and .key != "429") | .value] | add // 0)"' "$out")"
  put "$i" nat.delay "$(jq -r '"\(.stale.latency_ms.mean | round) ms"' "$out")"
  put "$i" nat.lead "$(jq -r '.stale_lead.status as $s | "\($s["401"] // 0) / \($s["429"] // 0) of \(.stale_lead.attempts)"' "$out")"
  printf '  %-16s healthy %s, new pair %s, introspection %s, stale client 401/429/other %s, mean wait %s\n' "${labels[$i]}" \
    "$(get "$i" nat.healthy)" "$(get "$i" nat.new)" "$(get "$i" nat.introspect)" "$(get "$i" nat.stale)" "$(get "$i" nat.delay)"
}

# good I RUN [FLOOD FLAG...]: the good client on a fresh build I, alone
# or during a flood of wrong secrets made with the given load flags.
good() {
  local i=$1 run=$2 cap out=$work/good-$2-$1.json fout=$work/flood-$2-$1.json
  shift 2
  start "$i" "good-$run"
  cap=$(token_cap_flag)
  if (($# > 0)); then
    LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$flood_cpu" nice -n "$flood_nice" "$bench" load -url "$base" \
      -mode badsecret -c "$flood_conns" -d "$((secs + 3))s" -json "$@" >"$fout" 2>"$work/flood-$run-$i.log" &
    flood_pid=$!
    sleep 2
  fi
  LATCHKEY_ADMIN_TOKEN=$boot taskset -c "$load_cpu" "$bench" load -url "$base" -mode token ${cap:+"$cap"} \
    -source "$good_source" -c "$good_conns" -d "${secs}s" -json >"$out"
  if [[ -n $flood_pid ]]; then
    if ! wait "$flood_pid"; then
      flood_pid=
      echo "fairness.sh: the flood failed:" >&2
      cat "$work/flood-$run-$i.log" >&2
      exit 1
    fi
    flood_pid=
    put "$i" "flood.$run" "$(jq -r '"\(.requests_per_second | round)/s: \(.status["401"] // 0) / \(.status["429"] // 0)\(
      if .non_2xx - (.status["401"] // 0) - (.status["429"] // 0) + .transport_errors > 0
      then " !!\(.non_2xx - (.status["401"] // 0) - (.status["429"] // 0)) other, \(.transport_errors) errors" else "" end)"' "$fout")"
  fi
  stop_server
  put "$i" "good.$run" "$(jq -r '"\(.latency_ms.p50) / \(.latency_ms.p99)"' "$out")"
  put "$i" "good.$run.rps" "$(jq -r '"\(.requests_per_second | round)/s\(if .non_2xx + .transport_errors + .stalled_at_end > 0 then " !!\(.non_2xx) non-2xx, \(.transport_errors + .stalled_at_end) errors" else "" end)"' "$out")"
  printf '  %-16s %-13s p50 / p99 %s ms, %s%s\n' "${labels[$i]}" "$run:" "$(get "$i" "good.$run")" "$(get "$i" "good.$run.rps")" \
    "$(if [[ -f $fout ]]; then echo "; the flood $(get "$i" "flood.$run") (req/s: 401 / 429)"; fi)"
}

# Crafted request bodies, made once. Values are distinct, so that no
# server can answer a repeated one from a cache.
craft_values() { # FILE PREFIX(form before the values) SEPARATOR FORMAT SIZE
  awk -v pre="$2" -v sep="$3" -v fmt="$4" -v n="$5" 'BEGIN {
    printf "%s", pre; len = length(pre)
    for (i = 0; ; i++) { v = (i ? sep : "") sprintf(fmt, i); if (len + length(v) > n) break; printf "%s", v; len += length(v) }
  }' >"$1"
}
craft_values "$work/scope-16k" "grant_type=client_credentials&scope=" "+" "s%06d" 16384
craft_values "$work/audience-16k" "grant_type=client_credentials&audience=" "+" "https://api%06d.example" 16384
craft_values "$work/params-16k" "grant_type=client_credentials" "" "&p%06d=x" 16384
craft_values "$work/scope-1m" "grant_type=client_credentials&scope=" "+" "s%06d" 1048576
printf 'grant_type=client_credentials' >"$work/plain"
# A Basic header of 45,000 characters, within the server's 64 KiB of
# headers: an unknown client ID and a 33,750-byte secret.
long_basic=$( (printf 'lk_ci_%s:' "$(printf 'q%.0s' {1..26})"; head -c 33750 /dev/zero | tr '\0' 'z') | base64 -w0)
count_values() { awk -v RS='[+&]' 'END { print NR - 1 }' "$1"; }

# cpu_ticks: the server's user and system CPU time so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

# settle: waits until the server has used no CPU for half a second (a
# request curl gave up on may still be running), for at most 10 minutes.
settle() {
  local before after
  after=$(cpu_ticks)
  for _ in $(seq 1200); do
    before=$after
    sleep 0.5
    after=$(cpu_ticks)
    [[ $after == "$before" ]] && return 0
  done
}

# craft I N KEY BODY AUTH...: sends BODY to /oauth2/token with the curl
# auth arguments AUTH, FAIRNESS_REPEAT times (once if that takes over a
# second), the k-th time from 127.0.(20+N).k; records the server's CPU and
# curl's wall time per request, and the statuses.
craft() {
  local i=$1 n=$2 key=$3 body=$4 t0 t1 k cpu wall
  shift 4
  : >"$work/curl.txt"
  settle
  t0=$(cpu_ticks)
  for k in $(seq "$repeat"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 120 --interface "127.0.$((20 + n)).$k" \
      -H 'Content-Type: application/x-www-form-urlencoded' "$@" --data-binary "@$body" \
      "$base/oauth2/token" >>"$work/curl.txt" || true
    awk '{ exit !($2 > 1) }' "$work/curl.txt" && break
  done
  settle
  t1=$(cpu_ticks)
  k=$(wc -l <"$work/curl.txt")
  cpu=$(awk -v d=$((t1 - t0)) -v k="$k" -v hz="$tick" 'BEGIN { printf "%.1f", d * 1000 / hz / k }')
  wall=$(awk '{ s += $2; if ($2 > m) m = $2 } END { printf "%.1f", s * 1000 / NR }' "$work/curl.txt")
  put "$i" "worst.$key" "$(awk -v c="$cpu" -v w="$wall" -v k="$k" '{ st[$1 == "000" ? "timeout" : $1]++ }
    END { s = ""; for (x in st) s = s (s ? "," : "") x (st[x] > 1 ? "x" st[x] : ""); printf "%s / %s  [%s]", c, w, s }' "$work/curl.txt")"
  put "$i" "cpu.$key" "$cpu"
  printf '  %-16s %-26s CPU %8s ms, wall %8s ms per request over %d (%s)\n' "${labels[$i]}" "$key" "$cpu" "$wall" "$k" \
    "$(cut -d' ' -f1 "$work/curl.txt" | sort | uniq -c | awk '{ printf "%s%s: %s", (NR > 1 ? ", " : ""), $2, $1 }')"
}

# worst I: the crafted requests on a fresh build I.
worst() {
  local i=$1 out id pass other
  start "$i" worst
  out=$(admin POST /admin/integrations '{"name":"crafted","scopes":["read","write"],"audience":["https://api.example"]}')
  id=$(jq -r .key_pair.client_id <<<"${out%$'\n'*}")
  pass=$(jq -r .key_pair.client_secret <<<"${out%$'\n'*}")
  out=$(admin POST /admin/integrations '{"name":"crafted-other"}')
  other=$(jq -r .key_pair.client_secret <<<"${out%$'\n'*}")
  [[ $id == lk_ci_* && $pass == lk_cs_* && $other == lk_cs_* ]] || { echo "fairness.sh: could not create the integrations: $out" >&2; exit 1; }
  # One ordinary request first, so that no variant pays for a cold start.
  curl -s -o /dev/null -u "$id:$pass" --data-binary "@$work/plain" -H 'Content-Type: application/x-www-form-urlencoded' "$base/oauth2/token"
  craft "$i" 1 scope "$work/scope-16k" -u "$id:$pass"
  craft "$i" 2 scope-wrong "$work/scope-16k" -u "$id:$other"
  craft "$i" 3 audience "$work/audience-16k" -u "$id:$pass"
  craft "$i" 4 params "$work/params-16k" -u "$id:$pass"
  craft "$i" 5 basic "$work/plain" -H "Authorization: Basic $long_basic"
  put "$i" worst.max "$(awk -F'\t' '$1 ~ /^cpu\./ && $2 + 0 >= m { m = $2 + 0; k = substr($1, 5) } END { printf "%s ms (%s)", m, k }' "$work/results-$i.tsv")"
  craft "$i" 6 scope-1m "$work/scope-1m" -u "$id:$pass"
  stop_server
}

echo "latchkey-bench from $(describe)"
echo "builds: $(for i in "${!revs[@]}"; do printf '%s (%s)  ' "${labels[$i]}" "${revs[$i]}"; done)"
echo "server on CPU $server_cpu; load on CPU $load_cpu, floods on CPU $flood_cpu at nice $flood_nice; ${secs}s per run"
echo "uptime before: $(uptime)"

for i in "${!revs[@]}"; do : >"$work/results-$i.tsv"; done
if [[ $sections == *" nat "* ]]; then
  echo "== shared address"
  for i in "${!revs[@]}"; do nat "$i"; done
fi
if [[ $sections == *" good "* ]]; then
  echo "== good client"
  for i in "${!revs[@]}"; do good "$i" alone; done
  for i in "${!revs[@]}"; do good "$i" one-address -source "$flood_source"; done
  for i in "${!revs[@]}"; do good "$i" many-address -sources "$many_sources"; done
fi
if [[ $sections == *" crafted "* ]]; then
  echo "== crafted requests"
  for i in "${!revs[@]}"; do worst "$i"; done
fi
echo "uptime after: $(uptime)"

# row LABEL KEY: one line of the table, a column per build.
row() {
  printf '%-44s' "$1"
  for i in "${!revs[@]}"; do printf '  %-30s' "$(get "$i" "$2")"; done
  echo
}

echo
printf '%-44s' ""
for i in "${!revs[@]}"; do printf '  %-30s' "${labels[$i]}"; done
echo
if [[ $sections == *" nat "* ]]; then
  echo "shared address $nat_source, default limits (OK / attempts)"
  row "  healthy token requests" nat.healthy
  row "  new pair's token requests" nat.new
  row "  introspections answered active" nat.introspect
  row "  stale client 401 / 429 / other" nat.stale
  row "  stale client's mean wait for an answer" nat.delay
  row "  (alone 10 s first: 401 / 429 of n)" nat.lead
fi
if [[ $sections == *" good "* ]]; then
  echo "good client, token, $good_conns connections: p50 / p99 ms"
  row "  alone" good.alone
  row "  one-address flood ($flood_source)" good.one-address
  row "  many-address flood ($many_sources)" good.many-address
  row "  (its req/s alone)" good.alone.rps
  row "  (its req/s, one-address flood)" good.one-address.rps
  row "  (its req/s, many-address flood)" good.many-address.rps
  row "  (one-address flood: req/s: 401 / 429)" flood.one-address
  row "  (many-address flood: req/s: 401 / 429)" flood.many-address
fi
if [[ $sections == *" crafted "* ]]; then
  echo "crafted POST /oauth2/token: server CPU / wall ms per request [statuses]"
  row "  scope, 16 KiB: $(count_values "$work/scope-16k") values" worst.scope
  row "  the same with a wrong secret" worst.scope-wrong
  row "  audience, 16 KiB: $(count_values "$work/audience-16k") values" worst.audience
  row "  parameters, 16 KiB: $(count_values "$work/params-16k")" worst.params
  row "  Basic header of ${#long_basic} characters" worst.basic
  row "  worst CPU of these" worst.max
  row "  scope, 1 MiB: $(count_values "$work/scope-1m") values" worst.scope-1m
fi
