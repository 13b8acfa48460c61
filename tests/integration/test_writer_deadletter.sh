#!/usr/bin/env bash
# Bad data: a CHECK constraint (value < 1000000) on portalmetrics.samples
# refuses a few records of a batch. The batch is bisected; exactly the bad
# records go to <dir>/deadletter-YYYYMMDD.jsonl with SQLSTATE 23514 and
# the reason, the rest of the batch and later batches land, the position
# moves past all of them, and the episode is logged once. A CHECK
# violation is 23514 like partition routing's "no partition": both happen
# here (a month's partition is dropped too) and are told apart. A
# non-data error (INSERT revoked from the writer's role, then granted
# back) is retried, never bisected nor dead-lettered.
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg
"$DRV" --migrate "$PM_CONNINFO" >"$T/m.out" 2>"$T/m.log" || fail "--migrate failed"
q "ALTER TABLE portalmetrics.samples ADD CONSTRAINT pm_test_small CHECK (value < 1000000)" >/dev/null \
  || fail "cannot add the CHECK constraint"
q "CREATE ROLE pm_daemon LOGIN IN ROLE portalmetrics_writer" >/dev/null || fail "cannot create the writer role"
CONN="host=$PGHOST port=$PGPORT user=pm_daemon dbname=portalmetrics"

drv_wait_mark() {
  local i
  for ((i = 0; i < 300; i++)); do
    grep -qx "mark $1" "$T/driver.out" 2>/dev/null && return 0
    kill -0 "$DRV_PID" 2>/dev/null || fail "driver exited before mark $1"
    sleep 0.1
  done
  fail "driver never reached mark $1"
}
val() { q "SELECT count(*) || ' ' || coalesce(sum(value), 0) FROM portalmetrics.samples_v WHERE metric = '$1'"; }

T0=$(date +%s)
TA=$((T0 - 7200)) TB=$((T0 - 3600)) TC=$((T0 - 1800))
FUT=$((T0 + 40 * 86400)) # a month whose partition the test drops
FUTM=$(date -u -d "@$FUT" +%Y%m)
DL="$T/state/deadletter"
# one batch of 1508 records, four of them bad: seqs 1001 (set), 1003
# (add), 1005 (an add that passes alone but not on top of 1004: folded
# into one row with it, then bisected to itself), 1508 (set)
cat >"$T/script" <<SCRIPT
gen t.good add 10 100 $TA 60 1
push t.badset set $TB 2000000 site=x
push t.good2 set $TB 5 site=y
push t.badadd add $TB 3000000 site=z
push t.mix add $TC 1 site=m
push t.mix add $TC 999999 site=m
push t.mix add $TC 1 site=m
push t.fut set $FUT 3 site=f
gen t.good3 set 10 50 $TA 60 2
push t.badset set $TC 9999999 site=x
wait 60
position
stats
mark batch1
gen t.later add 5 20 $TA 60 1
wait 60
position
mark revoke-ready
waitfile $T/go 30
push t.priv add $TB 1 site=p
push t.priv add $TC 1 site=p
push t.priv add $TC 1 site=q
wait 60
position
SCRIPT
# the partition of FUT's month is dropped before the writer ships into
# it: its cache is stale, so the batch meets partition routing's 23514
# before the CHECK's
"$DRV" --batch 5000 --flush 500 --deadletter "$DL" --spool-id dl "$CONN" \
  <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
DRV_PID=$!
DAEMON_PIDS+=("$DRV_PID")
for ((i = 0; i < 100; i++)); do
  q "SELECT 1 FROM pg_class WHERE relname = 'samples_$FUTM'" | grep -q 1 && break
  sleep 0.05
done
q "DROP TABLE portalmetrics.samples_$FUTM" >/dev/null || fail "cannot drop samples_$FUTM"

drv_wait_mark batch1
grep -qx "position dl 1508 driver" "$T/driver.out" || fail "position after the bad batch: $(grep ^position "$T/driver.out")"
grep -q "^stats pushed=1508 shipped=1504 .* deadlettered=4 " "$T/driver.out" \
  || fail "counters after the bad batch: $(grep ^stats "$T/driver.out")"
grep -q "partition is missing" "$T/driver.log" || fail "partition routing's 23514 was not met (or not told apart)"
f=$(ls "$DL"/deadletter-*.jsonl 2>/dev/null)
[ "$(echo "$f" | wc -w)" = 1 ] || fail "want one dead-letter file in $DL, got: $f"
case "$(basename "$f")" in deadletter-$(date -u +%Y%m%d).jsonl | deadletter-*.jsonl) ;; *) fail "file name: $f" ;; esac
[ "$(wc -l <"$f")" = 4 ] || fail "dead-letter file has $(wc -l <"$f") lines, want 4: $(cat "$f")"
r=$(jq -r '[.seq, .metric, .kind, .value, .sqlstate] | map(tostring) | join(" ")' "$f" | sort -n | tr '\n' ,)
[ "$r" = "1001 t.badset set 2000000 23514,1003 t.badadd add 3000000 23514,1005 t.mix add 999999 23514,1508 t.badset set 9999999 23514," ] \
  || fail "dead letters: $r"
jq -e 'select((.reason | test("violates check constraint \"pm_test_small\"")) and .labels.collector == "driver" and (.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z$")) and (.at | test("Z$")))' "$f" >/dev/null \
  || fail "a dead letter lacks its reason, labels or times: $(head -1 "$f")"
[ "$(jq -s 'map(select(.reason | test("violates check constraint"))) | length' "$f")" = 4 ] || fail "reasons: $(jq -r .reason "$f")"
[ "$(val t.good)" = "1000 1000" ] || fail "t.good: $(val t.good)"
[ "$(val t.good2)" = "1 5" ] || fail "t.good2: $(val t.good2)"
[ "$(val t.good3)" = "500 1000" ] || fail "t.good3: $(val t.good3)"
[ "$(val t.mix)" = "1 2" ] || fail "t.mix: $(val t.mix), want '1 2' (the 999999 dead-lettered, both 1s once)"
[ "$(val t.fut)" = "1 3" ] || fail "t.fut (the dropped month): $(val t.fut)"
[ "$(val t.badset)" = "0 0" ] && [ "$(val t.badadd)" = "0 0" ] || fail "bad records landed"
n=$(grep -c "dead-lettered 4 records of a batch of 1508" "$T/driver.log" || true)
[ "$n" = 1 ] || fail "the episode was logged $n times, want once: $(grep dead-letter "$T/driver.log")"
grep -q "dead-lettered 4 records .* to $DL/deadletter-.*jsonl: new row for relation .* violates check constraint" "$T/driver.log" \
  || fail "the episode's line lacks the file or the reason: $(grep dead-lettered "$T/driver.log")"

drv_wait_mark revoke-ready
[ "$(val t.later)" = "100 100" ] || fail "later batch: $(val t.later)"
grep -qx "position dl 1608 driver" "$T/driver.out" || fail "position after the later batch: $(grep ^position "$T/driver.out")"

# a non-data error: retried, never dead-lettered
q "REVOKE INSERT ON portalmetrics.samples FROM portalmetrics_writer" >/dev/null || fail "cannot revoke"
touch "$T/go"
pm_wait_log "permission denied" 30 "$T/driver.log" || fail "the revoked INSERT was not met"
sleep 2
kill -0 "$DRV_PID" 2>/dev/null || fail "driver gave up on a permission error"
[ "$(val t.priv)" = "0 0" ] || fail "t.priv landed while revoked"
[ "$(wc -l <"$f")" = 4 ] || fail "a permission error was dead-lettered: $(tail -1 "$f")"
grep -q "bisecting" <(sed -n '/permission denied/,$p' "$T/driver.log") && fail "a permission error was bisected"
q "GRANT INSERT ON portalmetrics.samples TO portalmetrics_writer" >/dev/null || fail "cannot grant"
rc=0
wait "$DRV_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "driver exited $rc"
[ "$(val t.priv)" = "3 3" ] || fail "t.priv after the grant: $(val t.priv)"
[ "$(q "SELECT last_seq FROM portalmetrics.ingest_position WHERE spool_id = 'dl'")" = 1611 ] || fail "final position"
tail -1 "$T/driver.out" | grep -q "^pushed=1611 shipped=1607 .* deadlettered=4 .* position=1611 " \
  || fail "final counters: $(tail -1 "$T/driver.out")"
n=$(grep -c "permission denied" "$T/driver.log" || true)
[ "$n" = 1 ] || fail "the permission error was logged $n times, want once per episode"
echo "writer dead-letter: OK"
