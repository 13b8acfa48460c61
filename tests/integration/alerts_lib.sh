# Shared by the alert tests (source after lib.sh): a webhook receiver, an
# exec notifier script, samples written by hand, and JSON field reads.

# alerts_webhook: start webhook_server.js in $T/srv; sets HOOK_PORT.
alerts_webhook() {
  mkdir -p "$T/srv"
  node "$PM_SRC/tests/integration/webhook_server.js" "$T/srv" >"$T/webhook.out" 2>&1 &
  DAEMON_PIDS+=("$!")
  for _ in $(seq 1 100); do
    [ -s "$T/srv/port" ] && break
    sleep 0.1
  done
  HOOK_PORT=$(cat "$T/srv/port") || fail "webhook server did not start"
}
# hook_mode MODE: how the receiver answers from now on (200, 500, hang).
hook_mode() { echo "$1" >"$T/srv/mode"; }
# hook_count: requests received so far.
hook_count() { cat "$T/srv/count" 2>/dev/null || echo 0; }
# hook_field N KEY: a field of request N's JSON body.
hook_field() { json_field "$T/srv/req$1.body" "$2"; }

# json_field FILE KEY: a top-level field of a JSON file ("null" if null).
json_field() {
  node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
           const v = j[process.argv[2]]; console.log(v === null ? "null" : String(v));' "$1" "$2"
}

# alerts_exec_script: $T/notify.sh, which stores its stdin and PM_* env
# in $T/exec/<event id>.json and .env.
alerts_exec_script() {
  mkdir -p "$T/exec"
  cat >"$T/notify.sh" <<SH
#!/bin/sh
cat >"$T/exec/\$PM_EVENT_ID.json.tmp"
env | grep '^PM_' | sort >"$T/exec/\$PM_EVENT_ID.env"
mv "$T/exec/\$PM_EVENT_ID.json.tmp" "$T/exec/\$PM_EVENT_ID.json"
SH
  chmod 755 "$T/notify.sh"
}

# set_value SERIES_ID VALUE: a gauge sample of the hand-made series at now().
set_value() {
  q "INSERT INTO portalmetrics.samples (series_id, ts, value) VALUES ($1, clock_timestamp(), $2)" >/dev/null \
    || fail "cannot insert a sample"
}

# make_series ID METRIC LABELS_JSON: a series written by hand (the writer
# would make it the same way) and this month's partition.
make_series() {
  q "SELECT portalmetrics.ensure_partitions(date_trunc('month', now())::date, (date_trunc('month', now()) + interval '1 month')::date)" >/dev/null
  q "INSERT INTO portalmetrics.series (id, metric, labels, kind) VALUES ($1, '$2', '$3', 'set')" >/dev/null \
    || fail "cannot insert series $1"
}

# events_of TARGET: "kind:from>to" of every event, in order, one line.
events_of() {
  q "SELECT string_agg(kind || ':' || from_state || '>' || to_state, ' ' ORDER BY event_id) FROM portalmetrics.alert_events WHERE target = '$1'"
}
