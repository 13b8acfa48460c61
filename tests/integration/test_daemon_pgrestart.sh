#!/usr/bin/env bash
# PostgreSQL stopped and started mid-run: the daemon keeps collecting,
# reconnects and goes on; nothing emitted is lost or doubled.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins testpoll
sum() { q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE labels->>'collector' = 'tick' AND metric = 'portal.appointments_requested'"; }
pm_conf "$T/g.conf" <<'CONF'
collectors = ( { name = "tick"; plugin = "testpoll"; interval = "100ms"; } );
CONF
pm_start "$T/g.conf"
pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE labels->>'collector' = 'tick'" 30 || fail "no samples"
pm_pg_stop "$T/pg"
sleep 3
kill -0 "$DPID" || fail "daemon died while PostgreSQL was down"
pm_pg_start "$T/pg" >/dev/null
s1=$(sum)
pm_wait_sql "SELECT coalesce(sum(value),0) > $s1 + 10 FROM portalmetrics.samples_v WHERE labels->>'collector' = 'tick' AND metric = 'portal.appointments_requested'" 40 \
  || fail "daemon did not resume after PostgreSQL came back"
grep -qi "database.*unreachable\|connection.*lost\|cannot connect" "$T/daemon.log" || fail "outage not logged"
pm_stop "$DPID" 5
emitted=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.samples_emitted' AND labels->>'collector' = 'tick'")
[ "$(sum)" = "$emitted" ] || fail "after the outage: $(sum) in samples, $emitted emitted"
echo "pgrestart: OK"
