#!/bin/sh
# Reading N small files (default 2000 x 1 KiB, warm page cache): median of
# R runs per mode, each mode in its own luajit process, same session.
#   sh bench/fs/small_files.sh [N] [R] [SIZE]
set -e
cd "$(dirname "$0")/../.."
N=${1:-2000}; R=${2:-9}; SIZE=${3:-1024}
DIR=$(mktemp -d "${TMPDIR:-/tmp}/coru-bench-fs-XXXXXX")
trap 'rm -rf "$DIR"' EXIT
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/?.so;;"
luajit bench/fs/small_files.lua setup "$DIR" "$N" "$SIZE"
luajit bench/fs/small_files.lua io "$DIR" "$N" >/dev/null   # warm the cache
echo "reading $N files of $SIZE bytes, median of $R runs (ms); $(nproc) CPUs, libuv threadpool ${UV_THREADPOOL_SIZE:-4}"
for mode in io coru_sync coru_seq coru_tasks coru_seq4 coru_tasks4 luv_seq luv_cb; do
  times=""
  for i in $(seq "$R"); do
    t=$(luajit bench/fs/small_files.lua "$mode" "$DIR" "$N" | cut -d' ' -f1)
    times="$times $t"
  done
  med=$(echo $times | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-11s %9s ms   runs:%s\n' "$mode" "$med" "$times"
done
