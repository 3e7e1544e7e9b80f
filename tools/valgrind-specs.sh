#!/usr/bin/env bash
# make valgrind: every spec file in its own busted run inside the host under
# memcheck (tools/valgrind-coru), VALGRIND_JOBS files at a time, each bounded
# by VALGRIND_FILE_TIMEOUT seconds; then one line per file (result, busted's
# counts, memcheck's verdict, seconds) and the exit status 1 if any failed.
# Logs: $VALGRIND_LOGS/<file>.log. Usage: tools/valgrind-specs.sh [spec files]
# (the environment of `make valgrind`: LUA_PATH, LUA_CPATH, CORU_BIN,
# CORU_REAL_BIN; CORU_VALGRIND=1 lets the specs scale their deadlines).
# busted re-runs itself through sh without quoting --lua's value (SPEC.md
# §2): name the wrapper by the path this script was called by (make calls
# tools/valgrind-specs.sh from the checkout), which holds no space
here=$(dirname "$0")
jobs=${VALGRIND_JOBS:-2}
limit=${VALGRIND_FILE_TIMEOUT:-600}
logs=${VALGRIND_LOGS:-build/valgrind}
busted=${BUSTED:-busted}
mkdir -p "$logs" && rm -f "$logs"/*.log "$logs"/*.res
# the largest files first: they are the slow ones, and the two jobs end together
[ $# -gt 0 ] || set -- $(ls -S spec/*_spec.lua)
export CORU_VALGRIND=1 here limit logs busted

one() {
  f=$1; n=$(basename "$f" .lua); log="$logs/$n.log"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$busted" --lua="$here/valgrind-coru" -o utfTerminal "$f" </dev/null >"$log" 2>&1
  st=$?; t=$(( $(date +%s) - t0 ))
  counts=$(grep -aoE '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$log" | tail -n 1)
  # busted's own verdict (its counts), memcheck's (status 99 or its report
  # lines: the outer busted does not always pass status 99 on), the timeout
  res=
  case $st in 124|137) res=TIMEOUT ;; esac
  if [ -z "$res" ] && { [ -z "$counts" ] || ! echo "$counts" | grep -q ' 0 failures / 0 errors'; }; then res=FAILED; fi
  if [ $st -eq 99 ] || grep -aqE '^==[0-9]+== .*(Invalid|uninitialised|definitely lost|Mismatched|overlap|free\(\)|Syscall param)' "$log"; then
    res="${res:+$res+}MEMCHECK"
  fi
  [ -n "$res" ] || { [ $st -eq 0 ] && res=ok || res="FAILED($st)"; }
  printf '%-28s %-16s %5ss  %s\n' "$n" "$res" "$t" "${counts:-no summary (see $log)}" >"$logs/$n.res"
  cat "$logs/$n.res"
}
export -f one

t0=$(date +%s)
printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'one "$1"' _ {}
bad=$(grep -lv ' ok ' "$logs"/*.res | wc -l)
echo "---- make valgrind: $# files in $(( $(date +%s) - t0 )) s wall ($jobs jobs), $bad not ok; logs in $logs/"
cat "$logs"/*.res
[ "$bad" -eq 0 ]
