#!/usr/bin/env bash
# Several daemons, one database. Two daemons declaring the same target
# with the same definition share it (one row, two declarations); only one
# leads, and each transition is delivered exactly once. When the leader is
# killed (-9) the other takes over within a bounded time and delivers the
# next transition, once. A third daemon whose definition differs is
# refused, naming both others; a target no daemon declares any more is
# retired and keeps its history.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/alerts_lib.sh"
pm_pg
pm_plugins testpoll
alerts_webhook

# conf NAME [TOLERANCE] [EXTRA_TARGETS]: daemon NAME with its own state dir
conf() {
  local name=$1 tol=${2:-0} extra=${3:-}
  mkdir -p "$T/state-$name"
  pm_conf "$T/$name.conf" <<CONF
collectors = (
  { name = "tick"; plugin = "testpoll"; interval = "500ms";
    settings = { metric = "test.gauge"; kind = "set"; value = 1.0; }; }
);
alerts = { interval = "300ms"; };
targets = (
  { name = "enroll"; metric = "portal.patients_enrolled"; labels = { clinic = "t1"; };
    goal = { value = 100.0; }; tolerance = $tol; for = "1s"; clear_for = "1s";
    notify = [ "hook" ]; }
  $extra
);
notifiers = (
  { name = "hook"; type = "webhook"; url = "http://127.0.0.1:$HOOK_PORT/alerts"; timeout = "2s"; }
);
CONF
  sed -i "s|state_dir = \"$T/state\"|state_dir = \"$T/state-$name\"|" "$T/$name.conf"
}
conf a
conf b
"$PMD" --migrate -c "$T/a.conf" >"$T/migrate.log" 2>&1 || fail "migrate failed"
make_series 4242 portal.patients_enrolled '{"clinic":"t1","collector":"manual"}'
set_value 4242 150

pm_start "$T/a.conf" "$T/a.log"; pid_a=$DPID
pm_start "$T/b.conf" "$T/b.log"; pid_b=$DPID
pm_wait_sql "SELECT count(*) = 2 FROM portalmetrics.target_declarations WHERE target = 'enroll'" 20 \
  || fail "declarations: $(q "SELECT * FROM portalmetrics.target_declarations")"
[ "$(q "SELECT count(*) FROM portalmetrics.targets")" = 1 ] || fail "one target row wanted"
pm_wait_sql "SELECT state = 'ok' FROM portalmetrics.alert_state WHERE target = 'enroll'" 20 || fail "not judged"
sleep 1
leaders=$(grep -l "is now the alert leader" "$T/a.log" "$T/b.log" | wc -l)
[ "$leaders" = 1 ] || fail "$leaders leaders, want 1"
if grep -q "is now the alert leader" "$T/a.log"; then
  leader=$pid_a; other=$pid_b; other_log=$T/b.log
else
  leader=$pid_b; other=$pid_a; other_log=$T/a.log
fi

# each transition delivered exactly once
set_value 4242 10
pm_wait_sql "SELECT count(*) = 1 FROM portalmetrics.alert_events WHERE target = 'enroll' AND to_state = 'firing' AND delivered_at IS NOT NULL" 15 \
  || fail "firing not delivered: $(events_of enroll)"
set_value 4242 150
pm_wait_sql "SELECT count(*) = 1 FROM portalmetrics.alert_events WHERE target = 'enroll' AND to_state = 'resolved' AND delivered_at IS NOT NULL" 15 \
  || fail "resolved not delivered: $(events_of enroll)"
sleep 1.5
[ "$(events_of enroll)" = "state:ok>pending state:pending>firing state:firing>resolved" ] || fail "events: $(events_of enroll)"
[ "$(hook_count)" = 2 ] || fail "two daemons: webhook got $(hook_count) requests for 2 notified events"
[ "$(hook_field 1 to) $(hook_field 2 to)" = "firing resolved" ] || fail "deliveries out of order"

# kill the leader: the other takes over within a bounded time
kill -9 "$leader"
t0=$SECONDS
pm_wait_log "is now the alert leader" 15 "$other_log" || fail "no takeover within 15 s"
echo "takeover after $((SECONDS - t0)) s"
set_value 4242 10
pm_wait_sql "SELECT count(*) = 2 FROM portalmetrics.alert_events WHERE target = 'enroll' AND to_state = 'firing' AND delivered_at IS NOT NULL" 15 \
  || fail "firing after takeover not delivered: $(events_of enroll)"
sleep 1.5
[ "$(hook_count)" = 3 ] || fail "after takeover: webhook got $(hook_count) requests, want 3"

# a differing definition is refused, naming the daemons that declare it
conf c 5 ', { name = "only_c"; metric = "portal.patients_used"; goal = 1.0; }'
pm_start "$T/c.conf" "$T/c.log"; pid_c=$DPID
pm_wait_log "target enroll: refused" 20 "$T/c.log" || fail "conflict not reported"
grep "target enroll: refused" "$T/c.log" | grep -q "test-a,test-b" || fail "conflict message does not name both daemons: $(grep refused "$T/c.log")"
[ "$(q "SELECT (definition->>'tolerance')::float8 = 0 FROM portalmetrics.targets WHERE name = 'enroll'")" = t ] \
  || fail "the conflicting definition replaced the shared one"
pm_wait_sql "SELECT count(*) = 1 FROM portalmetrics.targets WHERE name = 'only_c' AND retired_at IS NULL" 10 || fail "only_c not declared"
[ "$(q "SELECT count(*) FROM portalmetrics.target_declarations WHERE daemon_id = 'test-c'")" = 1 ] \
  || fail "c declares $(q "SELECT target FROM portalmetrics.target_declarations WHERE daemon_id = 'test-c'")"

# c drops only_c (SIGHUP): retired, history kept
pm_wait_sql "SELECT count(*) = 1 FROM portalmetrics.alert_state WHERE target = 'only_c'" 15 || fail "only_c never judged"
conf c 0
kill -HUP "$pid_c"
pm_wait_sql "SELECT retired_at IS NOT NULL FROM portalmetrics.targets WHERE name = 'only_c'" 15 || fail "only_c not retired"
[ "$(q "SELECT count(*) FROM portalmetrics.alert_state WHERE target = 'only_c'")" = 1 ] || fail "history of only_c lost"
[ "$(q "SELECT count(*) FROM portalmetrics.target_status WHERE target = 'only_c'")" = 0 ] || fail "retired target still in target_status"
# with tolerance 0 now, c shares enroll (a's declaration stays: it was
# killed, not reconfigured)
pm_wait_sql "SELECT count(*) = 3 FROM portalmetrics.target_declarations WHERE target = 'enroll'" 15 \
  || fail "c does not share enroll after its reload: $(q "SELECT * FROM portalmetrics.target_declarations")"
pm_stop "$pid_c" 10
pm_stop "$other" 10
echo "ok: one leader, one delivery per transition, takeover, conflict refused, retirement"
