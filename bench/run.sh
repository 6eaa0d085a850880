#!/usr/bin/env bash
# `npm run bench`: installs the load generator and reference proxies from Debian when missing, then runs
# the side-by-side benchmark (bench/run.ts). Pass --quick for a short trial run; see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]} from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "bench: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo=(sudo -E)
  fi
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Node >= 22.18 runs the TypeScript sources; on an older machine node, Node 24 comes from the npm registry.
source ../.ci/ensure-node.sh
[ -d ../node_modules/undici ] || (cd .. && npm ci --no-audit --no-fund --loglevel=error)
[ -d node_modules/http-proxy ] || npm ci --no-audit --no-fund --loglevel=error

# 10k client connections plus the proxies' own: raise the descriptor limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node run.ts "$@"
