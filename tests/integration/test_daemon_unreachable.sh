#!/usr/bin/env bash
# An unreachable database: the daemon starts, keeps collecting, says what
# it cannot reach (host named, no password), and ships once it can;
# --migrate exits 1 with the reason, and 0 against a real database.
. "$(dirname "$0")/lib.sh"
pm_plugins testpoll
DB_EXTRA='password_file = "'$T'/pw";'
echo "s3cret-pw" > "$T/pw"; chmod 600 "$T/pw"
PM_CONNINFO="host=no-such-host.invalid dbname=x user=u" pm_conf "$T/u.conf" <<'CONF'
collectors = ( { name = "t"; plugin = "testpoll"; interval = "200ms"; } );
CONF
pm_start "$T/u.conf"
pm_wait_log "no-such-host.invalid" 15 || fail "the unreachable host is not named"
sleep 1
kill -0 "$DPID" || fail "daemon died without a database"
grep -q "s3cret" "$T/daemon.log" && fail "password in the log"
pm_stop "$DPID" 15
rc=0; "$PMD" -c "$T/u.conf" --migrate >"$T/migrate.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--migrate against no database: exit $rc, want 1"
grep -q "no-such-host.invalid" "$T/migrate.log" || fail "--migrate does not say what it cannot reach"

pm_pg
pm_conf "$T/m.conf" <<'CONF'
collectors = ( );
CONF
"$PMD" -c "$T/m.conf" --migrate >"$T/migrate.log" 2>&1 || fail "--migrate failed: $(cat "$T/migrate.log")"
[ "$(q "SELECT max(version) FROM portalmetrics.schema_version")" -ge 1 ] || fail "--migrate made no schema"
"$PMD" -c "$T/m.conf" --migrate >"$T/migrate.log" 2>&1 || fail "second --migrate failed"
echo "unreachable: OK"
