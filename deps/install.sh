#!/bin/sh
# The dependencies of coru's build and tests. Idempotent: does nothing (and
# needs no network) when they are all there.
#
# 1. With apt (Debian, Ubuntu): deps/packages.txt is the reference; the
#    packages missing from it are installed (as root). As another user:
#    print the command and fail, unless what the build needs was found
#    otherwise (step 2's probe): then only warn.
# 2. Without apt: probe for what the build and the tests need, however it
#    was installed: pkg-config modules (luajit, libuv, openssl, libedit)
#    and their headers, the tools (cc, make, luajit, busted, luarocks,
#    python3, openssl) and lua-cjson; name what is missing and fail.
set -eu
here=$(dirname "$0")
# the lists: the arguments, or packages.txt beside this script (quoted:
# the checkout's path may hold spaces)
[ $# -gt 0 ] || set -- "$here/packages.txt"
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

# what is missing, as "what (Debian package)" words
probe() {
  lacking=""
  command -v "$PKG_CONFIG" >/dev/null 2>&1 || lacking="$lacking pkg-config(pkg-config)"
  for m in "luajit:libluajit-5.1-dev:luajit.h" "libuv:libuv1-dev:uv.h" \
           "openssl:libssl-dev:openssl/ssl.h" "libedit:libedit-dev:editline/readline.h"; do
    mod=${m%%:*}; rest=${m#*:}; deb=${rest%%:*}; hdr=${rest#*:}
    if ! "$PKG_CONFIG" --exists "$mod" 2>/dev/null; then
      lacking="$lacking $mod(${deb})"
      continue
    fi
    # the header, where pkg-config says (or the compiler's default places)
    found=0
    for d in $("$PKG_CONFIG" --cflags-only-I "$mod" 2>/dev/null | sed 's/-I//g') /usr/include /usr/local/include; do
      [ -f "$d/$hdr" ] && found=1 && break
    done
    [ "$found" = 1 ] || lacking="$lacking $hdr(${deb})"
  done
  command -v cc >/dev/null 2>&1 || command -v "${CC:-cc}" >/dev/null 2>&1 || lacking="$lacking cc(build-essential)"
  command -v make >/dev/null 2>&1 || lacking="$lacking make(build-essential)"
  command -v luajit >/dev/null 2>&1 || lacking="$lacking luajit(luajit)"
  if command -v luajit >/dev/null 2>&1; then
    luajit -e 'require "cjson"' 2>/dev/null || lacking="$lacking lua-cjson(lua-cjson)"
  fi
  command -v busted >/dev/null 2>&1 || lacking="$lacking busted(lua-busted)"
  command -v luarocks >/dev/null 2>&1 || lacking="$lacking luarocks(luarocks)"
  command -v python3 >/dev/null 2>&1 || lacking="$lacking python3(python3)"
  command -v openssl >/dev/null 2>&1 || lacking="$lacking openssl(openssl)"
}

system_deps() {
  probe
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
    # Debian: the list is the reference (test oracles included)
    missing=""
    for p in $(grep -hv '^#' "$@"); do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
      if [ -z "$lacking" ]; then
        echo "deps: not installed as Debian packages:$missing (what the build needs was found otherwise; specs that use them may fail)" >&2
        return 0
      fi
      echo "deps: missing packages:$missing" >&2
      echo "deps: run: sudo apt-get install -y$missing" >&2
      return 1
    fi
    echo "deps: installing$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
    return 0
  fi
  # no apt: what the build and the specs need, found however it was installed
  [ -z "$lacking" ] && return 0
  echo "deps: missing (Debian package in brackets):$lacking" >&2
  echo "deps: install them with your system's package manager (pkg-config must find" >&2
  echo "deps: luajit, libuv, openssl and libedit), then run make again" >&2
  return 1
}

system_deps "$@"
