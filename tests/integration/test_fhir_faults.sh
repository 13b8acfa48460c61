#!/usr/bin/env bash
# The fhir collector against misbehaving FHIR servers (tests/fhir/server.js
# fault modes, seeded by tests/fhir/gen.js), one daemon running normally
# into a private PostgreSQL, with three collectors:
#   ehr   fhir, interval 3s, against server "ehr": three queries x 3 local
#         days (UTC): lab reports and no-shows by Bundle.total (one
#         request a bucket), cancelled appointments paged (total = "page",
#         page_size 1, so a day with two or more has a next link);
#         timeout 2s, retries 1, backoff 300ms, retry_after_max 5s,
#         max_response 2KiB;
#   hung  fhir, interval 5s, against its own server "hung" (so its hang
#         touches nothing else): lab reports x 3 days, timeout 2s,
#         retries 1, backoff 100ms;
#   tick  demo in load mode, interval 1s (20 samples a second).
# The collector's run deadline is its interval (the daemon allows no
# longer), hence 3s: a run that waits a Retry-After of 2 s must fit.
# Before most phases a new resource is POSTed to the server, so "the
# counts equal the truth" means the faulted run (or its retries) counted.
# It shows:
#  0) 429 with Retry-After 10 (over retry_after_max) on every request of
#     the first run: the buckets fail at once (not retried), the log says
#     "over retry_after_max", nothing lands; the NEXT run fills them;
#  1) 429 with Retry-After 2 on 3 requests: each is asked again >= 2 s
#     after its refusal (server log times), no bucket fails, the counts
#     equal the truth, fhir.errors{rate_limited} adds 3; 2) the same for 503;
#  3) hang (hung's server never answers, from the start): each request
#     times out after 2 s, is retried once, and the run ends (every bucket
#     failed, reason timeout, one per hung request; all six attempts
#     reach the server: one hung request must not hold the others back
#     until they time out unsent), while "tick" keeps
#     landing samples (no gap over 2.5 s); once the server answers again
#     hung's counts come right and "counted again" is logged;
#  4) garbage (200, invalid JSON) x2: reason json, retried, counts right;
#  5) truncated (half a body, connection closed) x2: reason truncated,
#     retried, counts right;
#  6) outcome (400 OperationOutcome) over two runs: not retried (the same
#     URL only at the next run), the buckets keep their previous values
#     (a resource POSTed meanwhile is not counted), reason outcome, one log
#     line per query for the two runs (episode) naming "outcome", severity
#     and code but not the diagnostics text (a fake patient identifier);
#     once it clears, one "counted again" per query, counts right;
#  7) a body over max_response (with Content-Length, then chunked):
#     reason too_large, not retried, no crash, counts right after;
#  8) next links to another origin (a second listener): reason next_origin
#     for each paged bucket with a next link, the other origin gets no
#     request, counts right after;
#  9) fhir.errors has exactly those reasons and counts; the daemon's log
#     has no URL query string, no patient id or identifier, and the
#     daemon exits 0 on SIGTERM.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fhir_lib.sh"

# Counts are per UTC day and the test takes about a minute: do not start
# it just before midnight.
left=$((86400 - $(date -u +%s) % 86400))
[ "$left" -gt 150 ] || sleep $((left + 2))

pm_pg
pm_plugins fhir demo
fhir_gen --tz UTC
fhir_server ehr
fhir_server hung
SLOG=$(fhir_req_log ehr)
HLOG=$(fhir_req_log hung)
DLOG=$T/daemon.log
BASE=$(fhir_base ehr)
EXTRA=$FHIR_DIR/extra.tsv
: >"$EXTRA"

# A second origin for next links: a listener that logs what reaches it.
node -e '
  const [portFile, log] = process.argv.slice(1);
  const fs = require("fs");
  require("http").createServer((q, s) => {
    fs.appendFileSync(log, `${Date.now()}\t${q.method}\t${q.url}\n`);
    s.writeHead(404); s.end();
  }).listen(0, "127.0.0.1", function () {
    fs.writeFileSync(portFile + ".tmp", String(this.address().port));
    fs.renameSync(portFile + ".tmp", portFile);
  });' "$FHIR_DIR/foreign.port" "$FHIR_DIR/foreign.requests" >"$T/foreign.log" 2>&1 &
DAEMON_PIDS+=("$!")
for ((i = 0; i < 100; i++)); do [ -s "$FHIR_DIR/foreign.port" ] && break; sleep 0.1; done
[ -s "$FHIR_DIR/foreign.port" ] || fail "the foreign listener did not start"
FOREIGN=http://127.0.0.1:$(cat "$FHIR_DIR/foreign.port")
touch "$FHIR_DIR/foreign.requests"

# ---- helpers -----------------------------------------------------------

# soft MESSAGE: a failure reported at the end, so one run shows them all.
SOFT=()
soft() { echo "FAIL (reported at the end): $*" >&2; SOFT+=("$*"); }

# ff_post TYPE JSON: create a resource on the server (status 201).
ff_post() {
  node -e '
    fetch(process.argv[1], { method: "POST", headers: { "content-type": "application/fhir+json" }, body: process.argv[2] })
      .then((r) => process.exit(r.status === 201 ? 0 : 1), () => process.exit(1));' "$BASE/$1" "$2" \
    || fail "POST $1 to the server failed"
}
# ff_lab DAY: a final LAB DiagnosticReport issued at DAY's first instant
# (UTC), one more portal.lab_reports_sent that day.
ff_lab() {
  ff_post DiagnosticReport "{\"resourceType\":\"DiagnosticReport\",\"status\":\"final\",
    \"category\":[{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v2-0074\",\"code\":\"LAB\"}]}],
    \"code\":{\"text\":\"fault test\"},\"issued\":\"${1}T00:00:00Z\"}"
  printf 'portal.lab_reports_sent\t%s\t1\n' "$1" >>"$EXTRA"
}
# ff_cancelled: a cancelled Appointment, updated now (today, by _lastUpdated).
ff_cancelled() {
  ff_post Appointment '{"resourceType":"Appointment","status":"cancelled",
    "participant":[{"actor":{"reference":"Practitioner/prac-001"},"status":"accepted"}]}'
  printf 'portal.appointments_canceled\t%s\t1\n' "$(date -u +%F)" >>"$EXTRA"
}
# ff_truth FILE [only-lab]: the truth of ehr's three queries on the three
# days of its window (today and the two before, UTC), plus what was
# POSTed to ehr's server; only-lab: hung's (the lab query, nothing POSTed).
ff_truth() {
  node -e '
    const fs = require("fs");
    const [tf, ef, out, only, ...days] = process.argv.slice(1);
    const t = JSON.parse(fs.readFileSync(tf, "utf8"));
    const ex = fs.readFileSync(ef, "utf8").split("\n").filter(Boolean).map((l) => l.split("\t"));
    const keep = ["portal.lab_reports_sent", "portal.appointments_noshow", "portal.appointments_canceled"]
      .filter((m) => !only || m === "portal.lab_reports_sent");
    t.queries = t.queries.filter((q) => keep.includes(q.metric)).map((q) => {
      const d = {};
      for (const day of days)
        d[day] = (q.days[day] || 0) + ex.filter((e) => e[0] === q.metric && e[1] === day).reduce((a, e) => a + Number(e[2]), 0);
      return { ...q, days: d };
    });
    if (t.queries.length !== (only ? 1 : 3)) throw new Error("truth: queries missing");
    fs.writeFileSync(out, JSON.stringify(t));' \
    "$FHIR_TRUTH" "$(if [ -n "${2:-}" ]; then echo /dev/null; else echo "$EXTRA"; fi)" "$1" "${2:-}" "$(date -u -d '-2 day' +%F)" "$(date -u -d '-1 day' +%F)" "$(date -u +%F)"
}
# ff_counts_right TIMEOUT WHAT: until ehr's values equal ff_truth.
ff_counts_right() {
  ff_truth "$FHIR_DIR/now.json"
  fhir_wait_counts ehr name "$1" --truth "$FHIR_DIR/now.json" \
    || fail "$2: counts differ from the truth:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.ehr.txt")")"
}
# ff_wait_errors REASON N TIMEOUT: until fhir.errors{reason} = N (more fails).
ff_wait_errors() {
  local n end=$((SECONDS + $3))
  while :; do
    n=$(fhir_errors ehr "$1")
    [ "$n" = "$2" ] && return 0
    [ "$n" -gt "$2" ] && fail "fhir.errors{reason=$1} = $n, want $2"
    [ $SECONDS -lt $end ] || fail "fhir.errors{reason=$1} = $n after $3 s, want $2"
    sleep 0.2
  done
}
# ff_idle: wait for ehr's next run to begin and end (the server's log
# quiet for 0.5 s after requests): a fault set now hits the run after.
ff_idle() {
  local n0 n i quiet=0
  n0=$(grep -c $'\tGET\t/fhir/R4/' "$SLOG" || true)
  for ((i = 0; i < 150; i++)); do
    n=$(grep -c $'\tGET\t/fhir/R4/' "$SLOG" || true)
    [ "$n" -gt "$n0" ] && break
    sleep 0.1
  done
  [ "$n" -gt "$n0" ] || fail "no run of ehr in 15 s"
  n=$(wc -l <"$SLOG")
  for ((i = 0; i < 150 && quiet < 5; i++)); do
    sleep 0.1
    if [ "$(wc -l <"$SLOG")" = "$n" ]; then quiet=$((quiet + 1)); else quiet=0; n=$(wc -l <"$SLOG"); fi
  done
  [ $quiet -ge 5 ] || fail "ehr's requests never paused"
}
# ff_gaps FROM DISP: for each GET answered DISP after server log line
# FROM, the ms until the next request of the same URL ("none": none).
ff_gaps() {
  awk -F'\t' -v from="$1" -v d="$2" '
    NR > from && $2 == "GET" { if ($3 in p) { print $1 - p[$3]; delete p[$3] } if ($4 == d) p[$3] = $1 }
    END { for (u in p) print "none" }' "$SLOG"
}
# ff_disp FROM DISP: requests answered DISP after ehr's server log line FROM.
ff_disp() { awk -F'\t' -v from="$1" -v d="$2" 'NR > from && $4 == d' "$SLOG" | wc -l; }
# ff_disp_in LOG DISP: requests answered DISP in a server log.
ff_disp_in() { awk -F'\t' -v d="$2" '$4 == d' "$1" | wc -l; }
# ff_log_since LINE: ehr's lines in the daemon's log after LINE.
ff_log_since() { tail -n +$(($1 + 1)) "$DLOG" | grep -F '[ehr]' || true; }
lines() { wc -l <"$1"; }

Q_LAB='{ metric = "portal.lab_reports_sent"; name = "portal_lab_reports_sent"; resource = "DiagnosticReport";
         params = "category=LAB&status=final,amended,corrected"; date_param = "issued"; }'
Q_NOSHOW='{ metric = "portal.appointments_noshow"; name = "portal_appointments_noshow"; resource = "Appointment";
            params = "status=noshow"; date_param = "date"; }'
Q_CANC='{ metric = "portal.appointments_canceled"; name = "portal_appointments_canceled"; resource = "Appointment";
          params = "status=cancelled"; date_param = "_lastUpdated"; total = "page"; }'
NQ=3
NB=$((NQ * 3)) # buckets; each run's first requests
fhir_conf "$T/f.conf" \
  "  { name = \"ehr\"; plugin = \"fhir\"; interval = \"3s\";
    settings = { base_url = \"$BASE\"; backfill = \"3d\"; check_metadata = false;
      timeout = \"2s\"; retries = 1; backoff = \"300ms\"; backoff_max = \"1s\";
      retry_after_max = \"5s\"; max_response = \"2KiB\"; page_size = 1;
      queries = ( $Q_LAB, $Q_NOSHOW, $Q_CANC ); }; }" \
  "  { name = \"hung\"; plugin = \"fhir\"; interval = \"5s\";
    settings = { base_url = \"$(fhir_base hung)\"; backfill = \"3d\"; check_metadata = false;
      timeout = \"2s\"; retries = 1; backoff = \"100ms\"; queries = ( $Q_LAB ); }; }" \
  '  { name = "tick"; plugin = "demo"; interval = "1s"; settings = { rate = 20; series = 1; }; }'

# today's paged bucket surely has a next link (two cancelled appointments)
ff_cancelled
ff_cancelled
t0=$SECONDS

# ---- 0) Retry-After over retry_after_max: fails now, the next run fills
# ---- 3) hung's server hangs from the start: its first run ends anyway
fhir_control ehr "{\"mode\":\"429\",\"count\":$NB,\"retry_after\":10}" >/dev/null
fhir_control hung '{"mode":"hang"}' >/dev/null
from=$(lines "$SLOG")
(
  while :; do
    echo "$EPOCHREALTIME $(q "SELECT count(*) FROM portalmetrics.samples_v WHERE metric = 'demo.load'" || echo -1)"
    sleep 0.2
  done
) >"$T/tick.tsv" &
POLL=$!
DAEMON_PIDS+=("$POLL")
pm_start "$T/f.conf"
# wait for hung's first run to end; meanwhile, as soon as ehr's first run
# has failed, check that nothing of it landed (unless its next run has
# already been answered)
empty_checked=0 hang_end=
for ((i = 0; i < 300; i++)); do
  if [ $empty_checked = 0 ] && [ "$(grep -c '\[ehr\] .*over retry_after_max' "$DLOG" || true)" -ge $NQ ]; then
    sleep 0.5
    if [ "$(ff_disp "$from" ok)" = 0 ]; then
      [ "$(fhir_values ehr)" = 0 ] || fail "0) values landed from a run whose buckets all failed"
      empty_checked=1
    else
      empty_checked=skipped
    fi
  fi
  if grep -q '\[hung\] .*buckets not counted' "$DLOG"; then
    hang_end=$EPOCHREALTIME
    break
  fi
  sleep 0.1
done
[ -n "$hang_end" ] || fail "3) hung's first run did not end in 30 s"
fhir_control hung '{"mode":"ok"}' >/dev/null
grep -q '\[hung\] .*3 of 3 buckets not counted .*failed requests: timeout x6;' "$DLOG" \
  || fail "3) hung's first run did not end with its 3 buckets failed, 6 timeouts: $(grep '\[hung\]' "$DLOG")"
hang_first=$(awk -F'\t' '$4 == "hang" { print $1; exit }' "$HLOG")
hung_s=$(awk -v a="$hang_first" -v b="$hang_end" 'BEGIN { printf "%.1f", b - a / 1000 }')
awk -v s="$hung_s" 'BEGIN { exit s >= 4 && s <= 8 ? 0 : 1 }' \
  || fail "3) the hung run ended ${hung_s} s after its first request (2 x 2 s timeouts + 0.1 s backoff)"
kill "$POLL" 2>/dev/null || true
wait "$POLL" 2>/dev/null || true
for ((i = 0; i < 200; i++)); do
  [ "$(grep -c '\[ehr\] .*over retry_after_max' "$DLOG" || true)" -ge $NQ ] && break
  sleep 0.1
done
[ "$(grep -c '\[ehr\] .*buckets not counted this run.*over retry_after_max' "$DLOG" || true)" = $NQ ] \
  || fail "0) not one 'over retry_after_max' line per query: $(grep -i 'buckets' "$DLOG" | head -5)"
[ "$(grep -c '\[ehr\] .*3 of 3 buckets not counted' "$DLOG" || true)" = $NQ ] || fail "0) the buckets did not all fail"
ff_counts_right 20 "0) the run after the refused one"
ff_wait_errors rate_limited $NB 10
[ "$(ff_disp "$from" 429)" = $NB ] || fail "0) $(ff_disp "$from" 429) requests refused, want $NB"
# not retried in that run: each URL was asked again only by the next run
# (2 s later), not after its Retry-After (10 s) nor a backoff (0.3 s)
ff_gaps "$from" 429 | awk '$1 == "none" || $1 < 1500 || $1 >= 10000 { bad++ } END { exit bad ? 1 : 0 }' \
  || fail "0) a refused request was retried in its run or late: gaps $(ff_gaps "$from" 429 | tr '\n' ' ')"
pm_wait_log "\[ehr\] .*counted again" 10 || fail "0) no 'counted again' after the refused run"
echo "0) Retry-After 10 > retry_after_max: $NB buckets failed at once (nothing landed: $empty_checked), the next run filled them ($((SECONDS - t0)) s)"

# ---- 1, 2) 429 / 503 with Retry-After 2: retried after it ---------------
rl=$NB
for st in 429 503; do
  ff_idle
  ff_lab "$(date -u +%F)"
  from=$(lines "$SLOG") dfrom=$(lines "$DLOG") t1=$SECONDS
  fhir_control ehr "{\"mode\":\"$st\",\"count\":3,\"retry_after\":2}" >/dev/null
  rl=$((rl + 3))
  ff_wait_errors rate_limited $rl 20
  ff_counts_right 10 "$st"
  gaps=$(ff_gaps "$from" "$st" | tr '\n' ' ')
  [ "$(ff_disp "$from" "$st")" = 3 ] || fail "$st: $(ff_disp "$from" "$st") refused, want 3"
  for g in $gaps; do
    [ "$g" != none ] && [ "$g" -ge 2000 ] || fail "$st: a refused request was asked again after $g ms, Retry-After is 2 s (gaps: $gaps)"
  done
  ff_log_since "$dfrom" | grep -E '[1-9][0-9]* of [0-9]+ buckets not counted' \
    && fail "$st: a bucket failed though its retry was answered"
  echo "$st) Retry-After 2: asked again after $gaps ms; counts right, rate_limited +3 ($((SECONDS - t1)) s)"
done

# ---- 3) hang, continued: hung's counts come right, tick went on ------
hangs=$(ff_disp_in "$HLOG" hang)
[ "$hangs" = 6 ] || soft "3) $hangs requests reached the hanging server, want 6 (3 buckets x 2 attempts): the others timed out inside the client without being sent"
ff_truth "$FHIR_DIR/hung.json" only-lab
fhir_wait_counts hung name 20 --truth "$FHIR_DIR/hung.json" \
  || fail "3) hung's counts after the hang:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.hung.txt")")"
pm_wait_log '\[hung\] query portal_lab_reports_sent: counted again' 10 || fail "3) no 'counted again' for hung"
n=$(fhir_errors hung timeout)
[ "$n" = 6 ] || fail "3) fhir.errors{collector=hung,reason=timeout} = $n, want 6"
[ "$(fhir_errors hung)" = 6 ] || fail "3) hung counted other errors: $(fhir_errors hung)"
# tick's samples over the hang: the longest time between two increases,
# from its first landing to the end of the hung run
# (and from the last increase to that end)
read -r ups gap < <(awk -v end="$hang_end" '$2 < 0 || $1 > end { next }
  prev != "" && $2 != prev { if (last != "" && $1 - last > max) max = $1 - last; last = $1; n++ }
  { prev = $2 } END { if (last != "" && end - last > max) max = end - last; printf "%d %.2f\n", n, max }' "$T/tick.tsv")
[ "$ups" -ge 2 ] || fail "3) tick's samples grew $ups times during the hang"
awk -v g="$gap" 'BEGIN { exit g <= 2.5 ? 0 : 1 }' || fail "3) tick's samples stalled ${gap} s during the hang"
echo "3) hang: hung's run ended ${hung_s} s after its first request, 6 timeouts counted ($hangs reached the server), counts right after; tick grew $ups times meanwhile, longest gap ${gap} s"

# ---- 4, 5) garbage, truncated: retried --------------------------------
for m in garbage:json truncated:truncated; do
  mode=${m%%:*} reason=${m#*:}
  ff_idle
  ff_lab "$(date -u -d '-2 day' +%F)"
  dfrom=$(lines "$DLOG") from=$(lines "$SLOG") t1=$SECONDS
  fhir_control ehr "{\"mode\":\"$mode\",\"count\":2}" >/dev/null
  ff_wait_errors "$reason" 2 20
  ff_counts_right 10 "$mode"
  [ "$(ff_disp "$from" "$mode")" = 2 ] || fail "$mode: $(ff_disp "$from" "$mode") answered so, want 2"
  ff_log_since "$dfrom" | grep -E '[1-9][0-9]* of [0-9]+ buckets not counted' \
    && fail "$mode: a bucket failed though its retry was answered"
  ff_log_since "$dfrom" | grep "failed requests: .*$reason x" >/dev/null || fail "$mode: no log line with reason $reason"
  echo "$mode) reason $reason x2, retried, counts right ($((SECONDS - t1)) s)"
done

# ---- 6) outcome over two runs: not retried, values kept, logged once ---
ff_idle
ff_truth "$FHIR_DIR/before.json"
ff_lab "$(date -u -d '-1 day' +%F)" # not counted while the server refuses
dfrom=$(lines "$DLOG") from=$(lines "$SLOG") t1=$SECONDS
fhir_control ehr '{"mode":"outcome"}' >/dev/null
for ((i = 0; i < 200; i++)); do
  [ "$(ff_disp "$from" outcome)" -ge $((2 * NB)) ] && break
  sleep 0.1
done
[ "$(ff_disp "$from" outcome)" -ge $((2 * NB)) ] || fail "6) two runs did not happen in 20 s"
sleep 0.5 # the second run's log and samples
fhir_compare ehr name --truth "$FHIR_DIR/before.json" >"$FHIR_DIR/cmp.before.txt" \
  || fail "6) values changed while every request got an OperationOutcome:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.before.txt")")"
fhir_control ehr '{"mode":"ok"}' >/dev/null
ff_counts_right 20 "6) after the outcome"
outcomes=$(ff_disp "$from" outcome)
ff_wait_errors outcome "$outcomes" 10
ff_gaps "$from" outcome | awk '$1 != "none" && $1 < 1500 { bad++ } END { exit bad ? 1 : 0 }' \
  || fail "6) an OperationOutcome was retried: gaps $(ff_gaps "$from" outcome | tr '\n' ' ')"
ff_log_since "$dfrom" >"$T/outcome.log.txt"
[ "$(grep -c 'buckets not counted' "$T/outcome.log.txt" || true)" = $NQ ] \
  || fail "6) two runs of the same fault: want one line per query: $(grep 'buckets not counted' "$T/outcome.log.txt")"
[ "$(grep -c '3 of 3 buckets not counted this run (their previous values stay); failed requests: outcome x' "$T/outcome.log.txt" || true)" = $NQ ] \
  || fail "6) the outcome lines: $(grep 'buckets not counted' "$T/outcome.log.txt")"
[ "$(grep -c 'OperationOutcome: severity error, code processing' "$T/outcome.log.txt" || true)" = $NQ ] \
  || fail "6) the outcome lines do not name severity and code: $(grep 'buckets not counted' "$T/outcome.log.txt")"
grep -q 'invalid search\|ZZFAKE' "$DLOG" && fail "6) the OperationOutcome's diagnostics reached the log"
for ((i = 0; i < 50; i++)); do
  [ "$(ff_log_since "$dfrom" | grep -c 'counted again' || true)" -ge $NQ ] && break
  sleep 0.1
done
[ "$(ff_log_since "$dfrom" | grep -c 'counted again' || true)" = $NQ ] || fail "6) not one 'counted again' per query"
echo "6) outcome: $outcomes refused over two runs, not retried, values kept; one line per query; counted again ($((SECONDS - t1)) s)"

# ---- 7) bodies over max_response ---------------------------------------
for chunked in false true; do
  ff_idle
  dfrom=$(lines "$DLOG") from=$(lines "$SLOG") t1=$SECONDS
  n=$(fhir_errors ehr too_large)
  fhir_control ehr "{\"mode\":\"big\",\"count\":1,\"big_bytes\":8192,\"chunked\":$chunked}" >/dev/null
  ff_wait_errors too_large $((n + 1)) 20
  ff_log_since "$dfrom" | grep '1 of 3 buckets not counted.*too_large x1' >/dev/null \
    || fail "7) chunked=$chunked: no log line with one bucket failed for too_large: $(ff_log_since "$dfrom" | grep buckets)"
  ff_gaps "$from" big | awk '$1 != "none" && $1 < 1500 { bad++ } END { exit bad ? 1 : 0 }' \
    || fail "7) a body too large was asked again in its run"
  kill -0 "$DPID" 2>/dev/null || fail "7) the daemon died"
  ff_counts_right 10 "7) after a body too large"
  echo "7) a body over 2KiB (chunked=$chunked): too_large, not retried, no crash ($((SECONDS - t1)) s)"
done

# ---- 8) a next link to another origin ----------------------------------
ff_truth "$FHIR_DIR/now.json"
want=$(node -p "Object.values(require('$FHIR_DIR/now.json').queries.find((q) => q.metric === 'portal.appointments_canceled').days).filter((n) => n > 1).length")
[ "$want" -ge 1 ] || fail "8) no paged bucket with a next link"
ff_idle
dfrom=$(lines "$DLOG") from=$(lines "$SLOG") t1=$SECONDS
fhir_control ehr "{\"mode\":\"foreign_next\",\"count\":$NB,\"foreign_origin\":\"$FOREIGN\"}" >/dev/null
ff_wait_errors next_origin "$want" 20
ff_counts_right 10 "8) after the foreign next links"
[ "$(ff_disp "$from" foreign_next)" = $NB ] || fail "8) $(ff_disp "$from" foreign_next) requests with foreign next links, want $NB (one run)"
[ -s "$FHIR_DIR/foreign.requests" ] && fail "8) the other origin got requests: $(head -3 "$FHIR_DIR/foreign.requests")"
ff_log_since "$dfrom" | grep "$want of 3 buckets not counted.*next_origin x$want" >/dev/null \
  || fail "8) no log line for next_origin: $(ff_log_since "$dfrom" | grep buckets)"
echo "8) next links to $FOREIGN: next_origin x$want, never followed ($((SECONDS - t1)) s)"

# ---- 9) the error counts, privacy, a clean stop -------------------------
pm_stop "$DPID" 10
q "SELECT labels->>'reason', sum(value)::bigint FROM portalmetrics.samples_v
   WHERE metric = 'fhir.errors' AND labels->>'collector' = 'ehr' GROUP BY 1 ORDER BY 1" | tr '|' ' ' >"$T/errors.txt"
printf '%s\n' "json 2" "next_origin $want" "outcome $outcomes" "rate_limited $rl" \
  "too_large 2" "truncated 2" | LC_ALL=C sort >"$T/errors.want"
LC_ALL=C sort "$T/errors.txt" | diff "$T/errors.want" - >"$T/errors.diff" \
  || fail "9) fhir.errors by reason (want, got): $(cat "$T/errors.diff")"
grep -nE '\?[A-Za-z_]+=|_summary|_count=|_offset|identifier=|issued=|status=' "$DLOG" \
  && fail "9) a query string in the daemon's log"
grep -nE 'pat-[0-9]|Patient/|MRN|ZZFAKE|acct-' "$DLOG" && fail "9) a patient id in the daemon's log"
echo "9) fhir.errors: $(tr '\n' ',' <"$T/errors.txt" | sed 's/,$//'); no query string or patient id logged"
[ ${#SOFT[@]} = 0 ] || fail "$(printf '%s\n' "${SOFT[@]}")"
echo "fhir faults: OK in $((SECONDS - t0)) s"
