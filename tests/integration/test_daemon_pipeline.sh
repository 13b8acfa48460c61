#!/usr/bin/env bash
# Samples from poll and listener collectors land in PostgreSQL once each:
# `add` sums, `set` overwrites, health counts agree with what landed; a
# second daemon on the same state directory is refused; --once --stdout
# prints the same samples as JSON Lines; SIGTERM exits 0 within 5 s.
. "$(dirname "$0")/lib.sh"
pm_pg
pm_plugins testpoll testlisten
day=$(( $(date +%s) / 86400 * 86400 ))

pm_conf "$T/p.conf" <<CONF
collectors = (
  { name = "adds"; plugin = "testpoll"; interval = "300ms";
    labels = { clinic = "north"; };
    settings = { kind = "add"; value = 1.0; count = 3; ts = $day; }; },
  { name = "sets"; plugin = "testpoll"; interval = "300ms";
    settings = { metric = "test.gauge"; kind = "set"; value = 7.5; ts = $day; }; },
  { name = "events"; plugin = "testlisten"; settings = { every = "50ms"; }; },
  { name = "keyed"; plugin = "testpoll"; interval = "200ms";
    settings = { kind = "add"; ts = $day; key = "MSH10-0001"; }; }
);
CONF

pm_start "$T/p.conf"
pm_wait_sql "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE metric = 'portal.secure_messages_sent'" 30 \
  || fail "listener samples did not land"
pm_wait_sql "SELECT coalesce(sum(value), 0) >= 30 FROM portalmetrics.samples_v WHERE labels->>'collector' = 'adds' AND metric = 'portal.appointments_requested'" 30 \
  || fail "poll samples did not land"

# A second daemon on the same state directory must refuse to start.
rc=0; "$PMD" -c "$T/p.conf" >"$T/second.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "second daemon on one state dir: exit $rc, want 1"
grep -q "in use by another portalmetricsd" "$T/second.log" || fail "no lock message"

pm_stop "$DPID" 5

# Every sample emitted landed once: the value sums equal the counts the
# daemon reported for itself (health is flushed at stop).
emitted() { q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.samples_emitted' AND labels->>'collector' = '$1'"; }
adds=$(q "SELECT sum(value)::bigint FROM portalmetrics.samples_v WHERE labels->>'collector' = 'adds' AND metric = 'portal.appointments_requested'")
[ "$adds" = "$(emitted adds)" ] || fail "adds: $adds in samples, $(emitted adds) emitted"
rows=$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE labels->>'collector' = 'adds' AND metric = 'portal.appointments_requested'")
[ "$rows" = 1 ] || fail "adds: $rows rows for one series and ts, want 1"
[ "$(q "SELECT labels->>'clinic' FROM portalmetrics.samples_v WHERE labels->>'collector' = 'adds' LIMIT 1")" = north ] \
  || fail "collector labels missing"
ev=$(q "SELECT sum(value)::bigint FROM portalmetrics.samples_v WHERE labels->>'collector' = 'events' AND metric = 'portal.secure_messages_sent'")
[ "$ev" = "$(emitted events)" ] || fail "events: $ev in samples, $(emitted events) emitted"
# The same idempotency key on every run: counted once.
keyed=$(q "SELECT sum(value)::bigint FROM portalmetrics.samples_v WHERE labels->>'collector' = 'keyed' AND metric = 'portal.appointments_requested'")
[ "$keyed" = 1 ] || fail "keyed: an emit repeated with one idempotency key counted $keyed times"
dups=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.emits_duplicate' AND labels->>'collector' = 'keyed'")
[ "$dups" -ge 2 ] || fail "keyed: $dups duplicates reported, want the repeats counted"
sets=$(q "SELECT count(*) || ' ' || max(value) FROM portalmetrics.samples_v WHERE labels->>'collector' = 'sets' AND metric = 'test.gauge'")
[ "$sets" = "1 7.5" ] || fail "sets: got '$sets', want one row of 7.5"
[ "$(q "SELECT kind FROM portalmetrics.series WHERE metric = 'test.gauge'")" = set ] || fail "series kind"
[ "$(q "SELECT kind FROM portalmetrics.metrics WHERE metric = 'test.gauge'")" = gauge ] || fail "plugin metric not in catalog"
q "SELECT 1 FROM portalmetrics.latest WHERE metric = 'portalmetricsd.collect_last_success' LIMIT 1" | grep -q 1 \
  || fail "no health metrics"

# The daemon's own health: what it shipped, that it was connected.
shipped=$(q "SELECT coalesce(sum(value),0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.shipped' AND labels->>'collector' = 'portalmetricsd'")
[ "$shipped" -gt 0 ] || fail "portalmetricsd.shipped not reported"
[ "$(q "SELECT max(value) FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.db_connected'")" = 1 ] || fail "db_connected not reported"
for m in spool_bytes spool_records spool_oldest_age_seconds; do
  [ "$(q "SELECT count(*) > 0 FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.$m'")" = t ] || fail "$m not reported"
done

# --once --stdout: JSON Lines, no database; the listener is skipped.
"$PMD" -c "$T/p.conf" --once --stdout >"$T/once.out" 2>"$T/once.log" || fail "--once failed"
grep -q '"metric":"portal.appointments_requested"' "$T/once.out" || fail "--once: no sample"
grep -q '"kind":"add"' "$T/once.out" || fail "--once: no kind"
[ "$(grep -c '"collector":"adds"' "$T/once.out")" = 3 ] || fail "--once: want 3 samples of adds"
grep -q "listener collector skipped" "$T/once.log" || fail "--once: no note for the listener"
echo "pipeline: OK"
