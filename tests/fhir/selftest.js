// Self-check of the FHIR test harness: starts server.js (SMART enabled) on
// data from gen.js, runs every truth.json query per local day with plain
// fetch, compares with the truth, probes which search parameters the medplum
// in-memory router supports (see SUPPORT.md), exercises the fault modes and
// the SMART token endpoint.  Prints "N passed, M failed"; exit 1 on failures.
//
//   node tests/fhir/selftest.js [--tz America/New_York] [--now ISO] [--seed 1] [--keep-dir]
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const crypto = require('crypto');
const tz = require('./tz');
const { generate } = require('./gen');
const { mintAssertion, ASSERTION_TYPE } = require('./token');

const args = { tz: 'America/New_York', seed: 1 };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i];
  if (k === '--tz') args.tz = process.argv[++i];
  else if (k === '--now') args.now = process.argv[++i];
  else if (k === '--seed') args.seed = Number(process.argv[++i]);
  else if (k === '--keep-dir') args.keep = true;
  else { console.error(`selftest.js: unknown argument ${k}`); process.exit(2); }
}

let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) passed++; else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
};
const enc = (s) => encodeURIComponent(s).replace(/%2C/g, ',').replace(/%7C/g, '|').replace(/%3A/g, ':').replace(/%2F/g, '/');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fhir-selftest-'));
  const { data, truth } = generate({ tz: args.tz, now: args.now, seed: args.seed, scale: 1 });
  fs.writeFileSync(path.join(dir, 'data.json'), JSON.stringify(data));
  fs.writeFileSync(path.join(dir, 'truth.json'), JSON.stringify(truth, null, 1));
  const keys = {};
  for (const alg of ['RS384', 'ES384']) {
    const kp = alg === 'ES384' ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-384' }) : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    keys[alg] = kp;
    fs.writeFileSync(path.join(dir, `${alg}.pub.pem`), kp.publicKey.export({ type: 'spki', format: 'pem' }));
  }
  const portFile = path.join(dir, 'port');
  const logFile = path.join(dir, 'requests.log');
  const child = spawn(process.execPath, [path.join(__dirname, 'server.js'), '--port-file', portFile, '--seed-file', path.join(dir, 'data.json'),
    '--log', logFile, '--smart-public-key', path.join(dir, 'RS384.pub.pem'), '--smart-public-key', path.join(dir, 'ES384.pub.pem'),
    '--client-id', 'portalmetrics-test', '--token-ttl', '300'], { stdio: ['ignore', 'inherit', 'inherit'] });
  let exited = false;
  child.on('exit', () => { exited = true; });
  try {
    for (let i = 0; i < 200 && !fs.existsSync(portFile); i++) { if (exited) throw new Error('server exited'); await sleep(50); }
    const port = Number(fs.readFileSync(portFile, 'utf8'));
    const origin = `http://127.0.0.1:${port}`;
    const base = `${origin}/fhir/R4`;
    await run(origin, base, truth, keys, logFile);
  } finally {
    child.kill('SIGTERM');
    if (!args.keep) fs.rmSync(dir, { recursive: true, force: true }); else console.log(`kept ${dir}`);
  }
}

async function run(origin, base, truth, keys, logFile) {
  // ---- SMART ----
  const smart = await (await fetch(`${base}/.well-known/smart-configuration`)).json();
  check(smart.token_endpoint === `${origin}/auth/token`, `smart-configuration token_endpoint ${smart.token_endpoint}`);
  const tokenUrl = smart.token_endpoint;
  const askToken = async (jwt, extra = {}) => {
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: jwt, scope: 'system/*.read', ...extra });
    const r = await fetch(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    return { status: r.status, body: await r.json() };
  };
  const mint = (alg, o = {}) => mintAssertion({ privateKey: keys[alg].privateKey, alg, clientId: 'portalmetrics-test', aud: tokenUrl, ...o });
  let token;
  for (const alg of ['RS384', 'ES384']) {
    const r = await askToken(mint(alg, { kid: `k-${alg}` }));
    check(r.status === 200 && r.body.token_type === 'bearer' && r.body.access_token && r.body.expires_in === 300, `token with ${alg}: ${r.status} ${JSON.stringify(r.body).slice(0, 80)}`);
    token = r.body.access_token;
  }
  const other = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const neg = [
    ['wrong key', mintAssertion({ privateKey: other, alg: 'RS384', clientId: 'portalmetrics-test', aud: tokenUrl }), 401, /signature/],
    ['expired', mint('RS384', { expIn: -5 }), 400, /expired/],
    ['exp too far', mint('ES384', { expIn: 3600 }), 400, /5 minutes/],
    ['wrong aud', mint('RS384', { aud: `${origin}/other` }), 400, /aud/],
    ['iss != sub', mint('RS384', { sub: 'someone' }), 401, /iss and sub/],
    ['unknown client', mint('RS384', { clientId: 'intruder' }), 401, /client_id/],
  ];
  for (const [what, jwt, status, re] of neg) {
    const r = await askToken(jwt);
    check(r.status === status && re.test(r.body.error_description), `refused (${what}): ${r.status} ${r.body.error}: ${r.body.error_description}`);
  }
  const once = mint('ES384', { jti: 'fixed-jti' });
  const r1 = await askToken(once);
  const r2 = await askToken(once);
  check(r1.status === 200 && r2.status === 400 && /replay/.test(r2.body.error_description), `jti replay refused: ${r2.status} ${r2.body.error_description}`);
  const noAuth = await fetch(`${base}/Patient?_summary=count`);
  check(noAuth.status === 401 && /Bearer/.test(noAuth.headers.get('www-authenticate') || ''), `no token -> ${noAuth.status}`);
  const badTok = await fetch(`${base}/Patient?_summary=count`, { headers: { authorization: 'Bearer nope' } });
  check(badTok.status === 401, `unknown token -> ${badTok.status}`);
  const md = await fetch(`${base}/metadata`);
  const cs = await md.json();
  check(md.status === 200 && cs.resourceType === 'CapabilityStatement', 'metadata without a token');

  const H = { authorization: `Bearer ${token}` };
  const get = async (url) => {
    const r = await fetch(url, { headers: H });
    const text = await r.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, json, text, headers: r.headers };
  };
  const count = async (q) => {
    const r = await get(`${base}/${q}&_summary=count&_total=accurate`);
    if (r.status !== 200) return { status: r.status, total: NaN, diag: r.text.slice(0, 200) };
    return { status: r.status, total: r.json.total };
  };
  // page through link[next], counting match entries; cls(resource) -> bool
  const pageCount = async (q, cls, pageSize = 50) => {
    let url = `${base}/${q}&_count=${pageSize}`;
    let n = 0;
    let pages = 0;
    while (url) {
      const r = await get(url);
      if (r.status !== 200) return NaN;
      pages++;
      for (const e of r.json.entry ?? []) if (e.search?.mode === 'match' && (!cls || cls(e.resource))) n++;
      url = (r.json.link ?? []).find((l) => l.relation === 'next')?.url;
    }
    return { n, pages };
  };
  const refType = (ref) => (ref?.reference ?? '').split('/')[0];
  const classifier = (c) => {
    if (!c) return null;
    const neg = c.type.startsWith('!');
    const t = c.type.replace(/^!/, '');
    return (res) => {
      const v = res[c.element];
      const types = (Array.isArray(v) ? v : v ? [v] : []).map(refType);
      return neg ? !types.includes(t) : types.includes(t);
    };
  };
  // the same by the plugin's config form: classify_path ("sender.reference",
  // "recipient[].reference": steps, "[]" = each element of an array) and
  // class ("Patient", or "!Patient": none of the reached types is Patient)
  const pathClassifier = (p, cls) => {
    const neg = cls.startsWith('!');
    const t = cls.replace(/^!/, '');
    const steps = p.split('.').map((s) => ({ name: s.replace(/\[\]$/, ''), array: s.endsWith('[]') }));
    return (res) => {
      let vals = [res];
      for (const st of steps) {
        vals = vals.flatMap((v) => {
          const x = v?.[st.name];
          if (x === undefined || x === null) return [];
          return st.array ? (Array.isArray(x) ? x : []) : (Array.isArray(x) ? [] : [x]);
        });
      }
      const types = vals.filter((v) => typeof v === 'string').map((v) => v.split('/')[0]);
      return neg ? !types.includes(t) : types.includes(t);
    };
  };
  const dateQ = (dp, day) => {
    const w = tz.dayWindow(day, truth.generated.tz);
    return `${dp}=ge${enc(w.ge)}&${dp}=lt${enc(w.lt)}`;
  };

  // ---- metadata lists the default set's parameters ----
  const csParams = (type) => new Set((cs.rest[0].resource.find((r) => r.type === type)?.searchParam ?? []).map((p) => p.name));
  for (const [t, p] of [['Patient', 'identifier'], ['Communication', 'sent'], ['Communication', 'sender'], ['DiagnosticReport', 'issued'], ['DiagnosticReport', 'category'], ['Appointment', '_lastUpdated'], ['Appointment', 'status'], ['Appointment', 'date']]) {
    check(csParams(t).has(p), `metadata lists ${t}.${p}`);
  }
  check(!csParams('Appointment').has('created'), 'metadata does not list Appointment.created (no such R4 parameter)');

  // ---- classified truth queries carry the plugin's config form ----
  for (const q of truth.queries.filter((x) => x.classify || x.classify_path || x.class)) {
    check(q.classify && typeof q.classify_path === 'string' && q.classify_path.split('.')[0].replace(/\[\]$/, '') === q.classify.element &&
      q.class === q.classify.type, `${q.metric}: classify_path ${q.classify_path}, class ${q.class}`);
  }

  // ---- every truth query, every day ----
  const days = truth.generated.days;
  for (const q of truth.queries) {
    if (q.kind === 'gauge') {
      const r = await count(`${q.resource}?${q.params}`);
      check(r.total === q.total, `${q.metric}: total ${r.total} vs truth ${q.total}`);
      continue;
    }
    const cls = q.classify_path ? pathClassifier(q.classify_path, q.class) : classifier(q.classify);
    let mismatches = [];
    let sumGot = 0;
    let sumTruth = 0;
    for (const day of days) {
      const qs = `${q.resource}?${q.params ? `${q.params}&` : ''}${dateQ(q.date_param, day)}`;
      let got;
      if (cls) got = (await pageCount(qs, cls)).n;
      else got = (await count(qs)).total;
      sumGot += got; sumTruth += q.days[day];
      if (got !== q.days[day]) mismatches.push(`${day}: ${got} != ${q.days[day]}`);
    }
    if (q.metric === 'x.appointments_requested_by_created') {
      check(sumGot === 0 && sumTruth > 0, `${q.metric}: server counts ${sumGot} (truth ${sumTruth}): "created" is not an R4 search parameter, silently zero`);
    } else {
      check(mismatches.length === 0, `${q.metric} by ${q.date_param}${q.classify ? ` (classified ${q.classify_path}=${q.class}, paged)` : ''}: ${days.length} days, sum ${sumGot} vs truth ${sumTruth}${mismatches.length ? `; ${mismatches.slice(0, 3).join('; ')}` : ''}`);
    }
  }

  // ---- support probes (SUPPORT.md) ----
  const T = Object.fromEntries(truth.queries.map((q) => [q.metric, q]));
  const sum = (m) => Object.values(T[m].days).reduce((a, b) => a + b, 0);
  const first = days[0];
  const last = days[days.length - 1];
  const all = (dp) => `${dp}=ge${enc(tz.dayWindow(first, truth.generated.tz).ge)}&${dp}=lt${enc(tz.dayWindow(last, truth.generated.tz).lt)}`;
  const probes = [
    // [description, query, expected total, note]
    ['Communication sent window, status=completed', `Communication?status=completed&${all('sent')}`, sum('x.messages_all_completed')],
    ['Communication sender:Patient (type modifier, no id)', `Communication?status=completed&sender:Patient=Patient&${all('sent')}`, 0],
    ['Communication sender:missing=false', `Communication?status=completed&sender:missing=false&${all('sent')}`, null],
    ['Communication sender.type chained-ish (sender._type=Patient)', `Communication?status=completed&sender._type=Patient&${all('sent')}`, 0],
    ['Communication sender:Patient.identifier:missing=false (chain)', `Communication?status=completed&sender:Patient.identifier:missing=false&${all('sent')}`, 0],
    ['Communication sender=Patient/pat-0001 (one patient)', `Communication?sender=Patient/pat-0001`, null],
    ['Communication recipient:Patient (type modifier, no id)', `Communication?status=completed&recipient:Patient=Patient&${all('sent')}`, 0],
    ['DiagnosticReport category=LAB&status=final,amended,corrected issued window', `DiagnosticReport?category=LAB&status=final,amended,corrected&${all('issued')}`, sum('portal.lab_reports_sent')],
    ['DiagnosticReport category=v2-0074|LAB', `DiagnosticReport?category=${enc('http://terminology.hl7.org/CodeSystem/v2-0074|LAB')}&status=final,amended,corrected&${all('issued')}`, sum('portal.lab_reports_sent')],
    ['Appointment status=cancelled _lastUpdated window', `Appointment?status=cancelled&${all('_lastUpdated')}`, sum('portal.appointments_canceled')],
    ['Appointment created window (not an R4 parameter)', `Appointment?${all('created')}`, 0],
    ['Appointment status=noshow date window', `Appointment?status=noshow&${all('date')}`, sum('portal.appointments_noshow')],
    ['Patient identifier=system|', `Patient?identifier=${enc(truth.generated.portal_identifier_system)}|`, T['portal.patients_enrolled'].total],
    ['Patient _tag=system|code', `Patient?_tag=${enc(truth.generated.portal_tag_system)}|portal-enrolled`, T['portal.patients_enrolled'].total],
    ['Patient extension (no SearchParameter): portal-account=true', `Patient?portal-account=true`, 0],
    ['Patient _has:Communication:sender:status=completed (reverse chain)', `Patient?_has:Communication:sender:status=completed`, 0],
    ['Communication sent window with a literal + offset (unencoded)', `Communication?sent=ge2025-01-01T00:00:00+02:00`, 'HTTP 400'],
  ];
  for (const [what, q, expect] of probes) {
    const r = await count(q);
    const got = r.status === 200 ? r.total : `HTTP ${r.status}`;
    const ok = expect === null ? r.status === 200 : got === expect;
    check(ok, `probe ${what}: ${got}${expect === null ? '' : ` (expected ${expect})`}${r.diag && r.status !== 200 ? ` ${r.diag.replace(/\s+/g, ' ').slice(0, 120)}` : ''}`);
  }

  // ---- faults and paging ----
  const ctl = async (body) => (await fetch(`${origin}/control`, { method: 'POST', body: JSON.stringify(body) })).json();
  const qLab = `DiagnosticReport?category=LAB&status=final,amended,corrected&${all('issued')}`;
  const labTotal = sum('portal.lab_reports_sent');
  await ctl({ mode: '429', count: 2 });
  const t0 = Date.now();
  let a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 429 && a.headers.get('retry-after') === '1', `429 with Retry-After: ${a.status} ${a.headers.get('retry-after')}`);
  a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 429, 'second 429 (count 2)');
  await sleep(1000);
  a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 200 && a.json.total === labTotal && Date.now() - t0 >= 1000, 'ok again after count, waited Retry-After');
  await ctl({ mode: '503', count: 1 });
  a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 503 && a.headers.get('retry-after') === '1', `503 with Retry-After: ${a.status}`);
  await ctl({ mode: 'garbage', count: 1 });
  a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 200 && a.json === undefined, 'garbage: 200 with invalid JSON');
  await ctl({ mode: 'truncated', count: 1 });
  let truncErr = null;
  try { await (await fetch(`${base}/${qLab}&_count=100`, { headers: H })).text(); } catch (e) { truncErr = e; }
  check(truncErr !== null, `truncated: body read fails (${truncErr && (truncErr.cause?.code || truncErr.message)})`);
  await ctl({ mode: 'outcome', count: 1 });
  a = await get(`${base}/${qLab}&_summary=count`);
  check(a.status === 400 && a.json?.resourceType === 'OperationOutcome', 'outcome: 400 OperationOutcome');
  await ctl({ mode: 'hang', count: 1 });
  const ac = new AbortController();
  const tm = setTimeout(() => ac.abort(), 500);
  let hung = false;
  try { await fetch(`${base}/${qLab}&_summary=count`, { headers: H, signal: ac.signal }); } catch { hung = true; }
  clearTimeout(tm);
  check(hung, 'hang: no answer within 500 ms');
  await ctl({ mode: 'nototal' });
  a = await get(`${base}/${qLab}&_summary=count&_total=accurate`);
  check(a.status === 200 && a.json.total === undefined && (a.json.entry?.length ?? 0) > 0, 'nototal: no Bundle.total, _summary=count ignored');
  const pc = await pageCount(qLab, null, 25);
  check(pc.n === labTotal && pc.pages === Math.ceil(labTotal / 25), `nototal: paging link[next] counts ${pc.n} in ${pc.pages} pages (truth ${labTotal})`);
  await ctl({ mode: 'include' });
  const pi = await pageCount(qLab, null, 40);
  check(pi.n === labTotal, `include: extra include/outcome entries not counted: ${pi.n}`);
  await ctl({ mode: 'ok', delay_ms: 200 });
  const t1 = Date.now();
  await Promise.all(Array.from({ length: 10 }, () => get(`${base}/${qLab}&_summary=count`)));
  const el = Date.now() - t1;
  const st = await (await fetch(`${origin}/control`)).json();
  check(el >= 200 && el < 1500 && st.inflight_max >= 5, `delay 200 ms: 10 parallel requests in ${el} ms, inflight_max ${st.inflight_max}`);
  await ctl({ delay_ms: 0 });

  const lines = fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => l.split('\t'));
  const l429 = lines.filter((l) => l[3] === '429');
  check(l429.length === 2 && lines.some((l) => l[3] === 'hang') && lines.some((l) => l[3].startsWith('token:401')), `log: ${lines.length} lines, 429 x${l429.length}, hang, token refusals`);
  check(!fs.readFileSync(logFile, 'utf8').includes(token), 'log holds no token');
}

main().then(() => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}, (e) => {
  console.error(e.stack || e);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
