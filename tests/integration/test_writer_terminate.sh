#!/usr/bin/env bash
# The writer's backend killed (pg_terminate_backend) again and again while
# add samples stream in: whether a kill lands mid-transaction, mid-COMMIT
# or between batches, the position read on reconnecting says what is
# shipped, and every record is in the database exactly once (an add
# shipped twice would show as 2, a lost one as a missing row).
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg

# 40 add series x 300 ts at 1000 records/s (twelve seconds: longer than
# the kills take even on a loaded machine), batches of 200
cat >"$T/script" <<SCRIPT
gen t.term add 40 300 now-3h 1 1 1000
wait 120
position
SCRIPT
"$DRV" --batch 200 --flush 20 --connect-timeout 2 --spool-id term "$PM_CONNINFO" \
  <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
DRV_PID=$!
DAEMON_PIDS+=("$DRV_PID")

pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE metric = 't.term'" 30 \
  || fail "nothing shipped before the kills"
kills=0
for ((i = 0; i < 20; i++)); do
  n=$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'portalmetricsd/driver'" || true)
  kills=$((kills + ${n:-0}))
  sleep "0.$((RANDOM % 3 + 1))" # 100..300 ms
done
[ "$kills" -ge 10 ] || fail "only $kills of 20 kills found the writer's backend"
rc=0
wait "$DRV_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "driver exited $rc"

r=$(q "SELECT count(*) || ' ' || sum(value) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.term'")
[ "$r" = "12000 12000 1 1" ] || fail "after $kills kills: got '$r' (rows sum min max), want '12000 12000 1 1'"
grep -qx "position term 12000 driver" "$T/driver.out" || fail "final position: $(grep ^position "$T/driver.out")"
tail -1 "$T/driver.out" | grep -q "^pushed=12000 .* deadlettered=0 .* position=12000 " \
  || fail "driver counters: $(tail -1 "$T/driver.out")"
echo "writer terminate: $kills kills, $(tail -1 "$T/driver.out" | grep -o 'errors=[0-9]*'), in-doubt commits: $(grep -c 'was committed' "$T/driver.log" || true) committed, $(grep -c 'was not committed' "$T/driver.log" || true) not: OK"
