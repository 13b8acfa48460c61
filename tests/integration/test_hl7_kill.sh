#!/usr/bin/env bash
# kill -9 of the daemon in the middle of an HL7 stream: the sender
# (node-hl7-client) retransmits every message it has no ACK for, with the
# same MSH-10, to the restarted daemon; the final counts equal what was
# sent, exactly. A message made durable whose ACK the kill lost is
# recognised by its idempotency key (kept in the spool across the restart)
# and not counted twice; an acknowledged message is never lost.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hl7_lib.sh"
pm_pg
pm_plugins hl7
hl7_conf "$T/h.conf"
node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen" --count 600 --seed 5 \
  >"$T/gen.log" || fail "gen.js failed"

pm_start "$T/h.conf"
pm_wait_log "listening on 127.0.0.1:$HL7_PORT" 20 || fail "hl7 listener did not start"
node "$PM_SRC/tests/hl7/send.js" --connections 2 --ack-timeout 3 --give-up 180 \
  --state "$T/acked.tsv" --summary-json "$T/sum.json" \
  "127.0.0.1:$HL7_PORT" "$T/gen/messages.json" >"$T/send.log" 2>&1 &
sender=$!
DAEMON_PIDS+=("$sender")

# kill -9 once a third is acknowledged
for _ in $(seq 1 300); do
  [ -f "$T/acked.tsv" ] && [ "$(wc -l <"$T/acked.tsv")" -ge 200 ] && break
  sleep 0.05
done
acked_before=$(wc -l <"$T/acked.tsv")
[ "$acked_before" -lt 600 ] || fail "the stream ended before the kill"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
echo "killed after $acked_before ACKs"
sleep 1
pm_start "$T/h.conf"

rc=0
wait "$sender" || rc=$?
[ "$rc" = 0 ] || fail "sender exit $rc: $(tail -5 "$T/send.log")"
[ "$(cut -f1 "$T/acked.tsv" | sort -u | wc -l)" = 600 ] || fail "not every message acknowledged"

want=$(LC_ALL=C sort "$T/gen/expected.tsv")
for _ in $(seq 1 100); do
  [ "$(hl7_counts)" = "$want" ] && break
  sleep 0.2
done
diff <(echo "$want") <(hl7_counts) >"$T/diff" || fail "after kill -9 the counts differ from what was sent: $(head -20 "$T/diff")"
dups=$(q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v WHERE metric = 'portalmetricsd.emits_duplicate' AND labels->>'collector' = 'feed'")
pm_stop "$DPID" 10
echo "ok: kill -9 mid-stream, every unacknowledged message resent, counts exact ($dups duplicates recognised)"
