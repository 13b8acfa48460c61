#!/usr/bin/env bash
# Migrations: `--migrate` (pm_writer_migrate) is idempotent and safe to run
# concurrently; the schema is the analysts' contract (tables, views,
# functions, comments on everything analysts use, portalmetrics_reader can
# read, a limited portalmetrics_writer login can write); a database whose
# schema is newer than the binary knows is refused with a clear message,
# both by --migrate and by a running writer (which keeps running).
. "$(dirname "$0")/lib.sh"
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"
pm_pg
CONN="$PM_CONNINFO"
NEWEST=$(ls "$PM_SRC"/daemon/sql/[0-9]*.sql | sed 's,.*/0*\([0-9]*\)_.*,\1,' | sort -n | tail -1)

# twice in a row
"$DRV" --migrate "$CONN" >"$T/m1.out" 2>"$T/m1.log" || fail "first --migrate failed"
a1=$(q "SELECT string_agg(version || ':' || name || ':' || applied_at, ',' ORDER BY version) FROM portalmetrics.schema_version")
"$DRV" --migrate "$CONN" >"$T/m2.out" 2>"$T/m2.log" || fail "second --migrate failed"
a2=$(q "SELECT string_agg(version || ':' || name || ':' || applied_at, ',' ORDER BY version) FROM portalmetrics.schema_version")
[ -n "$a1" ] && [ "$a1" = "$a2" ] || fail "second --migrate changed schema_version: '$a1' -> '$a2'"
[ "$(q "SELECT max(version) FROM portalmetrics.schema_version")" = "$NEWEST" ] || fail "schema_version is not $NEWEST"
grep -q "applied schema migration" "$T/m2.log" && fail "second --migrate applied something"

# three at once on an empty database: the advisory lock serialises them
q "CREATE DATABASE pm_race" >/dev/null
RACE="host=$PGHOST port=$PGPORT user=postgres dbname=pm_race"
pids=()
for i in 1 2 3; do
  "$DRV" --migrate "$RACE" >"$T/race$i.out" 2>"$T/race$i.log" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent --migrate failed: $(cat "$T"/race*.log)"; done
r=$(psql -qAtX -d pm_race -c "SELECT count(*) FROM portalmetrics.schema_version")
[ "$r" = "$NEWEST" ] || fail "concurrent --migrate: $r schema_version rows"
n=$(cat "$T"/race*.log | grep -c "applied schema migration 001_init" || true)
[ "$n" = 1 ] || fail "001_init applied $n times by concurrent runs"

# the objects
for rel in metrics:r series:r samples:p samples_v:v latest:v schema_version:r; do
  r=$(q "SELECT relkind FROM pg_class WHERE oid = to_regclass('portalmetrics.${rel%%:*}')")
  [ "$r" = "${rel##*:}" ] || fail "portalmetrics.${rel%%:*}: relkind '$r', want '${rel##*:}'"
done
for f in "ensure_partition(date)" "ensure_partitions(date,date)" "drop_partitions_before(timestamptz)"; do
  q "SELECT to_regprocedure('portalmetrics.$f') IS NOT NULL" | grep -qx t || fail "no function portalmetrics.$f"
done
r=$(q "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = 'portalmetrics.samples_v'::regclass AND a.attnum > 0")
[ "$r" = "metric,labels,ts,value" ] || fail "samples_v columns: $r"
r=$(q "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = 'portalmetrics.latest'::regclass AND a.attnum > 0")
[ "$r" = "metric,labels,ts,value" ] || fail "latest columns: $r"
# comments: every table and view analysts use, and each of their columns
missing=$(q "SELECT string_agg(x, ', ') FROM (
  SELECT c.relname AS x FROM pg_class c
   WHERE c.relnamespace = 'portalmetrics'::regnamespace AND c.relname IN ('metrics','series','samples','samples_v','latest','schema_version')
     AND obj_description(c.oid, 'pg_class') IS NULL
  UNION ALL
  SELECT c.relname || '.' || a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
   WHERE c.relnamespace = 'portalmetrics'::regnamespace AND c.relname IN ('metrics','series','samples','samples_v','latest','schema_version')
     AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL) m")
[ -z "$missing" ] || fail "no COMMENT ON: $missing"
q "SELECT obj_description('portalmetrics'::regnamespace, 'pg_namespace') IS NOT NULL" | grep -qx t || fail "schema has no comment"
# no foreign keys out of samples (Citus)
[ "$(q "SELECT count(*) FROM pg_constraint WHERE conrelid = 'portalmetrics.samples'::regclass AND contype = 'f'")" = 0 ] \
  || fail "samples has a foreign key"
# the roles
[ "$(q "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'portalmetrics_reader'")" = f ] || fail "portalmetrics_reader missing or can log in"
[ "$(q "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'portalmetrics_writer'")" = f ] || fail "portalmetrics_writer missing or can log in"
# the migration in a database whose roles exist already (pm_race did it)
[ "$(psql -qAtX -d pm_race -c "SELECT has_schema_privilege('portalmetrics_reader', 'portalmetrics', 'USAGE')")" = t ] \
  || fail "pm_race: reader cannot use the schema"

# a limited login writes through portalmetrics_writer (its partitions are
# made by the SECURITY DEFINER functions), an analyst reads
q "CREATE ROLE pm_daemon LOGIN IN ROLE portalmetrics_writer; CREATE ROLE analyst LOGIN IN ROLE portalmetrics_reader" >/dev/null \
  || fail "cannot create test roles"
OLD=$(($(date +%s) - 200 * 86400))
cat >"$T/script" <<SCRIPT
push t.mig set now 42 site=a
push t.mig set $OLD 41 site=a
wait 30
SCRIPT
"$DRV" --max-age 30 --metrics "host=$PGHOST port=$PGPORT user=pm_daemon dbname=portalmetrics" \
  <"$T/script" >"$T/w.out" 2>"$T/w.log" || fail "the limited writer role could not ship"
OLDM=$(date -u -d "@$OLD" +%Y%m)
as_analyst() { psql -qAtX -U analyst -v ON_ERROR_STOP=1 -c "$1" 2>&1; }
r=$(as_analyst "SELECT string_agg(value::text, ',' ORDER BY ts) FROM portalmetrics.samples_v WHERE metric = 't.mig'")
[ "$r" = "41,42" ] || fail "analyst reading samples_v: '$r'"
r=$(as_analyst "SELECT value FROM portalmetrics.latest WHERE metric = 't.mig'")
[ "$r" = 42 ] || fail "analyst reading latest: '$r'"
r=$(as_analyst "SELECT count(*) FROM portalmetrics.samples_$OLDM")
[ "$r" = 1 ] || fail "analyst reading a partition made later: '$r'"
r=$(as_analyst "SELECT count(*) > 0 FROM portalmetrics.metrics")
[ "$r" = t ] || fail "analyst reading metrics: '$r'"
r=$(as_analyst "INSERT INTO portalmetrics.metrics VALUES ('x.y', 'gauge', NULL, NULL)" || true)
case "$r" in *"permission denied"*) ;; *) fail "analyst could write: $r" ;; esac

# a newer schema: refused, clearly
q "INSERT INTO portalmetrics.schema_version (version, name) VALUES (999, '999_future')" >/dev/null
MSG="database schema version 999 is newer than this portalmetricsd knows ($NEWEST): upgrade portalmetricsd"
rc=0
"$DRV" --migrate "$CONN" >"$T/m3.out" 2>"$T/m3.log" || rc=$?
[ "$rc" -ne 0 ] || fail "--migrate accepted a newer schema"
grep -qF "$MSG" "$T/m3.log" || fail "--migrate on a newer schema did not say: $MSG"
# a running writer: logs it, keeps running (retries later), ships nothing
cat >"$T/script" <<SCRIPT
push t.mig set now 43 site=b
sleep 1500
SCRIPT
rc=0
"$DRV" --drain-timeout 1 "$CONN" <"$T/script" >"$T/d.out" 2>"$T/d.log" || rc=$?
[ "$rc" -eq 1 ] || fail "writer on a newer schema: exit $rc, want 1 (drain timed out, no crash)"
grep -qF "$MSG" "$T/d.log" || fail "the writer did not say: $MSG"
[ "$(grep -cF "$MSG" "$T/d.log")" = 1 ] || fail "the refusal was logged more than once"
[ "$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE labels->>'site' = 'b'")" = 0 ] \
  || fail "a writer shipped into a newer schema"
echo "writer migrations: OK"
