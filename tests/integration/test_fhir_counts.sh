#!/usr/bin/env bash
# The fhir collector against a real FHIR server (tests/fhir/server.js:
# @medplum/fhir-router over its in-memory repository) seeded with the
# deterministic data set of tests/fhir/gen.js, whose true per-day counts
# gen.js computes from the data itself. One daemon, running normally (not
# --once; intervals of 12 to 40 s, each longer than its collector's run,
# since a run past its interval is abandoned), in the truth's time zone,
# writes to a private PostgreSQL. It shows:
# a) the default set (no queries; portal_identifier_system from the
#    truth), backfill 32d: every local day's count in PostgreSQL equals the
#    truth for every default query, and patients_enrolled (a gauge) too;
# b) every truth query (x.* included) as a custom query (a canonical
#    metric, name = the truth metric with dots as "_", its classify path
#    and class): per-day counts equal the truth, except the one the
#    server cannot answer (x.appointments_requested_by_created, by
#    `created`): its counts are all zero while its truth is not, the
#    comparison flags it, and the daemon logged the metadata warning
#    naming it and `created`. Generic guard: every query with a non-zero
#    truth has a non-zero collected sum (that one excepted);
# c) paging (the custom queries but the unanswerable one, backfill 5d,
#    the truth's last 4 days compared): a server without Bundle.total
#    (mode nototal), page_size 7, so every bucket pages: counts equal the
#    truth; a server with opaque next links (--paging opaque) that adds
#    include and outcome entries to every page (mode include), every query
#    total = "page", page_size 7: counts equal the truth (include/outcome
#    not counted), and every page after the first was fetched by its next
#    link exactly as given;
# d) the default set's next run leaves the same values (set: nothing
#    doubles), and late changes through the server's FHIR API (a new lab
#    report POSTed, a patient's message PUT to entered-in-error, on old
#    days) are corrected in their days (+1, -1) at the run after;
# e) privacy: the daemon's log has no query string ('?'), no patient
#    reference ('Patient/', a patient id) and no 'identifier='.
# Backfill is 32d, not 31d: gen.js's 31 local days end at the current
# hour, and a run just after local midnight must still cover the first.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fhir_lib.sh"
pm_pg
pm_plugins fhir
fhir_gen
IDSYS=$(node -p "require('$FHIR_TRUTH').generated.portal_identifier_system")
BYCREATED=x.appointments_requested_by_created
node -e "const t=require('$FHIR_TRUTH');process.exit(t.queries.some(q=>q.metric==='$BYCREATED'&&q.date_param==='created')?0:1)" \
  || fail "the truth has no $BYCREATED by created: has gen.js changed?"

# one server per collector: server.js answers one request at a time
# (some 20 ms a search), so the collectors do not wait for each other
fhir_server plain
fhir_server custom
fhir_server nototal
fhir_server opaque --paging opaque
fhir_control nototal '{"mode":"nototal"}' >/dev/null
fhir_control opaque '{"mode":"include"}' >/dev/null

# intervals: a run must end within its interval (the collector's timeout);
# def's is short enough for (d) to see more runs. The paging collectors
# count the last 5 days (200-odd requests of 7 entries).
B32='backfill = "32d";'
B5='backfill = "5d"; page_size = 7;'
fhir_conf "$T/f.conf" \
  "$(FHIR_INTERVAL=12s fhir_collector def plain "$B32 portal_identifier_system = \"$IDSYS\";")" \
  "$(FHIR_INTERVAL=40s fhir_collector custom custom "$B32 $(fhir_queries)")" \
  "$(FHIR_INTERVAL=40s fhir_collector nototal nototal "$B5 $(fhir_queries --skip "^$BYCREATED\$")")" \
  "$(FHIR_INTERVAL=40s fhir_collector opaque opaque "$B5 $(fhir_queries --skip "^$BYCREATED\$" --total page)")"
start=$SECONDS
pm_start "$T/f.conf"

# ---- a) the default set ----------------------------------------------
fhir_wait_counts def default 60 \
  || fail "default set: counts differ from the truth:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.def.txt")")"
echo "a) default set equals the truth after $((SECONDS - start)) s:"
sed 's/^/   /' "$FHIR_DIR/cmp.def.txt"
[ "$(grep -c $'\tok\t' "$FHIR_DIR/cmp.def.txt")" = 7 ] || fail "default set: not 7 queries compared"

# ---- b) custom queries -----------------------------------------------
fhir_wait_counts custom name 60 --skip "^$BYCREATED\$" \
  || fail "custom queries: counts differ from the truth:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.custom.txt")")"
# the unanswerable query: its buckets landed (all of them) and are all zero
fhir_compare custom name >"$FHIR_DIR/cmp.custom.all.txt" \
  && fail "the comparison did not catch $BYCREATED: $(grep "^$BYCREATED" "$FHIR_DIR/cmp.custom.all.txt")"
IFS=$'\t' read -r _ st want got det < <(grep "^$BYCREATED"$'\t' "$FHIR_DIR/cmp.custom.all.txt")
[ "$st" = diff ] && [ "$want" -gt 0 ] && [ "$got" = 0 ] \
  || fail "$BYCREATED: want diff, truth > 0, collected 0; got: $st $want $got $det"
grep -q "missing" <<<"$det" && fail "$BYCREATED: days missing, not zero: $det"
# the only difference is that query
[ "$(grep -c $'\tdiff\t' "$FHIR_DIR/cmp.custom.all.txt")" = 1 ] \
  || fail "custom queries: other differences: $(grep $'\tdiff\t' "$FHIR_DIR/cmp.custom.all.txt")"
# the generic guard: every query with events counted some
awk -F'\t' '$3 > 0 && $4 == 0 { print $1 }' "$FHIR_DIR/cmp.custom.all.txt" >"$FHIR_DIR/zero.txt"
[ "$(cat "$FHIR_DIR/zero.txt")" = "$BYCREATED" ] \
  || fail "queries silently zero: $(tr '\n' ' ' <"$FHIR_DIR/zero.txt") (only $BYCREATED expected)"
bcname=${BYCREATED//./_}
grep -q "query $bcname: the server's CapabilityStatement says it cannot answer it (.*created" "$T/daemon.log" \
  || fail "no metadata warning naming $bcname and created: $(grep -i capabilit "$T/daemon.log")"
nq=$(grep -c . "$FHIR_DIR/cmp.custom.all.txt")
echo "b) ($((SECONDS - start)) s) $((nq - 1)) of $nq custom queries equal the truth; $BYCREATED caught: truth $want, collected 0, warned:"
grep -o "query $bcname: .*" "$T/daemon.log" | head -1 | sed 's/^/   /'

# ---- c) paging -------------------------------------------------------
fhir_wait_counts nototal name 60 --skip "^$BYCREATED\$" --last 4 \
  || fail "nototal, page_size 7: counts differ:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.nototal.txt")")"
NT=$(fhir_req_log nototal)
# every search page-sized: _summary=count unanswered, then pages of 7
npages=$(grep -c $'\t''GET'$'\t''/fhir/R4/[A-Za-z]*?.*_count=7.*'$'\t''nototal$' "$NT" || true)
nnext=$(grep -c $'\t''GET'$'\t''/fhir/R4/[A-Za-z]*?.*_offset=[1-9].*'$'\t''nototal$' "$NT" || true)
[ "$npages" -gt 0 ] && [ "$nnext" -gt 0 ] || fail "nototal: $npages pages of 7, $nnext next pages: did it page?"
echo "c) ($((SECONDS - start)) s) nototal, page_size 7: counts equal the truth ($npages page requests, $nnext of them next links)"

fhir_wait_counts opaque name 60 --skip "^$BYCREATED\$" --last 4 \
  || fail "opaque paging, include entries: counts differ:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.opaque.txt")")"
OP=$(fhir_req_log opaque)
ninc=$(fhir_control opaque | node -pe 'JSON.parse(require("fs").readFileSync(0)).requests.include || 0')
[ "$ninc" -gt 0 ] || fail "opaque: no page with include entries was served"
# a next page is fetched only by the server's link, exactly as given
cut -f3 "$OP" | grep '_getpages' >"$FHIR_DIR/opaque.next" || fail "opaque: no next link followed"
grep -Ev '^/fhir/R4\?_getpages=p[0-9]+x[a-z0-9]+&_pageoffset=[0-9]+&_count=7$' "$FHIR_DIR/opaque.next" >"$FHIR_DIR/opaque.bad" \
  && fail "next links not followed as given: $(head -3 "$FHIR_DIR/opaque.bad")"
grep -q $'\t410$\|\tnotfound$' "$OP" && fail "opaque: a paging state the server did not give was asked for"
echo "c) ($((SECONDS - start)) s) opaque next links with include/outcome entries: counts equal the truth ($(grep -c . "$FHIR_DIR/opaque.next") next links followed exactly, $ninc pages with include entries)"

# ---- d) more runs: the same values; a late change corrected ------------
runs=$(fhir_runs def)
before=$(fhir_rows def | cut -f1-5 | sort)
fhir_wait_runs def $((runs + 1)) 30 || fail "no more runs of def in 30 s"
fhir_compare def default >"$FHIR_DIR/cmp.def2.txt" || fail "def changed after more runs: $(cat "$FHIR_DIR/cmp.def2.txt")"
after=$(fhir_rows def | cut -f1-5 | sort)
# the gauge gets a sample per run; the daily samples are the same rows
diff <(grep -v '^portal.patients_enrolled' <<<"$before") <(grep -v '^portal.patients_enrolled' <<<"$after") >"$FHIR_DIR/d.diff" \
  || fail "daily samples changed with more runs: $(head -5 "$FHIR_DIR/d.diff")"
echo "d) ($((SECONDS - start)) s) after run $((runs + 1)): the same daily values, no doubling"

# the late changes, on the truth's 4th day: a LAB report issued at local
# noon, and a completed message from a patient to a practitioner (not to
# a patient) put to entered-in-error; the truth adjusted by hand
node - "$FHIR_TRUTH" "$FHIR_DATA" "$FHIR_DIR/truth2.json" "$FHIR_DIR/late" "$PM_SRC/tests/fhir/tz.js" \
  >"$FHIR_DIR/late.days" <<'JS' || fail "could not prepare the late changes"
const fs = require('fs');
const [truthF, dataF, out, late, tzF] = process.argv.slice(2);
const tz = require(tzF);
const t = JSON.parse(fs.readFileSync(truthF, 'utf8'));
const data = JSON.parse(fs.readFileSync(dataF, 'utf8'));
const zone = t.generated.tz;
const day = t.generated.days[3];
const noon = new Date(tz.localMidnight(day, zone) + 12 * 3600000).toISOString();
const dr = { resourceType: 'DiagnosticReport', status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'LAB' }] }],
  code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] }, issued: noon, effectiveDateTime: noon };
const comm = data.entry.map((e) => e.resource).find((r) => r.resourceType === 'Communication' &&
  r.status === 'completed' && r.sent && r.sender?.reference?.startsWith('Patient/') &&
  !r.recipient.some((x) => x.reference.startsWith('Patient/')) &&
  t.generated.days.indexOf(tz.localDay(Date.parse(r.sent), zone)) >= 3);
if (!comm) throw new Error('no message to change');
const cday = tz.localDay(Date.parse(comm.sent), zone);
const bump = (metric, d, n) => {
  const q = t.queries.find((x) => x.metric === metric);
  if (!q) throw new Error(`no ${metric} in the truth`);
  q.days[d] += n;
};
bump('portal.lab_reports_sent', day, 1);
bump('x.lab_reports_sent_coded', day, 1);
bump('portal.secure_messages_sent', cday, -1);
bump('x.messages_all_completed', cday, -1);
fs.writeFileSync(out, JSON.stringify(t));
fs.writeFileSync(`${late}.dr.json`, JSON.stringify(dr));
fs.writeFileSync(`${late}.comm.json`, JSON.stringify({ ...comm, status: 'entered-in-error' }));
fs.writeFileSync(`${late}.comm.id`, comm.id);
console.log(`${day} ${cday}`);
JS
fhir_write() { # METHOD URL FILE: a FHIR write; prints the status
  node -e '
    const [m, url, f] = process.argv.slice(1);
    fetch(url, { method: m, body: require("fs").readFileSync(f, "utf8"), headers: { "content-type": "application/fhir+json" } })
      .then(async (r) => { await r.text(); console.log(r.status); }).catch((e) => { console.log(String(e)); });
  ' "$@"
}
st=$(fhir_write POST "$(fhir_base plain)/DiagnosticReport" "$FHIR_DIR/late.dr.json")
[ "$st" = 201 ] || fail "POST DiagnosticReport: $st"
st=$(fhir_write PUT "$(fhir_base plain)/Communication/$(cat "$FHIR_DIR/late.comm.id")" "$FHIR_DIR/late.comm.json")
[ "$st" = 200 ] || fail "PUT Communication: $st"
fhir_wait_counts def default 30 --truth "$FHIR_DIR/truth2.json" \
  || fail "def: the late changes were not corrected:$(printf '\n%s' "$(cat "$FHIR_DIR/cmp.def.txt")")"
# and the original truth no longer matches (the comparison sees the change)
fhir_compare def default >/dev/null && fail "def still equals the unchanged truth"
read -r dday cday <"$FHIR_DIR/late.days"
echo "d) ($((SECONDS - start)) s) a late lab report on $dday (+1) and a message of $cday no longer completed (-1): corrected at the next run"

# ---- e) privacy ------------------------------------------------------
kill -0 "$DPID" 2>/dev/null || fail "the daemon died"
pm_stop "$DPID" 20
grep -n -F '?' "$T/daemon.log" >"$FHIR_DIR/leak" && fail "a query string in the daemon log: $(head -3 "$FHIR_DIR/leak")"
grep -n -E 'Patient/|identifier=|pat-[0-9]{4}|comm-[0-9]{4}|acct-[0-9]' "$T/daemon.log" >"$FHIR_DIR/leak" \
  && fail "patient data in the daemon log: $(head -3 "$FHIR_DIR/leak")"
grep -q "\[def\] .*CapabilityStatement read" "$T/daemon.log" || fail "the privacy check would see nothing: no collector lines in the log"
echo "e) the daemon log has no query string, patient reference or identifier ($(grep -c . "$T/daemon.log") lines)"
# f) the default set's two message queries share their pages: every run
# fetched each day's first Communication page once, as many times as the
# day's lab-report count (one request a run); unshared, twice as many.
day=$(node -p "require('$FHIR_TRUTH').generated.days[3]")
comm=$(fhir_req_count plain ok "^/fhir/R4/Communication[?].*sent=ge${day}T.*_count=[0-9]+\$")
labs=$(fhir_req_count plain ok "^/fhir/R4/DiagnosticReport[?].*issued=ge${day}T")
[ "$labs" -ge 2 ] || fail "f) only $labs runs counted lab reports of $day"
[ "$comm" = "$labs" ] || fail "f) $comm first Communication pages of $day in $labs runs: the message queries do not share"
echo "f) $labs runs fetched $day's first Communication page once each (two queries share it)"
echo "ok: default set, custom queries (the unanswerable one caught), nototal and opaque/include paging equal the truth; set semantics and late corrections; no patient data logged ($((SECONDS - start)) s)"
