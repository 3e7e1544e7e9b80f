#!/bin/sh
# tools/layers.sh - the files of src/ use each other in one direction.
#
#   sh tools/layers.sh [objdir]
#
# Fails (exit 1) on a cycle in the graph of `#include "..."` between the
# files of src/, and, given the directory of their objects (build/obj), on a
# cycle in the graph of calls between them: file A uses file B when A.o has
# an undefined symbol that B.o defines (nm), whatever the headers say.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
objdir=${1:-}
if [ -n "$objdir" ]; then objdir=$(cd "$objdir" && pwd); fi
cd "$root/src"

# edges "a b": a comes before b (b uses a); a cycle makes tsort complain
cycles() { tsort 2>&1 >/dev/null || true; }

edges=$(for f in *.c *.h; do
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
    while read -r inc; do
      if [ -f "$inc" ] && [ "$inc" != "$f" ]; then echo "$inc $f"; fi
    done
  echo "$f $f"
done)
out=$(echo "$edges" | cycles)
if [ -n "$out" ]; then
  echo "layers.sh: include cycle between src files:" >&2
  echo "$out" >&2
  exit 1
fi
echo "layers.sh: src includes form a DAG ($(ls *.c *.h | wc -l) files)"

[ -n "$objdir" ] || exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in "$objdir"/*.o; do
  f=$(basename "$o" .o)
  [ -f "$f.c" ] || continue
  nm -g --defined-only "$o" | awk -v f="$f" 'NF >= 3 { print $3, f }' >> "$tmp/def"
  nm -u "$o" | awk -v f="$f" '{ print $NF, f }' >> "$tmp/use"
  echo "$f $f" >> "$tmp/self"
done
sort -o "$tmp/def" "$tmp/def"
sort -o "$tmp/use" "$tmp/use"
# "definer user symbol" for every cross-file use
join "$tmp/use" "$tmp/def" | awk '$2 != $3 { print $3, $2, $1 }' | sort -u > "$tmp/calls"
cut -d" " -f1,2 "$tmp/calls" > "$tmp/edges"
out=$(sort -u "$tmp/edges" "$tmp/self" | cycles | uniq)
if [ -n "$out" ]; then
  echo "layers.sh: call cycle between src files (objects of $objdir):" >&2
  echo "$out" >&2
  echo "layers.sh: who calls what inside it:" >&2
  files=" $(echo "$out" | sed -n 's/^tsort: \([a-z_0-9]*\)$/\1/p' | sort -u | tr '\n' ' ')"
  awk -v files="$files" 'index(files, " " $1 " ") && index(files, " " $2 " ") {
      k = "  " $2 " -> " $1 ":"; if (!(k in s)) o[++n] = k; s[k] = s[k] " " $3 }
    END { for (i = 1; i <= n; i++) print o[i] s[o[i]] }' "$tmp/calls" >&2
  exit 1
fi
echo "layers.sh: src calls form a DAG ($(wc -l < "$tmp/self") objects, $(cut -d' ' -f1,2 "$tmp/calls" | sort -u | wc -l) file-to-file uses)"
