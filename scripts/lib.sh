# Shared by the measurement scripts (bench.sh, flood.sh, fairness.sh):
# starting and stopping a latchkey pinned to one core, on a fresh SQLite
# directory.
# Source it after setting work (a scratch directory holding the built
# binaries), port and server_cpu.

# The settings every measured latchkey gets; the admin token is what
# latchkey-bench sets itself up with.
boot=bench-bootstrap-token-0123456789abcdef0123
secret=bench-system-secret-0123456789abcdef0123
base=http://127.0.0.1:$port
server_pid=
flood_pid=

# stop_flood stops a flood still running (after Ctrl-C: a background job
# ignores it) and waits for it; SIGTERM lets it delete its integration.
stop_flood() {
  [[ -n $flood_pid ]] || return 0
  kill "$flood_pid" 2>/dev/null || true
  wait "$flood_pid" 2>/dev/null || true
  flood_pid=
}

# need CMD...: fails naming the first command missing.
need() {
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null || { echo "$(basename "$0"): needs $cmd" >&2; exit 1; }
  done
}

# build: latchkey and latchkey-bench from this checkout, into $work.
build() {
  echo "building latchkey and latchkey-bench"
  go build -o "$work/latchkey" ./cmd/latchkey
  go build -o "$work/latchkey-bench" ./cmd/latchkey-bench
  bench=$work/latchkey-bench
}

# describe: one line naming what is measured, on what.
describe() {
  echo "latchkey $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -n $(git status --porcelain 2>/dev/null) ]] && echo ' + uncommitted changes'), $(go env GOVERSION)," \
    "$(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))"
}

# stop_server stops the running server, if any, and waits for it to exit.
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

# wait_ready URL LOG [METHOD]: until URL answers 2xx; fails with the
# server's log if it does not within 10 s or the server exits.
wait_ready() {
  for _ in $(seq 200); do
    curl -fs -o /dev/null -X "${3:-GET}" "$1" && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$(basename "$0"): the server did not become ready:" >&2
  cat "$2" >&2
  exit 1
}

# start_latchkey DIR [VAR=value...]: latchkey on the SQLite database in DIR,
# with the given settings on top of the defaults, on one core, logging
# warnings only. The binary is $latchkey when set (fairness.sh measures
# several builds in one run), else $work/latchkey.
start_latchkey() {
  local dir=$1
  shift
  mkdir -p "$dir"
  # exec all the way down, so $! is latchkey itself: its /proc entry for
  # the memory figures, and its PID to stop.
  (cd "$dir" && exec env GOMAXPROCS=1 LATCHKEY_LISTEN="127.0.0.1:$port" \
    LATCHKEY_DATABASE="sqlite://$dir/latchkey.db" LATCHKEY_SECRET=$secret \
    LATCHKEY_BOOTSTRAP_TOKEN=$boot LATCHKEY_LOG_LEVEL=warn "$@" \
    taskset -c "$server_cpu" "${latchkey:-$work/latchkey}" serve) >>"$dir/server.log" 2>&1 &
  server_pid=$!
  wait_ready "$base/readyz" "$dir/server.log"
}
