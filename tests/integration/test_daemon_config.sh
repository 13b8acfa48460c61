#!/usr/bin/env bash
# Config mistakes found only once plugins are loaded: one line naming
# file, line and setting, exit 2, from --check-config and at start alike.
. "$(dirname "$0")/lib.sh"
pm_plugins testpoll
expect_error() {  # expect_error NAME PATTERN
  local rc mode
  for mode in --check-config ""; do
    rc=0; "$PMD" -c "$T/$1.conf" $mode >"$T/out.log" 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "$1 (${mode:-start}): exit $rc, want 2: $(cat "$T/out.log")"
    grep -q -- "$2" "$T/out.log" || fail "$1: want /$2/, got: $(cat "$T/out.log")"
  done
}
pm_conf "$T/unknown_plugin.conf" <<'CONF'
collectors = ( { name = "x"; plugin = "nosuch"; } );
CONF
expect_error unknown_plugin 'unknown_plugin.conf:[0-9]*: collectors.\[0\].plugin: unknown plugin "nosuch"'
pm_conf "$T/bad_setting.conf" <<'CONF'
collectors = (
  { name = "x"; plugin = "testpoll";
    settings = { sleep = "1s"; colour = "red"; }; }
);
CONF
expect_error bad_setting 'bad_setting.conf:[0-9]*: collectors.\[0\].settings.colour'
pm_conf "$T/bad_type.conf" <<'CONF'
collectors = (
  { name = "x"; plugin = "testpoll";
    settings = { count = "many"; }; }
);
CONF
expect_error bad_type 'bad_type.conf:[0-9]*: collectors.\[0\].settings.count'
pm_conf "$T/bad_duration.conf" <<'CONF'
collectors = (
  { name = "x"; plugin = "testpoll";
    settings = { sleep = "5 parsecs"; }; }
);
CONF
expect_error bad_duration 'bad_duration.conf:[0-9]*: collectors.\[0\].settings.sleep'
pm_conf "$T/reserved.conf" <<'CONF'
collectors = ( { name = "portalmetricsd"; plugin = "testpoll"; } );
CONF
expect_error reserved 'reserved.conf:[0-9]*: collectors.\[0\].name: the collector name "portalmetricsd" is reserved'
pm_conf "$T/ok.conf" <<'CONF'
collectors = ( { name = "x"; plugin = "testpoll"; } );
CONF
"$PMD" -c "$T/ok.conf" --check-config >"$T/out.log" 2>&1 || fail "valid config refused: $(cat "$T/out.log")"
rc=0; "$PMD" --frobnicate >"$T/out.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "bad usage: exit $rc, want 2"
# Plugin files writable by others are refused.
chmod o+w "$T/plugins/testpoll.so"
rc=0; "$PMD" -c "$T/ok.conf" --check-config >"$T/out.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "world-writable plugin accepted"
chmod o-w "$T/plugins/testpoll.so"
# --check-config also makes each collector's instance, so a value only the
# plugin can judge (a query's metric, here) is refused before a start.
pm_plugins fhir
pm_conf "$T/plugin_refuses.conf" <<'CONF'
collectors = ( { name = "ehr"; plugin = "fhir";
  settings = { base_url = "http://127.0.0.1:9/fhir/R4";
    queries = ( { metric = "portal.no_such_metric"; resource = "Patient"; } ); }; } );
CONF
rc=0; "$PMD" -c "$T/plugin_refuses.conf" --check-config >"$T/out.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "plugin_refuses: exit $rc, want 2: $(cat "$T/out.log")"
grep -q 'settings.queries.\[0\].metric: "portal.no_such_metric" is not a canonical metric' "$T/out.log" \
  || fail "plugin_refuses: the plugin's reason is missing: $(cat "$T/out.log")"
grep -q 'plugin_refuses.conf: 1 collector(s) refused by their plugin' "$T/out.log" \
  || fail "plugin_refuses: no summary: $(cat "$T/out.log")"
echo "config: OK"
