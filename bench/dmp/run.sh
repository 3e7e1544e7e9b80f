#!/bin/sh
# bench/dmp: coru.dmp against the npm diff-match-patch 1.0.5 under Node.js,
# same inputs, same run (make bench-dmp). REPS=n runs per operation (5).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
make -s -C "$root" build/coru >&2
sh "$root/deps/npm.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coru-dmp-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/?.so;;"
"$root/build/coru" "$here/inputs.lua" "$tmp/in.json"
NODE_PATH="$root/deps/node_modules" node "$here/node_bench.js" "$tmp/in.json" > "$tmp/node.json"
"$root/build/coru" "$here/coru_bench.lua" "$tmp/in.json" > "$tmp/coru.json"
"$root/build/coru" "$here/report.lua" "$tmp/node.json" "$tmp/coru.json"
# the worst ratio over the differential spec's texts
"$root/build/coru" "$here/cases.lua" write "$tmp/cases.json"
NODE_PATH="$root/deps/node_modules" node "$here/cases_node.js" "$tmp/cases.json" > "$tmp/cases_node.json"
"$root/build/coru" "$here/cases.lua" run "$tmp/cases.json" "$tmp/cases_node.json"
