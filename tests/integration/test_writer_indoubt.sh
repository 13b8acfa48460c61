#!/usr/bin/env bash
# A COMMIT whose answer is lost (the server committed, then the connection
# died) is settled after reconnecting with txid_status, not shipped again:
# an add record counted twice would show as 14 instead of 7.
#
# How: with synchronous_standby_names naming a standby that does not
# exist, COMMIT writes locally and then waits for it; terminating that
# backend drops the connection without an answer, but the transaction is
# committed.
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg
sync_standby() { q "ALTER SYSTEM SET synchronous_standby_names = '$1'" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null; }
trap 'sync_standby "" || true; pm_cleanup' EXIT

cat >"$T/script" <<SCRIPT
push t.indoubt add now-1h 1 site=warmup
wait 30
mark ready
waitfile $T/go 30
push t.indoubt add now-1h 7 site=x
wait 60
SCRIPT
"$DRV" "$PM_CONNINFO" <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
DRV_PID=$!
DAEMON_PIDS+=("$DRV_PID")
for ((i = 0; i < 300; i++)); do
  grep -qx "mark ready" "$T/driver.out" 2>/dev/null && break
  sleep 0.1
done
grep -qx "mark ready" "$T/driver.out" || fail "driver never got ready"

sync_standby nobody
touch "$T/go"
pid=""
for ((i = 0; i < 300; i++)); do
  pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'portalmetricsd/driver' AND wait_event = 'SyncRep'")
  [ -n "$pid" ] && break
  sleep 0.1
done
[ -n "$pid" ] || fail "the writer's COMMIT never waited for the standby"
q "SELECT pg_terminate_backend($pid)" >/dev/null
sync_standby ""
rc=0
wait "$DRV_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "driver exited $rc"

r=$(q "SELECT value FROM portalmetrics.samples_v WHERE metric = 't.indoubt' AND labels->>'site' = 'x'")
[ "$r" = 7 ] || fail "the in-doubt batch: got '$r', want 7 (14 means it was shipped twice)"
grep -q "was committed" "$T/driver.log" || fail "the in-doubt commit was not settled as committed"
tail -1 "$T/driver.out" | grep -q "^pushed=2 shipped=2 " || fail "driver counters: $(tail -1 "$T/driver.out")"
echo "writer in-doubt commit: OK"
