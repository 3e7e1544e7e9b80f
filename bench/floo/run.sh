#!/bin/sh
# bench/floo: coru-floo-server against a Node.js reference loop (the same
# editing core with Floobits' npm dmp, node_server.js), 10 and 100 clients
# in one workspace on loopback, each sending a small patch every 50 ms.
#   sh bench/floo/run.sh            (CLIENTS="10 100" DUR=5 RATE=50)
# FLUSH_DELAY=ms sets the coru server's flush_delay (default: the server's, 0).
# Writes a Markdown table on stdout and to bench/results/floo.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CORU=${CORU:-$root/build/coru}
CLIENTS=${CLIENTS:-"10 100"}
DUR=${DUR:-5}
RATE=${RATE:-50}
FLUSH_DELAY=${FLUSH_DELAY:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coru-floo-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
sh "$root/deps/npm.sh" >/dev/null
mkdir -p "$root/bench/results"
out=$root/bench/results/floo.md
port=$((20000 + $$ % 20000))

start_server() {  # $1 = coru | node; sets spid
  if [ "$1" = coru ]; then
    rm -rf "$tmp/data"
    printf '{"data_dir":"%s","port":%s,%s"log_level":"none","readme":false,"max_write_queue":1073741824,"users":{"alice":{"secret":"bench-secret"}}}' \
      "$tmp/data" "$port" "${FLUSH_DELAY:+\"flush_delay\":$FLUSH_DELAY,}" > "$tmp/floo.json"
    "$CORU" "$root/bin/coru-floo-server" -c "$tmp/floo.json" &
    spid=$!
  else
    NODE_PATH="$root/deps/node_modules" node "$here/node_server.js" "$port" > "$tmp/node.out" &
    spid=$!
  fi
  i=0
  while ! "$CORU" -e "local s = coru.tcp.connect('127.0.0.1', $port) os.exit(s and 0 or 1)" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "server $1 did not start" >&2; exit 1; }
    sleep 0.1
  done
}

{
  echo "| server | clients | patches/s | broadcasts/s | p50 ms | p99 ms | server CPU µs/patch | server RSS kB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$tmp/table"
for n in $CLIENTS; do
  for srv in coru node; do
    port=$((port + 1))
    start_server $srv
    r=$("$CORU" "$here/load.lua" "$port" "$spid" "$n" "$DUR" "$RATE")
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    echo "$r" > "$tmp/$srv-$n.json"
    "$CORU" -e "
      local j = require('coru.jsonl').decode(io.open('$tmp/$srv-$n.json'):read('*a'))
      print(('| %s | %d | %.0f | %.0f | %.2f | %.2f | %.1f | %d |'):format('$srv', j.clients, j.patches_per_s,
        j.broadcasts_per_s, j.p50_ms, j.p99_ms, j.cpu_us_per_patch, j.rss_kb))" >> "$tmp/table"
  done
done
{
  echo "# bench/floo: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${DUR} s per cell, a patch every ${RATE} ms per client"
  echo
  cat "$tmp/table"
  echo
  echo "coru-floo-server also writes every change to disk (atomic writes, fsync, group commit);"
  echo "the Node.js loop keeps everything in memory. CPU is the run time of all the server's threads (schedstat)."
} | tee "$out"
