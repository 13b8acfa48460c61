#!/usr/bin/env bash
# A batch shipped by the direct path (binary COPY straight into samples)
# whose COMMIT answer is lost is settled after reconnecting like any
# other: txid_status says committed, it is acked and not shipped again
# (an add record counted twice would show as 14 instead of 7, and a
# re-send through the direct path would fail on its own rows).
#
# How: see test_writer_indoubt.sh (COMMIT waits for a standby that does
# not exist; its backend is terminated).
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg
sync_standby() { q "ALTER SYSTEM SET synchronous_standby_names = '$1'" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null; }
trap 'sync_standby "" || true; pm_cleanup' EXIT

# the warm-up makes the series known, so the next (newer) batch goes direct
cat >"$T/script" <<SCRIPT
push t.indoubt add now-2h 1 site=x
wait 30
stats
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
grep -q "^stats .* direct=0 " "$T/driver.out" || fail "the warm-up (a new series) went direct: $(grep ^stats "$T/driver.out")"

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

r=$(q "SELECT string_agg(value::text, ',' ORDER BY ts) FROM portalmetrics.samples_v WHERE metric = 't.indoubt'")
[ "$r" = "1,7" ] || fail "the in-doubt direct batch: got '$r', want '1,7' (14 means it was shipped twice)"
grep -q "was committed" "$T/driver.log" || fail "the in-doubt commit was not settled as committed"
tail -1 "$T/driver.out" | grep -q "^pushed=2 shipped=2 refused=0 batches=2 .* direct=1 fallbacks=0$" \
  || fail "driver counters: $(tail -1 "$T/driver.out"), want shipped=2 batches=2 direct=1 fallbacks=0"
echo "writer in-doubt commit of a direct batch: OK"
