#!/usr/bin/env bash
# Malformed input and hostile peers, over raw sockets (tests/hl7/raw.js):
# no MSH, bad encoding characters and an HL7 version it does not speak get
# AE, AE and AR echoing MSH-10; junk before and between frames is skipped
# and both messages are acknowledged, one ACK frame each; an oversized
# frame, a slow sender (one byte at a time, past frame_timeout), a peer
# not on the allow list and a connection closed mid-frame are closed;
# each is counted in hl7.errors by reason, and the listener goes on.
# A non-loopback address without TLS is refused unless allow_plaintext.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hl7_lib.sh"
pm_pg
pm_plugins hl7
GUARD_PORT=$((HL7_PORT + 1))
pm_conf "$T/h.conf" <<CONF
collectors = (
  { name = "feed"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$HL7_PORT"; max_message = "2KiB"; frame_timeout = "2s"; }; },
  { name = "guarded"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$GUARD_PORT"; allow = [ "127.0.0.2/32", "::1" ]; }; }
);
CONF
pm_start "$T/h.conf"
pm_wait_log "listening on 127.0.0.1:$HL7_PORT" 20 || fail "hl7 listener did not start"
pm_wait_log "listening on 127.0.0.1:$GUARD_PORT" 20 || fail "guarded listener did not start"

RAW="node $PM_SRC/tests/hl7/raw.js"
MSG='MSH|^~\\&|EPIC|NORTHCLINIC|PM|PM|20261125120000||SIU^S12^SIU_S12|CTL-OK-1|P|2.5.1<CR>SCH|1<CR>PID|1||MRN-FAKE-1||ZZFAULT^PATIENT<CR>'
MSG2=${MSG//CTL-OK-1/CTL-OK-2}

# no MSH: AE, MSA-2 empty
$RAW 127.0.0.1 "$HL7_PORT" --send-str '<VT>PID|1||MRN-FAKE-2||ZZFAULT^PATIENT<CR><FS><CR>' \
  --expect-frames 1 --timeout 5 >"$T/r1.out" || fail "raw.js no-msh"
grep -q "ack 1: MSA-1=AE" "$T/r1.out" || fail "no MSH: $(cat "$T/r1.out")"

# bad encoding characters: AE echoing MSH-10
$RAW 127.0.0.1 "$HL7_PORT" --send-str '<VT>MSH|^^\\&|EPIC|NORTHCLINIC|PM|PM|20261125||ADT^A04|CTL-ENC-1|P|2.5<CR><FS><CR>' \
  --expect-frames 1 --timeout 5 >"$T/r2.out" || fail "raw.js encoding"
grep -q "ack 1: MSA-1=AE" "$T/r2.out" || fail "bad encoding: $(cat "$T/r2.out")"

# a version it does not speak: AR with MSA-2
$RAW 127.0.0.1 "$HL7_PORT" --send-str "<VT>${MSG//2.5.1/3.0}<FS><CR>" \
  --expect-frames 1 --timeout 5 >"$T/r3.out" || fail "raw.js version"
grep -q "ack 1: MSA-1=AR MSA-2=CTL-OK-1" "$T/r3.out" || fail "version 3.0: $(cat "$T/r3.out")"

# junk before and between frames: both acknowledged, one frame each
$RAW 127.0.0.1 "$HL7_PORT" --send-str "noise<VT>$MSG<FS><CR>more noise<LF><VT>$MSG2<FS><CR>" \
  --expect-frames 2 --timeout 10 >"$T/r4.out" || fail "raw.js junk"
grep -q "ack 1: MSA-1=AA MSA-2=CTL-OK-1" "$T/r4.out" || fail "junk: first not AA: $(cat "$T/r4.out")"
grep -q "ack 2: MSA-1=AA MSA-2=CTL-OK-2" "$T/r4.out" || fail "junk: second not AA: $(cat "$T/r4.out")"
grep -q "frames=2" "$T/r4.out" || fail "junk: not exactly two ACK frames"

# oversized frame: closed; the listener goes on
big=$(head -c 3000 /dev/zero | tr '\0' 'x')
$RAW 127.0.0.1 "$HL7_PORT" --send-str "<VT>MSH|^~\\\\&|A|B|C|D|20261125||ADT^A04|BIG|P|2.5<CR>NTE|$big<CR><FS><CR>" \
  --timeout 5 >"$T/r5.out" || fail "raw.js oversize"
grep -q "closed-by=server" "$T/r5.out" || fail "oversize: not closed by the server: $(tail -2 "$T/r5.out")"
grep -q "frames=0" "$T/r5.out" || fail "oversize: an ACK was sent"

# a slow sender: one byte every 200 ms; frame_timeout 2 s cuts it off
t0=$SECONDS
$RAW 127.0.0.1 "$HL7_PORT" --slow 200 --send-str "<VT>$MSG<FS><CR>" --timeout 30 >"$T/r6.out" || fail "raw.js slow"
grep -q "closed-by=server" "$T/r6.out" || fail "slow sender not cut off: $(tail -2 "$T/r6.out")"
[ $((SECONDS - t0)) -le 8 ] || fail "slow sender cut off after $((SECONDS - t0)) s, frame_timeout is 2 s"

# each message gets frame_timeout from its own start: three messages of
# about 1.5 s each (one byte every 10 ms) on one connection, all AA
M1=${MSG//CTL-OK-1/CTL-SLOW-1}; M2=${MSG//CTL-OK-1/CTL-SLOW-2}; M3=${MSG//CTL-OK-1/CTL-SLOW-3}
$RAW 127.0.0.1 "$HL7_PORT" --slow 10 --send-str "<VT>$M1<FS><CR><VT>$M2<FS><CR><VT>$M3<FS><CR>" \
  --expect-frames 3 --timeout 30 >"$T/r6b.out" || fail "raw.js slow but steady"
grep -q "ack 3: MSA-1=AA MSA-2=CTL-SLOW-3" "$T/r6b.out" || fail "a steady sender was cut off: $(tail -3 "$T/r6b.out")"

# a long sending application and facility: the key is a digest, and two
# control ids stay two messages
long_app=$(head -c 190 /dev/zero | tr '\0' 'A')
L1="MSH|^~\\&|$long_app|LONGFACILITY$(head -c 50 /dev/zero | tr '\0' 'F')|PM|PM|20261125120000||ADT^A04|LONG-1|P|2.5<CR>"
L2=${L1//LONG-1/LONG-2}
$RAW 127.0.0.1 "$HL7_PORT" --send-str "<VT>$L1<FS><CR><VT>$L2<FS><CR>" --expect-frames 2 --timeout 10 >"$T/r6c.out" \
  || fail "raw.js long key"
grep -q "ack 2: MSA-1=AA MSA-2=LONG-2" "$T/r6c.out" || fail "long key: $(tail -3 "$T/r6c.out")"
pm_wait_sql "SELECT coalesce(sum(value), 0) = 2 FROM portalmetrics.samples_v WHERE metric = 'clinic.patients_registered' AND labels->>'facility' LIKE 'LONGFACILITY%'" 10 \
  || fail "two messages with a long key counted as $(q "SELECT sum(value) FROM portalmetrics.samples_v WHERE metric = 'clinic.patients_registered' AND labels->>'facility' LIKE 'LONGFACILITY%'")"

# closed in the middle of a frame
$RAW 127.0.0.1 "$HL7_PORT" --send-str "<VT>MSH|^~\\\\&|EPIC|NORTH" --end --timeout 5 >"$T/r7.out" || fail "raw.js mid-frame"

# the allow list: 127.0.0.1 refused, 127.0.0.2 served
$RAW 127.0.0.1 "$GUARD_PORT" --send-str "<VT>$MSG<FS><CR>" --timeout 5 >"$T/r8.out" || fail "raw.js allow"
grep -q "frames=0" "$T/r8.out" || fail "a peer not on the allow list got an ACK"
grep -q "closed-by=server" "$T/r8.out" || fail "a peer not on the allow list was not closed: $(tail -2 "$T/r8.out")"
$RAW 127.0.0.1 "$GUARD_PORT" --local-address 127.0.0.2 --send-str "<VT>${MSG//CTL-OK-1/CTL-OK-3}<FS><CR>" \
  --expect-frames 1 --timeout 5 >"$T/r9.out" || fail "raw.js allowed"
grep -q "ack 1: MSA-1=AA MSA-2=CTL-OK-3" "$T/r9.out" || fail "an allowed peer: $(cat "$T/r9.out")"

# each counted by reason (reported every 10 s, and at stop)
pm_stop "$DPID" 10
for r in no_msh encoding version junk oversize frame_timeout closed_mid_frame not_allowed; do
  [ "$(hl7_errors $r)" -ge 1 ] || fail "hl7.errors{reason=$r} not counted: $(q "SELECT labels->>'reason', sum(value) FROM portalmetrics.samples_v WHERE metric = 'hl7.errors' GROUP BY 1")"
done
[ "$(hl7_errors junk)" -ge 2 ] || fail "two runs of junk, $(hl7_errors junk) counted"
grep -q "ZZFAULT\|MRN-FAKE" "$T/daemon.log" && fail "patient data in the log"

# plaintext on a non-loopback address is refused without allow_plaintext
hl7_conf "$T/open.conf"
sed -i "s|listen = \"127.0.0.1:$HL7_PORT\"|listen = \"0.0.0.0:$HL7_PORT\"|" "$T/open.conf"
pm_start "$T/open.conf" "$T/open.log"
pm_wait_log "HL7 carries patient data" 10 "$T/open.log" || fail "no refusal of plaintext on 0.0.0.0: $(tail -3 "$T/open.log")"
pm_stop "$DPID" 10
sed -i 's|settings = {|settings = { allow_plaintext = true;|' "$T/open.conf"
pm_start "$T/open.conf" "$T/open2.log"
pm_wait_log "WITHOUT TLS" 10 "$T/open2.log" || fail "no warning for allow_plaintext"
[ "$(grep -c "WITHOUT TLS" "$T/open2.log")" = 1 ] || fail "the plaintext warning is not once"
pm_stop "$DPID" 10
echo "ok: AE/AE/AR, junk skipped, oversize, slow sender, mid-frame close, allow list; counted by reason"
