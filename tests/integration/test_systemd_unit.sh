#!/usr/bin/env bash
# The systemd unit parses cleanly (systemd-analyze verify, no warning about
# it) and is hardened: `systemd-analyze security` rates its exposure "OK"
# or better (below 5.0: OK 1.0-4.9, SAFE 0.1-0.9, PERFECT 0.0).
# The sysusers and tmpfiles snippets are checked where the tools can.
# Exit 77 (skipped) without systemd-analyze.
set -euo pipefail
src=${PM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${PM_BUILD:-$src/build}
build=$(cd "$build" 2>/dev/null && pwd || echo "$build") # ExecStart needs an absolute path

command -v systemd-analyze >/dev/null || { echo "skip: no systemd-analyze"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unit=$tmp/portalmetricsd.service

# ExecStart must name an existing executable for verify: use the built
# binary (or /bin/true before the daemon is built).
bin=$build/portalmetricsd
[ -x "$bin" ] || bin=/bin/true
sed "s|^ExecStart=/usr/sbin/portalmetricsd |ExecStart=$bin |" \
  "$src/systemd/portalmetricsd.service" >"$unit"
grep -q "^ExecStart=$bin " "$unit" || { echo "FAIL: ExecStart is not /usr/sbin/portalmetricsd -c ..."; exit 1; }

fail=0
if ! out=$(systemd-analyze verify "$unit" 2>&1); then
  echo "FAIL: systemd-analyze verify:"; echo "$out"; fail=1
elif grep -F "$unit" <<<"$out"; then
  echo "FAIL: systemd-analyze verify warns about the unit (above)"; fail=1
else
  echo "ok: systemd-analyze verify"
fi

# What DESIGN.md asks of the unit, line by line.
for want in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=30s' 'LimitCORE=0' \
  'User=portalmetrics' 'Group=portalmetrics' 'StateDirectory=portalmetrics' \
  'ConfigurationDirectory=portalmetrics' 'NoNewPrivileges=yes' \
  'ProtectSystem=strict' 'PrivateTmp=yes' 'CapabilityBoundingSet=' \
  'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' 'UMask=0077' \
  "ExecReload=/bin/kill -HUP \$MAINPID"; do
  grep -qxF "$want" "$unit" || { echo "FAIL: the unit lacks '$want'"; fail=1; }
done

if systemd-analyze security --offline=true "$unit" >"$tmp/sec" 2>&1; then
  line=$(grep -a 'Overall exposure level' "$tmp/sec" || true)
  echo "${line:-no overall line}"
  score=$(sed -n 's/.*: \([0-9][0-9]*\.[0-9]\) \([A-Z]*\).*/\1/p' <<<"$line")
  level=$(sed -n 's/.*: \([0-9][0-9]*\.[0-9]\) \([A-Z]*\).*/\2/p' <<<"$line")
  case $level in
    OK | SAFE | PERFECT) echo "ok: exposure $score $level" ;;
    *) echo "FAIL: exposure '$score $level' is worse than OK"; cat "$tmp/sec"; fail=1 ;;
  esac
elif grep -qi 'unrecognized option\|unknown option' "$tmp/sec"; then
  echo "note: this systemd-analyze has no --offline: security not rated"
else
  echo "FAIL: systemd-analyze security:"; cat "$tmp/sec"; fail=1
fi

# sysusers.d and tmpfiles.d snippets: parse them without touching the system.
if command -v systemd-sysusers >/dev/null; then
  if out=$(systemd-sysusers --dry-run --root="$tmp" "$src/systemd/portalmetrics.sysusers" 2>&1); then
    echo "ok: sysusers"
  else
    echo "FAIL: systemd-sysusers:"; echo "$out"; fail=1
  fi
fi
grep -qx 'd /var/lib/portalmetrics 0750 portalmetrics portalmetrics -' "$src/systemd/portalmetrics.tmpfiles" \
  || { echo "FAIL: tmpfiles snippet"; fail=1; }

exit "$fail"
