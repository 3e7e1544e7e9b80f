#!/bin/sh
# bench/run.sh - coru side by side with its peers (bench/peers/*), by the
# repository's own harness (bench/harness.py; its docstring is the contract
# of a peer folder).
#
#   sh bench/run.sh              # every peer, every workload (make bench)
#   QUICK=1 sh bench/run.sh      # small sizes, one round (< 1 min)
#   SMOKE=1 sh bench/run.sh      # coru only, conformance checks and tiny
#                                # sizes; exit 1 if one of coru's programs
#                                # is broken (part of make test)
#
# Variables: PEERS, WORKLOADS (check,w1,rpc,idle,callgrind), REPS, N,
# DURATION, WARMUP, CS, K, CG_N1, CG_N2; CORU=<binary> measures another
# build (it finds its Lua modules relative to itself).
# Reports: bench/results/latest.md, latest.json, server-stderr.log.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [ -z "${CORU:-}" ]; then
  make -s -C "$root" build/coru >&2
  CORU=$root/build/coru
fi
export CORU
CORU_GIT_REV=$(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')
export CORU_GIT_REV
command -v python3 >/dev/null 2>&1 || { echo "bench/run.sh: python3 is needed (deps/)" >&2; exit 2; }
exec python3 "$here/harness.py"
