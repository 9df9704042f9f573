# Shared by the measurement scripts (bench.sh, flood.sh, fairness.sh,
# resources.sh): building what is measured, and starting and stopping a
# latchkey pinned to one core, on a fresh SQLite directory.
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
  echo "building latchkey"
  go build -o "$work/latchkey" ./cmd/latchkey
  build_bench
}

# build_bench: latchkey-bench from this checkout, into $work, as $bench.
build_bench() {
  echo "building latchkey-bench"
  go build -o "$work/latchkey-bench" ./cmd/latchkey-bench
  bench=$work/latchkey-bench
}

# exit_on_signals turns SIGINT and SIGTERM into a normal exit, so the
# script's EXIT trap cleans up. A load run in the foreground gets the
# Ctrl-C too and deletes its integrations first.
exit_on_signals() {
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# build_revs REV...: the builds of latchkey to measure side by side, into
# $work: bins[i] is the binary of the i-th REV, labels[i] its label. A REV
# is "." (this checkout as it is, labelled with its commit, "+changes" when
# it has uncommitted ones), the path of a latchkey binary (relative to the
# repository's root; labelled with its file name), or a git revision,
# exported with git archive into $work and built there (labelled with its
# short commit). Labels need not be distinct (". ." gives two alike).
build_revs() {
  local i rev commit
  local -a wanted=("$@")
  bins=()
  labels=()
  for i in "${!wanted[@]}"; do
    rev=${wanted[$i]}
    if [[ $rev == . ]]; then
      echo "building latchkey from this checkout"
      go build -o "$work/latchkey-$i" ./cmd/latchkey
      bins+=("$work/latchkey-$i")
      labels+=("$(git rev-parse --short HEAD 2>/dev/null || echo '?')$([[ -z $(git status --porcelain 2>/dev/null) ]] || echo '+changes')")
    elif [[ -f $rev && -x $rev ]]; then
      bins+=("$(realpath "$rev")")
      labels+=("$(basename "$rev")")
    else
      need git
      commit=$(git rev-parse --short --verify --quiet "$rev^{commit}") ||
        { echo "$(basename "$0"): $rev is neither a latchkey binary nor a git revision" >&2; exit 2; }
      echo "building latchkey at $commit ($rev)"
      # An export, not a worktree: the repository's list of worktrees,
      # which other checkouts share, is left alone.
      mkdir -p "$work/src-$i"
      git archive "$commit" | tar -x -C "$work/src-$i"
      (cd "$work/src-$i" && go build -o "$work/latchkey-$i" ./cmd/latchkey)
      bins+=("$work/latchkey-$i")
      labels+=("$commit")
    fi
  done
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
# warnings only. The binary is $latchkey when set (bench.sh and fairness.sh
# measure several builds in one run), else $work/latchkey.
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
