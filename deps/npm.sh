#!/bin/sh
# Test oracles for spec/dmp_spec.lua and bench/dmp: Node.js (Debian's
# nodejs and npm when missing) and the npm packages pinned in
# deps/package.json, installed into deps/node_modules (git-ignored).
# Idempotent: nothing to do (and no network) once they are there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  sh "$here/install.sh" "$here/packages-node.txt"
fi
if [ -f "$here/node_modules/diff-match-patch/package.json" ] && [ -f "$here/node_modules/dmp/package.json" ]; then
  exit 0
fi
echo "deps: installing the JavaScript test oracles into deps/node_modules" >&2
cd "$here"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
else
  npm install --no-audit --no-fund --loglevel=error >&2
fi
