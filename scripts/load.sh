#!/usr/bin/env bash
# Load-tests POST /oauth2/token of a freshly built latchkey from a second
# process with wrk, once per token format, on loopback only.
#   scripts/load.sh [duration, default 10s] [connections, default 16]
# Needs wrk, curl and jq (apt-get install wrk curl jq).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
connections=${2:-16}
work=$(mktemp -d)
trap 'pkill -f "latchkey-load serve" 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/latchkey-load" ./cmd/latchkey
boot=load-bootstrap-token-0123456789abcdef0123
cat > "$work/token.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("LK_BASIC")
LUA

port=19080
for format in opaque jwt; do
  port=$((port + 1))
  mkdir "$work/$format"
  (cd "$work/$format" && LATCHKEY_TOKEN_FORMAT=$format LATCHKEY_BOOTSTRAP_TOKEN=$boot \
    exec "$work/latchkey-load" serve --listen "127.0.0.1:$port" --log-level warn >/dev/null 2>&1) &
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  pair=$(curl -fs -X POST "http://127.0.0.1:$port/admin/integrations" -H "Authorization: Bearer $boot" \
    -H 'Content-Type: application/json' -d '{"name":"load","scopes":["read"]}')
  LK_BASIC=$(printf '%s:%s' "$(jq -r .key_pair.client_id <<<"$pair")" "$(jq -r .key_pair.client_secret <<<"$pair")" | base64 -w0)
  export LK_BASIC
  echo "== token_format=$format, $connections connections, $duration"
  wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/token.lua" "http://127.0.0.1:$port/oauth2/token" |
    grep -E 'Requests/sec|Latency|50%|99%|Non-2xx|Socket errors'
  kill %1 2>/dev/null || true
  wait 2>/dev/null || true
done
