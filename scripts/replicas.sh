#!/usr/bin/env bash
# Measures token issuance and introspection throughput of a freshly built
# latchkey in one run: on SQLite, on PostgreSQL with one replica, and on
# PostgreSQL with two replicas (a wrk per replica, half the connections
# each, the figures summed). Loopback only; opaque tokens.
#   scripts/replicas.sh [duration, default 10s] [connections, default 16]
# Needs wrk, curl, jq and psql (apt-get install wrk curl jq postgresql-client)
# and a PostgreSQL: LATCHKEY_BENCH_POSTGRES_DSN, by default the local one.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-16}
pg=${LATCHKEY_BENCH_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
schema=lk_bench_$$
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/latchkey" ./cmd/latchkey
psql -q "$pg" -c "CREATE SCHEMA $schema" >/dev/null
sep='?'; [[ $pg == *\?* ]] && sep='&'
pgdsn="$pg${sep}search_path=$schema"

boot=bench-bootstrap-token-0123456789abcdef0123
secret=bench-system-secret-0123456789abcdef0123
cat > "$work/token.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("LK_BASIC")
LUA
cat > "$work/introspect.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = "token=" .. os.getenv("LK_TOKEN")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("LK_RS_BASIC")
LUA

# start PORT DATABASE: one replica, logging warnings only.
start() {
  LATCHKEY_DATABASE=$2 LATCHKEY_SECRET=$secret LATCHKEY_BOOTSTRAP_TOKEN=$boot \
    "$work/latchkey" serve --listen "127.0.0.1:$1" --log-level warn >/dev/null 2>>"$work/stderr" &
  pids+=($!)
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && return; sleep 0.1; done
  echo "replica on port $1 did not become ready" >&2; cat "$work/stderr" >&2; exit 1
}

stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

basic() { printf '%s:%s' "$(jq -r .key_pair.client_id <<<"$1")" "$(jq -r .key_pair.client_secret <<<"$1")" | base64 -w0; }

# seed PORT: an integration to get tokens and a resource server to introspect.
seed() {
  local api=http://127.0.0.1:$1/admin/integrations
  local job rs
  # Uncapped: wrk asks for tens of thousands of tokens a second.
  job=$(curl -fs -X POST "$api" -H "Authorization: Bearer $boot" -d '{"name":"load","scopes":["read"],"token_rate_per_minute":0}')
  rs=$(curl -fs -X POST "$api" -H "Authorization: Bearer $boot" -d '{"name":"rs","can_introspect":true}')
  LK_BASIC=$(basic "$job"); LK_RS_BASIC=$(basic "$rs")
  LK_TOKEN=$(curl -fs -X POST "http://127.0.0.1:$1/oauth2/token" -H "Authorization: Basic $LK_BASIC" \
    -d grant_type=client_credentials | jq -r .access_token)
  export LK_BASIC LK_RS_BASIC LK_TOKEN
}

# drive SCRIPT PATH PORT...: wrk against each port at once, connections
# split between them; prints the summed requests/s, the worst p99 and any
# non-2xx count.
drive() {
  local script=$1 path=$2; shift 2
  local per=$((connections / $#)) i=0
  for port in "$@"; do
    wrk -t1 -c"$per" -d"$duration" --latency -s "$work/$script" "http://127.0.0.1:$port$path" >"$work/wrk.$i" &
    i=$((i + 1))
  done
  wait $(jobs -p | tail -n "$#")
  cat "$work"/wrk.* | awk '
    /Requests\/sec/ { rps += $2 }
    $1 == "99%" { v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[^m]s$/) ms *= 1000; if (ms > p99) p99 = ms }
    /Non-2xx/ { bad += $NF }
    END { printf "%10.0f req/s   p99 %6.1f ms   non-2xx %d\n", rps, p99, bad }'
  rm -f "$work"/wrk.*
}

printf '%-34s' "sqlite, 1 node, token"
start 19181 "sqlite://$work/latchkey.db"; seed 19181
drive token.lua /oauth2/token 19181
printf '%-34s' "sqlite, 1 node, introspect"
drive introspect.lua /oauth2/introspect 19181
stop

printf '%-34s' "postgres, 1 replica, token"
start 19182 "$pgdsn"; seed 19182
drive token.lua /oauth2/token 19182
printf '%-34s' "postgres, 1 replica, introspect"
drive introspect.lua /oauth2/introspect 19182

start 19183 "$pgdsn"
printf '%-34s' "postgres, 2 replicas, token"
drive token.lua /oauth2/token 19182 19183
printf '%-34s' "postgres, 2 replicas, introspect"
drive introspect.lua /oauth2/introspect 19182 19183
