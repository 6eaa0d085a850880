# Sourced by .ci/run and examples/run-demo.sh: puts Node >= 22.18 on PATH, installing Node 24 LTS from
# the npm registry (the `node` package ships the binary) into .ci/node when the machine's node is older.
node_ok() { node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=18)?0:1)' 2>/dev/null; }
if ! node_ok; then
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
  if [ ! -x "$root/node_modules/.bin/node" ]; then
    echo "installing Node 24 from the npm registry into $root (machine node: $(node --version 2>/dev/null || echo none))"
    mkdir -p "$root"
    (cd "$root" && npm init -y >/dev/null && npm i --no-audit --no-fund --loglevel=error node@24 >/dev/null)
  fi
  export PATH="$root/node_modules/.bin:$PATH"
fi
