#!/usr/bin/env bash
# The writer's direct path: a batch whose series are all known and whose
# rows are all newer than what this writer committed for them is shipped
# with a binary COPY straight into samples; a row already stored behind
# the writer's back makes that COPY fail with unique_violation, and the
# batch is rolled back and merged instead, landing exactly once with the
# set/add semantics. Add samples never double: not on a fallback, not on a
# re-send of old timestamps, not with two writers (an HA pair) shipping
# the same rows at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/writer_lib.sh"
pm_pg

# stat NAME KEY: a counter from the last "stats" line printed before "mark NAME"
stat() {
  sed -n "/^mark $1\$/q; /^stats /p" "$T/driver.out" | tail -1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"
}
val() { q "SELECT value FROM portalmetrics.samples_v WHERE metric = '$1' AND ts = to_timestamp($2)"; }
sid() { q "SELECT id FROM portalmetrics.series WHERE metric = '$1'"; }

T0=$(date +%s)
W=$((T0 - 7200)) # warm-up round
M=$((W + 60))    # then 100 rounds a minute apart
cat >"$T/script" <<SCRIPT
# (1) monotonic: the first batch of a series merges (the series is new),
# the later ones go direct
gen t.mono set 10 1 $W 60 1
gen t.madd add 10 1 $W 60 1
wait 30
stats
mark warm
gen t.mono set 10 100 $M 60 2
wait 30
gen t.madd add 10 100 $M 60 1
wait 30
stats
mark mono
# (2) a collision: the test stores rows at T0-1800 behind the writer's back
push t.col set $((T0 - 3600)) 1 site=a
push t.cola add $((T0 - 3600)) 1 site=a
wait 30
mark col-ready
waitfile $T/go-col 30
push t.col set $((T0 - 1800)) 5 site=a
push t.cola add $((T0 - 1800)) 3 site=a
push t.col set $((T0 - 1700)) 6 site=a
wait 30
stats
mark col-done
# after the fallback the next batch merges, then direct again
push t.col set $((T0 - 1000)) 7 site=a
wait 30
push t.col set $((T0 - 900)) 8 site=a
wait 30
push t.col set $((T0 - 800)) 9 site=a
wait 30
stats
mark recovered
# (3) old timestamps again: merged (never tried direct), add sums once
gen t.madd add 10 100 $M 60 1
wait 30
stats
mark resent
# (4) a month's partition dropped behind the writer's back: the direct
# COPY fails with 23514, the partition is created again, direct again
mark part-ready
waitfile $T/go-part 30
push t.col set $((T0 + 40 * 86400)) 10 site=a
wait 30
stats
mark part-done
SCRIPT
drv_start -v --batch 50 --flush 50 "$PM_CONNINFO"

drv_wait_mark mono
b=$(stat mono batches) d=$(stat mono direct) f=$(stat mono fallbacks)
bw=$(stat warm batches) dw=$(stat warm direct)
[ "$dw" = 0 ] || fail "the warm-up batches (new series) went direct: direct=$dw"
[ "$f" = 0 ] || fail "monotonic pushes fell back: fallbacks=$f"
[ "$d" -gt 0 ] && [ "$d" = $((b - bw)) ] \
  || fail "monotonic pushes: $((b - bw)) batches after the warm-up, $d of them direct; want all"
echo "monotonic: $((b - bw)) batches after the warm-up, direct=$d"
r=$(q "SELECT count(*) || ' ' || sum(value) FROM portalmetrics.samples_v WHERE metric = 't.mono'")
[ "$r" = "1010 2010" ] || fail "t.mono: got '$r' (rows sum), want '1010 2010'"
r=$(q "SELECT count(*) || ' ' || sum(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.madd'")
[ "$r" = "1010 1010 1" ] || fail "t.madd: got '$r' (rows sum max), want '1010 1010 1'"

drv_wait_mark col-ready
c=$(sid t.col) ca=$(sid t.cola)
[ -n "$c" ] && [ -n "$ca" ] || fail "series t.col / t.cola not written"
q "INSERT INTO portalmetrics.samples VALUES ($c, to_timestamp($((T0 - 1800))), 99), ($ca, to_timestamp($((T0 - 1800))), 10)" >/dev/null \
  || fail "cannot insert the colliding rows"
touch "$T/go-col"
drv_wait_mark col-done
[ "$(stat col-done fallbacks)" = 1 ] || fail "collision: fallbacks=$(stat col-done fallbacks), want 1"
[ "$(stat col-done direct)" = "$d" ] || fail "collision: the colliding batch counted as direct"
[ "$(stat col-done errors)" = 0 ] || fail "collision: the fallback counted as an error"
grep -q "met a row already stored.*merging it instead" "$T/driver.log" || fail "the fallback was not logged (debug)"
[ "$(val t.col $((T0 - 1800)))" = 5 ] || fail "set after the fallback: got '$(val t.col $((T0 - 1800)))', want 5 (overwrites 99)"
[ "$(val t.col $((T0 - 1700)))" = 6 ] || fail "the batch's other row: got '$(val t.col $((T0 - 1700)))', want 6"
[ "$(val t.cola $((T0 - 1800)))" = 13 ] || fail "add after the fallback: got '$(val t.cola $((T0 - 1800)))', want 13 (10 stored + 3 once)"
r=$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric IN ('t.col', 't.cola') AND ts <= to_timestamp($((T0 - 1700)))")
[ "$r" = 5 ] || fail "collision: $r rows for t.col and t.cola, want 5"

drv_wait_mark recovered
[ "$(stat recovered direct)" -gt "$d" ] || fail "no direct batch after the fallback"
[ "$(stat recovered fallbacks)" = 1 ] || fail "fallbacks grew after the collision: $(stat recovered fallbacks)"
r=$(q "SELECT string_agg(value::text, ',' ORDER BY ts) FROM portalmetrics.samples_v WHERE metric = 't.col'")
[ "$r" = "1,5,6,7,8,9" ] || fail "t.col: got '$r', want 1,5,6,7,8,9"

drv_wait_mark resent
[ "$(stat resent direct)" = "$(stat recovered direct)" ] || fail "a re-send of old timestamps went direct"
[ "$(stat resent fallbacks)" = 1 ] || fail "a re-send of old timestamps tried direct and fell back"

drv_wait_mark part-ready
PM=$(date -u -d "@$((T0 + 40 * 86400))" +%Y%m)
q "DROP TABLE portalmetrics.samples_$PM" >/dev/null || fail "cannot drop samples_$PM"
touch "$T/go-part"
drv_wait_mark part-done
[ "$(stat part-done direct)" = $(($(stat resent direct) + 1)) ] || fail "the batch into a dropped month did not go direct"
grep -q "partition is missing" "$T/driver.log" || fail "the direct COPY did not meet the missing partition (23514)"
[ "$(val t.col $((T0 + 40 * 86400)))" = 10 ] || fail "the sample in the dropped month: got '$(val t.col $((T0 + 40 * 86400)))', want 10"
drv_end
r=$(q "SELECT count(*) || ' ' || sum(value) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.madd' AND ts >= to_timestamp($M)")
[ "$r" = "1000 2000 2 2" ] || fail "add re-sent once: got '$r' (rows sum min max), want '1000 2000 2 2'"
tail -1 "$T/driver.out" | grep -q "^pushed=3029 shipped=3029 refused=0 " || fail "driver counters: $(tail -1 "$T/driver.out")"

# (5) an HA pair: two writers ship the same add rows at the same moment;
# each row ends up with both increments, once each
cat >"$T/script" <<SCRIPT
gen t.ha add 20 1 $((T0 - 600)) 1 1
wait 30
mark ready
waitfile $T/go-ha 30
gen t.ha add 20 200 $((T0 - 599)) 1 1
wait 60
SCRIPT
for i in 1 2; do
  "$DRV" -v --id "ha$i" --batch 100 --flush 20 "$PM_CONNINFO" <"$T/script" >"$T/ha$i.out" 2>"$T/ha$i.log" &
  HA[$i]=$!
  DAEMON_PIDS+=("${HA[$i]}")
done
for i in 1 2; do
  for ((k = 0; k < 300; k++)); do
    grep -qx "mark ready" "$T/ha$i.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -qx "mark ready" "$T/ha$i.out" || fail "HA writer $i never got ready"
done
touch "$T/go-ha"
for i in 1 2; do
  rc=0
  wait "${HA[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || fail "HA writer $i exited $rc"
done
r=$(q "SELECT count(*) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.ha'")
[ "$r" = "4020 2 2" ] || fail "HA pair: got '$r' (rows min max), want '4020 2 2'"
echo "HA pair: $(tail -1 "$T/ha1.out" | grep -o 'direct=.*') / $(tail -1 "$T/ha2.out" | grep -o 'direct=.*')"
echo "writer direct path: OK"
