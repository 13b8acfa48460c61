# A private PostgreSQL cluster for the demo and the tests: initdb into a
# folder, a private port and a socket in that folder, trust auth on the
# socket only. PostgreSQL refuses to run as root, so as root the server
# runs as the `postgres` user (created by Debian's postgresql package).
#
#   . scripts/lib/pg.sh
#   pm_pg_start DIR [PORT]   # exports PGHOST PGPORT PGUSER PGDATABASE PM_CONNINFO
#   pm_pg_stop DIR
#   pm_pg_restart DIR

pm_pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do :; done   # the newest installed
  [ -x "$d/pg_ctl" ] || { echo "pg.sh: no PostgreSQL server found (apt-get install postgresql)" >&2; return 1; }
  echo "$d"
}

pm_pg_as() {  # run a command as the cluster's owner
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pm_pg_free_port() {
  local p
  while :; do
    # below the ephemeral range (32768-60999), where outgoing connections
    # take their local ports
    p=$(( 10000 + RANDOM % 20000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

pm_pg_start() {
  local dir=$1 port=${2:-} bin
  bin=$(pm_pg_bindir) || return 1
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pm_pg_as "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  [ -n "$port" ] || port=$(cat "$dir/port" 2>/dev/null || pm_pg_free_port)
  pm_pg_as sh -c "echo $port > '$dir/port'"
  pm_pg_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=portalmetrics
  export PM_CONNINFO="host=$dir port=$port user=postgres dbname=portalmetrics"
  psql -qAt -d postgres -c "SELECT 1 FROM pg_database WHERE datname='portalmetrics'" | grep -q 1 \
    || psql -q -d postgres -c "CREATE DATABASE portalmetrics" >/dev/null
}

pm_pg_stop() {
  local dir=$1 bin
  bin=$(pm_pg_bindir) || return 1
  [ -f "$dir/data/postmaster.pid" ] && pm_pg_as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  return 0
}

pm_pg_restart() {
  pm_pg_stop "$1" && pm_pg_start "$1"
}
