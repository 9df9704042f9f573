#!/usr/bin/env bash
# Shows whether slow or idle clients can exhaust latchkey's memory or file
# descriptors, and whether a good client and /healthz keep working while
# they try.
#
#   scripts/resources.sh [slow uploads, default 1000] [idle connections, default 20000] [upload run, default 40s]
#
# Two runs, each on a freshly started latchkey with a fresh SQLite data
# directory:
#   slow uploads  latchkey-bench slow keeps the given number of uploads
#                 going (half to POST /oauth2/token as forms, half to POST
#                 /admin/integrations as JSON with the bootstrap admin
#                 token, so that the admin handler reads them too), each
#                 declaring a 1,000,000-byte body and sending ~32 KB/s; an
#                 upload that ends is started again 1 s later. Meanwhile,
#                 once a second, a good client asks for a token and for
#                 /healthz, each on a new connection (curl). Reported: the
#                 server's resident memory before and at its peak (VmRSS,
#                 VmHWM from /proc), how the uploads ended, how many of the
#                 good requests succeeded, with their latency, and the
#                 server's connection and body metrics halfway through.
#   idle          latchkey-bench idle opens the given number of keep-alive
#                 connections, one GET /healthz answered on each, and holds
#                 them idle, split over RESOURCES_IDLE_PROCS (4) processes
#                 from 127.0.0.2, 127.0.0.3, ... (one process cannot hold
#                 20,000 sockets under a 20,000 open-file limit). Once all
#                 are tried: the server's open file descriptors (from
#                 /proc/PID/fd), its connection metrics, and three rounds
#                 of /healthz and a token request (curl, on new
#                 connections, 5 s each), all within the 60 s hold. Then
#                 what the clients saw: answers by status, failures, and
#                 connections the server closed while they were held.
#
# The server runs on one core (taskset, GOMAXPROCS=1, log level warn) with
# the open-file limit this shell has (ulimit -n), as in scripts/bench.sh;
# the clients run on another core.
#
# Environment:
#   RESOURCES_LATCHKEY  a latchkey binary to measure instead of this
#                       checkout's (e.g. one built from an older commit);
#                       latchkey-bench is always this checkout's
#   RESOURCES_IDLE_PROCS  processes the idle connections are split over (4)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU  cores for the server and the clients (0 and 1)
#   RESOURCES_PORT      the port latchkey listens on (19733), on 127.0.0.1;
#                       the script stops if something already listens there
#
# Needs go (and gcc, for SQLite), taskset, curl, jq and ss. Other load on
# the machine moves the latencies, not the memory and descriptor figures.
set -euo pipefail
cd "$(dirname "$0")/.."

uploads=${1:-1000}
idle_conns=${2:-20000}
upload_run=${3:-40s}
idle_procs=${RESOURCES_IDLE_PROCS:-4}
server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
port=${RESOURCES_PORT:-19733}

secs=${upload_run%s}
[[ $secs =~ ^[1-9][0-9]*$ ]] || { echo "resources.sh: upload run $upload_run: want whole seconds, like 40s" >&2; exit 2; }
[[ $uploads =~ ^[1-9][0-9]*$ && $idle_conns =~ ^[1-9][0-9]*$ && $idle_procs =~ ^[1-9][0-9]*$ ]] ||
  { echo "resources.sh: want whole numbers of uploads, idle connections and processes" >&2; exit 2; }
. scripts/lib.sh
need go taskset curl jq ss
if ss -Htln "sport = :$port" | grep -q .; then
  echo "resources.sh: something already listens on port $port; set RESOURCES_PORT" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/latchkey-resources.XXXXXX")
client_pids=()

stop_clients() {
  for pid in "${client_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${client_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  client_pids=()
}
cleanup() {
  stop_clients
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
exit_on_signals

build
if [[ -n ${RESOURCES_LATCHKEY:-} ]]; then
  cp "$RESOURCES_LATCHKEY" "$work/latchkey"
fi

# status_kb FIELD: a VmRSS-like line of the server's /proc status, in kB.
status_kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$server_pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f MB", k / 1024 }'; }
fds() { ls "/proc/$server_pid/fd" | wc -l; }

# good_client: a client ID and secret of a new integration, in $client_id
# and $client_secret.
good_client() {
  local out
  out=$(curl -fsS -H "Authorization: Bearer $boot" -H 'Content-Type: application/json' \
    -d '{"name":"resources-good"}' "$base/admin/integrations")
  client_id=$(jq -r .key_pair.client_id <<<"$out")
  client_secret=$(jq -r .key_pair.client_secret <<<"$out")
}

# probe OUT SECONDS: one token request and one GET /healthz, each on a
# new connection and given SECONDS; appends "token|healthz STATUS SECONDS"
# lines to OUT (status 000: no answer in time).
probe() {
  local t
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time "$2" -u "$client_id:$client_secret" \
    -d grant_type=client_credentials "$base/oauth2/token" || true)
  echo "token ${t:-000 $2}" >>"$1"
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time "$2" "$base/healthz" || true)
  echo "healthz ${t:-000 $2}" >>"$1"
}

# probe_summary FILE: per kind, the successes out of the tries, their
# latency, and the failures by status.
probe_summary() {
  local kind ok n lat bad
  for kind in token healthz; do
    n=$(awk -v k="$kind" '$1 == k' "$1" | wc -l)
    ok=$(awk -v k="$kind" '$1 == k && $2 == 200' "$1" | wc -l)
    lat=$(awk -v k="$kind" '$1 == k && $2 == 200 { print $3 * 1000 }' "$1" | sort -n |
      awk '{ v[NR] = $1 } END { if (NR) printf "latency median %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR]; else printf "no successes" }')
    bad=$(awk -v k="$kind" '$1 == k && $2 != 200 { print $2 }' "$1" | sort | uniq -c | awk '{ printf " %s:%s", $2, $1 }')
    printf '  good %-8s %3d/%-3d succeeded; %s%s\n' "$kind" "$ok" "$n" "$lat" "${bad:+; failures (status:count, 000 = no answer in time)$bad}"
  done
}

# server_metrics: the public listener's connection figures, if the server
# publishes them.
server_metrics() {
  local m
  m=$(curl -s --max-time 5 "$base/metrics" || true)
  if ! grep -q '^latchkey_connections_open' <<<"$m"; then
    echo "  server metrics: none about connections (or no answer)"
    return
  fi
  awk '/^latchkey_connections_[a-z_]*\{listener="public"\}/ || /^latchkey_request_bodies/ {
      sub(/\{listener="public"\}/, ""); printf "  %s %s\n", $1, $2 }' <<<"$m"
}

describe
echo "server on CPU $server_cpu (GOMAXPROCS=1, ulimit -n $(ulimit -n)); clients on CPU $load_cpu"
if [[ -n ${RESOURCES_LATCHKEY:-} ]]; then
  echo "measuring the latchkey binary $RESOURCES_LATCHKEY, not this checkout's (latchkey-bench is this checkout's)"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "== $uploads slow uploads for ${secs}s (1,000,000 bytes declared, ~32 KB/s each; half token, half admin)"
start_latchkey "$work/slow"
good_client
rss_before=$(status_kb VmRSS)
half=$(( (uploads + 1) / 2 ))
taskset -c "$load_cpu" "$bench" slow -url "$base" -path /oauth2/token -c "$half" -d "${secs}s" -json \
  >"$work/slow-token.json" 2>"$work/slow-token.log" &
client_pids+=($!)
if (( uploads - half > 0 )); then
  taskset -c "$load_cpu" "$bench" slow -url "$base" -path /admin/integrations -json-body \
    -header "Authorization: Bearer $boot" -c "$(( uploads - half ))" -d "${secs}s" -json \
    >"$work/slow-admin.json" 2>"$work/slow-admin.log" &
  client_pids+=($!)
fi
: >"$work/slow-probes"
: >"$work/slow-metrics"
sleep 2
for i in $(seq $(( secs - 3 ))); do
  probe "$work/slow-probes" 10
  # The server's own figures, halfway through.
  (( i == (secs - 1) / 2 )) && server_metrics >"$work/slow-metrics"
  sleep 1
done
for pid in "${client_pids[@]}"; do
  wait "$pid" || { echo "resources.sh: a slow-upload client failed:" >&2; cat "$work"/slow-*.log >&2; exit 1; }
done
client_pids=()
echo "  server memory: VmRSS $(mb "$rss_before") before, peak (VmHWM) $(mb "$(status_kb VmHWM)")"
for f in "$work"/slow-*.json; do
  jq -r --arg p "$(basename "$f" .json)" '"  \($p | sub("slow-"; "")) uploads: \(.uploads) started; answered \(.status | to_entries | map("\(.key): \(.value)") | join(", ") | if . == "" then "none" else . end); closed without an answer: \(.failed | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "none" else . end); still running at the end: \(.running_at_end)"' "$f"
done
probe_summary "$work/slow-probes"
echo "  halfway through:"
cat "$work/slow-metrics"
stop_server

echo
echo "== $idle_conns idle keep-alive connections from $idle_procs processes"
start_latchkey "$work/idle"
good_client
fds_before=$(fds)
per=$(( (idle_conns + idle_procs - 1) / idle_procs ))
left=$idle_conns
for i in $(seq "$idle_procs"); do
  n=$(( left < per ? left : per ))
  left=$(( left - n ))
  (( n > 0 )) || break
  taskset -c "$load_cpu" "$bench" idle -url "$base" -source "127.0.0.$(( i + 1 ))" -c "$n" -parallel 256 \
    -timeout 3s -hold 60s -json >"$work/idle-$i.json" 2>"$work/idle-$i.log" &
  client_pids+=($!)
done
start=$SECONDS
until [[ $(cat "$work"/idle-*.log 2>/dev/null | grep -c '^opened') -ge ${#client_pids[@]} ]]; do
  if (( SECONDS - start > 120 )); then
    echo "resources.sh: the idle connections were not all tried within 120 s:" >&2
    cat "$work"/idle-*.log >&2
    exit 1
  fi
  sleep 0.5
done
echo "  all connections tried after $(( SECONDS - start )) s; server file descriptors: $fds_before before, $(fds) now"
server_metrics
: >"$work/idle-probes"
for _ in 1 2 3; do probe "$work/idle-probes" 5; sleep 1; done
probe_summary "$work/idle-probes"
echo "  server file descriptors after the probes: $(fds); memory peak (VmHWM) $(mb "$(status_kb VmHWM)")"
for pid in "${client_pids[@]}"; do
  wait "$pid" || { echo "resources.sh: an idle client failed:" >&2; cat "$work"/idle-*.log >&2; exit 1; }
done
client_pids=()
jq -rs '{kept: (map(.kept) | add), closed: (map(.closed_by_server) | add),
    status: (map(.status | to_entries) | add | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries),
    failed: (map(.failed | to_entries) | add | group_by(.key) | map({key: .[0].key, value: (map(.value) | add)}) | from_entries)} |
  "  clients: answered \(.status | to_entries | map("\(.key): \(.value)") | join(", ") | if . == "" then "none" else . end); no connection or no answer: \(.failed | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "none" else . end)",
  "  clients: kept open \(.kept), of which the server closed \(.closed) while they were held"' "$work"/idle-*.json
stop_server

echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (the runs' own load included)"
