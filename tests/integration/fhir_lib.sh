# Shared by the FHIR collector's integration tests (source after lib.sh):
# a data set and its truth from tests/fhir/gen.js, FHIR servers
# (tests/fhir/server.js) seeded with it, daemon configs with fhir
# collectors in the truth's time zone, and the comparison of what landed
# in PostgreSQL with the truth. Node only (no python: CI may lack it).
#
#   fhir_gen [GEN_ARGS...]            data + truth -> $FHIR_DATA, $FHIR_TRUTH, $FHIR_TZ
#   fhir_server NAME [SERVER_ARGS...] start server.js NAME (seeded with $FHIR_DATA)
#   fhir_base NAME / fhir_origin NAME its base URL / origin
#   fhir_control NAME [JSON]          GET (or POST JSON to) its /control; prints the answer
#   fhir_req_log NAME                 its request log (server.js --log)
#   fhir_collector NAME SERVER [SETTINGS...]   one collector entry (a config fragment)
#   fhir_conf FILE ENTRY...           a daemon config with those collectors
#   fhir_queries [OPTIONS]            a `queries = (...)` setting from the truth
#   fhir_rows COLLECTOR               its samples, as the comparison reads them
#   fhir_compare COLLECTOR MODE [OPTIONS]   samples vs truth, one line per query
#   fhir_wait_counts COLLECTOR MODE TIMEOUT [OPTIONS]   until fhir_compare is clean
#   fhir_errors COLLECTOR [REASON]    fhir.errors counted (all reasons, or one)
#   fhir_runs COLLECTOR               runs whose statistics landed
#   fhir_values COLLECTOR             samples other than fhir.* (count)
#   fhir_wait_runs COLLECTOR N TIMEOUT   until N runs landed
#   fhir_pki                          a CA and a server certificate (openssl) in $FHIR_PKI
#   fhir_keygen ALG NAME              a SMART key pair (token.js) in $FHIR_DIR/keys
#   fhir_req_count NAME DISP [RE]     requests in a server log with a disposition
. "$PM_SRC/scripts/lib/npm.sh"
pm_npm_ci >/dev/null || fail "npm ci in tests/ failed"

FHIR_DIR=$T/fhir
mkdir -p "$FHIR_DIR"
FHIR_INTERVAL=${FHIR_INTERVAL:-2s}
FHIR_JS=$FHIR_DIR/fhir_lib.js

# fhir_gen [GEN_ARGS...]: tests/fhir/gen.js into $FHIR_DIR (data.json,
# truth.json; extra arguments such as --tz, --seed, --scale go to gen.js).
# Sets FHIR_DATA, FHIR_TRUTH and FHIR_TZ (the truth's zone, which
# fhir_conf makes the daemon's).
fhir_gen() {
  FHIR_DATA=$FHIR_DIR/data.json
  FHIR_TRUTH=$FHIR_DIR/truth.json
  node "$PM_SRC/tests/fhir/gen.js" --out "$FHIR_DATA" --truth "$FHIR_TRUTH" "$@" \
    >"$FHIR_DIR/gen.out" 2>&1 || fail "gen.js: $(cat "$FHIR_DIR/gen.out")"
  FHIR_TZ=$(node -p "require('$FHIR_TRUTH').generated.tz")
  [ -n "$FHIR_TZ" ] || fail "no time zone in the truth"
}

# fhir_server NAME [SERVER_ARGS...]: start server.js seeded with
# $FHIR_DATA (or --seed-file in SERVER_ARGS), its request log in
# $(fhir_req_log NAME), its stderr in $T/NAME.server.log; waits until it
# listens. Its pid goes to DAEMON_PIDS (killed on exit) and FHIR_SPID_NAME
# (NAME: letters, digits, _).
fhir_server() {
  local name=$1 i scheme=http a
  shift
  for a in "$@"; do [ "$a" = --tls-cert ] && scheme=https; done
  echo "$scheme" >"$FHIR_DIR/$name.scheme"
  rm -f "$FHIR_DIR/$name.port"
  node "$PM_SRC/tests/fhir/server.js" --port-file "$FHIR_DIR/$name.port" \
    --log "$FHIR_DIR/$name.requests" --seed-file "$FHIR_DATA" "$@" \
    >>"$T/$name.server.log" 2>&1 &
  DAEMON_PIDS+=("$!")
  printf -v "FHIR_SPID_$name" '%s' "$!"
  disown "$!" # no "Killed" job notice when lib.sh's cleanup kills it
  for ((i = 0; i < 300; i++)); do
    [ -s "$FHIR_DIR/$name.port" ] && return 0
    kill -0 "$!" 2>/dev/null || fail "server.js $name exited: $(tail -5 "$T/$name.server.log")"
    sleep 0.1
  done
  fail "server.js $name did not listen within 30 s"
}

fhir_origin() { echo "$(cat "$FHIR_DIR/$1.scheme")://127.0.0.1:$(cat "$FHIR_DIR/$1.port")"; }
fhir_base() { echo "$(fhir_origin "$1")/fhir/R4"; }
fhir_req_log() { echo "$FHIR_DIR/$1.requests"; }

# fhir_control NAME [JSON]: the server's /control state (GET), or POST JSON
# to it first (e.g. '{"mode":"nototal"}'); prints the JSON answer. TLS
# servers are asked without verification (the tests' own certificates).
fhir_control() {
  NODE_TLS_REJECT_UNAUTHORIZED=0 node -e '
    const [url, body] = process.argv.slice(1);
    const opt = body ? { method: "POST", body, headers: { "content-type": "application/json" } } : {};
    fetch(url, opt).then(async (r) => {
      const t = await r.text();
      if (!r.ok) { console.error(`HTTP ${r.status}: ${t}`); process.exit(1); }
      console.log(t);
    }).catch((e) => { console.error(String(e)); process.exit(1); });
  ' "$(fhir_origin "$1")/control" "${2:-}" 2>>"$T/control.err" || fail "POST /control to $1 failed: $(tail -2 "$T/control.err")"
}

# fhir_collector NAME SERVER [SETTINGS...]: a collector entry for
# fhir_conf: plugin fhir, interval $FHIR_INTERVAL, base_url SERVER's, and
# the SETTINGS (libconfig text, e.g. 'backfill = "32d";').
fhir_collector() {
  local name=$1 server=$2
  shift 2
  printf '  { name = "%s"; plugin = "fhir"; interval = "%s";\n    settings = { base_url = "%s";\n      %s }; }' \
    "$name" "$FHIR_INTERVAL" "$(fhir_base "$server")" "$*"
}

# fhir_conf FILE ENTRY...: a daemon config (pm_conf) with the collectors
# from fhir_collector, its timezone the truth's ($FHIR_TZ).
fhir_conf() {
  local file=$1 first=1 e
  shift
  {
    echo "collectors = ("
    for e in "$@"; do
      [ $first = 1 ] || echo ","
      first=0
      echo "$e"
    done
    echo ");"
  } | pm_conf "$file"
  sed -i "s|timezone = \"UTC\"|timezone = \"$FHIR_TZ\"|" "$file"
}

# The node half: config text from the truth, and the comparison.
cat >"$FHIR_JS" <<'JS'
'use strict';
const fs = require('fs');
const [cmd, truthFile, ...rest] = process.argv.slice(2);
const truth = JSON.parse(fs.readFileSync(truthFile, 'utf8'));
const opt = { only: null, skip: null, total: null, last: 0, rows: null, mode: 'name' };
for (let i = 0; i < rest.length; i += 2) {
  const k = rest[i].replace(/^--/, ''), v = rest[i + 1];
  if (k === 'only') opt.only = new RegExp(v); else if (k === 'skip') opt.skip = new RegExp(v);
  else if (k === 'total') opt.total = v; else if (k === 'rows') opt.rows = v;
  else if (k === 'mode') opt.mode = v; else if (k === 'last') opt.last = Number(v); else throw new Error(`fhir_lib.js: unknown option ${k}`);
}
// a custom query's series: the truth's canonical metric, or for x.* the
// canonical metric of its resource; label query=<truth metric, dots as _>
const BY_RESOURCE = { Patient: 'portal.patients_enrolled', Communication: 'portal.messages_sent',
  DiagnosticReport: 'portal.lab_reports_sent', Appointment: 'portal.appointments_requested' };
const metricOf = (q) => {
  const m = q.metric.startsWith('portal.') ? q.metric : BY_RESOURCE[q.resource];
  if (!m) throw new Error(`fhir_lib.js: no canonical metric for ${q.metric} (${q.resource})`);
  return m;
};
const nameOf = (q) => q.metric.replace(/\./g, '_');
let qs = truth.queries;
// the default set: the portal.* queries (patients_enrolled needs
// portal_identifier_system, which the tests set)
if (opt.mode === 'default') qs = qs.filter((q) => q.metric.startsWith('portal.'));
if (opt.only) qs = qs.filter((q) => opt.only.test(q.metric));
if (opt.skip) qs = qs.filter((q) => !opt.skip.test(q.metric));
if (!qs.length) throw new Error('fhir_lib.js: no truth query selected');
const s = (v) => JSON.stringify(v); // libconfig strings: JSON's escapes suffice here

if (cmd === 'queries') {
  const out = qs.map((q) => {
    const f = [`metric = ${s(metricOf(q))};`, `name = ${s(nameOf(q))};`, `resource = ${s(q.resource)};`];
    if (q.params) f.push(`params = ${s(q.params.replace(/\|/g, '%7C'))};`);
    if (q.date_param) f.push(`date_param = ${s(q.date_param)};`);
    if (q.classify_path) f.push(`classify = ${s(q.classify_path)};`, `class = ${s(q.class)};`);
    if (opt.total) f.push(`total = ${s(opt.total)};`);
    return `        { ${f.join(' ')} }`;
  });
  console.log(`queries = (\n${out.join(',\n')}\n      );`);
} else if (cmd === 'compare') {
  // rows: metric, query label, class label, local time, value, epoch
  const rows = fs.readFileSync(opt.rows, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [metric, query, cls, local, value, epoch] = l.split('\t');
    return { metric, query, cls, day: local.slice(0, 10), time: local.slice(11), value: Number(value), epoch: Number(epoch) };
  });
  let bad = 0;
  for (const q of qs) {
    const mine = rows.filter((r) => (opt.mode === 'default'
      ? r.metric === q.metric && r.query === '' : r.query === nameOf(q) && r.metric === metricOf(q)) && r.cls === '');
    const problems = [];
    let want = 0, got = 0;
    if (q.kind === 'gauge') {
      want = q.total;
      const last = mine.sort((a, b) => a.epoch - b.epoch).pop();
      got = last ? last.value : 0;
      if (!last) problems.push('no sample');
      else if (got !== want) problems.push(`latest ${got}, want ${want}`);
    } else {
      const byDay = new Map();
      for (const r of mine) {
        if (r.time !== '00:00:00') problems.push(`a sample at ${r.day} ${r.time}, not at a local day's start`);
        else byDay.set(r.day, r.value);
      }
      const all = Object.keys(q.days).sort();
      const checked = opt.last ? all.slice(-opt.last) : all;
      for (const d of checked) {
        const n = q.days[d];
        want += n;
        if (!byDay.has(d)) { problems.push(`${d} missing (want ${n})`); continue; }
        got += byDay.get(d);
        if (byDay.get(d) !== n) problems.push(`${d} got ${byDay.get(d)} want ${n}`);
      }
      // days the daemon counted beyond the truth's (its window is wider): no events there
      for (const [d, v] of byDay) if (!(d in q.days) && v !== 0) { got += v; problems.push(`${d} got ${v}, outside the data`); }
    }
    if (problems.length) bad++;
    console.log([q.metric, problems.length ? 'diff' : 'ok', want, got,
      problems.slice(0, 4).join('; ') + (problems.length > 4 ? `; ... (${problems.length})` : '')].join('\t'));
  }
  process.exit(bad ? 1 : 0);
} else throw new Error(`fhir_lib.js: unknown command ${cmd}`);
JS

# fhir_queries [--only RE] [--skip RE] [--total page]: a `queries` setting
# with the truth's queries (all of them, x.* included), each on a
# canonical metric (its own, or its resource's for x.*) with name = the
# truth metric with dots as "_" (label query=<name>), params as in the
# truth ("|" encoded), classify/class from classify_path/class.
# (Usually inside a command substitution, where fail cannot end the test:
# on error it also prints a setting the daemon refuses.)
fhir_queries() {
  node "$FHIR_JS" queries "$FHIR_TRUTH" "$@" || { echo 'queries = "fhir_queries failed";'; fail "fhir_queries $*"; }
}

# fhir_rows COLLECTOR: its samples but fhir.* and portalmetricsd.*, one
# line each: metric, label query, label class, local time (YYYY-MM-DD
# HH:MM:SS in $FHIR_TZ), value, epoch seconds.
fhir_rows() {
  q "SELECT s.metric, coalesce(s.labels->>'query', ''), coalesce(s.labels->>'class', ''),
            to_char(x.ts AT TIME ZONE '$FHIR_TZ', 'YYYY-MM-DD HH24:MI:SS'), x.value,
            extract(epoch FROM x.ts)
     FROM portalmetrics.samples x JOIN portalmetrics.series s ON s.id = x.series_id
     WHERE s.labels->>'collector' = '$1' AND s.metric NOT LIKE 'fhir.%'
       AND s.metric NOT LIKE 'portalmetricsd.%'
     ORDER BY 1, 2, 3, 4" | tr '|' '\t'
}

# fhir_compare COLLECTOR MODE [--truth FILE] [--only RE] [--skip RE] [--last N]:
# COLLECTOR's samples against the truth (FILE, default $FHIR_TRUTH), its
# queries whose metric matches --only and not --skip, and only the truth's
# last N days with --last (for a collector whose backfill is N+1 days). MODE
# default: the default set (series by metric, no query label); name: the
# custom queries of fhir_queries (series by label query). Prints one line
# per truth query: metric, ok|diff, truth sum, collected sum, the first
# differences; a daily query must have a sample at each truth day's local
# start equal to the truth, and zeros on any other day; a gauge's latest
# sample must equal the truth. Returns non-zero when a line is not ok.
fhir_compare() {
  local coll=$1 mode=$2 truth=$FHIR_TRUTH
  shift 2
  if [ "${1:-}" = --truth ]; then truth=$2; shift 2; fi
  fhir_rows "$coll" >"$FHIR_DIR/rows.$coll.tsv" || true
  node "$FHIR_JS" compare "$truth" --mode "$mode" --rows "$FHIR_DIR/rows.$coll.tsv" "$@"
}

# fhir_wait_counts COLLECTOR MODE TIMEOUT_S [fhir_compare options]: until
# fhir_compare is clean. The last comparison stays in
# $FHIR_DIR/cmp.COLLECTOR.txt either way; returns non-zero on timeout.
fhir_wait_counts() {
  local coll=$1 mode=$2 timeout=$3 end
  shift 3
  end=$((SECONDS + timeout))
  while :; do
    if [ -n "${DPID:-}" ] && ! kill -0 "$DPID" 2>/dev/null; then
      echo "the daemon is not running" >>"$FHIR_DIR/cmp.$coll.txt"
      return 1
    fi
    fhir_compare "$coll" "$mode" "$@" >"$FHIR_DIR/cmp.$coll.txt" 2>&1 && return 0
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

# fhir_errors COLLECTOR [REASON]: fhir.errors counted for it (one reason).
fhir_errors() {
  q "SELECT coalesce(sum(value), 0)::bigint FROM portalmetrics.samples_v
     WHERE metric = 'fhir.errors' AND labels->>'collector' = '$1'
       ${2:+AND labels->>'reason' = '$2'}"
}

# fhir_runs COLLECTOR: runs whose statistics landed (each run adds one
# fhir.requests sample, at its own time).
fhir_runs() {
  q "SELECT count(*) FROM portalmetrics.samples_v
     WHERE metric = 'fhir.requests' AND labels->>'collector' = '$1'"
}

# fhir_values COLLECTOR: its samples other than fhir.* and portalmetricsd.*.
fhir_values() {
  q "SELECT count(*) FROM portalmetrics.samples_v
     WHERE labels->>'collector' = '$1' AND metric NOT LIKE 'fhir.%'
       AND metric NOT LIKE 'portalmetricsd.%'"
}

# fhir_wait_runs COLLECTOR N TIMEOUT_S: until at least N runs landed.
fhir_wait_runs() {
  pm_wait_sql "SELECT (SELECT count(*) FROM portalmetrics.samples_v
     WHERE metric = 'fhir.requests' AND labels->>'collector' = '$1') >= $2" "$3"
}

# fhir_pki: a throwaway PKI in $FHIR_DIR/pki by the openssl CLI (as in
# test_hl7_tls.sh): ca.pem (a CA) and server.pem/server.key (127.0.0.1
# and localhost, signed by it), for server.js --tls-cert/--tls-key and
# the collector's ca_file. Sets FHIR_PKI to the folder.
fhir_pki() {
  FHIR_PKI=$FHIR_DIR/pki
  local p=$FHIR_PKI
  command -v openssl >/dev/null || fail "the openssl CLI is missing (scripts/deps installs it)"
  mkdir -p "$p"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$p/ca.key" -out "$p/ca.pem" -days 2 -subj "/CN=portalmetrics fhir test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >>"$p/openssl.out" 2>&1 || fail "openssl: CA: $(tail -3 "$p/openssl.out")"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$p/server.key" -out "$p/server.csr" -subj "/CN=localhost" >>"$p/openssl.out" 2>&1 \
    || fail "openssl: server request: $(tail -3 "$p/openssl.out")"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' >"$p/server.ext"
  openssl x509 -req -in "$p/server.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$p/server.ext" -out "$p/server.pem" >>"$p/openssl.out" 2>&1 \
    || fail "openssl: server certificate: $(tail -3 "$p/openssl.out")"
  chmod 600 "$p"/*.key
}

# fhir_keygen ALG NAME: a SMART client key pair by tests/fhir/token.js
# (RS384: RSA 2048, ES384: EC P-384) as $FHIR_DIR/keys/NAME.key (PKCS#8)
# and NAME.pub (SPKI, for server.js --smart-public-key).
fhir_keygen() {
  mkdir -p "$FHIR_DIR/keys"
  node "$PM_SRC/tests/fhir/token.js" keygen --alg "$1" --out-private "$FHIR_DIR/keys/$2.key" \
    --out-public "$FHIR_DIR/keys/$2.pub" || fail "token.js keygen $1"
}

# fhir_req_count NAME DISPOSITION [PATH_RE]: requests in server NAME's log
# with that disposition (ok, 401, token:200, ...) whose path matches.
fhir_req_count() {
  awk -F'\t' -v d="$2" -v re="${3:-.}" '$4 == d && $3 ~ re { n++ } END { print n + 0 }' "$(fhir_req_log "$1")"
}
