#!/bin/sh
# bench/w2_callgrind.sh - W2 server instructions per request (callgrind),
# deterministic enough to compare builds on a noisy machine (issue 14).
# The server (bench/jit/cpu_server.lua: KIND plain = the W2 handler, cpu,
# inline) runs under callgrind; coru's W2 client drives it for WARM seconds
# (start-up, the JIT's recording and the interpreted first requests) with
# callgrind's instrumentation off, then it is switched on
# (callgrind_control -i on) while the client drives it again for DURATION
# seconds, and off again before the server is stopped: the steady state's
# instructions over its requests. User-space instructions only.
# (Until 2026-11-30 the figure was (I(run) - I(idle)) / requests, with the
# warm-up inside: a jit-on handler's count then moved with how many
# requests valgrind got through to amortise the recording over, 63k-83k
# for the cpu handler; the steady state is what a server runs.)
#
#   sh bench/w2_callgrind.sh
#   BUILDS="new=build/coru old=/tmp/other/build/coru" KINDS="plain inline" sh bench/w2_callgrind.sh
#   MODES="on off" ...                  # also with jit.off() in the server
#   PROFILE=1 sh bench/w2_callgrind.sh  # + functions by self cost per request
#                                       # (profile kept in $TMPDIR/coru-w2cg.<build>.<kind>.<mode>.out)
# Variables: C (50), WARM (1), DURATION (3), PORT (7380: pick another when several people measure on one machine), PASSES (8).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
command -v valgrind >/dev/null 2>&1 || { echo "w2_callgrind.sh: valgrind is not installed" >&2; exit 2; }
C=${C:-50}
WARM=${WARM:-1}
DURATION=${DURATION:-3}
PORT=${PORT:-7380}
KINDS=${KINDS:-plain}
MODES=${MODES:-on}
export PASSES=${PASSES:-8}
if [ -z "${BUILDS:-}" ]; then
  make -s -C "$root" build/coru >&2
  BUILDS="coru=$root/build/coru"
fi
client=${CLIENT:-$(echo "$BUILDS" | awk '{ split($1, a, "="); print a[2] }')}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coru-w2cg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

serve() { # serve <coru> <kind> <mode>: prints "instructions requests" of the steady state
  bin=$1 kind=$2 mode=$3
  jit=on; [ "$mode" = off ] && jit=off
  k=; [ "$kind" != cpu ] && k=$kind
  : > "$tmp/ready"
  PORT=$PORT JIT=$jit KIND=$k valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tmp/cg.out" \
    "$bin" "$here/jit/cpu_server.lua" > "$tmp/ready" 2> "$tmp/vg" &
  vpid=$!
  i=0
  while ! grep -q READY "$tmp/ready" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 600 ] && { echo "w2_callgrind.sh: server did not start" >&2; kill $vpid; exit 1; }
    sleep 0.1
  done
  PORT=$PORT C=$C DURATION=$WARM WARMUP=0 "$client" "$root/bench/coru/rpc_client.lua" > /dev/null
  callgrind_control -i on $vpid > /dev/null 2>&1
  res=$(PORT=$PORT C=$C DURATION=$DURATION WARMUP=0 "$client" "$root/bench/coru/rpc_client.lua")
  callgrind_control -i off $vpid > /dev/null 2>&1
  kill -TERM $vpid; wait $vpid 2>/dev/null || true
  total=$(echo "$res" | sed -n 's/.* total=\([0-9]*\).*/\1/p')
  [ "${PROFILE:-0}" = 1 ] && cp "$tmp/cg.out" "$prof"
  echo "$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/vg" | tail -1) $total"
}

printf '%-10s %-7s %-4s %12s %9s %14s\n' build handler jit instructions requests "instr/request"
for kind in $KINDS; do
  for mode in $MODES; do
    for b in $BUILDS; do
      label=${b%%=*} bin=${b#*=}
      prof=${TMPDIR:-/tmp}/coru-w2cg.$label.$kind.$mode.out
      run=$(serve "$bin" "$kind" "$mode")
      echo "$run" | awk -v l="$label" -v k="$kind" -v m="$mode" \
        '{ printf "%-10s %-7s %-4s %12d %9d %14.0f\n", l, k, m, $1, $2, $1 / $2 }'
      if [ "${PROFILE:-0}" = 1 ]; then
        n=$(echo "$run" | awk '{ print $2 }')
        callgrind_annotate --inclusive=no "$prof" 2>/dev/null |
          awk -v n="$n" '/^ *[0-9,]+ \(/ { c = $1; gsub(",", "", c); if (c / n >= 50) { sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); printf "%8.0f %s\n", c / n, $0 } }' |
          grep -v 'PROGRAM TOTALS' | head -30
      fi
    done
  done
done
