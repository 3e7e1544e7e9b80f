#!/bin/sh
# Installs the Debian packages of deps/packages.txt that are missing.
# Idempotent: does nothing (and needs no network) when all are present.
# As root it runs apt-get; otherwise it prints the command and fails.
set -eu
here=$(dirname "$0")
# the lists: the arguments, or packages.txt beside this script (quoted:
# the checkout's path may hold spaces)
[ $# -gt 0 ] || set -- "$here/packages.txt"
missing=""
for p in $(grep -hv '^#' "$@"); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing packages:$missing" >&2
  echo "deps: run: sudo apt-get install -y$missing" >&2
  exit 1
fi
echo "deps: installing$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
