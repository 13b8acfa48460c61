#!/usr/bin/env bash
# The out-of-tree plugin check: install BUILD_DIR into a temporary prefix,
# build tests/oot/hello.c in a folder outside the source tree with nothing
# but the installed header and `pkg-config portalmetrics-plugin`, and load
# it with the installed daemon: `--once --stdout` must print its sample.
#   tests/oot/check.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: check.sh BUILD_DIR}
build=$(cd "$build" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() { echo "oot: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; fail "cmake --install"; }

pc=$(find "$prefix" -name portalmetrics-plugin.pc -print -quit)
[ -n "$pc" ] || fail "no portalmetrics-plugin.pc installed under the prefix"
[ -f "$prefix/include/portalmetrics/plugin.h" ] || fail "no include/portalmetrics/plugin.h installed"
[ -x "$prefix/sbin/portalmetricsd" ] || fail "no sbin/portalmetricsd installed"

# The .pc must follow the prefix it is installed under: its paths derive
# from ${prefix}, which pkg-config can then be told.
pkgconfig=(pkg-config "--define-variable=prefix=$prefix")
export PKG_CONFIG_PATH=${pc%/*}
cflags=$("${pkgconfig[@]}" --cflags portalmetrics-plugin) || fail "pkg-config --cflags portalmetrics-plugin"
case " $cflags " in
  *" -I$prefix/include "*) ;;
  *) fail "pkg-config --cflags gives '$cflags', not -I$prefix/include: write includedir=\${prefix}/include (not an absolute path) in portalmetrics-plugin.pc" ;;
esac

mkdir "$tmp/vendor"
cp "$here/hello.c" "$here/Makefile" "$tmp/vendor/"
make -s -C "$tmp/vendor" PKG_CONFIG="${pkgconfig[*]}" >"$tmp/make.log" 2>&1 \
  || { cat "$tmp/make.log" >&2; fail "building hello.so out of tree"; }
echo "oot: built hello.so against $prefix with pkg-config ($cflags)"

mkdir -m 0700 "$tmp/state"
cat >"$tmp/hello.conf" <<CONF
daemon = { id = "oot"; state_dir = "$tmp/state"; plugin_dir = "$tmp/vendor"; };
database = { conninfo = "host=$tmp/nodb dbname=none"; };
collectors = ( { name = "hello"; plugin = "hello"; interval = "1m";
                 labels = { clinic = "oot"; }; } );
CONF
chmod 0600 "$tmp/hello.conf"

rc=0
timeout 60 "$prefix/sbin/portalmetricsd" -c "$tmp/hello.conf" --once --stdout \
  >"$tmp/out" 2>"$tmp/err" || rc=$?
if [ "$rc" != 0 ]; then
  cat "$tmp/err" "$tmp/out" >&2
  fail "portalmetricsd --once --stdout exited $rc"
fi
line=$(grep -E '"metric": *"portal\.patients_enrolled"' "$tmp/out" | head -1 || true)
[ -n "$line" ] || { cat "$tmp/out" "$tmp/err" >&2; fail "no portal.patients_enrolled line"; }
grep -qE '"value": *42(\.0*)?([,} ]|$)' <<<"$line" || fail "value is not 42: $line"
grep -qE '"collector": *"hello"' <<<"$line" || fail "no collector label: $line"
echo "oot: ok: $line"
