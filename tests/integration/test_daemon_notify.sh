#!/usr/bin/env bash
# systemd notification protocol: READY=1 once collectors run (with the
# database still down), WATCHDOG=1 while the loop turns, RELOADING=1 and
# READY=1 around a SIGHUP, STOPPING=1 at SIGTERM. A listener on a private
# NOTIFY_SOCKET stands in for systemd.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { echo "no python3: skipped"; exit 77; }
pm_plugins testpoll
sock=$T/notify.sock
python3 - "$sock" >"$T/notify.out" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", " "), flush=True)
        if "STOPPING=1" in msg:
            break
except socket.timeout:
    pass
PY
lpid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
# No database at all: READY must not wait for it.
DB_EXTRA='drain_timeout = "1s";' PM_CONNINFO="host=127.0.0.1 port=1 dbname=x" pm_conf "$T/n.conf" <<'CONF'
collectors = ( { name = "t"; plugin = "testpoll"; interval = "200ms"; } );
CONF
NOTIFY_SOCKET=$sock WATCHDOG_USEC=400000 "$PMD" -c "$T/n.conf" >>"$T/daemon.log" 2>&1 &
DPID=$!; DAEMON_PIDS+=("$DPID")
pm_wait_log "READY=1" 10 "$T/notify.out" || fail "no READY=1"
sleep 1.5
[ "$(grep -c "WATCHDOG=1" "$T/notify.out")" -ge 3 ] || fail "WATCHDOG=1 not sent every WATCHDOG_USEC/2"
kill -HUP "$DPID"
pm_wait_log "RELOADING=1" 10 "$T/notify.out" || fail "no RELOADING=1 on SIGHUP"
[ "$(grep -c "READY=1" "$T/notify.out")" -ge 2 ] || sleep 1
[ "$(grep -c "READY=1" "$T/notify.out")" -ge 2 ] || fail "no READY=1 after the reload"
pm_stop "$DPID" 5
wait "$lpid" || true
grep -q "STOPPING=1" "$T/notify.out" || fail "no STOPPING=1"
grep -q "database unreachable" "$T/daemon.log" || fail "unreachable database not logged"
echo "notify: OK"
