#!/usr/bin/env bash
# The HL7 listener when the daemon cannot take messages: its spool is full
# (spool.max_size 64KiB, PostgreSQL stopped, so nothing leaves the spool).
# Two hl7 collectors share the daemon:
#   feed    busy_ack = "close" (the default)
#   arfeed  busy_ack = "AR"
# It shows:
# - a sender (send.js: node-hl7-client, one message in flight, resending
#   whatever it has no ACK for) gets AA until the spool is full, then its
#   connection is closed without an ACK ("cannot take messages now" in
#   the log), and it keeps reconnecting and resending;
# - while the spool is full, a raw client gets no ACK and is closed on
#   feed, and gets AR (MSA-2 its MSH-10) on arfeed;
# - once PostgreSQL is started the spool drains, the sender's retries get
#   AA for every message, and the counts in PostgreSQL equal what was
#   sent (gen.js expected.tsv), exactly: nothing refused busy was counted
#   and nothing acknowledged was lost;
# - the refusals are counted as hl7.errors{reason=busy} on both
#   collectors (they land once the database is back).
# Deterministic: with the database down the spool can only grow, so once
# it is full it stays full until PostgreSQL is started, which the test
# does only after checking the busy behaviour.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hl7_lib.sh"
pm_pg
pm_pg_stop "$T/pg" # PM_CONNINFO now points at a stopped server
pm_plugins hl7
AR_PORT=$((HL7_PORT + 1))
pm_conf "$T/h.conf" <<CONF
spool = { max_size = "64KiB"; };
collectors = (
  { name = "feed"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$HL7_PORT"; }; },
  { name = "arfeed"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$AR_PORT"; busy_ack = "AR"; }; }
);
CONF
sed -i "s|timezone = \"UTC\"|timezone = \"$HL7_TZ\"|" "$T/h.conf"
pm_start "$T/h.conf"
pm_wait_log "listening on 127.0.0.1:$HL7_PORT" 20 || fail "hl7 listener did not start"
pm_wait_log "listening on 127.0.0.1:$AR_PORT" 20 || fail "the AR listener did not start"

# More messages than 64KiB of spool holds (each is two samples and an
# idempotency key: a few hundred fill it).
N=1500
node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen" --count $N --seed 11 --no-files \
  >"$T/gen.log" || fail "gen.js failed"
node "$PM_SRC/tests/hl7/send.js" --expect AA --ack-timeout 5 --give-up 240 --max-tries 1000 \
  --state "$T/acked.tsv" --summary-json "$T/sum.json" \
  "127.0.0.1:$HL7_PORT" "$T/gen/messages.json" >"$T/send.log" 2>&1 &
sender=$!
DAEMON_PIDS+=("$sender")

# the spool fills; the listener closes without an ACK
pm_wait_log "cannot take messages now" 60 || fail "the listener never found the daemon busy"
pm_wait_log "the spool is full" 5 || fail "the daemon did not log a full spool"
pm_wait_log "closed by peer, .* unacked" 10 "$T/send.log" || fail "the sender did not see a close without ACK"
acked_full=$(wc -l <"$T/acked.tsv")
[ "$acked_full" -gt 0 ] && [ "$acked_full" -lt $N ] || fail "$acked_full of $N acknowledged when the spool filled"
kill -0 "$sender" 2>/dev/null || fail "the sender ended while the spool was full: $(tail -3 "$T/send.log")"
echo "spool full after $acked_full AA; the sender's connection closed without ACK; it retries"

RAW="node $PM_SRC/tests/hl7/raw.js"
MSG='<VT>MSH|^~\\&|EPIC|NORTHCLINIC|PM|PM|20261125120000||SIU^S12^SIU_S12|BUSY-1|P|2.5.1<CR>SCH|1<CR>PID|1||MRN-FAKE-9||ZZBUSY^PATIENT<CR><FS><CR>'
# busy_ack = "close": closed, no ACK
$RAW 127.0.0.1 "$HL7_PORT" --send-str "$MSG" --timeout 10 >"$T/r1.out" || fail "raw.js close: $(cat "$T/r1.out")"
grep -q "^ack " "$T/r1.out" && fail "busy_ack close: an ACK was sent: $(grep '^ack' "$T/r1.out")"
grep -q "^end: closed-by=server.* frames=0 " "$T/r1.out" || fail "busy_ack close: not closed by the server: $(tail -2 "$T/r1.out")"
# busy_ack = "AR": AR echoing MSH-10, the connection stays up
$RAW 127.0.0.1 "$AR_PORT" --send-str "${MSG//BUSY-1/BUSY-AR-1}" --expect-frames 1 --timeout 10 \
  >"$T/r2.out" || fail "raw.js AR: $(cat "$T/r2.out")"
grep -q "ack 1: MSA-1=AR MSA-2=BUSY-AR-1" "$T/r2.out" || fail "busy_ack AR: $(cat "$T/r2.out")"
grep -q "^end: closed-by=client-frames" "$T/r2.out" || fail "busy_ack AR: the connection was closed: $(tail -2 "$T/r2.out")"
echo "while full: busy_ack close -> closed without ACK; busy_ack AR -> $(grep -o 'MSA-1=AR MSA-2=[^ ]*' "$T/r2.out")"

# the database comes back: the spool drains, the retries get AA
pm_pg_start "$T/pg" >/dev/null
rc=0
wait "$sender" || rc=$?
[ "$rc" = 0 ] || fail "sender exit $rc: $(tail -5 "$T/send.log")"
[ "$(cut -f1 "$T/acked.tsv" | sort -u | wc -l)" = $N ] || fail "not every message acknowledged"
[ "$(cut -f2 "$T/acked.tsv" | sort -u)" = AA ] || fail "final codes: $(cut -f2 "$T/acked.tsv" | sort | uniq -c)"
pm_wait_log "the spool has room again" 60 || fail "the end of the busy episode was not logged"
resent=$(sed -n 's/.*sent (\([0-9]*\) resent).*/\1/p' "$T/send.log")
[ "${resent:-0}" -gt 0 ] || fail "nothing was resent: $(tail -1 "$T/send.log")"

# hl7_counts without the daemon's own per-collector metrics
# (portalmetricsd.samples_emitted{collector=feed} ...): they land with its
# 10-second self-report, and this test runs longer than that
counts() { hl7_counts | grep -v '^portalmetricsd\.' || true; }
want=$(LC_ALL=C sort "$T/gen/expected.tsv")
for _ in $(seq 1 100); do
  [ "$(counts)" = "$want" ] && break
  sleep 0.2
done
diff <(echo "$want") <(counts) >"$T/diff" || fail "after the busy episode the counts differ from what was sent: $(head -20 "$T/diff")"

# the refusals, counted by reason on each collector
busy() {
  q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v
     WHERE metric = 'hl7.errors' AND labels->>'reason' = 'busy' AND labels->>'collector' = '$1'"
}
# counts a full spool refused are retried every second: they land
for _ in $(seq 1 100); do
  [ "$(busy arfeed)" = 1 ] && [ "$(busy feed)" -ge 2 ] && break
  sleep 0.1
done
pm_stop "$DPID" 15
[ "$(busy feed)" -ge 2 ] || fail "feed: hl7.errors{reason=busy} = $(busy feed) (the sender's and raw.js's refusals)"
[ "$(busy arfeed)" = 1 ] || fail "arfeed: hl7.errors{reason=busy} = $(busy arfeed), want 1"
[ "$(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 'hl7.messages' AND labels->>'collector' = 'arfeed'")" = 0 ] \
  || fail "a message answered AR was counted"
grep -q "ZZBUSY\|MRN-FAKE" "$T/daemon.log" && fail "patient data in the log"
echo "ok: spool full -> close without ACK (AR with busy_ack = AR), $(busy feed) busy refusals counted; after the drain all $N AA ($resent resent), counts exact"
