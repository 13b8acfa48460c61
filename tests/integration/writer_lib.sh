# Shared by the writer's tests (tests/integration/test_writer_*.sh): the
# writer_driver program, started in the background on $T/script, with
# helpers to wait for its marks and its exit. Source after lib.sh.
DRV=${WRITER_DRIVER:-$PM_BUILD/tests/writer_driver}
[ -x "$DRV" ] || fail "no writer_driver at $DRV"

drv_start() {
  "$DRV" "$@" <"$T/script" >"$T/driver.out" 2>"$T/driver.log" &
  DRV_PID=$!
  DAEMON_PIDS+=("$DRV_PID")
}
drv_wait_mark() {
  local i
  for ((i = 0; i < 300; i++)); do
    grep -qx "mark $1" "$T/driver.out" 2>/dev/null && return 0
    kill -0 "$DRV_PID" 2>/dev/null || fail "driver exited before mark $1"
    sleep 0.1
  done
  fail "driver never reached mark $1"
}
drv_end() {
  local rc=0
  wait "$DRV_PID" || rc=$?
  [ "$rc" -eq 0 ] || fail "driver exited $rc"
}
