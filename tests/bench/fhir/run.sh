#!/usr/bin/env bash
# FHIR collector benchmark (not part of CI): how much a collection cycle
# gains from concurrent requests against a slow server.
#
# tests/fhir/server.js (seeded by tests/fhir/gen.js) answers every FHIR
# request after BENCH_FHIR_DELAY_MS (default 200) ms. One fhir collector
# issues exactly BENCH_FHIR_BUCKETS (default 200) requests a cycle: one
# query (lab reports, by Bundle.total, no classify: one request a bucket)
# with backfill = BUCKETS days, check_metadata off. Each cycle is
# `portalmetricsd -c CONF --once --stdout`, timed by its wall time (the
# daemon's start included, a few ms); its output must hold one sample a
# day, fhir.requests = BUCKETS and no fhir.errors.
#
# Over plain http:
#   seq      the daemon with max_connections = 1, http2 = false;
#   curl     an independent baseline: `curl -s` once per URL, one after
#            another, over the same URLs (taken from the server's --log);
#   conc 8   the daemon with max_connections = 8 (the default);
#   conc 32  max_connections = 32.
# Over TLS (a CA made with openssl, ca_file set; server.js --tls-cert
# --tls-key --http2, which also speaks HTTP/1.1):
#   seq      max_connections = 1, http2 = false (HTTP/1.1);
#   curl     `curl -s --cacert` per URL (a TLS handshake each);
#   h2 1     http2 = true, max_connections = 1: one connection carrying up
#            to max_streams = 32 streams;
#   h2 8     http2 = true, max_connections = 8 (up to 256 streams).
# For each run it prints the wall time, the requests the server saw, and
# the server's inflight_max (GET /control, reset before each run); the
# ratios are sequential / concurrent wall time (the daemon's seq and the
# curl loop of the same transport).
#
#   tests/bench/fhir/run.sh [BUILD_DIR]     (default: build; built by you)
# Environment: BENCH_FHIR_BUCKETS (200), BENCH_FHIR_DELAY_MS (200),
# BENCH_FHIR_SKIP_SEQ=1 skips the sequential runs (40 s each at the
# defaults), BENCH_FHIR_SKIP_TLS=1 the TLS runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
build=${1:-$root/build}
case $build in /*) ;; *) build=$PWD/$build ;; esac
buckets=${BENCH_FHIR_BUCKETS:-200}
delay=${BENCH_FHIR_DELAY_MS:-200}
pmd=$build/portalmetricsd
[ -x "$pmd" ] && [ -f "$build/plugins/fhir.so" ] \
  || { echo "bench: no $pmd or $build/plugins/fhir.so: build first (cmake --build $build)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl not found" >&2; exit 1; }
command -v openssl >/dev/null || { echo "bench: openssl not found" >&2; exit 1; }
# shellcheck source=scripts/lib/npm.sh
. "$root/scripts/lib/npm.sh"
pm_npm_ci "$root" >&2 || { echo "bench: npm ci in tests/ failed" >&2; exit 1; }

work=$(mktemp -d /tmp/pm-bench-fhir.XXXXXX)
spid=''
stop_server() {
  if [ -n "$spid" ]; then kill -TERM "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; spid=''; fi
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# the data set and a CA with a server certificate for 127.0.0.1
node "$root/tests/fhir/gen.js" --tz UTC --out "$work/data.json" --truth "$work/truth.json" 2>"$work/gen.log" \
  || { cat "$work/gen.log" >&2; exit 1; }
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=portalmetrics bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf
) >"$work/openssl.log" 2>&1 || { cat "$work/openssl.log" >&2; exit 1; }

# start_server SCHEME: server.js with the delay, its log in $work/requests.tsv
start_server() {
  local tls=() i
  [ "$1" = https ] && tls=(--tls-cert "$work/server.pem" --tls-key "$work/server.key" --http2)
  rm -f "$work/port"
  node "$root/tests/fhir/server.js" --port-file "$work/port" --seed-file "$work/data.json" \
    --log "$work/requests.tsv" --delay-ms "$delay" "${tls[@]}" >>"$work/server.log" 2>&1 &
  spid=$!
  for ((i = 0; i < 300; i++)); do
    [ -s "$work/port" ] && break
    kill -0 "$spid" 2>/dev/null || { cat "$work/server.log" >&2; echo "bench: server.js exited" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$work/port" ] || { echo "bench: server.js did not listen" >&2; exit 1; }
  origin=$1://127.0.0.1:$(cat "$work/port")
}
# control [JSON]: the server's /control (POST JSON first)
control() {
  if [ -n "${1:-}" ]; then
    curl -sf --cacert "$work/ca.pem" -X POST -H 'content-type: application/json' -d "$1" "$origin/control"
  else
    curl -sf --cacert "$work/ca.pem" "$origin/control"
  fi
}
inflight_max() { control | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>console.log(JSON.parse(s).inflight_max))'; }

# daemon LABEL MAX_CONNECTIONS HTTP2: one --once cycle; sets $secs
rows=()
daemon() {
  local label=$1 mc=$2 h2=$3 t0 t1 from n req err
  cat >"$work/bench.conf" <<CONF
daemon = { id = "bench-fhir"; state_dir = "$work/state"; plugin_dir = "$build/plugins";
           timezone = "UTC"; log_level = "notice"; };
database = { conninfo = "host=/nonexistent dbname=unused"; };
collectors = ( { name = "ehr"; plugin = "fhir"; interval = "15m"; timeout = "10m";
  settings = { base_url = "$origin/fhir/R4"; ca_file = "$work/ca.pem"; check_metadata = false;
    backfill = "${buckets}d"; max_connections = $mc; http2 = $h2;
    queries = ( { metric = "portal.lab_reports_sent"; resource = "DiagnosticReport";
                  params = "category=LAB&status=final,amended,corrected"; date_param = "issued"; } ); }; } );
CONF
  chmod 0600 "$work/bench.conf"
  mkdir -p "$work/state" && chmod 0700 "$work/state"
  control '{"reset_stats":true}' >/dev/null
  from=$(wc -l <"$work/requests.tsv")
  t0=$(now)
  "$pmd" -c "$work/bench.conf" --once --stdout >"$work/out.jsonl" 2>"$work/daemon.err" \
    || { cat "$work/daemon.err" >&2; echo "bench: $label: portalmetricsd --once failed" >&2; exit 1; }
  t1=$(now)
  secs=$(calc '%.2f' "$t1 - $t0")
  n=$(grep -c '"metric":"portal.lab_reports_sent"' "$work/out.jsonl" || true)
  req=$(grep '"metric":"fhir.requests"' "$work/out.jsonl" | sed 's/.*"value":\([0-9.]*\).*/\1/' | cut -d. -f1)
  err=$(grep -c '"metric":"fhir.errors"' "$work/out.jsonl" || true)
  [ "$n" = "$buckets" ] && [ "$req" = "$buckets" ] && [ "$err" = 0 ] \
    || { cat "$work/daemon.err" >&2; echo "bench: $label: $n samples, $req requests, $err error series (want $buckets, $buckets, 0)" >&2; exit 1; }
  seen=$(awk -F'\t' -v from="$from" 'NR > from && $2 == "GET" && $3 ~ /^\/fhir\/R4\// && $4 == "ok"' "$work/requests.tsv" | wc -l)
  awk -F'\t' -v from="$from" -v o="$origin" 'NR > from && $2 == "GET" && $3 ~ /^\/fhir\/R4\// { print o $3 }' \
    "$work/requests.tsv" >"$work/urls.txt"
  imax=$(inflight_max)
  echo "bench: $label: $secs s, $seen requests at the server, inflight_max $imax" >&2
  rows+=("$(printf '%-6s %-28s %8s %9s %13s' "${origin%%:*}" "$label" "$secs" "$seen" "$imax")")
}
# curl_loop LABEL: the last run's URLs, one `curl -s` after another
curl_loop() {
  local label=$1 t0 t1 from u
  [ "$(wc -l <"$work/urls.txt")" = "$buckets" ] || { echo "bench: $(wc -l <"$work/urls.txt") URLs from the log, want $buckets" >&2; exit 1; }
  control '{"reset_stats":true}' >/dev/null
  from=$(wc -l <"$work/requests.tsv")
  t0=$(now)
  while read -r u; do
    curl -s --cacert "$work/ca.pem" -H 'Accept: application/fhir+json' -o /dev/null -w '%{http_code}\n' "$u"
  done <"$work/urls.txt" >"$work/curl.codes"
  t1=$(now)
  secs=$(calc '%.2f' "$t1 - $t0")
  [ "$(grep -c '^200$' "$work/curl.codes")" = "$buckets" ] || { echo "bench: $label: not all 200: $(sort "$work/curl.codes" | uniq -c | tr '\n' ' ')" >&2; exit 1; }
  seen=$(awk -F'\t' -v from="$from" 'NR > from && $2 == "GET" && $3 ~ /^\/fhir\/R4\//' "$work/requests.tsv" | wc -l)
  imax=$(inflight_max)
  echo "bench: $label: $secs s, $seen requests at the server, inflight_max $imax" >&2
  rows+=("$(printf '%-6s %-28s %8s %9s %13s' "${origin%%:*}" "$label" "$secs" "$seen" "$imax")")
}

echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); node $(node --version); $(curl --version | head -1 | cut -d' ' -f1-5)"
echo "bench: $buckets bucket requests a cycle, the server answers each after $delay ms"
ratios=() floors=()
for scheme in http https; do
  [ "$scheme" = https ] && [ -n "${BENCH_FHIR_SKIP_TLS:-}" ] && continue
  start_server "$scheme"
  if [ "$scheme" = http ]; then conc=("conc 8:8:true" "conc 32:32:true"); else conc=("h2 1 conn (32 streams):1:true" "h2 8 conns:8:true"); fi
  # a warm-up cycle (not measured): page cache, the server's JIT
  daemon "warm-up" 8 true >/dev/null 2>&1
  rows=("${rows[@]:0:${#rows[@]}-1}")
  seq_s='' curl_s=''
  if [ -z "${BENCH_FHIR_SKIP_SEQ:-}" ]; then
    daemon "seq (1 conn, http/1.1)" 1 false
    seq_s=$secs
    curl_loop "curl -s loop"
    curl_s=$secs
  fi
  for c in "${conc[@]}"; do
    IFS=: read -r label mc h2 <<<"$c"
    daemon "$label" "$mc" "$h2"
    if [ -n "$seq_s" ]; then
      [ "$label" = "${conc[0]%%:*}" ] && floors+=("$(printf '%-6s seq spends %.1f ms a request besides the delay ((seq - %d x %d ms) / %d), mostly the server'"'"'s search (node: one thread): about %.2f s a cycle that concurrency cannot remove' \
        "$scheme" "$(calc '%.2f' "($seq_s * 1000 - $buckets * $delay) / $buckets")" "$buckets" "$delay" "$buckets" \
        "$(calc '%.3f' "$seq_s - $buckets * $delay / 1000")")")
      ratios+=("$(printf '%-6s %-28s seq/conc %6.1f   curl/conc %6.1f' "$scheme" "$label" \
        "$(calc '%.2f' "$seq_s / $secs")" "$(calc '%.2f' "$curl_s / $secs")")")
    fi
  done
  stop_server
done

echo "scheme run                          wall s  requests  inflight_max"
printf '%s\n' "${rows[@]}"
[ ${#ratios[@]} = 0 ] || printf '%s\n' "${ratios[@]}" "${floors[@]}"
