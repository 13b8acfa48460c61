#!/usr/bin/env bash
# A collector that hangs past its timeout does not delay the others; its
# run is abandoned and counted; SIGTERM still exits 0 within 5 s.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins testpoll
pm_conf "$T/h.conf" <<'CONF'
collectors = (
  { name = "hung"; plugin = "testpoll"; interval = "1s"; timeout = "300ms";
    settings = { sleep = "60s"; }; },
  { name = "hung2"; plugin = "testpoll"; interval = "1s"; timeout = "300ms";
    settings = { sleep = "60s"; }; },
  { name = "ticker"; plugin = "testpoll"; interval = "250ms"; timeout = "200ms"; }
);
CONF
pm_start "$T/h.conf"
pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE labels->>'collector' = 'ticker'" 30 || fail "ticker did not land"
start=$(q "SELECT sum(value) FROM portalmetrics.samples_v WHERE labels->>'collector' = 'ticker' AND metric = 'portal.appointments_requested'")
sleep 5
end=$(q "SELECT sum(value) FROM portalmetrics.samples_v WHERE labels->>'collector' = 'ticker' AND metric = 'portal.appointments_requested'")
# 5 s at 250 ms is 20 runs; allow for jitter and flush delay.
[ $((${end%.*} - ${start%.*})) -ge 12 ] || fail "ticker made $((${end%.*} - ${start%.*})) runs in 5 s beside hung collectors, want >= 12"
pm_wait_sql "SELECT coalesce(sum(value),0) >= 1 FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.collect_errors' AND labels->>'collector' = 'hung' AND labels->>'reason' = 'timeout'" 20 \
  || fail "abandoned run not counted as timeout"
grep -q "\[hung\] collect passed its 0.3 s deadline" "$T/daemon.log" || fail "deadline not logged"
pm_wait_sql "SELECT coalesce(sum(value),0) >= 1 FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.runs_skipped' AND labels->>'collector' = 'hung' AND labels->>'reason' = 'overlap'" 20 \
  || fail "overlapping run not skipped and counted"
pm_stop "$DPID" 5
echo "hang: OK"
