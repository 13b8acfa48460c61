# Shared by the daemon's integration tests: a temp folder, a private
# PostgreSQL, daemons started in the background, and polling helpers.
# Source it first thing; it sets -euo pipefail and cleans up on exit.
set -euo pipefail

PM_SRC=${PM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PM_BUILD=${PM_BUILD:-$PM_SRC/build}
PMD=$PM_BUILD/portalmetricsd
. "$PM_SRC/scripts/lib/pg.sh"

T=$(mktemp -d /tmp/pmtest.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/plugins" "$T/state"
DAEMON_PIDS=()

pm_cleanup() {
  local rc=$? p
  for p in "${DAEMON_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  pm_pg_stop "$T/pg" || true
  if [ "$rc" -ne 0 ] || [ -n "${KEEP:-}" ]; then
    echo "test folder kept: $T" >&2
  else
    rm -rf "$T"
  fi
}
trap pm_cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for f in "$T"/*.log; do
    [ -f "$f" ] && { echo "--- $f (last 40 lines)" >&2; tail -40 "$f" >&2; }
  done
  exit 1
}

# Copy plugins from the build tree into the test's plugin folder.
pm_plugins() {
  local p
  for p in "$@"; do
    if [ -f "$PM_BUILD/plugins/$p.so" ]; then cp "$PM_BUILD/plugins/$p.so" "$T/plugins/"
    else cp "$PM_BUILD/test-plugins/$p.so" "$T/plugins/"; fi
  done
}

pm_pg() { pm_pg_start "$T/pg" >/dev/null; }

# pm_conf FILE: write FILE from the daemon and database header followed by
# stdin (the collectors). Extra database settings in $DB_EXTRA.
pm_conf() {
  local file=$1
  {
    cat <<CONF
daemon = {
  id = "test-$(basename "$file" .conf)";
  state_dir = "$T/state";
  plugin_dir = "$T/plugins";
  timezone = "UTC";
  log_level = "${LOG_LEVEL:-info}";
};
database = {
  conninfo = "${PM_CONNINFO:-host=/nonexistent dbname=x}";
  flush_interval = "200ms";
  connect_timeout = "2s";
  ${DB_EXTRA:-}
};
CONF
    cat
  } > "$file"
}

# pm_start CONF [LOG]: start a daemon in the background; its pid in $DPID.
pm_start() {
  local conf=$1 log=${2:-$T/daemon.log}
  "$PMD" -c "$conf" >>"$log" 2>&1 &
  DPID=$!
  DAEMON_PIDS+=("$DPID")
}

# q SQL: one query, unaligned, no headers.
q() { psql -qAtX -v ON_ERROR_STOP=1 -c "$1" 2>/dev/null; }

# pm_wait_sql SQL TIMEOUT_S: until the query prints "t".
pm_wait_sql() {
  local sql=$1 timeout=${2:-30} i
  for ((i = 0; i < timeout * 10; i++)); do
    [ "$(q "$sql" || true)" = t ] && return 0
    sleep 0.1
  done
  return 1
}

# pm_wait_log PATTERN TIMEOUT_S [LOG]
pm_wait_log() {
  local pat=$1 timeout=${2:-30} log=${3:-$T/daemon.log} i
  for ((i = 0; i < timeout * 10; i++)); do
    grep -q -- "$pat" "$log" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# pm_stop PID TIMEOUT_S: SIGTERM, wait; fails unless it exits 0 in time.
pm_stop() {
  local pid=$1 timeout=${2:-5} i rc
  kill -TERM "$pid"
  for ((i = 0; i < timeout * 10; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0; wait "$pid" || rc=$?
      [ "$rc" -eq 0 ] || fail "daemon exited $rc on SIGTERM"
      return 0
    fi
    sleep 0.1
  done
  fail "daemon still running ${timeout}s after SIGTERM"
}
