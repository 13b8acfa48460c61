// Deterministic FHIR R4 data set for a clinic's patient portal, and its true
// per-day counts, for tests/fhir/server.js (--seed-file) and the fhir plugin tests.
//
//   node tests/fhir/gen.js --out DATA.json --truth TRUTH.json
//        [--tz America/New_York] [--now 2025-06-15T16:00:00Z] [--seed 1] [--scale 1]
//
// --now   the generation instant (default: the current hour, UTC); all event
//         times fall in [now - 30 days, now).  Same arguments -> same files.
// --tz    the site's zone: truth buckets are half-open local days [00:00, 24:00).
// --scale multiplies the number of resources (default 1: ~1500 resources).
//
// DATA.json is a Bundle (type collection) of Practitioners, Patients,
// Communications, DiagnosticReports and Appointments with fixed ids.
// Timestamps are written in assorted offsets (Z, +02:00, -05:00, +05:30, ...),
// some with milliseconds, some exactly on a local midnight of --tz (a day's
// first instant belongs to that day, never to the day before).
//
// TRUTH.json: { generated: {seed, now, tz, days: [...]},
//               queries: [ {metric, resource, params, date_param, classify?,
//                           classify_path?, class?,
//                           kind: 'gauge'|'daily', total? , days?: {day: n}} ] }
// computed here from the data directly (not through any FHIR server).
// A classified query carries `classify` ({element, type}, used by
// selftest.js) and the same in the plugin's config form: `classify_path`
// (its `classify` setting, e.g. "sender.reference", "recipient[].reference")
// and `class` ("Patient"; "!Patient" = any other).
// The default query set (the plugin's defaults, plugins/fhir/fhir_conf.c; see
// SUPPORT.md for what the medplum in-memory server can filter itself):
//   portal.patients_enrolled      Patient  identifier=PORTAL_SYSTEM|         gauge
//   portal.secure_messages_sent   Communication status=completed, by sent,
//                                 classify sender.reference: Patient (sent by patients)
//   portal.messages_sent          Communication status=completed, by sent,
//                                 classify recipient[].reference: Patient (sent to patients)
//   portal.lab_reports_sent       DiagnosticReport category=LAB&status=final,amended,corrected, by issued
//   portal.appointments_requested Appointment (any status), by _lastUpdated
//   portal.appointments_canceled  Appointment status=cancelled, by _lastUpdated
//   portal.appointments_noshow    Appointment status=noshow, by date (Appointment.start)
// and extra queries for custom-query and caveat tests (names prefixed "x.").
'use strict';

const fs = require('fs');
const tz = require('./tz');

const PORTAL_SYSTEM = 'https://portal.example.org/fhir/account-id';
const PORTAL_TAG_SYSTEM = 'https://portal.example.org/fhir/tags';
const MRN_SYSTEM = 'https://clinic.example.org/fhir/mrn';
const V2_0074 = 'http://terminology.hl7.org/CodeSystem/v2-0074';
const DAY = 86400000;

function parseArgs(argv) {
  const a = { tz: 'America/New_York', seed: 1, scale: 1 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    switch (k) {
      case '--out': a.out = v; i++; break;
      case '--truth': a.truth = v; i++; break;
      case '--tz': a.tz = v; i++; break;
      case '--now': a.now = v; i++; break;
      case '--seed': a.seed = Number(v); i++; break;
      case '--scale': a.scale = Number(v); i++; break;
      default: throw new Error(`gen.js: unknown argument ${k}`);
    }
  }
  if (!a.out || !a.truth) throw new Error('usage: gen.js --out DATA.json --truth TRUTH.json [--tz Z] [--now ISO] [--seed N] [--scale N]');
  return a;
}

function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const OFFSETS = [0, 0, 120, -300, -240, 330, -480, 60, 540, -600];

function generate({ tz: zone, now: nowArg, seed, scale }) {
  const nowMs = nowArg ? Date.parse(nowArg) : Math.floor(Date.now() / 3600000) * 3600000;
  if (!Number.isFinite(nowMs)) throw new Error(`gen.js: bad --now ${nowArg}`);
  const startMs = nowMs - 30 * DAY;
  const rnd = mulberry32(seed);
  const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
  const int = (n) => Math.floor(rnd() * n);
  const days = tz.daysBetween(tz.localDay(startMs, zone), tz.localDay(nowMs - 1, zone));
  // an instant: mostly random in the window, sometimes exactly on a local
  // midnight or on the last millisecond of a local day (boundary cases)
  const instant = (lo = startMs, hi = nowMs) => {
    const r = rnd();
    if (r < 0.06 || r > 0.97) {
      const mids = days.map((d) => tz.localMidnight(d, zone)).filter((m) => m >= lo && m < hi);
      if (mids.length) return r < 0.06 ? pick(mids) : Math.max(lo, pick(mids) - 1);
    }
    return lo + Math.floor(rnd() * (hi - lo) / 1000) * 1000 + (rnd() < 0.3 ? int(1000) : 0);
  };
  const stamp = (ms) => tz.formatInOffset(ms, pick(OFFSETS), ms % 1000 !== 0);
  const n = (k) => Math.max(1, Math.round(k * scale));

  const res = [];
  const truthRows = { comm: [], dr: [], appt: [] };

  const practitioners = [];
  for (let i = 1; i <= 8; i++) {
    const id = `prac-${String(i).padStart(3, '0')}`;
    practitioners.push(id);
    res.push({ resourceType: 'Practitioner', id, name: [{ family: `Doctor${i}`, given: ['Pat'] }], meta: { lastUpdated: stamp(startMs - DAY) } });
  }
  res.push({ resourceType: 'Organization', id: 'org-001', name: 'Example Clinic', meta: { lastUpdated: stamp(startMs - DAY) } });

  const patients = [];
  let enrolled = 0;
  for (let i = 1; i <= n(200); i++) {
    const id = `pat-${String(i).padStart(4, '0')}`;
    const portal = rnd() < 0.6;
    const active = rnd() < 0.95;
    const p = {
      resourceType: 'Patient', id, active,
      meta: { lastUpdated: stamp(instant(startMs - 60 * DAY, nowMs)) },
      identifier: [{ system: MRN_SYSTEM, value: `MRN${100000 + i}` }],
      name: [{ family: `Family${i}`, given: [`Given${i}`] }],
      gender: pick(['female', 'male', 'other', 'unknown']),
      birthDate: `19${40 + int(60)}-0${1 + int(9)}-1${int(10)}`,
    };
    if (portal) {
      enrolled++;
      p.identifier.push({ system: PORTAL_SYSTEM, value: `acct-${i}` });
      p.meta.tag = [{ system: PORTAL_TAG_SYSTEM, code: 'portal-enrolled' }];
      p.extension = [{ url: 'https://portal.example.org/fhir/StructureDefinition/portal-account', valueBoolean: true }];
    }
    patients.push(id);
    res.push(p);
  }

  // Communications: secure messages, patient -> practitioner and back, a few
  // drafts / errors, a few notices to several recipients, a few with no sender
  for (let i = 1; i <= n(600); i++) {
    const id = `comm-${String(i).padStart(4, '0')}`;
    const sentMs = instant();
    const fromPatient = rnd() < 0.5;
    const pat = pick(patients);
    const prac = pick(practitioners);
    const r = rnd();
    const status = r < 0.88 ? 'completed' : r < 0.94 ? 'in-progress' : 'entered-in-error';
    const c = {
      resourceType: 'Communication', id, status,
      meta: { lastUpdated: stamp(sentMs) },
      subject: { reference: `Patient/${pat}` },
      category: [{ coding: [{ system: 'https://portal.example.org/fhir/CodeSystem/message-kind', code: 'secure-message' }] }],
      medium: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationMode', code: 'ELECTRONIC' }] }],
      payload: [{ contentString: `message ${i}` }],
    };
    let senderType = null;
    let recipientTypes = [];
    if (rnd() < 0.03) {
      // no sender (system notice) to the patient
      c.recipient = [{ reference: `Patient/${pat}` }];
      recipientTypes = ['Patient'];
    } else if (fromPatient) {
      c.sender = { reference: `Patient/${pat}` };
      senderType = 'Patient';
      c.recipient = [{ reference: `Practitioner/${prac}` }];
      recipientTypes = ['Practitioner'];
      if (rnd() < 0.1) { c.recipient.push({ reference: 'Organization/org-001' }); recipientTypes.push('Organization'); }
    } else {
      c.sender = { reference: `Practitioner/${prac}` };
      senderType = 'Practitioner';
      c.recipient = [{ reference: `Patient/${pat}` }];
      recipientTypes = ['Patient'];
      if (rnd() < 0.1) { c.recipient.push({ reference: `Practitioner/${pick(practitioners)}` }); recipientTypes.push('Practitioner'); }
    }
    if (status !== 'in-progress' || rnd() < 0.5) c.sent = stamp(sentMs);
    if (c.sent && status === 'completed' && rnd() < 0.7) {
      const recvMs = Math.min(nowMs - 1000, sentMs + int(3 * 3600) * 1000);
      c.received = stamp(recvMs);
    }
    res.push(c);
    truthRows.comm.push({ status, sentMs: c.sent ? sentMs : null, senderType, recipientTypes, lastUpdatedMs: sentMs });
  }

  // DiagnosticReports: LAB (and some RAD / pathology) with assorted statuses
  for (let i = 1; i <= n(400); i++) {
    const id = `dr-${String(i).padStart(4, '0')}`;
    const issuedMs = instant();
    const r = rnd();
    const status = r < 0.6 ? 'final' : r < 0.7 ? 'amended' : r < 0.78 ? 'corrected' : r < 0.9 ? 'preliminary' : r < 0.95 ? 'registered' : 'cancelled';
    const catCode = rnd() < 0.8 ? 'LAB' : pick(['RAD', 'PAT']);
    const d = {
      resourceType: 'DiagnosticReport', id, status,
      meta: { lastUpdated: stamp(issuedMs) },
      category: [{ coding: [{ system: V2_0074, code: catCode }] }],
      code: { coding: [{ system: 'http://loinc.org', code: pick(['24323-8', '58410-2', '2345-7', '4548-4']) }] },
      subject: { reference: `Patient/${pick(patients)}` },
      effectiveDateTime: stamp(issuedMs - int(48) * 3600000),
    };
    const hasIssued = status !== 'registered';
    if (hasIssued) d.issued = stamp(issuedMs);
    res.push(d);
    truthRows.dr.push({ status, cat: catCode, issuedMs: hasIssued ? issuedMs : null, lastUpdatedMs: issuedMs });
  }

  // Appointments: created (the request) in the window; start after created;
  // meta.lastUpdated = created for booked/pending/proposed, the cancellation
  // time for cancelled, a few hours after start for noshow/fulfilled.
  for (let i = 1; i <= n(400); i++) {
    const id = `appt-${String(i).padStart(4, '0')}`;
    const createdMs = instant(startMs, nowMs - 3600000);
    const r = rnd();
    const status = r < 0.4 ? 'booked' : r < 0.6 ? 'cancelled' : r < 0.72 ? 'noshow' : r < 0.94 ? 'fulfilled' : r < 0.97 ? 'pending' : 'proposed';
    let startApptMs;
    let updatedMs = createdMs;
    if (status === 'noshow' || status === 'fulfilled') {
      // the visit already happened
      startApptMs = createdMs + Math.floor(rnd() * (nowMs - createdMs - 3600000) / 900000) * 900000;
      if (startApptMs <= createdMs) startApptMs = createdMs + 900000;
      updatedMs = Math.min(nowMs - 1000, startApptMs + (1 + int(6)) * 3600000);
    } else {
      startApptMs = createdMs + (1 + int(40)) * 12 * 3600000;
      if (status === 'cancelled') updatedMs = Math.min(nowMs - 1000, createdMs + int(10 * 24) * 3600000 + int(3600) * 1000);
    }
    if (rnd() < 0.05) updatedMs = instant(updatedMs, nowMs); // later edits
    const endApptMs = startApptMs + 1800000;
    const a = {
      resourceType: 'Appointment', id, status,
      meta: { lastUpdated: stamp(updatedMs) },
      created: stamp(createdMs),
      start: stamp(startApptMs),
      end: stamp(endApptMs),
      participant: [
        { actor: { reference: `Patient/${pick(patients)}` }, status: 'accepted' },
        { actor: { reference: `Practitioner/${pick(practitioners)}` }, status: 'accepted' },
      ],
    };
    if (status === 'cancelled') a.cancelationReason = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason', code: 'pat' }] };
    res.push(a);
    truthRows.appt.push({ status, createdMs, startMs: startApptMs, lastUpdatedMs: updatedMs });
  }

  // ---- truth ----
  const inDays = (rows, pred, whenKey) => {
    const out = Object.fromEntries(days.map((d) => [d, 0]));
    for (const r of rows) {
      const t = r[whenKey];
      if (t === null || t === undefined || !pred(r)) continue;
      const d = tz.localDay(t, zone);
      if (d in out) out[d]++;
    }
    return out;
  };
  const LABOK = new Set(['final', 'amended', 'corrected']);
  const q = [];
  q.push({ metric: 'portal.patients_enrolled', kind: 'gauge', resource: 'Patient', params: `identifier=${PORTAL_SYSTEM}|`, total: enrolled });
  q.push({ metric: 'portal.secure_messages_sent', kind: 'daily', resource: 'Communication', params: 'status=completed', date_param: 'sent',
    classify: { element: 'sender', type: 'Patient' }, classify_path: 'sender.reference', class: 'Patient',
    days: inDays(truthRows.comm, (r) => r.status === 'completed' && r.senderType === 'Patient', 'sentMs') });
  q.push({ metric: 'portal.messages_sent', kind: 'daily', resource: 'Communication', params: 'status=completed', date_param: 'sent',
    classify: { element: 'recipient', type: 'Patient' }, classify_path: 'recipient[].reference', class: 'Patient',
    days: inDays(truthRows.comm, (r) => r.status === 'completed' && r.recipientTypes.includes('Patient'), 'sentMs') });
  q.push({ metric: 'portal.lab_reports_sent', kind: 'daily', resource: 'DiagnosticReport', params: 'category=LAB&status=final,amended,corrected', date_param: 'issued',
    days: inDays(truthRows.dr, (r) => r.cat === 'LAB' && LABOK.has(r.status), 'issuedMs') });
  q.push({ metric: 'portal.appointments_requested', kind: 'daily', resource: 'Appointment', params: '', date_param: '_lastUpdated',
    days: inDays(truthRows.appt, () => true, 'lastUpdatedMs') });
  q.push({ metric: 'portal.appointments_canceled', kind: 'daily', resource: 'Appointment', params: 'status=cancelled', date_param: '_lastUpdated',
    days: inDays(truthRows.appt, (r) => r.status === 'cancelled', 'lastUpdatedMs') });
  q.push({ metric: 'portal.appointments_noshow', kind: 'daily', resource: 'Appointment', params: 'status=noshow', date_param: 'date',
    days: inDays(truthRows.appt, (r) => r.status === 'noshow', 'startMs') });
  // extra queries: custom-query tests and the _lastUpdated caveat
  q.push({ metric: 'x.patients_enrolled_by_tag', kind: 'gauge', resource: 'Patient', params: `_tag=${PORTAL_TAG_SYSTEM}|portal-enrolled`, total: enrolled });
  q.push({ metric: 'x.messages_all_completed', kind: 'daily', resource: 'Communication', params: 'status=completed', date_param: 'sent',
    days: inDays(truthRows.comm, (r) => r.status === 'completed', 'sentMs') });
  q.push({ metric: 'x.messages_not_by_patient', kind: 'daily', resource: 'Communication', params: 'status=completed', date_param: 'sent',
    classify: { element: 'sender', type: '!Patient' }, classify_path: 'sender.reference', class: '!Patient',
    days: inDays(truthRows.comm, (r) => r.status === 'completed' && r.senderType !== 'Patient', 'sentMs') });
  q.push({ metric: 'x.lab_reports_sent_coded', kind: 'daily', resource: 'DiagnosticReport', params: `category=${V2_0074}|LAB&status=final,amended,corrected`, date_param: 'issued',
    days: inDays(truthRows.dr, (r) => r.cat === 'LAB' && LABOK.has(r.status), 'issuedMs') });
  q.push({ metric: 'x.lab_reports_preliminary', kind: 'daily', resource: 'DiagnosticReport', params: 'category=LAB&status=preliminary', date_param: 'issued',
    days: inDays(truthRows.dr, (r) => r.cat === 'LAB' && r.status === 'preliminary', 'issuedMs') });
  q.push({ metric: 'x.appointments_requested_by_created', kind: 'daily', resource: 'Appointment', params: '', date_param: 'created',
    note: 'R4 has no Appointment "created" search parameter: an event-date truth the server cannot answer',
    days: inDays(truthRows.appt, () => true, 'createdMs') });
  q.push({ metric: 'x.appointments_canceled_by_date', kind: 'daily', resource: 'Appointment', params: 'status=cancelled', date_param: 'date',
    days: inDays(truthRows.appt, (r) => r.status === 'cancelled', 'startMs') });
  q.push({ metric: 'x.no_shows_by_lastupdated', kind: 'daily', resource: 'Appointment', params: 'status=noshow', date_param: '_lastUpdated',
    days: inDays(truthRows.appt, (r) => r.status === 'noshow', 'lastUpdatedMs') });

  const counts = {};
  for (const r of res) counts[r.resourceType] = (counts[r.resourceType] || 0) + 1;
  return {
    data: { resourceType: 'Bundle', type: 'collection', entry: res.map((resource) => ({ fullUrl: `${resource.resourceType}/${resource.id}`, resource })) },
    truth: {
      generated: { seed, now: new Date(nowMs).toISOString(), tz: zone, scale, days, counts, portal_identifier_system: PORTAL_SYSTEM, portal_tag_system: PORTAL_TAG_SYSTEM },
      queries: q,
    },
  };
}

if (require.main === module) {
  const args = parseArgs(process.argv);
  const { data, truth } = generate(args);
  fs.writeFileSync(args.out, JSON.stringify(data));
  fs.writeFileSync(args.truth, JSON.stringify(truth, null, 1) + '\n');
  process.stderr.write(`gen.js: ${data.entry.length} resources (${JSON.stringify(truth.generated.counts)}), ${truth.generated.days.length} days in ${args.tz}\n`);
}

module.exports = { generate, PORTAL_SYSTEM, PORTAL_TAG_SYSTEM };
