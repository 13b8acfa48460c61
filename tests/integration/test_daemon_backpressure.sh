#!/usr/bin/env bash
# Spool full while the database is down: backpressure engages (poll runs
# skipped, listeners refused busy), is counted and logged once, with the
# episode's totals when it ends; once the database is back everything
# accepted lands and nothing was dropped unseen.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_pg_stop "$T/pg"
pm_plugins testpoll testlisten
pm_conf "$T/bp.conf" <<'CONF'
spool = { max_size = "64KiB"; };
collectors = (
  { name = "poll"; plugin = "testpoll"; interval = "100ms"; settings = { count = 300; }; },
  { name = "listen"; plugin = "testlisten"; settings = { every = "5ms"; }; }
);
CONF
pm_start "$T/bp.conf"
pm_wait_log "the spool is full" 30 || fail "backpressure not logged"
sleep 2
[ "$(grep -c "the spool is full" "$T/daemon.log")" = 1 ] || fail "the episode was logged more than once"
pm_pg_start "$T/pg" >/dev/null
pm_wait_log "the spool has room again" 60 || fail "the end of the episode not logged"
grep -q "emits were refused busy and [0-9]* poll runs skipped" "$T/daemon.log" || fail "no episode totals"
sleep 1
pm_stop "$DPID" 15
sum() { q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = '$1' AND labels->>'collector' = '$2'"; }
for c in poll listen; do
  metric=portal.appointments_requested; [ $c = listen ] && metric=portal.secure_messages_sent
  [ "$(sum "$metric" $c)" = "$(sum portalmetricsd.samples_emitted $c)" ] \
    || fail "$c: $(sum "$metric" $c) landed, $(sum portalmetricsd.samples_emitted $c) accepted"
done
[ "$(sum portalmetricsd.emits_busy listen)" -gt 0 ] || fail "listener busy refusals not counted"
[ "$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.collect_errors' AND labels->>'collector' = 'poll' AND labels->>'reason' = 'busy'")" -gt 0 ] \
  || [ "$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.runs_skipped' AND labels->>'collector' = 'poll' AND labels->>'reason' = 'busy'")" -gt 0 ] \
  || fail "poll collector's busy runs not counted"
echo "backpressure: OK"
