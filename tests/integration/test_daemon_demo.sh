#!/usr/bin/env bash
# The demo plugin's synthetic clinic lands in portalmetrics.samples_v:
# every canonical metric, with day buckets, and `latest` answers.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins demo
pm_conf "$T/d.conf" <<'CONF'
collectors = (
  { name = "north"; plugin = "demo"; interval = "1s";
    labels = { clinic = "north"; };
    settings = { seed = 7; speed = 20.0; }; }
);
CONF
pm_start "$T/d.conf"
pm_wait_sql "SELECT count(DISTINCT metric) = 14 FROM portalmetrics.samples_v WHERE metric NOT LIKE 'portalmetricsd.%'" 60 \
  || fail "not every canonical metric landed: $(q "SELECT string_agg(DISTINCT metric, ',') FROM portalmetrics.samples_v")"
pm_wait_sql "SELECT count(DISTINCT ts) >= 5 FROM portalmetrics.samples_v WHERE metric = 'portal.appointments_requested'" 30 \
  || fail "no history of day buckets"
[ "$(q "SELECT count(*) FROM portalmetrics.latest WHERE metric = 'portal.patients_enrolled' AND labels->>'clinic' = 'north' AND labels->>'collector' = 'north'")" = 1 ] \
  || fail "latest has no single enrolled series for north"
q "SELECT bool_and(value >= 0) FROM portalmetrics.samples_v WHERE metric LIKE 'portal.%'" | grep -q t || fail "negative counts"
pm_stop "$DPID" 5
echo "demo: OK"
