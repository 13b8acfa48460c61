#!/usr/bin/env bash
# The FHIR plugin's credentials (plugins/fhir/fhir_auth.c), through
# tests/integration/fhir_auth_driver.c, against tests/fhir/server.js
# (SMART Backend Services token endpoint of tests/fhir/token.js, which
# checks the RS384/ES384 signature with node's crypto, basic and bearer
# auth) and a small fake server for malformed answers:
#  - RS384 and ES384 client assertions are accepted; the token works on
#    a FHIR request; it is cached (N calls, one token request) and
#    minted again once within 60 s of its expiry, or after invalidate;
#  - a wrong key, a wrong client id, an expired assertion: PM_EAUTH with
#    "refused" and the server's error code; the next call discovers again;
#  - discovery failing (no smart-configuration, a closed port, a server
#    that never answers, a bad token_endpoint): PM_EPEER/PM_EUNREACHABLE
#    naming the origin only; malformed, oversized, redirected token
#    answers: PM_EPEER, the redirect not followed;
#  - basic and bearer headers are right (200) and wrong ones are not (401);
#  - no output line holds a token, password, assertion or key.
# No PostgreSQL, no daemon.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$PM_SRC/scripts/lib/npm.sh"
export LC_ALL=C

command -v node >/dev/null || { echo "SKIP: node not found"; exit 77; }
pm_npm_ci "$PM_SRC" >&2 || fail "npm ci in tests/ failed"
DRV=$PM_BUILD/tests/fhir_auth_driver
[ -x "$DRV" ] || fail "no $DRV: build the tree first"
TOKJS=$PM_SRC/tests/fhir/token.js
SRVJS=$PM_SRC/tests/fhir/server.js
CID=portalmetrics-test

# ---- helpers ----------------------------------------------------------------

# wait_port FILE: the port a server wrote, once it listens.
wait_port() {
  local f=$1 i
  for ((i = 0; i < 300; i++)); do
    [ -s "$f" ] && { head -1 "$f"; return 0; }
    sleep 0.1
  done
  fail "no port in $f after 30 s"
}

# start_server NAME ARGS...: server.js in the background; port in $PORT.
start_server() {
  local name=$1
  shift
  node "$SRVJS" --port-file "$T/$name.port" --log "$T/$name.req" "$@" \
    >"$T/$name.log" 2>&1 &
  DAEMON_PIDS+=("$!")
  PORT=$(wait_port "$T/$name.port")
}

# Every line the driver may print; anything else is a leak or a bug.
LINE_RE='^(ok ([0-9a-f]{16}|none)|error -[0-9]+ [ -~]+|get ([0-9]{3}|error [ -~]+)|stats minted=[0-9]+ failures=[0-9]+ discoveries=[0-9]+)$'

# drv ARGS...: run the driver; its stdout in $OUT (and $T/driver.out).
drv() {
  local rc=0
  OUT=$("$DRV" --timeout-ms 5000 "$@" 2>"$T/driver.err") || rc=$?
  {
    echo "\$ fhir_auth_driver $*"
    echo "$OUT"
    cat "$T/driver.err"
  } >>"$T/driver.out"
  [ "$rc" -eq 0 ] || fail "driver exited $rc: $* -> $OUT $(cat "$T/driver.err")"
  [ -z "$(cat "$T/driver.err")" ] || fail "driver wrote to stderr: $(cat "$T/driver.err")"
  if echo "$OUT" | grep -Evq "$LINE_RE"; then
    fail "unexpected driver output: $(echo "$OUT" | grep -Ev "$LINE_RE")"
  fi
  # a JWT ("eyJ"), a PEM, a 48-hex token of token.js
  if echo "$OUT" | grep -Eq 'eyJ|BEGIN|[0-9a-f]{32}'; then
    fail "secret-looking text in driver output: $OUT"
  fi
}

# want TEXT...: $OUT holds each (fixed strings).
want() {
  local s
  for s in "$@"; do
    grep -qF -- "$s" <<<"$OUT" || fail "driver output lacks \"$s\": $OUT"
  done
}
# lacks TEXT...: $OUT holds none.
lacks() {
  local s
  for s in "$@"; do
    ! grep -qF -- "$s" <<<"$OUT" || fail "driver output holds \"$s\": $OUT"
  done
}
# nlines PATTERN N: $OUT has N lines matching the regex.
nlines() {
  local n
  n=$(grep -Ec -- "$1" <<<"$OUT" || true)
  [ "$n" -eq "$2" ] || fail "$n lines match '$1', not $2: $OUT"
}
# tokens NAME: token requests answered 200 in server NAME's log so far.
tokens() { grep -c $'\ttoken:200$' "$T/$1.req" || true; }

# sha16 TEXT: the first 16 hex of its SHA-256, as the driver prints.
sha16() { printf '%s' "$1" | sha256sum | cut -c1-16; }

# ---- keys and secrets -------------------------------------------------------

for k in rs es; do
  alg=RS384
  [ $k = es ] && alg=ES384
  node "$TOKJS" keygen --alg $alg --out-private "$T/$k.pem" --out-public "$T/$k.pub"
done
node "$TOKJS" keygen --alg RS384 --out-private "$T/other.pem" --out-public "$T/other.pub"
BASIC_USER=portal
BASIC_PW='s3cret pw:with colon'
printf '%s:%s\n' "$BASIC_USER" "$BASIC_PW" >"$T/basic.server"
printf '%s\n' "$BASIC_PW" >"$T/basic.pw"
printf 'wrong\n' >"$T/basic.wrong"
BEARER=static-bearer-8c1d7e0f2a
printf '%s\n' "$BEARER" >"$T/bearer.token"
printf 'not-the-token\n' >"$T/bearer.wrong"

# ---- SMART against server.js ------------------------------------------------

start_server a --smart-public-key "$T/rs.pub" --smart-public-key "$T/es.pub" \
  --client-id "$CID" --token-ttl 300 --scopes "system/*.read system/Patient.read" \
  --basic-auth-file "$T/basic.server" --bearer-token-file "$T/bearer.token"
A=http://127.0.0.1:$PORT
BASE=$A/fhir/R4
SMART=(--type smart --base "$BASE" --client-id "$CID")

# RS384: one discovery, one token for 5 calls, the token works.
before=$(tokens a)
drv "${SMART[@]}" --key "$T/rs.pem" --alg RS384 --scopes "system/*.read" \
  --count 5 --get /Patient
nlines '^ok ' 5
[ "$(grep '^ok ' <<<"$OUT" | sort -u | wc -l)" -eq 1 ] || fail "5 calls, several tokens: $OUT"
nlines '^get 200$' 5
want "stats minted=1 failures=0 discoveries=1"
[ "$(tokens a)" -eq $((before + 1)) ] || fail "5 calls made $(($(tokens a) - before)) token requests, not 1"
echo "ok: RS384 token, cached over 5 calls"

# ES384 (libjwt's ECDSA signature as JOSE r||s, which token.js checks),
# with a kid, the alg taken from the key.
drv "${SMART[@]}" --key "$T/es.pem" --kid kid-es --count 2 --get /Patient
nlines '^get 200$' 2
want "stats minted=1 failures=0 discoveries=1"
echo "ok: ES384 token"

# A configured token URL: no discovery.
drv --type smart --client-id "$CID" --key "$T/es.pem" --alg ES384 \
  --token-url "$A/auth/token" --base "$BASE" --get /Patient
want "get 200" "stats minted=1 failures=0 discoveries=0"
echo "ok: token_url without discovery"

# invalidate (a 401 seen by the plugin): a new token each time.
drv "${SMART[@]}" --key "$T/rs.pem" --count 3 --invalidate
[ "$(grep '^ok ' <<<"$OUT" | sort -u | wc -l)" -eq 3 ] || fail "invalidate kept the token: $OUT"
want "stats minted=3 failures=0 discoveries=1"
echo "ok: invalidate mints again"

# Refusals: PM_EAUTH (-17), "refused", the server's error code, the
# origin but not the path; discovery again after each failure.
drv "${SMART[@]}" --key "$T/other.pem" --count 2
nlines "^error -17 token endpoint $A refused the client assertion \(HTTP 401\): invalid_client: client_assertion signature does not verify" 2
lacks "/auth/token"
want "stats minted=0 failures=2 discoveries=2"
echo "ok: wrong key refused"

drv "${SMART[@]}" --key "$T/rs.pem" --skew-s -600
want "error -17 token endpoint $A refused the client assertion (HTTP 400): invalid_grant: client_assertion expired (exp is past)"
echo "ok: expired assertion refused"

drv --type smart --base "$BASE" --client-id someone-else --key "$T/rs.pem"
want "error -17 token endpoint $A refused the client assertion (HTTP 401): invalid_client: unknown client_id someone-else"
echo "ok: wrong client id refused"

drv "${SMART[@]}" --key "$T/es.pem" --scopes "user/*.write"
want "error -17" "refused" "invalid_scope"
echo "ok: scope refused"

# Configuration refused before any request: alg/key mismatch, missing key.
rc=0
OUT=$("$DRV" "${SMART[@]}" --key "$T/rs.pem" --alg ES384) || rc=$?
[ "$rc" -eq 3 ] || fail "alg/key mismatch: exit $rc: $OUT"
want "error -18 auth.private_key_file $T/rs.pem: an RSA key, but auth.alg is ES384"
rc=0
OUT=$("$DRV" "${SMART[@]}" --key "$T/nope.pem") || rc=$?
[ "$rc" -eq 3 ] || fail "missing key: exit $rc: $OUT"
want "error -18 auth.private_key_file $T/nope.pem: No such file or directory"
echo "ok: configuration refused"

# ---- expiry: a server whose tokens live 62 s ---------------------------------

start_server b --smart-public-key "$T/rs.pub" --client-id "$CID" --token-ttl 62
B=http://127.0.0.1:$PORT/fhir/R4
# 62 s left, then 61 s: kept (at least 60 s valid).
drv --type smart --base "$B" --client-id "$CID" --key "$T/rs.pem" --count 2 --step-s 1
want "stats minted=1 failures=0 discoveries=1"
# 59 s left (the clock 3 s on): minted again.
drv --type smart --base "$B" --client-id "$CID" --key "$T/rs.pem" --count 2 --step-s 3
want "stats minted=2 failures=0 discoveries=1"
# In real time: 2.5 s apart, each call finds less than 60 s left.
drv --type smart --base "$B" --client-id "$CID" --key "$T/rs.pem" --count 3 \
  --sleep-ms 2500 --get /Patient
nlines '^get 200$' 3
want "stats minted=3 failures=0 discoveries=1"
[ "$(grep '^ok ' <<<"$OUT" | sort -u | wc -l)" -eq 3 ] || fail "expiring token kept: $OUT"
echo "ok: token minted again within 60 s of its expiry"

# ---- discovery failures -------------------------------------------------------

# server.js without --smart-public-key: no smart-configuration (404).
start_server c --bearer-token-file "$T/bearer.token"
C=http://127.0.0.1:$PORT
drv --type smart --base "$C/fhir/R4" --client-id "$CID" --key "$T/rs.pem"
want "error -15 SMART discovery at $C answered HTTP 404" \
  "stats minted=0 failures=1 discoveries=0"
lacks "/fhir/R4"
echo "ok: no smart-configuration: PM_EPEER"

drv --type smart --base "http://127.0.0.1:1/fhir/R4" --client-id "$CID" --key "$T/rs.pem"
want "error -16 SMART discovery at http://127.0.0.1:1 unreachable: " \
  "stats minted=0 failures=1 discoveries=0"
lacks "/fhir/R4"
echo "ok: closed port: PM_EUNREACHABLE"

# ---- a fake server for malformed answers --------------------------------------

cat >"$T/fake.js" <<'JS'
// /<case>/.well-known/smart-configuration and /<case>/token
'use strict';
const http = require('http');
const fs = require('fs');
let origin;
const json = (res, status, body, h = {}) => {
  const t = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...h });
  res.end(t);
};
const srv = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    fs.appendFileSync(process.argv[3], `${req.method} ${req.url} ${body.length}\n`);
    const [, c = '', rest = ''] = req.url.match(/^\/([a-z0-9]+)\/(.*)$/) || [];
    if (c === 'hang') return; // never answered
    if (rest === '.well-known/smart-configuration') {
      if (c === 'badurl') return json(res, 200, { token_endpoint: 'ftp://127.0.0.1/token' });
      if (c === 'garbage') return json(res, 200, '<html>oops');
      return json(res, 200, { token_endpoint: `${origin}/${c}/token?tenant=t1`, token_endpoint_auth_methods_supported: c === 'nopkj' ? ['client_secret_basic'] : ['private_key_jwt'] });
    }
    if (rest.startsWith('token')) {
      switch (c) {
        case 'tokgarbage': return json(res, 200, '{"access_token": "abc"');
        case 'tokspace': return json(res, 200, { access_token: 'two words', token_type: 'bearer' });
        case 'tokmac': return json(res, 200, { access_token: 'abc', token_type: 'mac' });
        case 'tok500': return json(res, 500, { error: 'server_error', error_description: 'down\r\nX-Evil: 1' });
        case 'redirect': res.writeHead(302, { location: 'http://127.0.0.1:1/steal' }); return res.end();
        case 'nopkj': return json(res, 401, { error: 'invalid_client', error_description: 'no private_key_jwt here' });
        case 'huge': {
          res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no length
          const chunk = ' '.repeat(64 * 1024);
          for (let i = 0; i < 40; i++) res.write(chunk);
          return res.end('{"access_token":"abc"}');
        }
        case 'ok': return json(res, 200, { access_token: 'fake-token-1', token_type: 'Bearer', expires_in: 3600 });
        default: return json(res, 404, {});
      }
    }
    return json(res, 404, {});
  });
});
srv.listen(0, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${srv.address().port}`;
  fs.writeFileSync(`${process.argv[2]}.tmp`, `${srv.address().port}\n`);
  fs.renameSync(`${process.argv[2]}.tmp`, process.argv[2]);
});
JS
node "$T/fake.js" "$T/fake.port" "$T/fake.req" >"$T/fake.log" 2>&1 &
DAEMON_PIDS+=("$!")
F=http://127.0.0.1:$(wait_port "$T/fake.port")
fake() {
  local c=$1
  shift
  drv --type smart --base "$F/$c" --client-id "$CID" --key "$T/es.pem" "$@"
}

fake ok
want "stats minted=1 failures=0 discoveries=1"
# the token URL's query went to the server as is
grep -q '^POST /ok/token?tenant=t1 ' "$T/fake.req" || fail "token POST not to the discovered URL"
fake hang --timeout-ms 700
want "error -16 SMART discovery at $F unreachable: Timeout was reached"
fake badurl
want "error -15 SMART discovery at $F: smart-configuration: token_endpoint is not an http(s) URL"
fake garbage
want "error -15 SMART discovery at $F: smart-configuration: malformed JSON at byte"
lacks "oops"
fake tokgarbage
want "error -15 token endpoint $F: token answer: malformed JSON"
fake tokspace
want "error -15 token endpoint $F: token answer: access_token holds spaces"
lacks "two words"
fake tokmac
want "error -15 token endpoint $F: token answer: token_type is not bearer"
fake tok500
want "error -15 token endpoint $F failed (HTTP 500): server_error: downX-Evil: 1"
fake huge
want "error -15 token endpoint $F answered more than 1048576 bytes"
fake redirect
want "error -15 token endpoint $F failed (HTTP 302)"
! grep -q steal "$T/fake.req" || fail "redirect followed"
fake nopkj
want "error -17 token endpoint $F refused the client assertion (HTTP 401): invalid_client: no private_key_jwt here (its smart-configuration does not list private_key_jwt)"
lacks "tenant"
echo "ok: malformed, oversized, redirected answers: PM_EPEER"

# ---- basic and bearer --------------------------------------------------------

drv --type basic --base "$BASE" --username "$BASIC_USER" --password-file "$T/basic.pw" --get /Patient
want "ok $(sha16 "Authorization: Basic $(printf '%s:%s' "$BASIC_USER" "$BASIC_PW" | base64 -w0)")" "get 200"
lacks "$BASIC_PW" "$(printf '%s:%s' "$BASIC_USER" "$BASIC_PW" | base64 -w0)"
drv --type basic --base "$BASE" --username "$BASIC_USER" --password-file "$T/basic.wrong" --get /Patient
want "get 401"
echo "ok: basic"

drv --type bearer --base "$BASE" --token-file "$T/bearer.token" --get /Patient
want "ok $(sha16 "Authorization: Bearer $BEARER")" "get 200" "stats minted=0 failures=0 discoveries=0"
lacks "$BEARER"
drv --type bearer --base "$BASE" --token-file "$T/bearer.wrong" --get /Patient
want "get 401"
drv --type none --base "$BASE" --get /Patient
want "ok none" "get 401"
echo "ok: bearer, none"

# A secret file gone at use: PM_EIO naming the file.
cp "$T/bearer.token" "$T/bearer.gone"
drv --type bearer --base "$BASE" --token-file "$T/bearer.gone" --count 2 --sleep-ms 1500 &
sleep 0.5
rm -f "$T/bearer.gone"
wait $! || fail "driver failed"
grep -qF "error -14 auth.token_file $T/bearer.gone: No such file or directory" "$T/driver.out" ||
  fail "no PM_EIO for a vanished token file: $(tail -5 "$T/driver.out")"
echo "ok: vanished token file: PM_EIO"

# The server logs hold no secrets either (paths only, no headers/bodies).
! grep -qE "$BEARER|eyJ" "$T"/*.req || fail "a secret in a server log"
echo "PASS"
