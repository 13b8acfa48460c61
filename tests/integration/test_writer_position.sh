#!/usr/bin/env bash
# Exactly once across restarts: portalmetrics.ingest_position(spool_id,
# daemon_id, last_seq) moves with every batch, in the batch's transaction;
# a writer started again on the same spool (the same seqs pushed again,
# under another daemon id too) ships nothing twice and resumes after the
# position; a fenced update that finds the position moved by another
# session rolls back, says so, re-reads it and resumes after it, with
# nothing lost and nothing doubled.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/writer_lib.sh"
pm_pg

pos() { q "SELECT last_seq || ' ' || daemon_id FROM portalmetrics.ingest_position WHERE spool_id = '$1'"; }
sums() { q "SELECT count(*) || ' ' || sum(value) FROM portalmetrics.samples_v WHERE metric LIKE 't.pos%'"; }

T0=$(date +%s)
T1=$((T0 - 3600))
# 2 + 1 + 50 records: seqs 1..53
cat >"$T/script" <<SCRIPT
push t.pos add $T1 1 site=a
push t.pos add $T1 2 site=b
wait 30
position
push t.pos add $T1 3 site=a
wait 30
position
gen t.posg add 5 10 $((T1 - 600)) 60 1
push t.poss set $T1 7 site=s
wait 30
position
stats
SCRIPT
"$DRV" --id one --spool-id spool-a "$PM_CONNINFO" <"$T/script" >"$T/run1.out" 2>"$T/run1.log" \
  || fail "first run exited $?"
p=$(grep '^position ' "$T/run1.out" | awk '{print $3}' | tr '\n' ' ')
[ "$p" = "2 3 54 " ] || fail "the position did not move with each batch: got '$p', want '2 3 54 '"
[ "$(pos spool-a)" = "54 one" ] || fail "position after run 1: '$(pos spool-a)', want '54 one'"
S1=$(sums)
[ "$S1" = "53 63" ] || fail "after run 1: rows/sum '$S1', want '53 63'"
tail -1 "$T/run1.out" | grep -q "^pushed=54 shipped=54 .* position=54 " || fail "run 1 counters: $(tail -1 "$T/run1.out")"

# the same records again, same spool, another daemon id: nothing shipped
"$DRV" --id two --spool-id spool-a "$PM_CONNINFO" <"$T/script" >"$T/run2.out" 2>"$T/run2.log" \
  || fail "second run exited $?"
[ "$(sums)" = "$S1" ] || fail "a restart on the same spool shipped again: '$(sums)', want '$S1'"
tail -1 "$T/run2.out" | grep -q "^pushed=54 shipped=0 refused=0 batches=0 .* position=54 " \
  || fail "run 2 counters: $(tail -1 "$T/run2.out"), want shipped=0 batches=0 position=54"
[ "$(pos spool-a)" = "54 one" ] || fail "position after run 2: '$(pos spool-a)', want '54 one' (nothing shipped)"
grep -q "spool spool-a is shipped up to seq 54; resuming after it" "$T/run2.log" || fail "resuming not logged"

# and once more with two new records at the end: only those land
{ cat "$T/script"; echo "push t.pos add $T1 10 site=c"; echo "push t.poss set $T1 8 site=s"; echo "wait 30"; } >"$T/script3"
"$DRV" --id two --spool-id spool-a "$PM_CONNINFO" <"$T/script3" >"$T/run3.out" 2>"$T/run3.log" \
  || fail "third run exited $?"
tail -1 "$T/run3.out" | grep -q "^pushed=56 shipped=2 .* position=56 " || fail "run 3 counters: $(tail -1 "$T/run3.out")"
[ "$(pos spool-a)" = "56 two" ] || fail "position after run 3: '$(pos spool-a)', want '56 two'"
[ "$(sums)" = "54 74" ] || fail "after run 3: '$(sums)', want '54 74' (one new add row of 10, the set 7 -> 8)"
[ "$(q "SELECT value FROM portalmetrics.samples_v WHERE metric = 't.poss'")" = 8 ] || fail "set after resume"

# a fenced-update conflict: while the writer idles at position 3, another
# session ships seqs 4..8 (the rows at T1+1..T1+5) and moves the position
# to 8; the writer's next batch (seqs 4..13) finds the position moved,
# rolls back, re-reads it and ships 9..13 only
{
  echo "push t.posc add $T1 1 site=k"
  echo "push t.posc add $T1 1 site=l"
  echo "push t.posc add $T1 1 site=m"
  echo "wait 30"
  echo "mark ready"
  echo "waitfile $T/go 30"
  for i in $(seq 1 10); do echo "push t.posc add $((T1 + i)) 1 site=k"; done
  echo "wait 30"
  echo "position"
} >"$T/script"
drv_start --id three --spool-id spool-c "$PM_CONNINFO"
drv_wait_mark ready
[ "$(pos spool-c)" = "3 three" ] || fail "conflict setup: position '$(pos spool-c)', want '3 three'"
k=$(q "SELECT id FROM portalmetrics.series WHERE metric = 't.posc' AND labels->>'site' = 'k'")
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL || fail "cannot play the other session"
BEGIN;
INSERT INTO portalmetrics.samples SELECT $k, to_timestamp($T1 + i), 1 FROM generate_series(1, 5) i;
UPDATE portalmetrics.ingest_position SET last_seq = 8, daemon_id = 'other' WHERE spool_id = 'spool-c';
COMMIT;
SQL
touch "$T/go"
drv_end
grep -q "ingest position of spool spool-c is no longer at 3: another session moved it" "$T/driver.log" \
  || fail "the conflict was not logged"
grep -q "records after 3 up to it were shipped by another session; resuming after 8" "$T/driver.log" \
  || fail "the re-read position was not logged"
r=$(q "SELECT count(*) || ' ' || sum(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.posc' AND labels->>'site' = 'k'")
[ "$r" = "11 11 1" ] || fail "after the conflict: rows/sum/max '$r', want '11 11 1' (no loss, no double)"
[ "$(pos spool-c)" = "13 three" ] || fail "position after the conflict: '$(pos spool-c)', want '13 three'"
tail -1 "$T/driver.out" | grep -q "^pushed=13 shipped=8 .* conflicts=1 position=13 " \
  || fail "conflict counters: $(tail -1 "$T/driver.out"), want shipped=8 conflicts=1 position=13"

# the analysts' contract: comments, and readable by portalmetrics_reader
missing=$(q "SELECT string_agg(a.attname, ',') FROM pg_attribute a WHERE a.attrelid = 'portalmetrics.ingest_position'::regclass AND a.attnum > 0 AND col_description(a.attrelid, a.attnum) IS NULL")
[ -z "$missing" ] || fail "ingest_position columns without a comment: $missing"
q "SELECT obj_description('portalmetrics.ingest_position'::regclass, 'pg_class') IS NOT NULL" | grep -qx t || fail "ingest_position has no comment"
q "SELECT has_table_privilege('portalmetrics_reader', 'portalmetrics.ingest_position', 'SELECT') AND NOT has_table_privilege('portalmetrics_reader', 'portalmetrics.ingest_position', 'UPDATE') AND has_table_privilege('portalmetrics_writer', 'portalmetrics.ingest_position', 'INSERT, UPDATE')" \
  | grep -qx t || fail "ingest_position privileges"
echo "writer position: OK"
