#!/usr/bin/env bash
# The targets schema (daemon/sql/003_targets.sql), tested in SQL: the
# functions and the view are the single source of truth of target status,
# so their cases are checked here directly, with data inserted by hand.
#
# The daemon applies the schema (--migrate); lib.sql (assertion helpers)
# is loaded on top, and the result is the template of one fresh database
# per tests/integration/targets_sql/NN_*.sql file. Each file runs in one
# transaction (so now() stands still while it builds data relative to
# today and checks it) with ON_ERROR_STOP: the first failed assertion
# ends it with "WHAT: expected X, got Y" and its line.
. "$(dirname "$0")/lib.sh"
command -v psql >/dev/null || { echo "no psql: skipped" >&2; exit 77; }
DIR=$PM_SRC/tests/integration/targets_sql
pm_pg

pm_conf "$T/m.conf" <<'CONF'
collectors = ( );
CONF
"$PMD" -c "$T/m.conf" --migrate >"$T/migrate.log" 2>&1 || fail "--migrate failed: $(cat "$T/migrate.log")"
grep -q "applied schema migration 003_targets" "$T/migrate.log" || fail "--migrate did not apply 003_targets"
# Twice is a no-op.
"$PMD" -c "$T/m.conf" --migrate >"$T/migrate2.log" 2>&1 || fail "second --migrate failed: $(cat "$T/migrate2.log")"
grep -q "applied schema migration" "$T/migrate2.log" && fail "second --migrate applied something"

psql -X -q -v ON_ERROR_STOP=1 -f "$DIR/lib.sql" >"$T/lib.log" 2>&1 || fail "lib.sql: $(cat "$T/lib.log")"

n=0
for f in "$DIR"/[0-9]*.sql; do
  name=$(basename "$f" .sql)
  db=t_$name
  psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\" TEMPLATE portalmetrics" >/dev/null \
    || fail "cannot create database $db"
  if ! psql -X -q -d "$db" -v ON_ERROR_STOP=1 --single-transaction -f "$f" >"$T/$name.out" 2>&1; then
    err=$(grep -m1 -A2 "ERROR" "$T/$name.out" || tail -5 "$T/$name.out")
    fail "targets_sql/$name.sql: $err"
  fi
  echo "  $name: OK"
  n=$((n + 1))
done
[ "$n" -ge 7 ] || fail "only $n SQL test files ran"
echo "targets SQL: OK ($n files)"
