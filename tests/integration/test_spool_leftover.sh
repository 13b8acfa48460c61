#!/usr/bin/env bash
# Samples accepted while the database is down and not drained at SIGTERM
# (database.drain_timeout) stay in the spool: the stop says so and exits
# 0, and the next start ships them first, each exactly once, even with no
# collector configured any more.
#
# How it was checked that this fails when what it guards breaks:
#  - by reasoning: leftovers dropped at stop (or a spool recreated at
#    start) leave completed samples out of PostgreSQL -> "did not land";
#    a start that ships from seq 1 again after a partial ship, or a drain
#    that does not move the position, ships twice -> value 2 rows;
#  - by sabotage in a scratch copy (built apart, then thrown away):
#    recovery ignoring the segments it finds ("0 of 4000 landed"), and the
#    stop acking everything when the drain times out (the older segments
#    are deleted: samples missing), each made this test fail. (With one
#    segment the second went unseen: the newest segment is never deleted
#    and the position is in PostgreSQL; hence the small segments.)
. "$(dirname "$0")/lib.sh"
BATCH=10
BATCHES=400
pm_pg
pm_pg_stop "$T/pg"
pm_plugins testdurable
base=$(( $(date +%s) / 86400 * 86400 - 86400 ))
sdir=$T/state/collectors/d
DB_EXTRA='drain_timeout = "1s";'

# Run 1, the database down: 400 batches of 10 distinguishable samples, in
# several small segments.
pm_conf "$T/l.conf" <<CONF
spool = { segment_size = "16KiB"; max_size = "16MiB"; };
collectors = ( { name = "d"; plugin = "testdurable";
  settings = { base = $base; every = "2ms"; batch = $BATCH; batches = $BATCHES; }; } );
CONF
pm_start "$T/l.conf" "$T/run1.log"
for _ in $(seq 300); do
  [ "$(sort -un "$sdir/completed" 2>/dev/null | wc -l)" -ge $BATCHES ] && break
  sleep 0.1
done
[ "$(sort -un "$sdir/completed" | wc -l)" = $BATCHES ] \
  || fail "run 1: $(sort -un "$sdir/completed" | wc -l) of $BATCHES batches completed"
t0=$(date +%s%N)
pm_stop "$DPID" 15
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -lt 6000 ] || fail "run 1 took ${ms} ms to stop with drain_timeout 1s"
left=$(sed -n 's/.*stopped with \([0-9]*\) samples not yet written.*they stay in the spool.*/\1/p' "$T/run1.log")
[ -n "$left" ] || fail "run 1: the stop did not say what stays in the spool"
[ "$left" -ge $((BATCHES * BATCH)) ] || fail "run 1: $left samples left, want at least $((BATCHES * BATCH))"
bytes=$(cat "$T"/state/spool/seg-*.log | wc -c)
[ "$bytes" -gt $((BATCHES * BATCH * 24)) ] || fail "run 1: the spool holds only $bytes bytes"
nseg=$(ls "$T"/state/spool/seg-*.log | wc -l)
[ "$nseg" -ge 3 ] || fail "run 1: only $nseg segments"

# Run 2, the database up, no collectors: the leftover is shipped.
pm_pg_start "$T/pg" >/dev/null
pm_conf "$T/l.conf" <<'CONF'
spool = { segment_size = "16KiB"; max_size = "16MiB"; };
collectors = ( );
CONF
pm_start "$T/l.conf" "$T/run2.log"
pm_wait_sql "SELECT count(*) >= $((BATCHES * BATCH)) FROM portalmetrics.samples_v WHERE metric = 'portal.messages_sent'" 30 \
  || fail "run 2: $(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 'portal.messages_sent'") of $((BATCHES * BATCH)) samples landed"
grep -q "spool .*: [0-9]* segment(s), $left record(s) recovered" "$T/run2.log" \
  || fail "run 2 did not recover the $left records: $(grep 'recovered' "$T/run2.log")"
sleep 1
pm_stop "$DPID" 15
grep -q "stopped: every sample was written to PostgreSQL" "$T/run2.log" || fail "run 2 did not drain"

q "SELECT (extract(epoch FROM ts) * 1000000)::bigint - $base::bigint * 1000000, value
   FROM portalmetrics.samples_v
   WHERE metric = 'portal.messages_sent' AND labels->>'collector' = 'd'" | tr '|' ' ' >"$T/rows"
twice=$(awk '$2 != 1' "$T/rows" | wc -l)
[ "$twice" = 0 ] || fail "$twice samples landed more than once: $(awk '$2 != 1' "$T/rows" | head -3)"
sort -un "$sdir/completed" | awk -v B=$BATCH '{ for (i = 0; i < B; i++) print $1 * B + i }' | LC_ALL=C sort >"$T/want"
cut -d' ' -f1 "$T/rows" | LC_ALL=C sort >"$T/got"
missing=$(LC_ALL=C comm -23 "$T/want" "$T/got" | wc -l)
[ "$missing" = 0 ] || fail "$missing completed samples did not land"
extra=$(LC_ALL=C comm -13 "$T/want" "$T/got" | wc -l)
[ "$extra" = 0 ] || fail "$extra rows were never completed"
emitted=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.samples_emitted' AND labels->>'collector' = 'd'")
[ "$emitted" = $((BATCHES * BATCH)) ] || fail "samples_emitted of run 1: $emitted, want $((BATCHES * BATCH))"
echo "spool_leftover ($left records in $nseg segments left at stop in ${ms} ms, $(wc -l <"$T/rows") shipped at the next start): OK"
