#!/bin/sh
# bench/jit.sh - does LuaJIT compile a request handler across native calls?
# (issue 14). The W2 protocol over loopback TCP, driven by coru's W2 client
# (bench/coru/rpc_client.lua, C connections, one request in flight each),
# against two handlers (bench/jit/cpu_server.lua):
#   cpu    the request's text through a loop of string work before the reply
#   inline the same string work written out in the handler's body (no inner
#          loop: compiled only if a trace goes on past read_line)
#   plain  the W2 handler (decode, ack, encode)
# each with the JIT on and off (jit.off() in the server), interleaved, ROUNDS
# rounds. Per cell: req/s (client) and the server's CPU per request
# (/proc/<pid>/stat, user + system, over the whole client run); medians, and
# the off/on ratio of server CPU per request as the median of the per-round
# ratios (same round).
#
#   sh bench/jit.sh                   # 5 rounds, 2 s per cell (~2 min; make bench-jit,
#                                     # also run by make bench; QUICK=1: 1 round, 0.5 s)
#   ROUNDS=3 DURATION=1 sh bench/jit.sh
#   BUILDS="new=build/coru old=/tmp/other/build/coru" sh bench/jit.sh
#                                     # several builds side by side, same rounds
#   JITV=1 sh bench/jit.sh            # + the jit.v log of the cpu handler (traces,
#                                     # where they stitch), first build
# Variables: ROUNDS (5), DURATION (2), WARMUP (0.5), C (50), PASSES (8, string
# work per request), PORT (7390), KINDS ("cpu plain"), MODES ("on off").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [ "${QUICK:-0}" = 1 ]; then ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-0.5} WARMUP=${WARMUP:-0.1}; fi
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-0.5}
C=${C:-50}
PORT=${PORT:-7390}
KINDS=${KINDS:-cpu inline plain}
MODES=${MODES:-on off}
export PASSES=${PASSES:-8}
if [ -z "${BUILDS:-}" ]; then
  make -s -C "$root" build/coru >&2
  BUILDS="coru=$root/build/coru"
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coru-jit.XXXXXX")
spid=
trap '[ -n "$spid" ] && kill $spid 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
hz=$(getconf CLK_TCK)
client=${CLIENT:-$(echo "$BUILDS" | awk '{ split($1, a, "="); print a[2] }')}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

cell() { # cell <label> <coru> <kind> <mode> -> appends "label kind mode round reqs secs cpu_us_per_req"
  label=$1 bin=$2 kind=$3 mode=$4
  jit=on; [ "$mode" = off ] && jit=off
  k=; [ "$kind" != cpu ] && k=$kind
  jv=; [ "${JITV:-0}" = 1 ] && [ "$kind" != plain ] && [ "$mode" = on ] && [ "$r" = 1 ] && jv="$here/results/jit-v-$label-$kind.log"
  [ -n "$jv" ] && mkdir -p "$here/results"
  : > "$tmp/ready"
  PORT=$PORT JIT=$jit KIND=$k JITV=$jv "$bin" "$here/jit/cpu_server.lua" > "$tmp/ready" 2>>"$tmp/server.err" &
  spid=$!
  i=0
  while ! grep -q READY "$tmp/ready" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "jit.sh: server $label did not start" >&2; kill $spid; exit 1; }
    sleep 0.05
  done
  t0=$(cpu_ticks $spid)
  res=$(PORT=$PORT C=$C DURATION=$DURATION WARMUP=$WARMUP "$client" "$root/bench/coru/rpc_client.lua")
  t1=$(cpu_ticks $spid)
  kill $spid; wait $spid 2>/dev/null || true
  spid=
  total=$(echo "$res" | sed -n 's/.* total=\([0-9]*\).*/\1/p')
  rps=$(echo "$res" | sed -n 's/.* req_per_s=\([0-9.]*\).*/\1/p')
  errors=$(echo "$res" | sed -n 's/.* errors=\([0-9]*\).*/\1/p')
  [ "$errors" = 0 ] || { echo "jit.sh: $label $kind $mode: client errors: $res" >&2; exit 1; }
  us=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$total" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
  echo "$label $kind $mode $r $rps $us" >> "$tmp/rows"
  printf '%-8s %-6s jit %-4s round %d: %9.0f req/s  %6.2f us server CPU/request\n' "$label" "$kind" "$mode" "$r" "$rps" "$us" >&2
}

r=1
while [ $r -le "$ROUNDS" ]; do
  for kind in $KINDS; do
    for mode in $MODES; do
      for b in $BUILDS; do
        cell "${b%%=*}" "${b#*=}" "$kind" "$mode"
      done
    done
  done
  r=$((r + 1))
done

echo
echo "## JIT across native calls: $(date -u '+%Y-%m-%d %H:%M UTC'), coru $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?'), C=$C, ${DURATION}s x $ROUNDS rounds, PASSES=$PASSES"
echo
echo "| build | handler | req/s jit on | req/s jit off | server µs/req on | server µs/req off | off/on CPU (median, min..max) |"
echo "|---|---|---:|---:|---:|---:|---:|"
python3 - "$tmp/rows" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
cells = {}
for label, kind, mode, r, rps, us in rows:
    cells.setdefault((label, kind), {}).setdefault(mode, {})[int(r)] = (float(rps), float(us))
for (label, kind), m in cells.items():
    on, off = m.get("on", {}), m.get("off", {})
    def med(d, i): return st.median(v[i] for v in d.values()) if d else float("nan")
    ratios = [off[r][1] / on[r][1] for r in on if r in off and on[r][1] > 0]
    rr = "%.2fx (%.2f..%.2f)" % (st.median(ratios), min(ratios), max(ratios)) if ratios else "n/a"
    print("| %s | %s | %.0f | %.0f | %.2f | %.2f | %s |" % (label, kind, med(on, 0), med(off, 0), med(on, 1), med(off, 1), rr))
PY
