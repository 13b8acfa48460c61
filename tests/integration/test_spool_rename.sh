#!/usr/bin/env bash
# The position is keyed by the spool's identity, not the daemon's name:
# renaming daemon.id (and restarting on the same state directory) neither
# re-ships nor skips; ingest_position keeps one row for the spool, now
# under the new name. Losing the state directory makes a new spool (a new
# id, seqs from 1 again): nothing of the old one is shipped again, nothing
# of the new one is skipped.
#
# The samples: testdurable's distinguishable add samples (sample k of a
# run set: ts = base + k us, value 1) and the plugin's own record of the
# batches whose completion said durable, kept outside the spool: every
# completed sample must be in PostgreSQL with value 1, and nothing else.
# (A sum of add samples at one fixed ts compared with the sum of
# portalmetricsd.samples_emitted is checked too, but it alone is blind to
# a re-ship of everything: the health samples are in the same spool and
# are re-shipped along, so both sums double. A scratch sabotage showed
# it: see below.)
#
# How it was checked that this fails when what it guards breaks, by
# sabotage in a scratch copy (built apart, then thrown away):
#  - the writer given the daemon id as the spool id (main.c,
#    wo.spool_id): run 2 ships run 1's records again -> value 2 rows
#    (and the position checks fail);
#  - a constant spool id at creation (spool_recover.c): after the state
#    directory is lost, the new spool's seqs are below the old position
#    and are skipped -> completed samples missing (and the id check).
. "$(dirname "$0")/lib.sh"
BATCH=10
pm_pg
pm_plugins testdurable
base=$(( $(date +%s) / 86400 * 86400 - 86400 ))
base3=$((base + 3600)) # run 3's samples, after the state directory is lost
meta=$T/state/spool/spool.meta
sdir=$T/state/collectors/d

run() {  # run NAME BASE LOG: about 2 s of samples, then a drained stop
  pm_conf "$T/$1.conf" <<CONF
collectors = ( { name = "d"; plugin = "testdurable";
  settings = { base = $2; every = "5ms"; batch = $BATCH; }; } );
CONF
  pm_start "$T/$1.conf" "$3"
  sleep 2
  pm_stop "$DPID" 15
  grep -q "stopped: every sample was written to PostgreSQL" "$3" || fail "$1 did not drain: $(tail -3 "$3")"
}
spool_id() { awk '$1 == "id" { print $2 }' "$meta"; }
pos() { q "SELECT spool_id || ' ' || daemon_id FROM portalmetrics.ingest_position ORDER BY updated_at" | tr '\n' ';'; }
# check WHAT COMPLETED_FILE BASE: the rows of [BASE, BASE + 1 h) are
# exactly the completed samples, each once
check() {
  local what=$1 completed=$2 b=$3 twice missing extra
  q "SELECT (extract(epoch FROM ts) * 1000000)::bigint - $b::bigint * 1000000, value
     FROM portalmetrics.samples_v
     WHERE metric = 'portal.messages_sent' AND labels->>'collector' = 'd'
       AND ts >= to_timestamp($b) AND ts < to_timestamp($b + 3600)" | tr '|' ' ' >"$T/rows"
  twice=$(awk '$2 != 1' "$T/rows" | wc -l)
  [ "$twice" = 0 ] || fail "$what: $twice samples landed more than once: $(awk '$2 != 1' "$T/rows" | head -3 | tr '\n' ' ')"
  sort -un "$completed" | awk -v B=$BATCH '{ for (i = 0; i < B; i++) print $1 * B + i }' | LC_ALL=C sort >"$T/want"
  cut -d' ' -f1 "$T/rows" | LC_ALL=C sort >"$T/got"
  missing=$(LC_ALL=C comm -23 "$T/want" "$T/got" | wc -l)
  [ "$missing" = 0 ] || fail "$what: $missing completed samples are missing (skipped)"
  extra=$(LC_ALL=C comm -13 "$T/want" "$T/got" | wc -l)
  [ "$extra" = 0 ] || fail "$what: $extra rows were never completed"
  [ -s "$T/rows" ] || fail "$what: no samples"
  wc -l <"$T/rows"
}
sums_equal() {
  local got want
  got=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portal.messages_sent' AND labels->>'collector' = 'd'")
  want=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.samples_emitted' AND labels->>'collector' = 'd'")
  [ "$got" = "$want" ] || fail "$1: $got landed, samples_emitted says $want"
}

run alpha "$base" "$T/run1.log"
id1=$(spool_id)
[ -n "$id1" ] || fail "no spool id in $meta"
n1=$(check "run 1" "$sdir/completed" "$base")
sums_equal "run 1"
[ "$(pos)" = "$id1 test-alpha;" ] || fail "run 1: positions '$(pos)', want '$id1 test-alpha;'"

run beta "$base" "$T/run2.log"
[ "$(spool_id)" = "$id1" ] || fail "renaming the daemon changed the spool id"
n2=$(check "run 2 (renamed)" "$sdir/completed" "$base")
[ "$n2" -gt "$n1" ] || fail "run 2 added nothing"
sums_equal "run 2"
[ "$(pos)" = "$id1 test-beta;" ] || fail "run 2: positions '$(pos)', want one row: '$id1 test-beta;'"

cp "$sdir/completed" "$T/completed12"
rm -rf "$T/state"
mkdir -p "$T/state"
run beta "$base3" "$T/run3.log"
id3=$(spool_id)
[ -n "$id3" ] && [ "$id3" != "$id1" ] || fail "a lost state directory kept the spool id ($id3)"
n3=$(check "run 3 (state lost)" "$sdir/completed" "$base3")
[ "$(check "runs 1-2 after run 3" "$T/completed12" "$base")" = "$n2" ] || fail "run 3 changed the samples of runs 1-2"
sums_equal "run 3"
[ "$(pos)" = "$id1 test-beta;$id3 test-beta;" ] || fail "run 3: positions '$(pos)', want the old and the new spool's"
echo "spool_rename ($n1, $((n2 - n1)) and $n3 samples in runs 1, 2 and 3; spools $id1, $id3): OK"
