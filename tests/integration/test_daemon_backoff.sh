#!/usr/bin/env bash
# A failing collector backs off (1, 2, then 4 intervals, with jitter) and
# its failures are counted by reason; it is never disabled: once it
# succeeds again it runs at its interval.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins testpoll
pm_conf "$T/b.conf" <<'CONF'
collectors = (
  { name = "failing"; plugin = "testpoll"; interval = "300ms"; settings = { fail = true; }; }
);
CONF
pm_start "$T/b.conf"
sleep 6.5
kill -TERM "$DPID"; wait "$DPID" || fail "exit code"
runs=$(q "SELECT coalesce(sum(value),0)::int FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.collect_errors' AND labels->>'collector' = 'failing' AND labels->>'reason' = 'peer'")
# Without backoff: ~21 runs in 6.5 s; with it: 0.3+0.6+1.2+1.2+... ~7.
[ "$runs" -ge 3 ] && [ "$runs" -le 10 ] || fail "failing collector ran $runs times in 6.5 s, want 3..10 (backoff)"
grep -q "\[failing\] collect failed: the peer answered" "$T/daemon.log" || fail "failure not logged"
[ "$(grep -c "\[failing\] collect failed" "$T/daemon.log")" = 1 ] || fail "failure logged more than once per episode"
echo "backoff: OK"
