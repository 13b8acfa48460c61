#!/usr/bin/env bash
# PostgreSQL stopped and started again while the driver keeps pushing: the
# writer logs the outage once, reconnects with backoff, resumes after the
# last committed record, and in the end every record is in the database
# exactly once (add series: a record shipped twice would show as 2).
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg

# 50 add series + 10 set series, 400 ts each, at 2000 records/s: about
# twelve seconds of pushing
cat >"$T/script" <<SCRIPT
gen t.restart add 50 400 now-3h 1 1 2000
wait 120
mark first-done
gen t.restart_set set 10 400 now-3h 1 9 2000
wait 120
SCRIPT
"$DRV" --batch 500 --flush 50 --connect-timeout 2 "$PM_CONNINFO" \
  <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
DRV_PID=$!
DAEMON_PIDS+=("$DRV_PID")

pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE metric = 't.restart'" 30 \
  || fail "nothing shipped before the outage"
pm_pg_stop "$T/pg"
sleep 3
kill -0 "$DRV_PID" 2>/dev/null || fail "driver died while PostgreSQL was down"
pm_pg_start "$T/pg" >/dev/null
rc=0
wait "$DRV_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "driver exited $rc"

r=$(q "SELECT count(*) || ' ' || sum(value) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.restart'")
[ "$r" = "20000 20000 1 1" ] || fail "add records after the outage: got '$r' (rows sum min max), want '20000 20000 1 1'"
r=$(q "SELECT count(*) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.restart_set'")
[ "$r" = "4000 9 9" ] || fail "set records after the outage: got '$r', want '4000 9 9'"
tail -1 "$T/driver.out" | grep -q "^pushed=24000 shipped=24000 refused=0 " \
  || fail "driver counters: $(tail -1 "$T/driver.out")"
n=$(grep -c "database unreachable" "$T/driver.log" || true)
[ "$n" = 1 ] || fail "the outage was logged $n times, want once"
grep -q "database connection restored after" "$T/driver.log" || fail "recovery not logged"
echo "writer pgrestart: OK"
