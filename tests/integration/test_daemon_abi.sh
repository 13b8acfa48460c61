#!/usr/bin/env bash
# A plugin built for another ABI major is refused with both versions
# named, by --check-config, at start (exit 2) and by --plugin-info.
. "$(dirname "$0")/lib.sh"
pm_plugins badabi testpoll
pm_conf "$T/a.conf" <<'CONF'
collectors = ( { name = "x"; plugin = "badabi"; } );
CONF
for mode in --check-config ""; do
  rc=0; "$PMD" -c "$T/a.conf" $mode >"$T/out.log" 2>&1 || rc=$?
  [ "$rc" = 2 ] || fail "badabi ${mode:-start}: exit $rc, want 2"
  grep -q "ABI 2.3" "$T/out.log" && grep -q "ABI 1.0" "$T/out.log" || fail "message must name both ABIs"
  grep -q "a.conf:[0-9]*: collectors.\[0\].plugin" "$T/out.log" || fail "message must name file, line and setting"
done
rc=0; "$PMD" --plugin-dir "$T/plugins" --plugin-info badabi >"$T/out.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "ABI 2.3" "$T/out.log" || fail "--plugin-info badabi: exit $rc"
"$PMD" --plugin-dir "$T/plugins" --plugin-info testpoll >"$T/info.log" 2>&1 || fail "--plugin-info testpoll"
grep -q "sleep" "$T/info.log" && grep -q "duration" "$T/info.log" || fail "--plugin-info must print the settings table"
echo "abi: OK"
