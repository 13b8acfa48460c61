#!/usr/bin/env bash
# include/portalmetrics/plugin.h stands alone: a file that includes only
# it compiles as C17 with -Wall -Wextra -Werror -pedantic, and as C++17
# (when g++ is installed), with libuv's cflags from pkg-config. Also checks
# gnu17 and the older standards a vendor may use (C11, C99).
#
# Strict ISO C (-std=c17) hides POSIX from <pthread.h>, and uv.h needs
# pthread_rwlock_t: a plugin built with -std=c17 must define
# _POSIX_C_SOURCE (as tests/oot/Makefile says); -std=gnu17 needs nothing.
#
# Usage: header.sh [SOURCE_DIR]. Exits 1 on a failure, 77 (skipped) with
# no C compiler.
set -u

src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
hdr="$src/include/portalmetrics/plugin.h"
if [ ! -f "$hdr" ]; then
  echo "header: $hdr not found"
  exit 1
fi

cc=${CC:-cc}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "header: no C compiler ($cc): skipped"
  exit 77
fi
if ! uv_cflags=$(pkg-config --cflags libuv 2>/dev/null); then
  echo "header: pkg-config does not know libuv"
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Includes only the header, and uses a little of it, so that a broken
# declaration (not only a syntax error) shows.
cat >"$tmp/only.c" <<'SRC'
#include <portalmetrics/plugin.h>

const pm_plugin_t *pm_plugin_entry(void);
int pm_header_check(const pm_host_t *host, pm_plugin_t *d);

static pm_plugin_t desc;

PM_PLUGIN_EXPORT const pm_plugin_t *pm_plugin_entry(void) {
  return &desc;
}

int pm_header_check(const pm_host_t *host, pm_plugin_t *d) {
  pm_emit_opts_t opts;
  pm_sample_t s;
  d->abi_major = PM_ABI_MAJOR;
  d->abi_minor = PM_ABI_MINOR;
  d->size = sizeof(pm_plugin_t);
  d->mode = PM_POLL;
  opts.size = sizeof(opts);
  opts.on_durable = NULL;
  opts.arg = NULL;
  opts.idem_key = NULL;
  opts.idem_key_len = 0;
  s.metric = "portal.patients_enrolled";
  s.labels = NULL;
  s.n_labels = 0;
  s.ts_us = 0;
  s.value = 1;
  s.kind = PM_SET;
  return PM_HOST_HAS(host, emit) ? host->emit(NULL, &s, 1, &opts) : PM_EABI;
}
SRC
cp "$tmp/only.c" "$tmp/only.cc"

bad=0
run() {
  local what=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    echo "header: $what: OK"
  else
    echo "header: $what: FAILED: $*"
    sed 's/^/  /' "$tmp/out"
    bad=1
  fi
}

posix=-D_POSIX_C_SOURCE=200809L
# shellcheck disable=SC2086 # uv_cflags is a list of flags
for std in c17 c11 c99; do
  run "$std $posix" "$cc" -std=$std $posix -Wall -Wextra -Werror -pedantic \
    -I"$src/include" $uv_cflags -c "$tmp/only.c" -o "$tmp/only_$std.o"
done
# shellcheck disable=SC2086
run "gnu17" "$cc" -std=gnu17 -Wall -Wextra -Werror -pedantic \
  -I"$src/include" $uv_cflags -c "$tmp/only.c" -o "$tmp/only_gnu17.o"

cxx=${CXX:-g++}
if command -v "$cxx" >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  run "c++17" "$cxx" -std=c++17 -Wall -Wextra -Werror -pedantic \
    -I"$src/include" $uv_cflags -c "$tmp/only.cc" -o "$tmp/only_cxx.o"
else
  echo "header: no C++ compiler ($cxx): C++ check skipped"
fi

[ "$bad" -eq 0 ] || exit 1
exit 0
