#!/usr/bin/env bash
# Lints server/openapi.yaml with Redocly CLI's recommended rules
# (redocly.yaml), less the exceptions that .redocly.lint-ignore.yaml names
# and explains. Fails on an error; warnings are printed and pass.
#
#   scripts/openapi-lint.sh
#
# npx fetches the pinned CLI from the npm registry. It needs Node.js 20.19
# or later in the 20 line, or 22.12 or later: this machine kind's Node.js,
# not Debian's (18).
set -euo pipefail
cd "$(dirname "$0")/.."

redocly_version=2.77.0

if ! command -v npx >/dev/null 2>&1; then
  echo "openapi-lint.sh: npx not found: install Node.js 20.19+ (with npm)" >&2
  exit 1
fi
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
exec npx --yes "@redocly/cli@$redocly_version" lint --config redocly.yaml server/openapi.yaml
