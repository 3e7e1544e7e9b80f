#!/bin/sh
# bench/run.sh - run coru side by side with the peers of ../shared/bench.
#
#   sh bench/run.sh              # every peer, every workload (make bench, < 10 min)
#   QUICK=1 sh bench/run.sh      # small sizes, fewer peers (< 1 min)
#   SMOKE=1 QUICK=1 sh bench/run.sh
#                                # coru's own entry points only, small sizes,
#                                # conformance checks; exit 1 if one is broken
#                                # (part of make test)
#
# The shared harness builds into and writes beside itself, so it runs from a
# temporary copy; coru is added as an extra peer (EXTRA_PEERS). Everything the
# harness reads (PEERS, WORKLOADS, REPS, N, DURATION, CS, K, REF, CG_N1/2, ...)
# can be set as usual, see ../shared/bench/CONTRACT.md. Extra variables:
#   SHARED_BENCH  the shared bench (default: <repo>/../shared/bench)
#   CORU          the coru binary to measure (default: <repo>/build/coru, built);
#                 another tree's build/coru or an installed coru (it finds its
#                 Lua modules relative to itself)
#   KEEP=1        keep the temporary copy (its path is printed)
# Reports are copied to bench/results/ (latest.md, latest.json, targets.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
if [ -z "${SHARED_BENCH:-}" ] && [ ! -f "$shared/run.sh" ]; then
  shared=$(git -C "$root" rev-parse --show-toplevel 2>/dev/null)/../shared/bench
fi
if [ ! -f "$shared/run.sh" ]; then
  echo "bench/run.sh: shared bench not found (set SHARED_BENCH)" >&2
  # make test's smoke run does not fail for a missing harness (nothing of
  # coru's is broken); make bench does.
  [ "${SMOKE:-0}" = 1 ] && exit 0
  exit 2
fi
shared=$(cd "$shared" && pwd)

if [ -z "${CORU:-}" ]; then
  make -s -C "$root" build/coru >&2
  CORU=$root/build/coru
fi
export CORU
CORU_GIT_REV=$(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')
export CORU_GIT_REV

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coru-bench.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  echo "bench/run.sh: working copy in $tmp" >&2
else
  trap 'rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM
fi
cp -R "$shared/." "$tmp/"
rm -rf "$tmp/results"
chmod -R u+w "$tmp"
mkdir -p "$tmp/extra"
cp -R "$here/coru" "$tmp/extra/coru"

# W2/W3 need coru.tcp (the streams work); without it, drop those entry points
# so the harness reports them as missing instead of waiting for READY.
has_tcp=1
"$CORU" -e 'local ok = pcall(function() return coru.tcp.listen and coru.tcp.connect end)
os.exit(ok and 0 or 1)' 2>/dev/null || has_tcp=0
if [ "$has_tcp" = 0 ]; then
  echo "bench/run.sh: this coru has no coru.tcp yet: W2 (rpc) and W3 (idle) skipped for coru" >&2
  rm -f "$tmp/extra/coru/rpc-server" "$tmp/extra/coru/rpc-client" "$tmp/extra/coru/idle-server"
fi

export EXTRA_PEERS="$tmp/extra/coru"
if [ "${SMOKE:-0}" = 1 ]; then
  # Only coru's own programs: conformance, a short W1, one rpc cell per C,
  # a few idle connections, and W1 under valgrind if it is installed.
  export QUICK=1
  export PEERS=${PEERS:-coru}
  wl=check,w1
  [ "$has_tcp" = 1 ] && wl=$wl,rpc,idle
  command -v valgrind >/dev/null 2>&1 && wl=$wl,callgrind
  export WORKLOADS=${WORKLOADS:-$wl}
  export REPS=${REPS:-1} N=${N:-20000} DURATION=${DURATION:-0.3} WARMUP=${WARMUP:-0.05}
  export K=${K:-200} CG_N1=${CG_N1:-1000} CG_N2=${CG_N2:-3000}
elif [ "${QUICK:-0}" = 1 ]; then
  # The peers of the W1 targets, small sizes, one round (node under
  # callgrind alone takes ~35 s; the full run has every peer).
  export PEERS=${PEERS:-coru,c-libuv,luajit-luv,cqueues-luajit}
  export REPS=${REPS:-1} N=${N:-200000} DURATION=${DURATION:-0.5} WARMUP=${WARMUP:-0.1}
  export CS=${CS:-50} K=${K:-2000} CG_N1=${CG_N1:-2000} CG_N2=${CG_N2:-6000}
fi
# Full run: every peer, every workload, the shared defaults (5/4/3 rounds):
# ~6.5 minutes with 7 peers on 2 cores.
export OUT="$tmp/results"

python=$(command -v python3)
status=0
if [ "${SMOKE:-0}" = 1 ]; then
  # The shared run.sh would first install every peer's Debian packages;
  # the smoke run needs none of them, so do its other steps here.
  (
    cd "$tmp"
    export BENCH_ROOT="$tmp"
    mkdir -p harness/bin
    cc -O2 -o harness/bin/idle_client harness/idle_client.c $(pkg-config --cflags --libs libuv)
    cc -O2 -o harness/bin/spin harness/spin.c
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    exec "$python" harness/bench.py
  ) > "$tmp/smoke.log" 2>&1 || status=$?
  # quiet unless something failed: the harness log, then the verdict below
  grep -E '^[0-9:]+ (check|w1 rep|rpc rep|idle rep|callgrind)' "$tmp/smoke.log" || true
else
  bash "$tmp/run.sh" || status=$?
fi

mkdir -p "$here/results"
json=$(ls -t "$tmp"/results/results-*.json 2>/dev/null | head -1 || true)
if [ -z "$json" ]; then
  echo "bench/run.sh: the harness wrote no results (rc=$status)" >&2
  exit 1
fi
cp "$tmp/results/latest.md" "$here/results/latest.md"
cp "$json" "$here/results/latest.json"
if [ -s "$tmp/results/logs/server-stderr.log" ]; then
  cp "$tmp/results/logs/server-stderr.log" "$here/results/server-stderr.log"
fi
check=""
[ "${SMOKE:-0}" = 1 ] && check=--check
"$python" "$here/targets.py" $check "$json" > "$here/results/targets.md" || status=$?
if [ "${SMOKE:-0}" = 1 ] && [ "$status" != 0 ]; then cat "$tmp/smoke.log"; fi
cat "$here/results/targets.md"
# The full run also measures handlers with the JIT on and off (issue 14):
# bench/jit.sh, 3 rounds, to results/jit.md (~1.5 min).
if [ "${SMOKE:-0}" != 1 ] && [ "${QUICK:-0}" != 1 ] && [ "${JIT_BENCH:-1}" = 1 ]; then
  ROUNDS=${JIT_ROUNDS:-3} BUILDS="coru=$CORU" sh "$here/jit.sh" > "$here/results/jit.md" 2>/dev/null || status=$?
  cat "$here/results/jit.md"
fi
exit $status
