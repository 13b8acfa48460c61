#!/usr/bin/env bash
# SIGHUP: a broken config is refused and the old one keeps running; a
# valid one starts new collectors, stops removed ones, restarts changed
# ones and leaves unchanged ones alone.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins testpoll
count() { q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE labels->>'collector' = '$1' AND metric = 'portal.appointments_requested'"; }

pm_conf "$T/r.conf" <<'CONF'
collectors = (
  { name = "a"; plugin = "testpoll"; interval = "200ms"; },
  { name = "keep"; plugin = "testpoll"; interval = "200ms"; },
  { name = "slow"; plugin = "testpoll"; interval = "500ms"; timeout = "300ms";
    settings = { sleep = "3s"; }; }
);
CONF
pm_start "$T/r.conf"
pm_wait_sql "SELECT count(*) = 2 FROM portalmetrics.series WHERE metric = 'portal.appointments_requested'" 30 || fail "a and keep did not land"

# Broken: a syntax error. Refused, logged, old collectors go on.
cp "$T/r.conf" "$T/good.conf"
echo 'collectors = ( { name = "b" ' >> "$T/r.conf"
kill -HUP "$DPID"
pm_wait_log "reload refused, the running config stays" 10 || fail "broken reload not refused"
before=$(count a); sleep 1.5; after=$(count a)
[ "$after" -gt "$before" ] || fail "collector a stopped after a refused reload"
kill -0 "$DPID" || fail "daemon died on a broken reload"

# Broken: a plugin setting the plugin does not know.
pm_conf "$T/r.conf" <<'CONF'
collectors = ( { name = "a"; plugin = "testpoll"; interval = "200ms"; settings = { bogus = 1; }; } );
CONF
kill -HUP "$DPID"
pm_wait_log "collectors.\[0\].settings.bogus" 10 || fail "bad plugin setting not named"

# Valid: a removed, b added, keep unchanged.
pm_conf "$T/r.conf" <<'CONF'
collectors = (
  { name = "keep"; plugin = "testpoll"; interval = "200ms"; },
  { name = "b"; plugin = "testpoll"; interval = "200ms"; }
);
CONF
kill -HUP "$DPID"
pm_wait_log "reloaded: 2 collectors running" 10 || fail "valid reload not applied"
pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE labels->>'collector' = 'b'" 20 || fail "new collector b did not start"
grep -q "\[a\] removed: stopping" "$T/daemon.log" || fail "a not stopped"
grep -q "\[keep\] changed" "$T/daemon.log" && fail "unchanged collector was restarted"
sleep 1; a1=$(count a); sleep 1.5; a2=$(count a)
[ "$a1" = "$a2" ] || fail "removed collector a still emits"
# "slow" was removed while its run hung: the reload did not wait for it,
# and its instance is destroyed only once the run returns (ASan guards).
grep -q "\[slow\] removed: stopping" "$T/daemon.log" || fail "slow not stopped"
sleep 2
kill -0 "$DPID" || fail "daemon died after a hung collector was removed"
pm_stop "$DPID" 5
echo "reload: OK"
