#!/usr/bin/env bash
# One command on a fresh machine: installs Node 24 if needed and the dependencies, then runs the demo mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/ensure-node.sh
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
exec node sidecar/main.ts demo "$@"
