#!/usr/bin/env bash
# The HL7 listener over TLS (settings.tls: cert_file, key_file, ca_file,
# verify_client), with a throwaway PKI made by the openssl CLI in $T: a CA,
# a server certificate for 127.0.0.1 / localhost (subjectAltName), a client
# certificate from that CA and one from another CA. One daemon runs four
# hl7 collectors:
#   feed    127.0.0.1, TLS, no client certificates asked for
#   mtls    127.0.0.1, TLS, verify_client = true against the CA
#   open    0.0.0.0, TLS (no allow_plaintext)
#   badkey  127.0.0.1, TLS with a key_file that is not the certificate's
# It shows:
# - a batch from node-hl7-client over TLS (send.js --tls --ca) is all AA
#   and counted exactly as sent; a raw TLS client (raw.js --tls --ca) gets
#   AA for one more message;
# - a plain MLLP client on the TLS port gets no ACK and is closed; that is
#   counted as hl7.errors{reason=tls} and logged with the "plain MLLP" hint;
# - verify_client: no client certificate, and a certificate from another
#   CA, are refused (no ACK, closed, counted as reason=tls, the reason
#   logged); a certificate from the CA gets AA;
# - TLS on 0.0.0.0 starts, without the plaintext warning;
# - a key_file that does not match cert_file: that collector does not
#   start (nothing listens on its port), the error names the file, and
#   the daemon and its other collectors go on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/hl7_lib.sh"
command -v openssl >/dev/null || fail "the openssl CLI is missing (scripts/deps installs it)"
pm_pg
pm_plugins hl7

# ---- the PKI ----------------------------------------------------------
P=$T/pki
mkdir -p "$P"
# ca NAME: a self-signed CA (EC P-256: quick)
ca() {
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$P/$1.key" -out "$P/$1.pem" -days 2 -subj "/CN=portalmetrics test $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >>"$P/openssl.log" 2>&1 || fail "openssl: CA $1: $(tail -3 "$P/openssl.log")"
}
# leaf NAME CA CN EXTENSIONS: a key and a certificate signed by CA
leaf() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$3" >>"$P/openssl.log" 2>&1 \
    || fail "openssl: request $1: $(tail -3 "$P/openssl.log")"
  printf '%b' "$4" >"$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.pem" -CAkey "$P/$2.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$P/$1.ext" -out "$P/$1.pem" >>"$P/openssl.log" 2>&1 \
    || fail "openssl: certificate $1: $(tail -3 "$P/openssl.log")"
}
ca ca
ca otherca
leaf server ca localhost \
  "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
leaf client ca "EPIC interface engine" "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
leaf stranger otherca "EPIC interface engine" "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
openssl verify -CAfile "$P/ca.pem" "$P/server.pem" "$P/client.pem" >/dev/null || fail "the test PKI does not verify"
# the daemon runs as the tests do (root): owner-only keys are enough
chmod 600 "$P"/*.key

# ---- the daemon -------------------------------------------------------
FEED=$HL7_PORT MTLS=$((HL7_PORT + 1)) OPEN=$((HL7_PORT + 2)) BADKEY=$((HL7_PORT + 3))
TLS_SRV="cert_file = \"$P/server.pem\"; key_file = \"$P/server.key\";"
pm_conf "$T/h.conf" <<CONF
collectors = (
  { name = "feed"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$FEED"; tls = { $TLS_SRV }; }; },
  { name = "mtls"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$MTLS";
                 tls = { $TLS_SRV ca_file = "$P/ca.pem"; verify_client = true; }; }; },
  { name = "open"; plugin = "hl7";
    settings = { listen = "0.0.0.0:$OPEN"; tls = { $TLS_SRV }; }; },
  { name = "badkey"; plugin = "hl7";
    settings = { listen = "127.0.0.1:$BADKEY";
                 tls = { cert_file = "$P/server.pem"; key_file = "$P/client.key"; }; }; }
);
CONF
sed -i "s|timezone = \"UTC\"|timezone = \"$HL7_TZ\"|" "$T/h.conf"
pm_start "$T/h.conf"
for p in "127.0.0.1:$FEED" "127.0.0.1:$MTLS" "0.0.0.0:$OPEN"; do
  pm_wait_log "listening on $p (TLS)" 20 || fail "no TLS listener on $p"
done

# TLS on a non-loopback address: no plaintext warning, no refusal
grep -q "WITHOUT TLS" "$T/daemon.log" && fail "the plaintext warning with TLS on: $(grep "WITHOUT TLS" "$T/daemon.log")"
grep -q "is not a loopback address and there is no tls" "$T/daemon.log" && fail "TLS on 0.0.0.0 was refused"

# a key_file not matching the certificate: the collector did not start,
# the error names the file
grep -q "key_file $P/client.key: key does not match the certificate" "$T/daemon.log" \
  || fail "the wrong key_file is not named: $(grep -i badkey "$T/daemon.log")"
grep -q "listening on 127.0.0.1:$BADKEY" "$T/daemon.log" && fail "the collector with the wrong key started"
kill -0 "$DPID" 2>/dev/null || fail "the daemon stopped over one collector's key"

RAW="node $PM_SRC/tests/hl7/raw.js"
# msg CONTROL_ID: one SIU^S12, MLLP framed, for raw.js --send-str
msg() {
  printf '<VT>MSH|^~\\\\&|EPIC|NORTHCLINIC|PM|PM|%s||SIU^S12^SIU_S12|%s|P|2.5.1<CR>SCH|1<CR>PID|1||MRN-TLS-1||ZZTLS^PATIENT<CR><FS><CR>' \
    "$(date -u +%Y%m%d%H%M%S)" "$1"
}
# errs COLLECTOR: its hl7.errors{reason=tls} in the database
errs() {
  q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v
     WHERE metric = 'hl7.errors' AND labels->>'reason' = 'tls' AND labels->>'collector' = '$1'"
}
# msgs COLLECTOR: its hl7.messages in the database
msgs() {
  q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v
     WHERE metric = 'hl7.messages' AND labels->>'collector' = '$1'"
}
# refused OUT RC: raw.js got no ACK and the connection ended (a handshake
# refused before raw.js saw it complete exits 3, "connect-error"; with TLS
# 1.3 the client finishes its side first and then reads the server's alert)
refused() {
  local out=$1 rc=$2
  grep -q "^ack " "$out" && return 1
  [ "$rc" = 3 ] && grep -q "^connect-error" "$out" && return 0
  [ "$rc" = 0 ] && grep -q "^end: closed-by=\(server\|server-reset\|client-error\).* frames=0 " "$out"
}

# ---- node-hl7-client over TLS: a batch, counted as sent ---------------
node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen" --count 60 --seed 7 \
  >"$T/gen.log" || fail "gen.js failed"
node "$PM_SRC/tests/hl7/send.js" --tls --ca "$P/ca.pem" --expect AA --ack-timeout 5 --give-up 60 \
  --out "$T/acks.jsonl" "127.0.0.1:$FEED" "$T/gen/messages.json" >"$T/send.log" 2>&1 \
  || fail "send.js --tls: $(tail -5 "$T/send.log")"
[ "$(grep -c '"code":"AA"' "$T/acks.jsonl")" = 60 ] || fail "AA for $(grep -c '"code":"AA"' "$T/acks.jsonl") of 60 messages over TLS"
grep -q "0 reconnect(s), 1 connection(s)" "$T/send.log" || fail "send.js over TLS reconnected: $(cat "$T/send.log")"
# hl7_counts without the daemon's own per-collector metrics
# (portalmetricsd.samples_emitted{collector=feed} ...: its 10-second report)
counts() { hl7_counts | grep -v '^portalmetricsd\.' || true; }
want=$(LC_ALL=C sort "$T/gen/expected.tsv")
for _ in $(seq 1 50); do
  [ "$(counts)" = "$want" ] && break
  sleep 0.2
done
diff <(echo "$want") <(counts) >"$T/diff" || fail "TLS batch: counts differ from what was sent: $(head -20 "$T/diff")"
echo "node-hl7-client over TLS: 60 messages AA, counts equal what was sent"

# ---- raw TLS client: AA -----------------------------------------------
$RAW 127.0.0.1 "$FEED" --tls --ca "$P/ca.pem" --send-str "$(msg TLS-RAW-1)" \
  --expect-frames 1 --timeout 10 >"$T/r1.out" || fail "raw.js --tls: $(cat "$T/r1.out")"
grep -q "ack 1: MSA-1=AA MSA-2=TLS-RAW-1" "$T/r1.out" || fail "raw TLS client: $(cat "$T/r1.out")"
pm_wait_sql "SELECT (SELECT coalesce(sum(value), 0) FROM portalmetrics.samples_v
             WHERE metric = 'hl7.messages' AND labels->>'collector' = 'feed') = 61" 10 \
  || fail "feed: $(msgs feed) messages counted, 61 sent"
[ "$(errs feed)" = 0 ] || fail "TLS errors counted for good clients: $(errs feed)"

# ---- plain MLLP against the TLS port: closed, counted, "plain MLLP" ---
rc=0
$RAW 127.0.0.1 "$FEED" --send-str "$(msg PLAIN-1)" --timeout 10 >"$T/r2.out" || rc=$?
[ "$rc" = 0 ] || fail "raw.js plain: exit $rc: $(cat "$T/r2.out")"
grep -q "^ack " "$T/r2.out" && fail "a plain MLLP client got an ACK from the TLS port"
grep -q "^end: closed-by=server" "$T/r2.out" || fail "a plain MLLP client was not closed: $(tail -2 "$T/r2.out")"
pm_wait_sql "SELECT (SELECT coalesce(sum(value), 0) FROM portalmetrics.samples_v WHERE metric = 'hl7.errors'
             AND labels->>'reason' = 'tls' AND labels->>'collector' = 'feed') = 1" 10 \
  || fail "plain MLLP on the TLS port: hl7.errors{reason=tls} = $(errs feed), want 1"
grep -q "feed.*TLS: handshake failed: .*(plain MLLP from the client, not TLS); closed" "$T/daemon.log" \
  || fail "no \"plain MLLP\" hint in the log: $(grep "TLS:" "$T/daemon.log" | tail -3)"
echo "plain MLLP on the TLS port: closed without ACK, counted, logged: $(grep -o 'TLS: handshake failed: .*plain MLLP[^;]*' "$T/daemon.log" | head -1)"

# ---- verify_client ----------------------------------------------------
# no client certificate: refused
rc=0
$RAW 127.0.0.1 "$MTLS" --tls --ca "$P/ca.pem" --send-str "$(msg MTLS-NOCERT-1)" --timeout 10 >"$T/r3.out" || rc=$?
refused "$T/r3.out" "$rc" || fail "verify_client, no client certificate: not refused (exit $rc): $(cat "$T/r3.out")"
pm_wait_sql "SELECT (SELECT coalesce(sum(value), 0) FROM portalmetrics.samples_v WHERE metric = 'hl7.errors'
             AND labels->>'reason' = 'tls' AND labels->>'collector' = 'mtls') = 1" 10 \
  || fail "no client certificate: hl7.errors{reason=tls} = $(errs mtls), want 1"
pm_wait_log "mtls.*TLS: handshake failed: no client certificate; closed" 5 \
  || fail "no client certificate: not in the log: $(grep "mtls.*TLS" "$T/daemon.log" | tail -3)"

# a client certificate from another CA: refused
rc=0
$RAW 127.0.0.1 "$MTLS" --tls --ca "$P/ca.pem" --cert "$P/stranger.pem" --key "$P/stranger.key" \
  --send-str "$(msg MTLS-OTHERCA-1)" --timeout 10 >"$T/r4.out" || rc=$?
refused "$T/r4.out" "$rc" || fail "verify_client, a certificate from another CA: not refused (exit $rc): $(cat "$T/r4.out")"
pm_wait_sql "SELECT (SELECT coalesce(sum(value), 0) FROM portalmetrics.samples_v WHERE metric = 'hl7.errors'
             AND labels->>'reason' = 'tls' AND labels->>'collector' = 'mtls') = 2" 10 \
  || fail "another CA: hl7.errors{reason=tls} = $(errs mtls), want 2"
pm_wait_log "mtls.*TLS: handshake failed: certificate verify failed" 5 \
  || fail "another CA: not in the log: $(grep "mtls.*TLS" "$T/daemon.log" | tail -3)"

# a client certificate from the CA: AA
$RAW 127.0.0.1 "$MTLS" --tls --ca "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" \
  --send-str "$(msg MTLS-OK-1)" --expect-frames 1 --timeout 10 >"$T/r5.out" || fail "raw.js --cert: $(cat "$T/r5.out")"
grep -q "ack 1: MSA-1=AA MSA-2=MTLS-OK-1" "$T/r5.out" || fail "verify_client, a certificate from the CA: $(cat "$T/r5.out")"

# node-hl7-client with the client certificate too
node "$PM_SRC/tests/hl7/gen.js" --tz "$HL7_TZ" --out-dir "$T/gen2" --count 20 --seed 8 \
  >/dev/null || fail "gen.js (2) failed"
node "$PM_SRC/tests/hl7/send.js" --tls --ca "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key" \
  --expect AA --ack-timeout 5 --give-up 60 "127.0.0.1:$MTLS" "$T/gen2/messages.json" >"$T/send2.log" 2>&1 \
  || fail "send.js --tls --cert: $(tail -5 "$T/send2.log")"
pm_wait_sql "SELECT (SELECT coalesce(sum(value), 0) FROM portalmetrics.samples_v
             WHERE metric = 'hl7.messages' AND labels->>'collector' = 'mtls') = 21" 10 \
  || fail "mtls: $(msgs mtls) messages counted, 21 accepted"
echo "verify_client: no certificate and another CA's refused and counted; the CA's certificate: AA (raw.js and node-hl7-client)"

# ---- TLS on 0.0.0.0 serves too ----------------------------------------
$RAW 127.0.0.1 "$OPEN" --tls --ca "$P/ca.pem" --send-str "$(msg OPEN-1)" \
  --expect-frames 1 --timeout 10 >"$T/r6.out" || fail "raw.js 0.0.0.0: $(cat "$T/r6.out")"
grep -q "ack 1: MSA-1=AA MSA-2=OPEN-1" "$T/r6.out" || fail "TLS on 0.0.0.0: $(cat "$T/r6.out")"

# ---- nothing listens for the collector with the wrong key --------------
rc=0
$RAW 127.0.0.1 "$BADKEY" --tls --insecure --send-str "$(msg BADKEY-1)" --timeout 5 >"$T/r7.out" || rc=$?
[ "$rc" = 3 ] && grep -q "connect-error ECONNREFUSED" "$T/r7.out" \
  || fail "something listens on the wrong-key collector's port (exit $rc): $(cat "$T/r7.out")"

pm_stop "$DPID" 10
[ "$(errs feed)" = 1 ] || fail "feed: hl7.errors{reason=tls} = $(errs feed) at the end, want 1"
[ "$(errs mtls)" = 2 ] || fail "mtls: hl7.errors{reason=tls} = $(errs mtls) at the end, want 2"
grep -q "WITHOUT TLS" "$T/daemon.log" && fail "a plaintext warning was logged"
grep -q "ZZTLS\|MRN-TLS" "$T/daemon.log" && fail "patient data in the log"
echo "ok: TLS batch and raw client AA; plain MLLP refused with its hint; verify_client refuses no/foreign certificates; 0.0.0.0 with TLS without warning; a wrong key_file named, collector not started"
