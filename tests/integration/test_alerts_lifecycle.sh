#!/usr/bin/env bash
# A target driven by samples written by hand goes ok -> pending -> firing
# -> resolved with its for/clear_for; each transition is a row of
# alert_events and a NOTIFY that a LISTEN client receives; the webhook
# receives the JSON body with the event id, the exec notifier gets the same
# JSON on stdin and PM_* variables, the log notifier writes the sentence.
# A restart while firing sends nothing again; an event whose delivery
# failed (HTTP 500) before a restart is delivered after it; a webhook that
# hangs neither stalls the daemon nor the other notifiers, and is retried.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/alerts_lib.sh"
pm_pg
pm_plugins testpoll
alerts_webhook
alerts_exec_script

pm_conf "$T/a.conf" <<CONF
collectors = (
  { name = "tick"; plugin = "testpoll"; interval = "200ms";
    settings = { metric = "test.gauge"; kind = "set"; value = 1.0; }; }
);
alerts = { interval = "300ms"; };
targets = (
  { name = "enroll"; title = "Portal enrollment at Test Clinic";
    metric = "portal.patients_enrolled"; labels = { clinic = "t1"; };
    goal = { value = 100.0; }; for = "2s"; clear_for = "2s";
    severity = "critical"; notify = [ "hook", "run", "journal" ]; }
);
notifiers = (
  { name = "hook"; type = "webhook"; url = "http://127.0.0.1:$HOOK_PORT/alerts"; timeout = "1s"; },
  { name = "run"; type = "exec"; command = [ "$T/notify.sh" ]; timeout = "5s"; },
  { name = "journal"; type = "log"; }
);
CONF

"$PMD" --migrate -c "$T/a.conf" >"$T/migrate.log" 2>&1 || fail "migrate failed"
make_series 4242 portal.patients_enrolled '{"clinic":"t1","collector":"manual"}'
set_value 4242 150

"$PM_BUILD/tests/listen_client" "$PM_CONNINFO" portalmetrics_alerts 120 >"$T/listen.out" 2>"$T/listen.err" &
DAEMON_PIDS+=("$!")
pm_wait_log ready 10 "$T/listen.out" || fail "LISTEN client not ready"

pm_start "$T/a.conf"
pm_wait_log "is now the alert leader" 20 || fail "no alert leader"
pm_wait_sql "SELECT state = 'ok' FROM portalmetrics.alert_state WHERE target = 'enroll'" 20 \
  || fail "target not judged ok: $(q "SELECT * FROM portalmetrics.target_status")"
q "SELECT declared_by FROM (SELECT string_agg(daemon_id, ',') AS declared_by FROM portalmetrics.target_declarations WHERE target = 'enroll') x" | grep -qx test-a \
  || fail "declarations: $(q "SELECT * FROM portalmetrics.target_declarations")"

# --- behind: pending, then firing after `for`
set_value 4242 31
pm_wait_sql "SELECT state = 'pending' FROM portalmetrics.alert_state WHERE target = 'enroll'" 10 || fail "not pending"
t0=$(date +%s.%N)
pm_wait_sql "SELECT state = 'firing' FROM portalmetrics.alert_state WHERE target = 'enroll'" 10 || fail "not firing"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a >= 1.3) }' || fail "fired $(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}') s after pending, for = 2s"
[ "$(events_of enroll)" = "state:ok>pending state:pending>firing" ] || fail "events: $(events_of enroll)"
fire_id=$(q "SELECT event_id FROM portalmetrics.alert_events WHERE target = 'enroll' AND to_state = 'firing'")
q "SELECT notify FROM portalmetrics.alert_events WHERE target = 'enroll' ORDER BY event_id" | tr '\n' ' ' | grep -qx 'f t ' \
  || fail "only the firing event is for notifiers"

# the webhook: one request, the JSON body with the event id
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_events WHERE event_id = $fire_id" 10 \
  || fail "firing event not delivered: $(q "SELECT * FROM portalmetrics.alert_deliveries")"
[ "$(hook_count)" = 1 ] || fail "webhook got $(hook_count) requests, want 1"
[ "$(hook_field 1 event_id)" = "$fire_id" ] || fail "webhook event_id $(hook_field 1 event_id), want $fire_id"
[ "$(hook_field 1 to)" = firing ] || fail "webhook 'to' is $(hook_field 1 to)"
[ "$(hook_field 1 severity)" = critical ] || fail "webhook severity"
msg=$(hook_field 1 message)
[ "$msg" = "Portal enrollment at Test Clinic is 31, 69 below the plan of 100." ] \
  || grep -q "Portal enrollment at Test Clinic is 31" <<<"$msg" || fail "message: $msg"
grep -qi "^X-Portalmetrics-Event: $fire_id" "$T/srv/req1.head" || fail "no X-Portalmetrics-Event header"
# exec: the same JSON on stdin, the environment
[ -s "$T/exec/$fire_id.json" ] || fail "exec notifier did not run for event $fire_id"
[ "$(json_field "$T/exec/$fire_id.json" event_id)" = "$fire_id" ] || fail "exec JSON event_id"
grep -qx "PM_TARGET=enroll" "$T/exec/$fire_id.env" || fail "exec env: $(cat "$T/exec/$fire_id.env")"
grep -qx "PM_TO=firing" "$T/exec/$fire_id.env" || fail "exec env PM_TO"
# log notifier: the sentence, once
[ "$(grep -c "alert: target enroll: pending -> firing (event $fire_id)" "$T/daemon.log")" = 1 ] \
  || fail "log notifier line missing or repeated"
grep -q "Portal enrollment at Test Clinic is 31" "$T/daemon.log" || fail "log line without the sentence"
# NOTIFY: a payload for each transition, small, with the event id
pm_wait_log "\"event_id\" *: *\"$fire_id\"" 5 "$T/listen.out" || fail "LISTEN client got no NOTIFY for $fire_id: $(cat "$T/listen.out")"
[ "$(grep -c '"target" *: *"enroll"' "$T/listen.out")" = 2 ] || fail "NOTIFY payloads: $(cat "$T/listen.out")"
awk 'length($0) >= 1024 { exit 1 }' "$T/listen.out" || fail "a NOTIFY payload of 1 KB or more"

# --- a restart while firing sends nothing again
pm_stop "$DPID" 10
pm_start "$T/a.conf"
pm_wait_log "is now the alert leader" 20 || fail "no leader after restart"
sleep 3
[ "$(hook_count)" = 1 ] || fail "restart while firing: webhook got $(hook_count) requests, want 1"
[ "$(events_of enroll)" = "state:ok>pending state:pending>firing" ] || fail "restart made events: $(events_of enroll)"
[ "$(q "SELECT state FROM portalmetrics.alert_state WHERE target = 'enroll'")" = firing ] || fail "state forgotten"

# --- back on track: resolved after clear_for
set_value 4242 150
pm_wait_sql "SELECT state = 'resolved' FROM portalmetrics.alert_state WHERE target = 'enroll'" 10 || fail "not resolved"
res_id=$(q "SELECT max(event_id) FROM portalmetrics.alert_events WHERE target = 'enroll'")
[ "$(q "SELECT to_state FROM portalmetrics.alert_events WHERE event_id = $res_id")" = resolved ] || fail "last event not resolved"
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_events WHERE event_id = $res_id" 10 || fail "resolved not delivered"
[ "$(hook_count)" = 2 ] || fail "webhook got $(hook_count) requests, want 2"
grep -q "back on track" "$T/srv/req2.body" || fail "resolved message: $(cat "$T/srv/req2.body")"

# --- HTTP 500: retried; still undelivered at a restart; delivered after it
hook_mode 500
set_value 4242 20
pm_wait_sql "SELECT state = 'firing' FROM portalmetrics.alert_state WHERE target = 'enroll'" 10 || fail "not firing again"
f2=$(q "SELECT max(event_id) FROM portalmetrics.alert_events WHERE target = 'enroll'")
pm_wait_sql "SELECT attempts >= 2 FROM portalmetrics.alert_deliveries WHERE event_id = $f2 AND notifier = 'hook'" 15 \
  || fail "500 not retried: $(q "SELECT * FROM portalmetrics.alert_deliveries WHERE event_id = $f2")"
[ "$(q "SELECT last_error FROM portalmetrics.alert_deliveries WHERE event_id = $f2 AND notifier = 'hook'")" = "HTTP 500" ] \
  || fail "last_error: $(q "SELECT last_error FROM portalmetrics.alert_deliveries WHERE event_id = $f2")"
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_deliveries WHERE event_id = $f2 AND notifier = 'run'" 10 \
  || fail "exec delivery held up by the failing webhook"
pm_stop "$DPID" 10
[ "$(q "SELECT delivered_at IS NULL FROM portalmetrics.alert_deliveries WHERE event_id = $f2 AND notifier = 'hook'")" = t ] \
  || fail "delivered while answering 500?"
hook_mode 200
before=$(hook_count)
pm_start "$T/a.conf"
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_deliveries WHERE event_id = $f2 AND notifier = 'hook'" 20 \
  || fail "not delivered after the restart"
last=$(hook_count)
[ "$(hook_field "$last" event_id)" = "$f2" ] || fail "delivered after restart: event $(hook_field "$last" event_id), want $f2"
[ "$last" = $((before + 1)) ] || fail "after restart: $((last - before)) requests, want 1"
[ "$(ls "$T/exec" | grep -c "^$f2.json$")" = 1 ] || fail "exec ran again for $f2"

# --- a hanging webhook: the daemon and the exec notifier go on; retried
hook_mode hang
set_value 4242 150
pm_wait_sql "SELECT state = 'resolved' FROM portalmetrics.alert_state WHERE target = 'enroll'" 10 || fail "not resolved (hang)"
r2=$(q "SELECT max(event_id) FROM portalmetrics.alert_events WHERE target = 'enroll'")
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_deliveries WHERE event_id = $r2 AND notifier = 'run'" 10 \
  || fail "exec delivery stalled by a hanging webhook"
n0=$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 'test.gauge'")
pm_wait_sql "SELECT attempts >= 2 FROM portalmetrics.alert_deliveries WHERE event_id = $r2 AND notifier = 'hook'" 15 \
  || fail "hanging webhook not retried"
grep -q "timed out" <<<"$(q "SELECT last_error FROM portalmetrics.alert_deliveries WHERE event_id = $r2 AND notifier = 'hook'")" \
  || fail "hang: last_error $(q "SELECT last_error FROM portalmetrics.alert_deliveries WHERE event_id = $r2")"
pm_wait_sql "SELECT count(*) > $n0 FROM portalmetrics.samples_v WHERE metric = 'test.gauge'" 10 \
  || fail "samples stopped landing while the webhook hung"
hook_mode 200
pm_wait_sql "SELECT delivered_at IS NOT NULL FROM portalmetrics.alert_events WHERE event_id = $r2" 20 \
  || fail "not delivered once the webhook answers"
# the daemon's own figures: leadership and deliveries
pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.alert_leader' AND value = 1" 15 \
  || fail "no portalmetricsd.alert_leader = 1 sample"
pm_stop "$DPID" 10
[ "$(q "SELECT sum(value) > 0 FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.alert_delivery_errors'")" = t ] \
  || fail "no portalmetricsd.alert_delivery_errors counted"
echo "ok: pending -> firing -> resolved, NOTIFY, webhook, exec, log; restart while firing; 500 and hang retried"
