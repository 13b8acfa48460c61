#!/usr/bin/env bash
# A real HL7 MLLP client (node-hl7-client, pinned in tests/package.json)
# sends a known mix of ADT, SIU and ORU messages (CR, LF and CRLF
# separators, other encoding characters, test messages): every message is
# acknowledged AA, and the counts in PostgreSQL equal what was sent, per
# metric, facility and local day. The same batch sent again is
# acknowledged and counted once. Enhanced-mode messages get CA. Then an
# audit: the recognisable fake patient data of the messages appears
# nowhere in the daemon's log, its state directory or a pg_dump.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hl7_lib.sh"
pm_pg
pm_plugins hl7
hl7_conf "$T/h.conf"
pm_start "$T/h.conf"
pm_wait_log "listening on 127.0.0.1:$HL7_PORT" 20 || fail "hl7 listener did not start"

node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen" --count 200 \
  --seg-sep mixed --mixed-encoding >"$T/gen.log" || fail "gen.js failed"
node "$PM_SRC/tests/hl7/send.js" --summary-json "$T/sum1.json" --out "$T/acks1.jsonl" \
  "127.0.0.1:$HL7_PORT" "$T/gen/messages.json" >"$T/send1.log" 2>&1 || fail "send.js: $(cat "$T/send1.log")"
[ "$(grep -c '"code":"AA"' "$T/acks1.jsonl")" = 200 ] || fail "AA for $(grep -c '"code":"AA"' "$T/acks1.jsonl") of 200 messages"
grep -q '"mismatch":true' "$T/acks1.jsonl" && fail "an ACK's MSA-2 is not its message's MSH-10"

# acknowledged means durable: the counts land exactly
want=$(LC_ALL=C sort "$T/gen/expected.tsv")
for _ in $(seq 1 50); do
  [ "$(hl7_counts)" = "$want" ] && break
  sleep 0.2
done
diff <(echo "$want") <(hl7_counts) >"$T/diff1" || fail "counts differ from what was sent: $(head -20 "$T/diff1")"
grep -c . <<<"$want" | grep -qv '^0$' || fail "empty expectation"
echo "first batch: $(grep -c . <<<"$want") (metric, day, facility) counts equal"

# the same batch again: all AA, counted once
node "$PM_SRC/tests/hl7/send.js" --summary-json "$T/sum2.json" --out "$T/acks2.jsonl" \
  "127.0.0.1:$HL7_PORT" "$T/gen/messages.json" >"$T/send2.log" 2>&1 || fail "send.js (again): $(cat "$T/send2.log")"
[ "$(grep -c '"code":"AA"' "$T/acks2.jsonl")" = 200 ] || fail "the resent batch was not all AA"
sleep 1
diff <(echo "$want") <(hl7_counts) >"$T/diff2" || fail "the same batch twice was counted twice: $(head -20 "$T/diff2")"

# enhanced mode: CA
node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen2" --count 20 --seed 2 \
  --enhanced >/dev/null || fail "gen.js --enhanced"
node "$PM_SRC/tests/hl7/send.js" --out "$T/acks3.jsonl" "127.0.0.1:$HL7_PORT" "$T/gen2/messages.json" \
  >"$T/send3.log" 2>&1 || fail "send.js (enhanced): $(cat "$T/send3.log")"
[ "$(grep -c '"code":"CA"' "$T/acks3.jsonl")" = 20 ] || fail "enhanced mode: $(head -3 "$T/acks3.jsonl")"

pm_stop "$DPID" 10

# the audit: no patient data anywhere
pg_dump -X portalmetrics >"$T/dump.sql" 2>/dev/null || pg_dump portalmetrics >"$T/dump.sql"
[ -s "$T/gen/fake_terms.txt" ] || fail "no fake terms to look for"
if grep -a -F -f "$T/gen/fake_terms.txt" "$T/daemon.log" "$T/dump.sql" >"$T/leak" ||
   grep -r -a -l -F -f "$T/gen/fake_terms.txt" "$T/state" >>"$T/leak"; then
  fail "patient data leaked: $(head -5 "$T/leak")"
fi
grep -q NORTHCLINIC "$T/dump.sql" || fail "the audit would not see anything: no facility in the dump"
echo "ok: counts equal what was sent, duplicates counted once, CA in enhanced mode, no patient data"
