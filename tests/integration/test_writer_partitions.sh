#!/usr/bin/env bash
# Samples land whatever the state of the monthly partitions: a month the
# daemon did not create ahead (older than max_sample_age), and a month
# whose partition was dropped behind the writer's back (its cache is
# stale: the insert fails with 23514, the writer creates it and retries).
# Partitions exist from now - max_sample_age to two months ahead, and
# retention drops whole old months.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/writer_lib.sh"
pm_pg

parts() { q "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'portalmetrics.samples'::regclass"; }
month() { date -u -d "@$1" +%Y%m; }

NOW=$(date +%s)
OLD=$((NOW - 300 * 86400))  # ten months ago: outside max_sample_age = 30 days
OLDM=$(month $OLD)
CURM=$(month $NOW)
CONN="$PM_CONNINFO"

cat >"$T/script" <<SCRIPT
push t.part set $NOW 1 site=a
wait 30
mark ready
waitfile $T/go 30
push t.part set $OLD 2 site=old
push t.part set $NOW 3 site=a
push t.part add $NOW 4 site=b
wait 30
SCRIPT
drv_start --max-age 30 "$CONN"
drv_wait_mark ready

# what the writer created at connect: from the month of now - 30 days to
# two months ahead, nothing else
want=""
m=$(q "SELECT to_char(d, 'YYYYMM') FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC' - interval '30 days'), date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', interval '1 month') d")
for x in $m; do want="$want samples_$x"; done
[ "$(parts)" = "${want# }" ] || fail "partitions at start: got '$(parts)', want '${want# }'"
q "SELECT 1 FROM pg_class WHERE relname = 'samples_$OLDM'" | grep -q 1 && fail "samples_$OLDM exists before the test pushes into it"
# drop the current month behind the writer's back
q "DROP TABLE portalmetrics.samples_$CURM" >/dev/null || fail "cannot drop samples_$CURM"
touch "$T/go"
drv_end

r=$(q "SELECT value FROM portalmetrics.samples_v WHERE labels->>'site' = 'old' AND ts = to_timestamp($OLD)")
[ "$r" = 2 ] || fail "sample ten months back (no partition yet): got '$r', want 2"
r=$(q "SELECT string_agg(labels->>'site' || '=' || value, ',' ORDER BY labels->>'site') FROM portalmetrics.samples_v WHERE ts = to_timestamp($NOW)")
[ "$r" = "a=3,b=4" ] || fail "samples in the dropped month: got '$r', want 'a=3,b=4'"
parts | grep -qw "samples_$OLDM" || fail "no samples_$OLDM after the push: $(parts)"
parts | grep -qw "samples_$CURM" || fail "samples_$CURM not re-created: $(parts)"
grep -q "partition is missing" "$T/driver.log" || fail "the stale-cache path (23514) was not taken"
r=$(q "SELECT obj_description('portalmetrics.samples_$OLDM'::regclass, 'pg_class')")
[ -n "$r" ] || fail "partition samples_$OLDM has no comment"

# retention: 60 days drops the month ten months back, keeps the current one
cat >"$T/script" <<SCRIPT
push t.part set $NOW 5 site=a
wait 30
SCRIPT
drv_start --max-age 30 --retention 60 "$CONN"
drv_end
parts | grep -qw "samples_$OLDM" && fail "retention did not drop samples_$OLDM: $(parts)"
parts | grep -qw "samples_$CURM" || fail "retention dropped the current month: $(parts)"
grep -q "dropped 1 samples partition" "$T/driver.log" || fail "retention drop not logged"
r=$(q "SELECT value FROM portalmetrics.samples_v WHERE labels->>'site' = 'a' AND ts = to_timestamp($NOW)")
[ "$r" = 5 ] || fail "after retention: got '$r', want 5"
echo "writer partitions: OK"
