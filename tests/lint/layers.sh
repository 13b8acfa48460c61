#!/usr/bin/env bash
# The daemon's layering, checked from its #include "..." lines.
#
#   layer 0  bottom: log, errors, units, sample, catalog, series, config,
#            config_alerts, settings, fileperm, dedup, migrations, confmsg,
#            idmap, copybuf, secret, crc32c, keyhash, alert_fsm,
#            alert_event, alert_text
#   layer 1  writer and spool: queue, writer, writer_schema, pg_conn, spool*,
#            curl_loop, notifier, notify (notify_int.h), notify_*, alerter
#   layer 2  scheduler and loader: scheduler, loader, host, plan, pool
#   layer 3  main, once, check
#
# Rules:
#   - daemon/X.c and daemon/X.h may include only headers of X's layer or
#     below;
#   - no cycles among modules (X.c + X.h form module X, and so does X_int.h,
#     X's private header; X depends on Y when one of them includes Y.h);
#   - every daemon file, and every header a daemon file includes, belongs
#     to a layer (a new file must be added to the table below);
#   - plugins/, tests/plugins/ and tests/oot/ include nothing of daemon/:
#     they see only include/portalmetrics/plugin.h.
#
# Usage: layers.sh [SOURCE_DIR]. Prints every violation; exits 1 if any.
set -u

src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 2

# module -> layer. Patterns ending in * match by prefix.
layer_of() {
  case "$1" in
  log | errors | units | sample | catalog | series | config | config_alerts | \
    settings | fileperm | dedup | migrations | confmsg | idmap | copybuf | \
    secret | crc32c | keyhash | alert_fsm | alert_event | alert_text)
    echo 0 ;;
  queue | writer | writer_schema | pg_conn | source | spool* | curl_loop | \
    notifier | notify | notify_* | alerter)
    echo 1 ;;
  scheduler | loader | host | plan | pool) echo 2 ;;
  main | once | check | selfmetrics) echo 3 ;;
  *) echo "" ;;
  esac
}
layer_name=("bottom" "writer and spool" "scheduler and loader" "main")

bad=0
problem() {
  echo "layers: $*"
  bad=1
}

# The #include "..." lines of a file: "LINE NAME" per line.
quoted_includes() {
  grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]+"' "$1" |
    sed -E 's/^([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1 \2/'
}

mapfile -t files < <(find daemon -type f \( -name '*.c' -o -name '*.h' \) | sort)
if [ ${#files[@]} -eq 0 ]; then
  problem "no daemon sources under $src/daemon"
  exit 1
fi

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

for f in "${files[@]}"; do
  base=$(basename "$f")
  mod=${base%.*}
  mod=${mod%_int} # X_int.h: module X's private header
  l=$(layer_of "$mod")
  if [ -z "$l" ]; then
    problem "$f: unknown file: add $base to a layer in tests/lint/layers.sh"
    continue
  fi
  echo "$mod $mod" >>"$edges"
  while read -r line inc; do
    [ -n "$inc" ] || continue
    case "$inc" in
    portalmetrics/*) continue ;; # the public ABI header: every layer
    esac
    ibase=$(basename "$inc")
    imod=${ibase%.*}
    imod=${imod%_int}
    case "$ibase" in
    *.h) ;;
    *)
      problem "$f:$line: includes \"$inc\", which is not a header"
      continue
      ;;
    esac
    if [ "$inc" != "$ibase" ] || [ ! -f "daemon/$ibase" ]; then
      problem "$f:$line: includes \"$inc\", which is not a header of daemon/"
      continue
    fi
    il=$(layer_of "$imod")
    if [ -z "$il" ]; then
      problem "$f:$line: includes \"$inc\": unknown file: add $ibase to a layer in tests/lint/layers.sh"
      continue
    fi
    if [ "$il" -gt "$l" ]; then
      problem "$f:$line: includes \"$inc\" (layer $il, ${layer_name[$il]}), but $base is layer $l (${layer_name[$l]})"
    fi
    [ "$imod" != "$mod" ] && echo "$mod $imod" >>"$edges"
  done < <(quoted_includes "$f")
done

# Cycles among modules: tsort names the modules of each loop.
loops=$(sort -u "$edges" | tsort 2>&1 >/dev/null)
if [ -n "$loops" ]; then
  members=$(echo "$loops" | sed -n -E 's/^tsort: ([^-][^:]*)$/\1/p' | grep -v ' ' | tr '\n' ' ')
  problem "include cycle among modules: ${members:-$loops}"
  # Name the direct pairs, the common case.
  sort -u "$edges" | while read -r a b; do
    [ "$a" = "$b" ] && continue
    if grep -qx "$b $a" "$edges" && [[ "$a" < "$b" ]]; then
      echo "layers:   $a and $b include each other"
    fi
  done
fi

# Plugins and their tests see only the public header.
mapfile -t daemon_headers < <(find daemon -maxdepth 1 -name '*.h' -printf '%f\n' | sort)
for d in plugins tests/plugins tests/oot; do
  [ -d "$d" ] || continue
  while IFS= read -r f; do
    while IFS= read -r hit; do
      line=${hit%%:*}
      inc=$(echo "${hit#*:}" | sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*["<]([^">]+)[">].*/\1/')
      ibase=$(basename "$inc")
      case "$inc" in
      *daemon/*)
        problem "$f:$line: includes \"$inc\" from daemon/ (plugins see only <portalmetrics/plugin.h>)"
        continue
        ;;
      esac
      # "host.h" not beside the file resolves only through -I daemon.
      # (<name.h> is left alone: it may be a system header.)
      if [[ "${hit#*:}" =~ include[[:space:]]*\" ]] && [ "$inc" = "$ibase" ] &&
        [ ! -f "$(dirname "$f")/$inc" ]; then
        for h in "${daemon_headers[@]}"; do
          if [ "$h" = "$ibase" ]; then
            problem "$f:$line: includes \"$inc\", a daemon header (plugins see only <portalmetrics/plugin.h>)"
            break
          fi
        done
      fi
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<][^">]+[">]' "$f")
  done < <(find "$d" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' \) | sort)
done

if [ "$bad" -ne 0 ]; then
  echo "layers: FAILED"
  exit 1
fi
echo "layers: OK (${#files[@]} daemon files)"
exit 0
