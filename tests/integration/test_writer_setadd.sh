#!/usr/bin/env bash
# The writer folds and merges: `set` overwrites and `add` sums, within one
# batch (several records of one series and ts in a single transaction) and
# across batches. Also: a host name is resolved off the loop and used as
# hostaddr, the session is named portalmetricsd/<id>, the catalog is
# written, the password file is read, and a series the database holds
# with another kind or other labels is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/writer_lib.sh"
pm_pg

val() { q "SELECT value FROM portalmetrics.samples_v WHERE metric = '$1' AND ts = to_timestamp($2)"; }

echo "unused-with-trust-auth" >"$T/password"
chmod 600 "$T/password"
# "localhost" is a name: resolved with uv_getaddrinfo and passed as
# hostaddr (the server listens on 127.0.0.1 only, so if ::1 comes first
# libpq moves on to the next address)
CONN="host=localhost port=$PGPORT user=postgres dbname=portalmetrics"
T1=$(($(date +%s) - 3600))
T2=$((T1 + 60))

cat >"$T/script" <<SCRIPT
# one batch: three sets and three adds of one series and ts
push t.gauge set $T1 1 site=a
push t.gauge set $T1 2 site=a
push t.gauge set $T1 3 site=a
push t.count add $T1 1 site=a
push t.count add $T1 2 site=a
push t.count add $T1 4 site=a
wait 30
stats
mark one-batch
waitfile $T/go 30
# across batches
push t.gauge set $T1 5 site=a
push t.count add $T1 8 site=a
wait 30
push t.gauge set $T2 7 site=a
push t.count add $T2 1 site=a
wait 30
# 100 series x 50 ts, twice, in batches of 777 that cut rounds in two
gen t.load add 100 50 now-2h 60 1
gen t.load add 100 50 now-2h 60 1
gen t.gset set 100 50 now-2h 60 1
gen t.gset set 100 50 now-2h 60 3
SCRIPT
drv_start --batch 777 --flush 100 --password-file "$T/password" --metrics "$CONN"
drv_wait_mark one-batch

grep -q "^stats pushed=6 shipped=6 refused=0 batches=1 " "$T/driver.out" \
  || fail "the first six records did not go in one batch: $(grep ^stats "$T/driver.out")"
[ "$(val t.gauge $T1)" = 3 ] || fail "set within one batch: got '$(val t.gauge $T1)', want 3 (the last)"
[ "$(val t.count $T1)" = 7 ] || fail "add within one batch: got '$(val t.count $T1)', want 7 (1+2+4)"
# the session: named, and over TCP to the resolved address
app=$(q "SELECT application_name || ' ' || host(client_addr) FROM pg_stat_activity WHERE application_name LIKE 'portalmetricsd/%'")
[ "$app" = "portalmetricsd/driver 127.0.0.1" ] || fail "session: got '$app', want 'portalmetricsd/driver 127.0.0.1'"
touch "$T/go"
drv_end

[ "$(val t.gauge $T1)" = 5 ] || fail "set across batches: got '$(val t.gauge $T1)', want 5"
[ "$(val t.count $T1)" = 15 ] || fail "add across batches: got '$(val t.count $T1)', want 15 (7+8)"
[ "$(val t.gauge $T2)" = 7 ] || fail "set at another ts: got '$(val t.gauge $T2)', want 7"
[ "$(val t.count $T2)" = 1 ] || fail "add at another ts: got '$(val t.count $T2)', want 1"
r=$(q "SELECT count(*) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.load'")
[ "$r" = "5000 2 2" ] || fail "add over many batches: got '$r' (rows min max), want '5000 2 2'"
r=$(q "SELECT count(*) || ' ' || min(value) || ' ' || max(value) FROM portalmetrics.samples_v WHERE metric = 't.gset'")
[ "$r" = "5000 3 3" ] || fail "set over many batches: got '$r', want '5000 3 3'"
r=$(q "SELECT string_agg(metric || ':' || kind, ',' ORDER BY metric) FROM portalmetrics.series WHERE labels = '{\"site\": \"a\", \"collector\": \"driver\"}'")
[ "$r" = "t.count:add,t.gauge:set" ] || fail "series rows: got '$r'"
r=$(q "SELECT kind || ' ' || unit FROM portalmetrics.metrics WHERE metric = 'portal.patients_enrolled'")
[ -n "$r" ] && [ "${r%% *}" = gauge ] || fail "catalog: portal.patients_enrolled is '$r'"
r=$(q "SELECT count(DISTINCT kind) FROM portalmetrics.metrics")
[ "$r" = 2 ] || fail "catalog: want both gauge and count kinds, got $r kinds"
tail -1 "$T/driver.out" | grep -q "^pushed=20010 shipped=20010 refused=0 " \
  || fail "driver counters: $(tail -1 "$T/driver.out")"

# a series whose stored row differs from ours (another kind, or other
# labels under the same id: a collision) is refused and counted, and its
# samples are not written; the others in the same batch are
q "UPDATE portalmetrics.series SET kind = 'add' WHERE metric = 't.gauge'" >/dev/null
q "UPDATE portalmetrics.series SET labels = '{\"site\": \"zzz\"}' WHERE metric = 't.count'" >/dev/null
cat >"$T/script" <<SCRIPT
push t.gauge set $T1 100 site=a
push t.gauge set $T2 100 site=a
push t.count add $T1 100 site=a
push t.fine set $T1 100 site=a
wait 30
SCRIPT
"$DRV" "$CONN" <"$T/script" >"$T/refuse.out" 2>"$T/refuse.log" || fail "driver exited $?"
tail -1 "$T/refuse.out" | grep -q "^pushed=4 shipped=1 refused=3 " \
  || fail "refusing mismatched series: $(tail -1 "$T/refuse.out"), want pushed=4 shipped=1 refused=3"
grep -q "refusing series .*metric t.gauge" "$T/refuse.log" || fail "kind conflict not logged"
grep -q "refusing series .*metric t.count" "$T/refuse.log" || fail "id collision not logged"
[ "$(grep -c "refusing series" "$T/refuse.log")" = 2 ] || fail "each refused series should be logged once"
[ "$(q "SELECT max(value) FROM portalmetrics.samples WHERE series_id IN (SELECT id FROM portalmetrics.series WHERE metric IN ('t.gauge', 't.count'))")" = 15 ] \
  || fail "samples of a refused series were written"
[ "$(q "SELECT value FROM portalmetrics.samples_v WHERE metric = 't.fine'")" = 100 ] || fail "the good series of the batch was not written"
echo "writer set/add: OK"
