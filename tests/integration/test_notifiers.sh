#!/usr/bin/env bash
# The notifiers, one send at a time through notify_driver (pm_core's
# notifier.h; no PostgreSQL):
#   log      the warning line, the callback on a later loop turn;
#   exec     the JSON on stdin byte for byte, an environment of exactly
#            PATH, LANG and PM_*, stdout to /dev/null and stderr
#            inherited; exit status 3, a signal, a nonexistent program; at
#            the timeout the whole process group is killed (the child and
#            a grandchild); a child that never reads a 1 MiB stdin stalls
#            nothing; cancel_all and close with sends in flight (every
#            callback once, close's last); several sends at once;
#   webhook  against webhook_server.js (node, 127.0.0.1, a free port): 200
#            delivered with the body byte for byte and the headers
#            (Content-Type, User-Agent, X-Portalmetrics-Event, a configured
#            one, Authorization: Bearer from token_file); 500, a redirect
#            (not followed), a reset mid-response, a hanging server (timed
#            out within the timeout plus a margin), connection refused, a
#            missing or empty token file (naming it, no request made),
#            cancel_all and close in flight, concurrent sends, a 1 MiB
#            body. No error or log
#            line (debug included) shows the URL's path or query or the
#            token.
# The webhook cases need node (scripts/deps installs it).
. "$(dirname "$0")/lib.sh"

DRV=${NOTIFY_DRIVER:-$PM_BUILD/tests/notify_driver}
[ -x "$DRV" ] || fail "no notify_driver at $DRV"

now_ms() { date +%s%3N; }
# curl would honour these
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# drive NAME ARGS...: the driver's stdout in $T/NAME.out (and $OUT), its
# stderr in $T/NAME.log, its run time in $ELAPSED (ms); fails unless it
# exits 0 (under ASan: no leak either).
drive() {
  local name=$1 t0 rc=0
  shift
  t0=$(now_ms)
  "$DRV" "$@" >"$T/$name.out" 2>"$T/$name.log" || rc=$?
  ELAPSED=$(($(now_ms) - t0))
  OUT=$(cat "$T/$name.out")
  [ "$rc" -eq 0 ] || fail "$name: notify_driver exited $rc: $OUT"
}
# expect NAME LINE: the driver printed exactly this line
expect() {
  grep -qxF -- "$2" "$T/$1.out" || fail "$1: expected \"$2\", got: $(cat "$T/$1.out")"
}
# expect_re NAME REGEX
expect_re() {
  grep -qE -- "$2" "$T/$1.out" || fail "$1: expected /$2/, got: $(cat "$T/$1.out")"
}
# gone PID: not running (a zombie waiting for a reaper counts as gone)
gone() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ' || true)
  [ -z "$st" ] || [[ $st == Z* ]]
}
wait_gone() {
  local i
  for ((i = 0; i < 50; i++)); do
    gone "$1" && return 0
    sleep 0.1
  done
  return 1
}

# A body with what a JSON encoder may produce: escapes, UTF-8, no newline.
printf '{"version":1,"event_id":"12","target":"enrollment","title":"Portal enrollment at \\"North\\" Clinic \xc3\xa9\xe2\x82\xac","message":"a\\nb\\tc \\u0001","actual":0.31}' >"$T/event.json"
# 1 MiB, more than a pipe or socket buffer holds
{
  printf '{"pad":"'
  head -c 1048576 /dev/zero | tr '\0' 'x'
  printf '"}'
} >"$T/big.json"

# ------------------------------------------------------------------ log
drive log -v log
expect log "status=0 error="
grep -qF "warning: alert: target enrollment: pending -> firing (event 12): enrollment is behind" "$T/log.log" ||
  fail "log: no warning line: $(cat "$T/log.log")"
echo "ok: log"

# ----------------------------------------------------------------- exec
mkdir -p "$T/x"
cat >"$T/x/copy.sh" <<'SH'
#!/bin/sh
# copy.sh DIR: stdin, the environment as exec'd, fds 1 and 2, arguments
cat >"$1/stdin"
tr '\0' '\n' </proc/$$/environ >"$1/env"
fd1=$(readlink /proc/$$/fd/1)
fd2=$(readlink /proc/$$/fd/2)
echo "$fd1" >"$1/fd1"
echo "$fd2" >"$1/fd2"
printf '%s\n' "$@" >"$1/args"
echo "to stdout"
echo "copy.sh to stderr" >&2
SH
cat >"$T/x/sleeper.sh" <<'SH'
#!/bin/sh
# sleeper.sh DIR: a grandchild and itself, both sleeping
sleep 1000 &
echo $! >"$1/child.pid"
echo $$ >"$1/parent.pid"
wait
SH
cat >"$T/x/status.sh" <<'SH'
#!/bin/sh
exit "$1"
SH
cat >"$T/x/signal.sh" <<'SH'
#!/bin/sh
kill -TERM $$
sleep 10
SH
cat >"$T/x/noread.sh" <<'SH'
#!/bin/sh
# never reads its stdin
sleep "$1"
exit 0
SH
chmod 755 "$T"/x/*.sh

drive exec_copy -v --json-file "$T/event.json" exec -- "$T/x/copy.sh" "$T/x" "two words"
expect exec_copy "status=0 error="
cmp -s "$T/event.json" "$T/x/stdin" || fail "exec: stdin differs from the JSON body"
sort "$T/x/env" >"$T/x/env.sorted"
sort >"$T/x/env.want" <<'ENV'
PATH=/usr/local/bin:/usr/bin:/bin
LANG=C.UTF-8
PM_EVENT_ID=12
PM_TARGET=enrollment
PM_TITLE=Portal enrollment
PM_KIND=state
PM_FROM=pending
PM_TO=firing
PM_SEVERITY=warning
PM_STATUS=behind
PM_ACTUAL=0.31
PM_EXPECTED=0.372
PM_MESSAGE=enrollment is behind
PM_DAEMON=driver-1
ENV
diff "$T/x/env.want" "$T/x/env.sorted" >&2 || fail "exec: environment differs (above: - wanted, + got)"
[ "$(cat "$T/x/fd1")" = /dev/null ] || fail "exec: stdout is $(cat "$T/x/fd1"), not /dev/null"
[ "$(cat "$T/x/fd2")" = "$T/exec_copy.log" ] || fail "exec: stderr is $(cat "$T/x/fd2"), not inherited"
grep -qF "copy.sh to stderr" "$T/exec_copy.log" || fail "exec: the child's stderr did not reach ours"
grep -qF "to stdout" "$T/exec_copy.out" && fail "exec: the child's stdout reached ours"
[ "$(cat "$T/x/args")" = "$T/x
two words" ] || fail "exec: arguments differ: $(cat "$T/x/args")"
echo "ok: exec delivered, stdin and environment exact"

drive exec_status exec -- "$T/x/status.sh" 3
expect exec_status "status=-15 error=exited with status 3"
drive exec_signal exec -- "$T/x/signal.sh"
expect exec_signal "status=-15 error=killed by signal 15"
drive exec_missing exec -- "$T/x/no-such-program" arg
expect exec_missing "status=-14 error=cannot run $T/x/no-such-program: No such file or directory"
echo "ok: exec exit status, signal, nonexistent program"

rm -f "$T/x/child.pid" "$T/x/parent.pid"
drive exec_timeout --timeout-ms 1000 exec -- "$T/x/sleeper.sh" "$T/x"
expect exec_timeout "status=-13 error=timed out after 1 s"
[ "$ELAPSED" -ge 900 ] && [ "$ELAPSED" -lt 4000 ] || fail "exec timeout: the driver took $ELAPSED ms (timeout 1000)"
for f in parent child; do
  [ -s "$T/x/$f.pid" ] || fail "exec timeout: sleeper.sh wrote no $f.pid"
  p=$(cat "$T/x/$f.pid")
  DAEMON_PIDS+=("$p")
  wait_gone "$p" || fail "exec timeout: the $f ($p) still runs: $(ps -o pid,pgid,stat,args -p "$p")"
done
echo "ok: exec timeout killed the process group in $ELAPSED ms"

drive exec_noread --json-file "$T/big.json" exec -- "$T/x/noread.sh" 0
expect exec_noread "status=0 error="
drive exec_noread_slow --json-file "$T/big.json" --timeout-ms 10000 exec -- "$T/x/noread.sh" 1
expect exec_noread_slow "status=0 error="
[ "$ELAPSED" -lt 5000 ] || fail "exec: a child not reading stdin took $ELAPSED ms"
echo "ok: exec child not reading a 1 MiB stdin"

rm -f "$T/x/child.pid" "$T/x/parent.pid"
drive exec_cancel --cancel-ms 500 --timeout-ms 30000 exec -- "$T/x/sleeper.sh" "$T/x"
expect exec_cancel "status=-10 error=cancelled"
[ "$ELAPSED" -lt 4000 ] || fail "exec cancel: the driver took $ELAPSED ms"
for f in parent child; do
  p=$(cat "$T/x/$f.pid")
  DAEMON_PIDS+=("$p")
  wait_gone "$p" || fail "exec cancel: the $f ($p) still runs"
done
drive exec_many --count 4 exec -- /bin/sh -c 'cat >/dev/null'
[ "$(grep -cxF "status=0 error=" "$T/exec_many.out")" = 4 ] || fail "exec: 4 sends: $(cat "$T/exec_many.out")"
drive exec_close --count 3 --close-ms 500 exec -- /bin/sleep 987
[ "$(grep -cxF "status=-10 error=cancelled" "$T/exec_close.out")" = 3 ] || fail "exec close: $(cat "$T/exec_close.out")"
for ((i = 0; i < 50; i++)); do
  pgrep -fx "/bin/sleep 987" >/dev/null || break
  sleep 0.1
done
pgrep -fx "/bin/sleep 987" >/dev/null && fail "exec close: children left: $(pgrep -fax "/bin/sleep 987")"
echo "ok: exec cancel_all and close in flight, several sends at once"

# -------------------------------------------------------------- webhook
command -v node >/dev/null || fail "no node for the webhook cases (scripts/deps installs nodejs)"
mkdir -p "$T/srv"
node "$PM_SRC/tests/integration/webhook_server.js" "$T/srv" >"$T/server.log" 2>&1 &
SERVER=$!
DAEMON_PIDS+=("$SERVER")
for ((i = 0; i < 100; i++)); do
  [ -s "$T/srv/port" ] && break
  sleep 0.1
done
[ -s "$T/srv/port" ] || fail "the webhook server did not start"
PORT=$(cat "$T/srv/port")
# the path and query stand for secrets: never shown
BASE="http://127.0.0.1:$PORT/hook/pathsecret"
QS="?key=querysecret"
count() { cat "$T/srv/count" 2>/dev/null || echo 0; }

printf 'tokensecret-1 \n' >"$T/token"
chmod 600 "$T/token"
drive wh_ok -v --json-file "$T/event.json" --token-file "$T/token" \
  --header 'X-A: b' webhook "$BASE/200$QS"
expect wh_ok "status=0 error="
n=$(count)
[ "$n" = 1 ] || fail "webhook: $n requests, not 1"
H=$T/srv/req1.head
cmp -s "$T/event.json" "$T/srv/req1.body" || fail "webhook: the body received differs from the JSON"
grep -qxF "POST /hook/pathsecret/200$QS" "$H" || fail "webhook: request line: $(head -1 "$H")"
for want in "Content-Type: application/json" "X-Portalmetrics-Event: 12" "X-A: b" \
  "Authorization: Bearer tokensecret-1" "Content-Length: $(stat -c %s "$T/event.json")"; do
  grep -qixF "$want" "$H" || fail "webhook: no \"$want\" header: $(cat "$H")"
done
grep -qiE '^User-Agent: portalmetricsd/[0-9]' "$H" || fail "webhook: User-Agent: $(cat "$H")"
grep -qi '^Expect:' "$H" && fail "webhook: sent Expect: $(cat "$H")"
echo "ok: webhook 200 delivered, body and headers"

drive wh_500 -v webhook "$BASE/500$QS"
expect wh_500 "status=-15 error=HTTP 500"
drive wh_302 -v webhook "$BASE/302$QS"
expect wh_302 "status=-15 error=HTTP 302"
n=$(count)
[ "$n" = 3 ] || fail "webhook: the redirect was followed ($n requests, not 3)"
drive wh_close -v webhook "$BASE/close$QS"
expect_re wh_close '^status=-15 error=connection broken \(curl: .+\)$'
echo "ok: webhook 500, redirect not followed, reset mid-response"

drive wh_hang -v --timeout-ms 1500 webhook "$BASE/hang$QS"
expect wh_hang "status=-13 error=timed out after 1.5 s"
[ "$ELAPSED" -ge 1400 ] && [ "$ELAPSED" -lt 4000 ] || fail "webhook: a hanging server took $ELAPSED ms (timeout 1500)"
echo "ok: webhook timed out in $ELAPSED ms"

free=$(pm_pg_free_port)
drive wh_refused -v webhook "http://127.0.0.1:$free/hook/pathsecret$QS"
expect_re wh_refused '^status=-16 error=connection refused \(curl: .+\)$'
echo "ok: webhook connection refused"

n0=$(count)
drive wh_notoken -v --token-file "$T/no-such-token" webhook "$BASE/200$QS"
expect wh_notoken "status=-14 error=cannot read token_file $T/no-such-token: No such file or directory"
printf '  \n' >"$T/empty-token"
drive wh_emptytoken -v --token-file "$T/empty-token" webhook "$BASE/200$QS"
expect wh_emptytoken "status=-14 error=token_file $T/empty-token is empty"
[ "$(count)" = "$n0" ] || fail "webhook: a request was made without the token"
echo "ok: webhook token file missing or empty"

drive wh_cancel -v --cancel-ms 300 --timeout-ms 20000 webhook "$BASE/hang$QS"
expect wh_cancel "status=-10 error=cancelled"
[ "$ELAPSED" -lt 3000 ] || fail "webhook cancel: the driver took $ELAPSED ms"
n0=$(count)
drive wh_many -v --count 5 --json-file "$T/event.json" webhook "$BASE/200$QS"
[ "$(grep -cxF "status=0 error=" "$T/wh_many.out")" = 5 ] || fail "webhook: 5 sends: $(cat "$T/wh_many.out")"
[ "$(count)" = $((n0 + 5)) ] || fail "webhook: $(($(count) - n0)) requests for 5 sends"
drive wh_big --json-file "$T/big.json" webhook "$BASE/200$QS"
expect wh_big "status=0 error="
cmp -s "$T/big.json" "$T/srv/req$(count).body" || fail "webhook: the 1 MiB body differs"
drive wh_close_inflight -v --count 3 --close-ms 300 webhook "$BASE/hang$QS"
[ "$(grep -cxF "status=-10 error=cancelled" "$T/wh_close_inflight.out")" = 3 ] || fail "webhook close: $(cat "$T/wh_close_inflight.out")"
echo "ok: webhook cancel_all and close in flight, 5 sends at once, a 1 MiB body"

# never the URL's path or query, never the token (debug lines included)
if grep -lE 'pathsecret|querysecret|tokensecret' "$T"/*.out "$T"/*.log; then
  fail "a secret of the URL or the token was printed (files above)"
fi
echo "ok: no secret in any output"
kill -TERM "$SERVER"
wait "$SERVER" || true
