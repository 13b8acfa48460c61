#!/usr/bin/env bash
# The fhir collector's credentials and TLS against tests/fhir/server.js
# (seeded with gen.js's data set). One daemon, collectors running every
# 5s, each counting two truth queries (lab reports per day, the enrolled
# patients gauge) over the last 4 days:
# (check_metadata = false: not under test here.)
# - SMART Backend Services (keys from tests/fhir/token.js keygen), RS384
#   and ES384 (alg taken from the key), each on its own server: counts
#   equal the truth, and each server logged exactly one token request
#   over several runs (a token is kept for its lifetime, not fetched per
#   request);
# - a key the server does not know: the daemon logs once that the token
#   endpoint refused the client assertion, with the server's error code
#   (invalid_client); fhir.errors{reason=auth} is counted; no samples for
#   that collector; the daemon keeps running;
# - basic (server.js --basic-auth-file) and bearer (--bearer-token-file)
#   count; a wrong bearer token gives fhir.errors{reason=auth}, no samples;
# - TLS (server.js --tls-cert/--tls-key, a CA and a certificate made with
#   the openssl CLI): with ca_file the counts land; without it (the CA is
#   not the system's) fhir.errors{reason=tls} is counted and logged, no
#   samples;
# - --http2: the counts land, over HTTP/2: with max_connections = 1 and
#   every answer delayed 300 ms, the h2 server saw more than 2 requests
#   in flight at once (streams on one connection), the HTTP/1.1 one at
#   most 2 (one, and the next arriving as node finishes the last);
# - no secret in the daemon's log: not the bearer token, the password,
#   their base64, an access token (48 hex digits) or a JWT ("eyJ").
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fhir_lib.sh"
pm_pg
pm_plugins fhir
fhir_gen
fhir_pki
fhir_keygen RS384 rs
fhir_keygen ES384 es
fhir_keygen RS384 stranger # never registered
K=$FHIR_DIR/keys
CLIENT=portalmetrics-test
secret() { node -e 'process.stdout.write(require("crypto").randomBytes(18).toString("base64url"))'; }
BEARER=$(secret)
WRONG=$(secret)
PASSWORD=$(secret)
printf '%s\n' "$BEARER" >"$K/bearer.token"
printf '%s\n' "$WRONG" >"$K/wrong.token"
printf 'pmuser:%s\n' "$PASSWORD" >"$K/basic"
printf '%s\n' "$PASSWORD" >"$K/password"
chmod 600 "$K"/*

# srs: SMART (the RS384 key), basic and bearer; ses: SMART (ES384)
fhir_server srs --smart-public-key "$K/rs.pub" --client-id "$CLIENT" \
  --bearer-token-file "$K/bearer.token" --basic-auth-file "$K/basic"
fhir_server ses --smart-public-key "$K/es.pub" --client-id "$CLIENT"
fhir_server tls --tls-cert "$FHIR_PKI/server.pem" --tls-key "$FHIR_PKI/server.key"
fhir_server h2 --tls-cert "$FHIR_PKI/server.pem" --tls-key "$FHIR_PKI/server.key" --http2
# every search answered 300 ms late: concurrency becomes visible
for s in tls h2; do fhir_control $s '{"delay_ms":300,"reset_stats":true}' >/dev/null; done

ONLY='^portal\.(lab_reports_sent|patients_enrolled)$'
# no /metadata: server.js builds its CapabilityStatement anew for each
# request (a second of CPU), and these collectors share servers
QS="backfill = \"4d\"; check_metadata = false; $(fhir_queries --only "$ONLY")"
smart() { echo "auth = { type = \"smart\"; client_id = \"$CLIENT\"; private_key_file = \"$K/$1.key\"; $2 };"; }
bearer() { echo "auth = { type = \"bearer\"; token_file = \"$K/$1\"; };"; }
export FHIR_INTERVAL=5s
fhir_conf "$T/a.conf" \
  "$(fhir_collector rs srs "$QS $(smart rs 'alg = "RS384"; key_id = "pm-rs";')")" \
  "$(fhir_collector es ses "$QS $(smart es '')")" \
  "$(fhir_collector stranger srs "$QS $(smart stranger '')")" \
  "$(fhir_collector basic srs "$QS auth = { type = \"basic\"; username = \"pmuser\"; password_file = \"$K/password\"; };")" \
  "$(fhir_collector bearer srs "$QS $(bearer bearer.token)")" \
  "$(fhir_collector wrongbearer srs "$QS $(bearer wrong.token)")" \
  "$(fhir_collector tls tls "$QS ca_file = \"$FHIR_PKI/ca.pem\"; max_connections = 1;")" \
  "$(fhir_collector noca tls "$QS")" \
  "$(fhir_collector h2 h2 "$QS ca_file = \"$FHIR_PKI/ca.pem\"; max_connections = 1;")"
start=$SECONDS
pm_start "$T/a.conf"

# ---- counts land -------------------------------------------------------
for c in rs es basic bearer tls h2; do
  fhir_wait_counts $c name 40 --only "$ONLY" --last 3 \
    || fail "$c: counts differ from the truth:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.$c.txt")")"
done
echo "SMART RS384 and ES384, basic, bearer, TLS with ca_file, HTTP/2: counts equal the truth ($((SECONDS - start)) s)"

# ---- failures: counted, logged once, nothing emitted --------------------
for c in stranger wrongbearer noca; do
  fhir_wait_runs $c 3 30 || fail "$c: not 3 runs in 30 s"
done
# several runs of the SMART collectors too
fhir_wait_runs rs 4 30 || fail "rs: not 4 runs in 30 s"
fhir_wait_runs es 4 30 || fail "es: not 4 runs in 30 s"
kill -0 "$DPID" 2>/dev/null || fail "the daemon died"
# runs landed, so did their errors (emitted with the run's statistics)
[ "$(fhir_errors stranger auth)" -gt 0 ] || fail "stranger: no fhir.errors{reason=auth}"
[ "$(fhir_errors wrongbearer auth)" -gt 0 ] || fail "wrongbearer: no fhir.errors{reason=auth}"
[ "$(fhir_errors noca tls)" -gt 0 ] || fail "noca: no fhir.errors{reason=tls}"
for c in stranger wrongbearer noca; do
  [ "$(fhir_values $c)" = 0 ] || fail "$c: $(fhir_values $c) samples emitted without working credentials/TLS"
done
for c in rs es basic bearer tls h2; do
  [ "$(fhir_errors $c)" = 0 ] || fail "$c: fhir.errors counted: $(q "SELECT labels->>'reason', value FROM portalmetrics.samples_v WHERE metric = 'fhir.errors' AND labels->>'collector' = '$c'")"
done
n=$(grep -c '\[stranger\] credentials: ' "$T/daemon.log" || true)
[ "$n" = 1 ] || fail "stranger: $n credential errors logged, want 1 (once per episode)"
grep -q '\[stranger\] credentials: token endpoint http://127.0.0.1:[0-9]* refused the client assertion (HTTP 401): .*invalid_client' "$T/daemon.log" \
  || fail "stranger: the refusal and its error code not logged: $(grep '\[stranger\]' "$T/daemon.log" | head -3)"
echo "unknown key: $(grep -o '\[stranger\] credentials: .*' "$T/daemon.log")"
grep -q '\[wrongbearer\] query .*auth' "$T/daemon.log" || fail "wrongbearer: no auth failure logged: $(grep '\[wrongbearer\]' "$T/daemon.log" | head -3)"
grep -q '\[noca\] .*tls' "$T/daemon.log" || fail "noca: no tls failure logged: $(grep '\[noca\]' "$T/daemon.log" | head -3)"
echo "wrong bearer: $(grep -o '\[wrongbearer\] query .*auth.*' "$T/daemon.log" | head -1)"
echo "no ca_file: $(grep -o '\[noca\] .*tls.*' "$T/daemon.log" | head -1)"

# ---- one token per lifetime ---------------------------------------------
runs_rs=$(fhir_runs rs) runs_es=$(fhir_runs es)
tok_srs=$(fhir_req_count srs token:200)
tok_ses=$(fhir_req_count ses token:200)
[ "$tok_srs" = 1 ] || fail "srs: $tok_srs tokens issued over $runs_rs runs of rs, want 1"
[ "$tok_ses" = 1 ] || fail "ses: $tok_ses tokens issued over $runs_es runs of es, want 1"
[ "$(fhir_req_count srs token:401)" -gt 0 ] || fail "the stranger's assertions never reached the token endpoint"
# rs: its searches authenticated with that one token (none refused)
[ "$(fhir_req_count srs 401)" -gt 0 ] || fail "wrongbearer got no 401 from srs"
echo "one token each over $runs_rs (RS384) and $runs_es (ES384) runs; $(fhir_req_count ses ok) searches on ses"

# ---- HTTP/2 observed -----------------------------------------------------
pm_stop "$DPID" 20
h2max=$(fhir_control h2 | node -pe 'JSON.parse(require("fs").readFileSync(0)).inflight_max')
h1max=$(fhir_control tls | node -pe 'JSON.parse(require("fs").readFileSync(0)).inflight_max')
# The daemon is stopped, so the /control request is alone. Over HTTP/1.1
# a request may arrive before node has seen the previous answer out
# ('finish'): 2 at most; over HTTP/2 the 4 day buckets after the first
# answer go out together.
[ "$h2max" -gt 2 ] || fail "h2: at most $h2max requests in flight on one connection: not HTTP/2 streams?"
[ "$h1max" -le 2 ] || fail "tls (HTTP/1.1, one connection): $h1max requests in flight"
echo "HTTP/2: up to $h2max requests in flight over max_connections = 1 (HTTP/1.1: $h1max)"

# ---- no secrets logged --------------------------------------------------
for s in "$BEARER" "$WRONG" "$PASSWORD" "$(printf 'pmuser:%s' "$PASSWORD" | base64 -w0)" eyJ; do
  grep -q -F -- "$s" "$T/daemon.log" && fail "a secret in the daemon log: $(grep -F -- "$s" "$T/daemon.log" | head -2)"
done
grep -E -q '[0-9a-f]{48}' "$T/daemon.log" && fail "an access token in the daemon log: $(grep -E '[0-9a-f]{48}' "$T/daemon.log" | head -2)"
grep -q -- '-----BEGIN' "$T/daemon.log" && fail "a PEM in the daemon log"
echo "ok: SMART (RS384, ES384), basic, bearer, TLS and HTTP/2 count; refusals counted and logged once; no secret logged ($((SECONDS - start)) s)"
