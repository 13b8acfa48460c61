// gen.js: a deterministic mix of HL7 v2.5 messages with FAKE patient data,
// and the counts the hl7 plugin must store for them (node 20, no packages).
//
//   node tests/hl7/gen.js --tz ZONE --out-dir DIR [options]
//
//   --tz ZONE          the site's time zone (e.g. America/Denver): days are
//                      local dates there                          (required)
//   --out-dir DIR      where to write (created)                   (required)
//   --seed N           PRNG seed (default 1); same seed + same --now = same
//                      bytes
//   --count N          number of messages (default 150; at least 20)
//   --now TIME         "now" as ISO 8601 or epoch seconds (default: the
//                      current time); event times fall in the --days before
//   --days N           spread of event times in days (default 3)
//   --id-prefix P      MSH-10 prefix (default "G<seed>-"); MSH-10 is
//                      P + 6-digit sequence, at most 20 characters
//   --seg-sep S        segment separator: cr (default), lf, crlf, or mixed
//                      (cycles cr, lf, crlf by message)
//   --plain-times      only YYYYMMDDHHMMSS with +0000 or without offset
//                      (default also has -0500/+0530 offsets, minute
//                      precision and fractional seconds, a few of each)
//   --mixed-encoding   every 7th message declares other encoding
//                      characters (MSH-2 "$@`%", the whole message written
//                      with them) and every 11th "^~\&#" (truncation char)
//   --enhanced         MSH-15 = AL, MSH-16 = NE on every message (enhanced
//                      acknowledgment mode: the plugin answers CA/CE/CR)
//   --no-files         skip DIR/msgs/
//
// The mix: ADT^A04, SIU^S12, SIU^S15, SIU^S17 (a deletion: not a
// cancellation), SIU^S26, ORU^R01 with OBR-25 F, C or P; sending
// application EPIC, facilities NORTHCLINIC and SOUTHCLINIC; the first 16
// messages (before shuffling) are each kind once per facility; at least 3
// and about 8% have MSH-11 = T (counted only in hl7.messages). Event time:
// EVN-2 on ADT and on 3 in 4 SIU (MSH-7 is then 0-120 min later, capped at
// now), MSH-7 on ORU and on SIU without EVN. Times are mostly +0000 or
// local without offset (taken as local to --tz).
//
// Writes:
//   DIR/msgs/NNNN-<MSH-10>.hl7   one message per file, in send order (NNNN
//                                zero-padded to sort), segments with their
//                                terminator, no MLLP framing
//   DIR/messages.json            [{id, type, trigger, facility, processing,
//                                event_time, day, text}] in send order
//   DIR/expected.json            {tz, seed, now, count, metrics: [{metric,
//                                facility, day, value}], hl7_messages:
//                                [{type, trigger, facility, day, value}],
//                                totals: {metric: value}}
//   DIR/expected.tsv             one line per (metric, day, facility, type,
//                                trigger) with its value, tab separated,
//                                sorted (LC_ALL=C); type and trigger are
//                                empty except for hl7.messages:
//                                  portal.appointments_requested<TAB>2026-05-01<TAB>NORTHCLINIC<TAB><TAB><TAB>3
//                                  hl7.messages<TAB>2026-05-01<TAB>NORTHCLINIC<TAB>SIU<TAB>S12<TAB>4
//   DIR/fake_terms.txt           fixed strings found in PID, NK1, PV1, SCH,
//                                AIP, OBX and NTE and nowhere else (for grep
//                                -F -f in the no-patient-data audit)
// and prints one line: "gen: N messages (P production, T test) seed S tz Z -> DIR".
//
// Metrics (MSH-11 = P only): SIU^S12 portal.appointments_requested, SIU^S15
// portal.appointments_canceled, SIU^S26 portal.appointments_noshow, ORU^R01
// with OBR-25 F or C portal.lab_reports_sent, ADT^A04
// clinic.patients_registered; every message: hl7.messages per (type,
// trigger, facility, day).
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs, die } = require('./common');

const { opts } = parseArgs(process.argv.slice(2), {
  '--tz': 'string', '--out-dir': 'string', '--seed': 'int', '--count': 'int',
  '--now': 'string', '--days': 'float', '--id-prefix': 'string', '--seg-sep': 'string',
  '--plain-times': 'flag', '--mixed-encoding': 'flag', '--enhanced': 'flag', '--no-files': 'flag',
});
if (!opts.tz) die('--tz ZONE is required (e.g. America/Denver)');
if (!opts.outDir) die('--out-dir DIR is required');
try { new Intl.DateTimeFormat('en-US', { timeZone: opts.tz }); } catch (e) { die(`unknown time zone ${opts.tz}`); }
const seed = opts.seed ?? 1;
const count = opts.count ?? 150;
if (count < 20) die('--count must be at least 20');
const days = opts.days ?? 3;
const segSep = opts.segSep ?? 'cr';
if (!['cr', 'lf', 'crlf', 'mixed'].includes(segSep)) die('--seg-sep: cr, lf, crlf or mixed');
const idPrefix = opts.idPrefix ?? `G${seed}-`;
if (idPrefix.length + 6 > 20) die('--id-prefix: MSH-10 would exceed 20 characters');
if (/[|^~\\&#$@`%\r\n]/.test(idPrefix)) die('--id-prefix: no delimiter characters');
let nowMs;
if (opts.now === undefined) nowMs = Date.now();
else if (/^\d+$/.test(opts.now)) nowMs = parseInt(opts.now, 10) * 1000;
else {
  nowMs = Date.parse(opts.now);
  if (Number.isNaN(nowMs)) die(`--now: cannot parse ${opts.now}`);
}
nowMs = Math.floor(nowMs / 1000) * 1000;

// ---- deterministic PRNG (mulberry32)
let st = (seed >>> 0) ^ 0x9e3779b9;
function rnd() {
  st = (st + 0x6d2b79f5) >>> 0;
  let t = st;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const rint = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1)); // inclusive
const pick = (arr) => arr[Math.floor(rnd() * arr.length)];
function weighted(table) {
  const total = table.reduce((a, [, w]) => a + w, 0);
  let x = rnd() * total;
  for (const [v, w] of table) { if ((x -= w) < 0) return v; }
  return table[table.length - 1][0];
}

// ---- time formatting
const pad = (n, w = 2) => String(n).padStart(w, '0');
const localFmt = new Intl.DateTimeFormat('en-US', {
  timeZone: opts.tz, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});
function localParts(ms) {
  const p = {};
  for (const { type, value } of localFmt.formatToParts(new Date(ms))) p[type] = value;
  return { y: +p.year, mo: +p.month, d: +p.day, h: +p.hour % 24, mi: +p.minute, s: +p.second };
}
function utcParts(ms) {
  const d = new Date(ms);
  return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
}
function localDay(ms) {
  const p = localParts(ms);
  return `${p.y}-${pad(p.mo)}-${pad(p.d)}`;
}
// style: { zone: 'utc' | 'local' | minutes offset, prec: 'sec' | 'min' | 'frac' }
function fmtDTM(ms, style) {
  let p;
  let suffix = '';
  if (style.zone === 'local') p = localParts(ms);
  else {
    const off = style.zone === 'utc' ? 0 : style.zone;
    p = utcParts(ms + off * 60000);
    const a = Math.abs(off);
    suffix = `${off < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}${pad(a % 60)}`;
  }
  let s = `${p.y}${pad(p.mo)}${pad(p.d)}${pad(p.h)}${pad(p.mi)}`;
  if (style.prec !== 'min') s += pad(p.s);
  if (style.prec === 'frac') s += '.' + pad(rint(0, 9999), 4);
  return s + suffix;
}
// The day a DTM as written falls on, in --tz: a time without offset is
// local already; one with an offset is an instant.
function dtmDay(s) {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?$/.exec(s);
  if (!m) throw new Error(`bad DTM ${s}`);
  if (!m[7]) return `${m[1]}-${m[2]}-${m[3]}`;
  const off = (m[7] === '-' ? -1 : 1) * (parseInt(m[8], 10) * 60 + parseInt(m[9], 10));
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) - off * 60000;
  return localDay(ms);
}
function pickStyle() {
  const zone = opts.plainTimes ? pick(['utc', 'local'])
    : weighted([['utc', 45], ['local', 45], [-300, 5], [330, 5]]);
  const prec = opts.plainTimes ? 'sec' : weighted([['sec', 80], ['min', 10], ['frac', 10]]);
  return { zone, prec };
}

// ---- fake people and places (every name-like string carries ZZ or FAKE)
const GIVEN = ['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA', 'ECHO', 'FOXTROT', 'GOLF', 'HOTEL', 'INDIA', 'JULIET',
  'KILO', 'LIMA', 'MIKE', 'NOVEMBER', 'OSCAR', 'PAPA', 'QUEBEC', 'ROMEO', 'SIERRA', 'TANGO'];
const patients = GIVEN.map((g, i) => {
  const n = pad(100 + i * 7 + rint(0, 6), 6);
  return {
    family: 'ZZTESTPATIENT', given: g, middle: String.fromCharCode(65 + i),
    mrn: `MRN-FAKE-${n}`, acct: `ACCT-FAKE-${n}`, ssn: `SSN-FAKE-${n}`,
    dob: `${1940 + rint(0, 60)}${pad(rint(1, 12))}${pad(rint(1, 28))}`,
    sex: pick(['F', 'M', 'U']),
    street: `${rint(10, 9999)} FAKEPATIENT ST`, city: pick(['ZZNOWHERE', 'ZZSOMEWHERE', 'ZZELSEWHERE']),
    phone: `555${pad(rint(100, 199), 4)}`,
  };
});
const DOCTORS = [['1001', 'ZZDOCTOR', 'AMBER'], ['1002', 'ZZDOCTOR', 'BASIL'], ['1003', 'ZZDOCTOR', 'CEDAR']];
const FACILITIES = ['NORTHCLINIC', 'SOUTHCLINIC'];
const ROOM = { NORTHCLINIC: 'NRM', SOUTHCLINIC: 'SRM' };
const FAKE_TERMS = ['ZZTESTPATIENT', 'ZZALIAS', 'ZZTESTKIN', 'MRN-FAKE-', 'ACCT-FAKE-', 'SSN-FAKE-', 'VISIT-FAKE-',
  'FAKEPATIENT ST', 'ZZNOWHERE', 'ZZSOMEWHERE', 'ZZELSEWHERE', 'ZZDOCTOR', 'ZZCLERK', 'ZZFREETEXT',
  'ZZOBXTEXT', 'ZZNOTE', 'APT-FAKE-', 'ORD-FAKE-', 'LAB-FAKE-'];

// A segment from {fieldNumber: value}; MSH is built by hand.
function seg(name, fields) {
  const max = Math.max(0, ...Object.keys(fields).map(Number));
  const a = [name];
  for (let i = 1; i <= max; i++) a.push(fields[i] ?? '');
  return a.join('|');
}
const xpn = (p) => `${p.family}^${p.given}^${p.middle}^^^^L~ZZALIAS^${p.given}^^^^^A`;
function pidSeg(p, fac) {
  return seg('PID', {
    1: '1', 3: `${p.mrn}^^^${fac}^MR~${p.ssn}^^^SSA^SS`, 5: xpn(p), 7: p.dob, 8: p.sex,
    11: `${p.street}^APT \\T\\ UNIT 4^${p.city}^ZZ^00000^USA^H`,
    13: `^PRN^PH^^1^555^${p.phone.slice(3)}`, 16: 'S', 18: p.acct, 19: p.ssn,
  });
}
function pv1Seg(p, fac, doc) {
  return seg('PV1', { 1: '1', 2: 'O', 3: `${ROOM[fac]}^${rint(1, 9)}^1^${fac}`, 7: `${doc[0]}^${doc[1]}^${doc[2]}^^^DR`, 19: `VISIT-FAKE-${p.mrn.slice(9)}` });
}
const FREE = [
  'ZZFREETEXT patient prefers mornings \\T\\ asks about parking',
  'ZZNOTE call back at 555-0142 re: forms \\F\\ insurance card',
  'ZZFREETEXT interpreter needed \\S\\ Spanish',
  'ZZNOTE allergy to penicillin reported by ZZTESTPATIENT',
  'ZZFREETEXT bring prior records\\E\\imaging',
];

const KINDS = {
  ADT_A04: { type: 'ADT', trigger: 'A04', struct: 'ADT_A01', metric: 'clinic.patients_registered' },
  SIU_S12: { type: 'SIU', trigger: 'S12', struct: 'SIU_S12', metric: 'portal.appointments_requested', status: 'Booked' },
  SIU_S15: { type: 'SIU', trigger: 'S15', struct: 'SIU_S12', metric: 'portal.appointments_canceled', status: 'Cancelled' },
  SIU_S17: { type: 'SIU', trigger: 'S17', struct: 'SIU_S12', metric: null, status: 'Deleted' },
  SIU_S26: { type: 'SIU', trigger: 'S26', struct: 'SIU_S12', metric: 'portal.appointments_noshow', status: 'Noshow' },
  ORU_F: { type: 'ORU', trigger: 'R01', struct: 'ORU_R01', metric: 'portal.lab_reports_sent', obr25: 'F' },
  ORU_C: { type: 'ORU', trigger: 'R01', struct: 'ORU_R01', metric: 'portal.lab_reports_sent', obr25: 'C' },
  ORU_P: { type: 'ORU', trigger: 'R01', struct: 'ORU_R01', metric: null, obr25: 'P' },
};
const WEIGHTS = [['ADT_A04', 15], ['SIU_S12', 20], ['SIU_S15', 10], ['SIU_S17', 6], ['SIU_S26', 6],
  ['ORU_F', 14], ['ORU_C', 5], ['ORU_P', 8]];

// ---- the plan: kind, facility, processing id
const plan = [];
for (const k of Object.keys(KINDS)) for (const f of FACILITIES) plan.push({ kind: k, fac: f, proc: 'P' });
for (let i = 0; i < 3; i++) plan.push({ kind: weighted(WEIGHTS), fac: pick(FACILITIES), proc: 'T' });
while (plan.length < count) plan.push({ kind: weighted(WEIGHTS), fac: pick(FACILITIES), proc: rnd() < 0.08 ? 'T' : 'P' });
for (let i = plan.length - 1; i > 0; i--) { const j = rint(0, i); [plan[i], plan[j]] = [plan[j], plan[i]]; }

const SEPS = { cr: '\r', lf: '\n', crlf: '\r\n' };
const messages = [];
const span = Math.max(60000, days * 86400000 - 5 * 60000);
plan.forEach((pl, i) => {
  const k = KINDS[pl.kind];
  const id = `${idPrefix}${pad(i + 1, 6)}`;
  const p = pick(patients);
  const doc = pick(DOCTORS);
  const evMs = nowMs - 5 * 60000 - Math.floor(rnd() * span);
  const evStyle = pickStyle();
  const evStr = fmtDTM(evMs, evStyle);
  const hasEvn = k.type === 'ADT' || (k.type === 'SIU' && rnd() < 0.75);
  const mshMs = hasEvn ? Math.min(nowMs, evMs + Math.floor(rnd() * 120 * 60000)) : evMs;
  const mshStr = hasEvn ? fmtDTM(mshMs, pickStyle()) : evStr;
  const eventTime = hasEvn ? evStr : mshStr;
  const ack = opts.enhanced ? '|||AL|NE' : '';
  const segs = [`MSH|^~\\&|EPIC|${pl.fac}|PORTALMETRICS|PM|${mshStr}||${k.type}^${k.trigger}^${k.struct}|${id}|${pl.proc}|2.5${ack}`];
  if (hasEvn) segs.push(seg('EVN', { 1: k.trigger, 2: evStr, 5: `OP${rint(10, 99)}^ZZCLERK^FAKE` }));
  if (k.type === 'ADT') {
    segs.push(pidSeg(p, pl.fac));
    segs.push(seg('NK1', { 1: '1', 2: `ZZTESTKIN^${pick(GIVEN)}`, 3: 'SPO^Spouse^HL70063', 4: `${p.street}^^${p.city}^ZZ^00000` }));
    segs.push(pv1Seg(p, pl.fac, doc));
  } else if (k.type === 'SIU') {
    const apt = `APT-FAKE-${pad(rint(1, 99999), 5)}`;
    const startMs = evMs + rint(1, 30) * 86400000;
    const start = fmtDTM(startMs, { zone: 'local', prec: 'min' });
    const end = fmtDTM(startMs + 30 * 60000, { zone: 'local', prec: 'min' });
    segs.push(seg('SCH', {
      1: `${apt}^EPIC`, 2: `${apt}^EPIC`, 6: k.trigger === 'S12' ? '' : `${k.trigger}^${k.status}^HL70276`,
      7: 'ROUTINE^Routine visit', 8: 'FOLLOWUP^Follow up', 9: '30', 10: 'MIN', 11: `^^30^${start}^${end}`,
      16: `${doc[0]}^${doc[1]}^${doc[2]}`, 20: `OP${rint(10, 99)}^ZZCLERK^FAKE`, 25: `${k.status}^${k.status}^HL70278`,
    }));
    segs.push(seg('NTE', { 1: '1', 3: pick(FREE) }));
    segs.push(pidSeg(p, pl.fac));
    segs.push(pv1Seg(p, pl.fac, doc));
    segs.push(seg('RGS', { 1: '1', 2: 'A' }));
    segs.push(seg('AIS', { 1: '1', 2: 'A', 3: 'OFFICE^Office visit', 4: start, 7: '30', 8: 'MIN' }));
    segs.push(seg('AIL', { 1: '1', 2: 'A', 3: `${ROOM[pl.fac]}^${rint(1, 9)}^^${pl.fac}` }));
    segs.push(seg('AIP', { 1: '1', 2: 'A', 3: `${doc[0]}^${doc[1]}^${doc[2]}`, 4: 'D^Doctor' }));
  } else {
    const ord = `ORD-FAKE-${pad(rint(1, 99999), 5)}`;
    const lab = `LAB-FAKE-${pad(rint(1, 99999), 5)}`;
    const obsStr = fmtDTM(evMs - rint(1, 48) * 3600000, { zone: 'local', prec: 'sec' });
    segs.push(pidSeg(p, pl.fac));
    segs.push(pv1Seg(p, pl.fac, doc));
    segs.push(seg('ORC', { 1: 'RE', 2: ord, 3: lab, 12: `${doc[0]}^${doc[1]}^${doc[2]}` }));
    segs.push(seg('OBR', {
      1: '1', 2: ord, 3: lab, 4: 'CBC^Complete blood count^L', 7: obsStr,
      16: `${doc[0]}^${doc[1]}^${doc[2]}`, 22: mshStr, 24: 'HM', 25: k.obr25,
    }));
    const v = (rint(30, 120) / 10).toFixed(1);
    segs.push(seg('OBX', { 1: '1', 2: 'NM', 3: 'WBC^White blood count^L', 5: v, 6: '10*3/uL', 7: '4.0-11.0', 8: v > 11 ? 'H' : 'N', 11: k.obr25 }));
    segs.push(seg('OBX', { 1: '2', 2: 'TX', 3: 'COMMENT^Comment^L', 5: `ZZOBXTEXT specimen slightly hemolyzed \\T\\ recollect for ${p.family} ${p.given}`, 11: k.obr25 }));
    segs.push(seg('NTE', { 1: '1', 2: 'L', 3: pick(FREE) }));
  }
  const sep = segSep === 'mixed' ? ['\r', '\n', '\r\n'][i % 3] : SEPS[segSep];
  let text = segs.join(sep) + sep;
  if (opts.mixedEncoding && i % 7 === 3 && !/[$@`%]/.test(text)) {
    // every delimiter rewritten: ^ -> $, ~ -> @, \ -> `, & -> %
    const map = { '^': '$', '~': '@', '\\': '`', '&': '%' };
    text = 'MSH|$@`%' + text.slice(8).replace(/[\^~\\&]/g, (c) => map[c]);
  } else if (opts.mixedEncoding && i % 11 === 5 && !text.includes('#')) {
    text = 'MSH|^~\\&#' + text.slice(8);
  }
  const day = dtmDay(eventTime);
  messages.push({ id, type: k.type, trigger: k.trigger, facility: pl.fac, processing: pl.proc, metric: k.metric, event_time: eventTime, day, text });
});

// ---- expected counts
const metricCounts = new Map();
const hl7Counts = new Map();
const inc = (m, key) => m.set(key, (m.get(key) || 0) + 1);
for (const m of messages) {
  inc(hl7Counts, [m.type, m.trigger, m.facility, m.day].join('\t'));
  if (m.processing === 'P' && m.metric) inc(metricCounts, [m.metric, m.facility, m.day].join('\t'));
}
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const metrics = [...metricCounts].sort((a, b) => cmp(a[0], b[0]))
  .map(([k, value]) => { const [metric, facility, day] = k.split('\t'); return { metric, facility, day, value }; });
const hl7m = [...hl7Counts].sort((a, b) => cmp(a[0], b[0]))
  .map(([k, value]) => { const [type, trigger, facility, day] = k.split('\t'); return { type, trigger, facility, day, value }; });
const totals = {};
for (const r of metrics) totals[r.metric] = (totals[r.metric] || 0) + r.value;
totals['hl7.messages'] = messages.length;

const tsv = [
  ...metrics.map((r) => [r.metric, r.day, r.facility, '', '', r.value].join('\t')),
  ...hl7m.map((r) => ['hl7.messages', r.day, r.facility, r.type, r.trigger, r.value].join('\t')),
];
tsv.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

// ---- write
const out = opts.outDir;
fs.mkdirSync(out, { recursive: true });
if (!opts.noFiles) {
  const md = path.join(out, 'msgs');
  fs.rmSync(md, { recursive: true, force: true });
  fs.mkdirSync(md);
  const w = Math.max(4, String(messages.length).length); // names sort in send order
  messages.forEach((m, i) => fs.writeFileSync(path.join(md, `${pad(i + 1, w)}-${m.id}.hl7`), m.text));
}
fs.writeFileSync(path.join(out, 'messages.json'), JSON.stringify(messages.map(({ metric, ...rest }) => rest), null, 1) + '\n');
fs.writeFileSync(path.join(out, 'expected.json'), JSON.stringify({
  tz: opts.tz, seed, now: new Date(nowMs).toISOString(), count: messages.length, metrics, hl7_messages: hl7m, totals,
}, null, 1) + '\n');
fs.writeFileSync(path.join(out, 'expected.tsv'), tsv.join('\n') + '\n');
fs.writeFileSync(path.join(out, 'fake_terms.txt'), FAKE_TERMS.join('\n') + '\n');
const nT = messages.filter((m) => m.processing !== 'P').length;
process.stdout.write(`gen: ${messages.length} messages (${messages.length - nT} production, ${nT} test) seed ${seed} tz ${opts.tz} -> ${out}\n`);
