#!/usr/bin/env bash
# nodata is judged by ingest time: the writer marks each series it ships
# in portalmetrics.series_ingest, and a target whose series stop arriving
# for twice their collector's interval (plus the 10 s marking
# granularity) goes to nodata, then back to ok when they arrive again.
# The samples' own ts stays fixed the whole time (a day bucket), so only
# ingest time can tell.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/alerts_lib.sh"
pm_pg
pm_plugins testpoll
day=$(( $(date +%s) / 86400 * 86400 ))

conf() {
  pm_conf "$T/n.conf" <<CONF
collectors = (
  { name = "feed"; plugin = "testpoll"; interval = "500ms";
    settings = { metric = "test.gauge"; kind = "set"; value = 5.0; ts = $day; fail = $1; }; }
);
alerts = { interval = "300ms"; };
targets = (
  { name = "feed_level"; metric = "test.gauge"; labels = { collector = "feed"; };
    goal = 1.0; notify = [ "journal" ]; }
);
notifiers = ( { name = "journal"; type = "log"; } );
CONF
}
conf false
pm_start "$T/n.conf"
pm_wait_sql "SELECT state = 'ok' FROM portalmetrics.alert_state WHERE target = 'feed_level'" 30 \
  || fail "not ok: $(q "SELECT * FROM portalmetrics.target_status")"
[ "$(q "SELECT count(*) FROM portalmetrics.series_ingest i JOIN portalmetrics.series s ON s.id = i.series_id WHERE s.metric = 'test.gauge' AND i.last_ingest > now() - interval '30 seconds'")" = 1 ] \
  || fail "the writer does not mark series_ingest"
[ "$(q "SELECT interval_s FROM portalmetrics.collectors WHERE name = 'feed' AND daemon_id = 'test-n'")" = 0.5 ] \
  || fail "collectors: $(q "SELECT * FROM portalmetrics.collectors")"

# the feed fails from now on: nothing new arrives, the samples' ts is unchanged
conf true
kill -HUP "$DPID"
t0=$SECONDS
pm_wait_sql "SELECT state = 'nodata' FROM portalmetrics.alert_state WHERE target = 'feed_level'" 30 \
  || fail "not nodata: $(q "SELECT status, last_ingest, now() FROM portalmetrics.target_status")"
echo "nodata after $((SECONDS - t0)) s"
[ $((SECONDS - t0)) -ge 5 ] || fail "nodata too early: the marking granularity is 10 s"
pm_wait_log "alert: target feed_level: ok -> nodata" 5 || fail "nodata not notified"

conf false
kill -HUP "$DPID"
pm_wait_sql "SELECT state = 'ok' FROM portalmetrics.alert_state WHERE target = 'feed_level'" 30 || fail "not back to ok"
pm_wait_log "alert: target feed_level: nodata -> ok" 5 || fail "nodata -> ok not notified"
pm_stop "$DPID" 10
echo "ok: nodata by ingest time, and back"
