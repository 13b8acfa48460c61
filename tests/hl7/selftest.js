// selftest.js: checks gen.js, send.js and raw.js against fake_server.js,
// without the daemon (for whoever changes these scripts; no test runs it).
//
//   node tests/hl7/selftest.js
//
// Prints one "ok: ..." line per check and "N passed, N failed"; exit 1 on a
// failure. Needs tests/node_modules (pm_npm_ci). Uses 127.0.0.1 only.
'use strict';
const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const here = __dirname;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hl7self.'));
let passed = 0;
let failed = 0;
const check = (ok, what) => {
  if (ok) passed++; else failed++;
  process.stdout.write(`${ok ? 'ok' : 'FAILED'}: ${what}\n`);
};
const node = (args, o = {}) => spawnSync(process.execPath, args, { encoding: 'utf8', ...o });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function server(args) {
  const portFile = path.join(tmp, `port.${Math.random().toString(36).slice(2)}`);
  const log = path.join(tmp, `srv.${Math.random().toString(36).slice(2)}.log`);
  const p = spawn(process.execPath, [path.join(here, 'fake_server.js'), '--port-file', portFile, '--log', log, ...args], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !fs.existsSync(portFile); i++) await sleep(50);
  await sleep(50);
  const port = parseInt(fs.readFileSync(portFile, 'utf8'), 10);
  const lines = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t')) : []);
  const exited = new Promise((res) => p.on('exit', res));
  return { p, port, lines, stop: () => { p.kill('SIGTERM'); return exited; } };
}

async function main() {
  const g = path.join(tmp, 'g');
  const r = node([path.join(here, 'gen.js'), '--tz', 'America/Denver', '--out-dir', g, '--seed', '3', '--count', '60']);
  check(r.status === 0, 'gen.js writes a batch');
  const ids = JSON.parse(fs.readFileSync(path.join(g, 'messages.json'), 'utf8')).map((m) => m.id);
  const r2 = node([path.join(here, 'gen.js'), '--tz', 'America/Denver', '--out-dir', path.join(tmp, 'g2'), '--seed', '3', '--count', '60',
    '--now', JSON.parse(fs.readFileSync(path.join(g, 'expected.json'), 'utf8')).now]);
  check(r2.status === 0 && fs.readFileSync(path.join(g, 'messages.json'), 'utf8') === fs.readFileSync(path.join(tmp, 'g2', 'messages.json'), 'utf8'),
    'gen.js is deterministic for a seed and --now');

  // drops and a swallowed message: exactly the unacked one is sent again
  {
    const s = await server(['--drop-at', '7,20,21', '--swallow-at', '30']);
    const state = path.join(tmp, 'state1');
    const res = node([path.join(here, 'send.js'), `127.0.0.1:${s.port}`, path.join(g, 'msgs'), '--state', state, '--ack-timeout', '1']);
    s.stop();
    const L = s.lines();
    check(res.status === 0 && /60 acked \(AA=60\), 0 unacked; 64 sent \(4 resent\)/.test(res.stdout), `send.js: 60 acked, 4 resent (${res.stdout.trim()})`);
    const sentOrder = L.map((l) => l[2]);
    const expectOrder = [];
    for (const id of ids) {
      expectOrder.push(id);
      if (id === ids[6]) expectOrder.push(id); // dropped at 7
      if (id === ids[18]) expectOrder.push(id, id); // dropped at 20 and 21
      if (id === ids[26]) expectOrder.push(id); // swallowed at 30
    }
    check(JSON.stringify(sentOrder) === JSON.stringify(expectOrder), 'the server saw each dropped or unanswered message again, and nothing else twice');
    const st = fs.readFileSync(state, 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t')[0]);
    check(JSON.stringify([...st].sort()) === JSON.stringify([...ids].sort()), 'the state file holds every MSH-10 once');
  }

  // sender killed -9, then --resend-unacked: sends exactly the complement
  {
    const s = await server(['--ack-delay', '20']);
    const state = path.join(tmp, 'state2');
    const p = spawn(process.execPath, [path.join(here, 'send.js'), `127.0.0.1:${s.port}`, path.join(g, 'messages.json'), '--state', state], { stdio: 'ignore' });
    await sleep(500);
    p.kill('SIGKILL');
    await new Promise((res) => p.on('exit', res));
    const acked1 = new Set(fs.readFileSync(state, 'utf8').split('\n').filter((l) => l.includes('\t')).map((l) => l.split('\t')[0]));
    const before = s.lines().length;
    const res = node([path.join(here, 'send.js'), `127.0.0.1:${s.port}`, path.join(g, 'messages.json'), '--resend-unacked', state]);
    await sleep(100);
    s.stop();
    const second = s.lines().slice(before).map((l) => l[2]);
    const want = ids.filter((id) => !acked1.has(id));
    check(acked1.size > 0 && acked1.size < ids.length, `the killed sender had ${acked1.size} of ${ids.length} acked`);
    check(res.status === 0 && JSON.stringify(second) === JSON.stringify(want), `--resend-unacked sent exactly the ${want.length} unacked`);
  }

  // AE/AR recorded; --retry-on AR; --expect
  {
    const s = await server(['--code-at', '2=AE', '--code-at', '5=AR']);
    const res = node([path.join(here, 'send.js'), `127.0.0.1:${s.port}`, path.join(g, 'messages.json'), '--retry-on', 'AR', '--retry-delay', '50', '--expect', 'AA', '--quiet']);
    s.stop();
    check(res.status === 1 && /AA=59 AE=1/.test(res.stdout) && /61 sent \(1 resent\)/.test(res.stdout), `AR sent again, AE final and outside --expect (${res.stdout.trim()})`);
  }

  // raw.js: junk, frames, half-close
  {
    const s = await server([]);
    const f1 = path.join(g, 'msgs', fs.readdirSync(path.join(g, 'msgs')).sort()[0]);
    const res = node([path.join(here, 'raw.js'), '127.0.0.1', String(s.port), '--send-str', 'junk<CR>', '--send-frame', f1,
      '--send-str', '<VT>MSH|^~\\\\&|A|B|||||ADT^A04|RAW1|P|2.5<FS><CR>', '--expect-frames', '2', '--no-recv-lines']);
    const res2 = node([path.join(here, 'raw.js'), '127.0.0.1', String(s.port), '--send-str', '<VT>MSH|^~', '--end', '--timeout', '3']);
    await s.stop();
    check(res.status === 0 && new RegExp(`ack 1: MSA-1=AA MSA-2=${ids[0]}`).test(res.stdout) && /ack 2: MSA-1=AA MSA-2=RAW1/.test(res.stdout)
      && /closed-by=client-frames/.test(res.stdout), 'raw.js: junk skipped by the server, two frames, two ACKs');
    check(/end: closed-by=server /.test(res2.stdout), 'raw.js: a half-close mid-frame, then the server closes');
    const res3 = node([path.join(here, 'raw.js'), '127.0.0.1', String(s.port), '--send-str', 'x', '--timeout', '1']);
    check(res3.status === 3 && /connect-error ECONNREFUSED/.test(res3.stdout), 'raw.js: connect-error and exit 3 when nothing listens');
  }

  fs.rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exit(failed ? 1 : 0);
}
main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });
