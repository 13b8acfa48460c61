// send.js: sends HL7 v2 messages over MLLP with node-hl7-client (the npm
// package pinned in tests/package.json; run scripts/lib/npm.sh's pm_npm_ci
// first) and waits for an ACK to each, as an interface engine would:
// one message in flight per connection, and every message it has no ACK for
// is sent again (same bytes, same MSH-10) after a dropped connection or an
// ACK timeout.
//
//   node tests/hl7/send.js [options] HOST:PORT INPUT...
//
// INPUT: gen.js output: DIR/messages.json (a JSON array of strings or of
// objects with .text), a directory of *.hl7 files (sent in name order), or
// single .hl7 files. node-hl7-client sends each message as
// 0x0B <message without its trailing segment terminator> 0x1C 0x0D.
//
//   --connections N       N connections, each with one message in flight,
//                         taking messages from one queue (default 1)
//   --ack-timeout SEC     per transmission; then the connection is closed,
//                         a new one opened and the message sent again
//                         (default 10)
//   --connect-timeout SEC per connection attempt (default 5); failed
//                         attempts are retried, 0.1 s doubling to 2 s apart;
//                         a message whose connection dropped is sent again
//                         after 50 ms, doubling per try, at most 2 s
//   --give-up SEC         overall deadline: stop and exit 1 (default 300)
//   --state FILE          append "MSH-10<TAB>CODE" to FILE as each final ACK
//                         arrives (no fsync)
//   --resend-unacked FILE read FILE (as --state writes it; a torn last line
//                         is ignored) and send only the messages whose
//                         MSH-10 is not in it; new ACKs are appended to FILE
//   --out FILE            JSON lines, one per ACK received:
//                         {"id":MSH-10,"code":MSA-1,"ack_id":MSA-2,
//                          "final":bool,"conn":K,"try":N,"ms":latency}
//                         ("mismatch":true when MSA-2 is not the MSH-10)
//   --summary-json FILE   the summary below as JSON, plus "unacked_ids"
//   --retry-on CODES      e.g. AR,CR: such an ACK is not final; the message
//                         is sent again after --retry-delay MS (default
//                         1000) on the same connection. Default: every ACK
//                         code is final (AE and AR are recorded, not resent)
//   --max-tries N         transmissions of one message before giving it up
//                         (default 50)
//   --expect CODES        e.g. AA or AA,CA: exit 1 unless every final code
//                         is one of CODES (default: any code)
//   --allow-duplicates    the input may hold one MSH-10 more than once
//                         (each is sent; the state file cannot tell them
//                         apart)
//   --tls                 TLS (node-hl7-client's tls option), with --ca F,
//                         --cert F, --key F, --servername NAME, --insecure
//                         (no certificate verification)
//   --quiet               no per-event lines on stderr
//
// stdout, one line at the end:
//   send: M messages: A acked (AA=x AE=y ...), U unacked; S sent (R resent),
//   B bad ACK(s), C reconnect(s), K connection(s), T s, Q acked/s
// (M leaves out, and says so, the ids --resend-unacked skipped; a bad ACK is
// one whose MSA-2 is not the MSH-10 sent, one without MSA-1, an unparsable
// one, or one with nothing in flight: the connection is closed and the
// message sent again)
// stderr: one line per connection event (refused, closed, ACK timeout,
// resend), naming the connection and MSH-10 only. Exit 0 when every message
// got a final ACK, each code is in --expect (if given) and no ACK was bad;
// 1 otherwise; 2 on a usage error.
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs, die, loadMessages } = require('./common');

let hl7;
try {
  hl7 = require(path.join(__dirname, '..', 'node_modules', 'node-hl7-client'));
} catch (e) {
  die('node-hl7-client is not installed: run pm_npm_ci (scripts/lib/npm.sh) or npm ci --prefix tests');
}
const { Client, Message } = hl7;

const { opts, pos } = parseArgs(process.argv.slice(2), {
  '--connections': 'int', '--ack-timeout': 'float', '--connect-timeout': 'float', '--give-up': 'float',
  '--state': 'string', '--resend-unacked': 'string', '--out': 'string', '--summary-json': 'string',
  '--retry-on': 'string', '--retry-delay': 'int', '--max-tries': 'int', '--expect': 'string',
  '--allow-duplicates': 'flag', '--tls': 'flag', '--ca': 'string', '--cert': 'string', '--key': 'string',
  '--servername': 'string', '--insecure': 'flag', '--quiet': 'flag',
});
if (pos.length < 2) die('usage: send.js [options] HOST:PORT INPUT...');
const hp = /^(.*):(\d+)$/.exec(pos[0]);
if (!hp) die(`not HOST:PORT: ${pos[0]}`);
const host = hp[1].replace(/^\[(.*)\]$/, '$1');
const port = parseInt(hp[2], 10);
// node-hl7-client refuses ports above 65353 (its bound, not TCP's)
if (port < 1 || port > 65353) die(`port ${port}: node-hl7-client takes 1..65353`);
const nconn = opts.connections ?? 1;
const ackTimeoutMs = (opts.ackTimeout ?? 10) * 1000;
const connectTimeoutMs = (opts.connectTimeout ?? 5) * 1000;
const giveUpMs = (opts.giveUp ?? 300) * 1000;
const retryOn = new Set((opts.retryOn || '').split(',').filter(Boolean));
const retryDelayMs = opts.retryDelay ?? 1000;
const maxTries = opts.maxTries ?? 50;
const expect = opts.expect ? new Set(opts.expect.split(',').filter(Boolean)) : null;
if (opts.state && opts.resendUnacked && opts.state !== opts.resendUnacked) die('--state and --resend-unacked name one file');
const stateFile = opts.resendUnacked || opts.state;
if (nconn < 1) die('--connections must be at least 1');

const all = loadMessages(pos.slice(1));
for (const m of all) {
  try { new Message({ text: m.text }); } catch (e) { die(`${m.id}: node-hl7-client cannot take it: ${e.message}`); }
}
if (!opts.allowDuplicates) {
  const seen = new Set();
  for (const m of all) {
    if (seen.has(m.id)) die(`duplicate MSH-10 ${m.id} in the input (--allow-duplicates)`);
    seen.add(m.id);
  }
}
const alreadyAcked = new Set();
if (opts.resendUnacked && fs.existsSync(opts.resendUnacked)) {
  const text = fs.readFileSync(opts.resendUnacked, 'utf8');
  const lines = text.split('\n');
  if (!text.endsWith('\n')) lines.pop(); // torn last line: not an ACK
  for (const l of lines) {
    const m = /^([^\t]+)\t([A-Z]{2})$/.exec(l);
    if (m && !retryOn.has(m[2])) alreadyAcked.add(m[1]);
  }
}
const queue = all.filter((m) => !alreadyAcked.has(m.id));
let qi = 0;

const log = (s) => { if (!opts.quiet) process.stderr.write(`send: ${s}\n`); };
const outFd = opts.out ? fs.openSync(opts.out, 'a') : null;
const stateFd = stateFile ? fs.openSync(stateFile, 'a') : null;

let tls;
if (opts.tls) {
  tls = { rejectUnauthorized: !opts.insecure };
  if (opts.ca) tls.ca = fs.readFileSync(opts.ca);
  if (opts.cert) tls.cert = fs.readFileSync(opts.cert);
  if (opts.key) tls.key = fs.readFileSync(opts.key);
  if (opts.servername) tls.servername = opts.servername;
}
// connectionTimeout 0: node-hl7-client then neither reconnects nor cuts the
// socket by itself (with > 0 it destroys every socket that many ms after it
// opened, and reconnects); reconnecting is done here.
const client = new Client({ host, connectionTimeout: 0, ...(tls ? { tls } : {}) });

const t0 = Date.now();
const deadline = t0 + giveUpMs;
const stats = { sent: 0, resent: 0, reconnects: 0, connections: 0, badAcks: 0 };
const finalCode = new Map(); // MSH-10 -> code (final ACKs of this run)
const codeCounts = {};
const badCodes = [];
const gaveUp = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let stopping = false;

class Worker {
  constructor(k) {
    this.k = k;
    this.conn = null;
    this.pending = null;
    this.everConnected = false;
  }

  // One connection attempt: resolves true when connected, false otherwise.
  open() {
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok, why) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (!ok) {
          log(`conn ${this.k}: connect to ${host}:${port} failed: ${why}`);
          conn.close().catch(() => {});
        }
        resolve(ok);
      };
      const conn = client.createConnection({ port, waitAck: true }, (res) => this.onResponse(conn, res));
      const sock = conn._socket; // the library's net/tls socket: its 'close' tells of a drop
      let lastErr = null;
      sock.on('error', (e) => { lastErr = e.code || e.message; });
      sock.once('close', () => {
        if (!done) finish(false, lastErr || 'closed');
        else this.onClosed(conn, lastErr);
      });
      conn.on('data.error', (e) => this.onBad(conn, `unparsable ACK (${e && e.message})`));
      // TCP connect, and for TLS the handshake too (the library's 'connect'
      // is the TCP one: a certificate refused would show only as a close).
      let waiting = tls ? 2 : 1;
      const up = () => {
        if (done || --waiting > 0) return;
        this.conn = conn;
        stats.connections++;
        if (this.everConnected) stats.reconnects++;
        this.everConnected = true;
        finish(true);
      };
      conn.once('connect', up);
      if (tls) sock.once('secureConnect', up);
      const timer = setTimeout(() => finish(false, 'connect timeout'), connectTimeoutMs);
    });
  }

  async ensureConnected() {
    let backoff = 100;
    while (!this.conn && !stopping) {
      if (Date.now() >= deadline) return false;
      if (await this.open()) return true;
      await sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
      backoff = Math.min(backoff * 2, 2000);
    }
    return !!this.conn;
  }

  drop(why) {
    const conn = this.conn;
    this.conn = null;
    if (conn) conn.close().catch(() => {});
    if (this.pending) {
      const p = this.pending;
      this.pending = null;
      clearTimeout(p.timer);
      p.resolve({ fail: why });
    }
  }

  onClosed(conn, err) {
    if (conn !== this.conn) return;
    log(`conn ${this.k}: closed by peer${err ? ` (${err})` : ''}${this.pending ? `, ${this.pending.id} unacked` : ''}`);
    this.drop('closed');
  }

  onBad(conn, why) {
    if (conn !== this.conn) return;
    stats.badAcks++;
    log(`conn ${this.k}: ${why}${this.pending ? ` for ${this.pending.id}` : ''}; closing`);
    this.drop('bad ack');
  }

  onResponse(conn, res) {
    if (conn !== this.conn) return;
    const m = res.getMessage();
    const code = m.get('MSA.1').toString();
    const ackId = m.get('MSA.2').toString();
    const p = this.pending;
    if (!p) {
      stats.badAcks++;
      log(`conn ${this.k}: unsolicited ACK (MSA-2 ${ackId}); closing`);
      this.drop('unsolicited');
      return;
    }
    if (!code) { this.onBad(conn, 'ACK without MSA-1'); return; }
    this.pending = null;
    clearTimeout(p.timer);
    p.resolve({ code, ackId, ms: Date.now() - p.at });
  }

  async sendOnce(msg, tries) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        log(`conn ${this.k}: no ACK for ${msg.id} in ${ackTimeoutMs / 1000} s; reconnecting`);
        this.drop('timeout');
      }, ackTimeoutMs);
      this.pending = { id: msg.id, resolve, timer, at: Date.now() };
      stats.sent++;
      if (tries > 1) stats.resent++;
      this.conn.sendMessage(new Message({ text: msg.text })).catch((e) => {
        log(`conn ${this.k}: send of ${msg.id} failed: ${e.message}`);
        this.drop('send failed');
      });
    });
  }

  async run() {
    for (;;) {
      if (stopping || qi >= queue.length) break;
      const msg = queue[qi++];
      let tries = 0;
      for (;;) {
        if (!(await this.ensureConnected())) {
          gaveUp.push(msg.id);
          stopping = true;
          break;
        }
        if (tries >= maxTries) {
          log(`${msg.id}: given up after ${tries} transmissions`);
          gaveUp.push(msg.id);
          break;
        }
        tries++;
        if (tries > 1) log(`conn ${this.k}: sending ${msg.id} again (try ${tries})`);
        const r = await this.sendOnce(msg, tries);
        if (r.fail) {
          if (Date.now() >= deadline) { gaveUp.push(msg.id); stopping = true; break; }
          // a connection that keeps failing is not hammered: 50 ms, doubling
          // per try of this message, at most 2 s
          if (r.fail !== 'timeout') await sleep(Math.min(50 * 2 ** (tries - 1), 2000));
          continue;
        }
        const mismatch = r.ackId !== msg.id;
        const final = !mismatch && !retryOn.has(r.code);
        if (outFd !== null) {
          const rec = { id: msg.id, code: r.code, ack_id: r.ackId, final, conn: this.k, try: tries, ms: r.ms };
          if (mismatch) rec.mismatch = true;
          fs.writeSync(outFd, JSON.stringify(rec) + '\n');
        }
        if (mismatch) {
          stats.badAcks++;
          log(`conn ${this.k}: ACK for ${msg.id} has MSA-2 ${r.ackId}; closing`);
          this.drop('mismatch');
          await sleep(Math.min(50 * 2 ** (tries - 1), 2000));
          continue;
        }
        if (!final) {
          log(`conn ${this.k}: ${msg.id} answered ${r.code}; sending again in ${retryDelayMs} ms`);
          await sleep(retryDelayMs);
          continue;
        }
        finalCode.set(msg.id, r.code);
        codeCounts[r.code] = (codeCounts[r.code] || 0) + 1;
        if (expect && !expect.has(r.code)) badCodes.push(`${msg.id}=${r.code}`);
        if (stateFd !== null) fs.writeSync(stateFd, `${msg.id}\t${r.code}\n`);
        break;
      }
    }
    this.drop('done');
  }
}

async function main() {
  const workers = [];
  for (let k = 0; k < Math.min(nconn, Math.max(1, queue.length)); k++) workers.push(new Worker(k));
  if (queue.length) await Promise.all(workers.map((w) => w.run()));
  client.closeAll();
  const secs = (Date.now() - t0) / 1000;
  const acked = finalCode.size;
  const unackedIds = queue.filter((m) => !finalCode.has(m.id)).map((m) => m.id);
  const codes = Object.keys(codeCounts).sort().map((c) => `${c}=${codeCounts[c]}`).join(' ');
  const skipped = all.length - queue.length;
  const summary = {
    messages: queue.length, skipped_already_acked: skipped, acked, codes: codeCounts, unacked: unackedIds.length,
    sent: stats.sent, resent: stats.resent, bad_acks: stats.badAcks, reconnects: stats.reconnects, connections: stats.connections,
    seconds: secs, acked_per_second: secs > 0 ? acked / secs : 0, unexpected_codes: badCodes, unacked_ids: unackedIds,
  };
  if (opts.summaryJson) fs.writeFileSync(opts.summaryJson, JSON.stringify(summary, null, 1) + '\n');
  process.stdout.write(`send: ${queue.length} messages${skipped ? ` (${skipped} already acked, skipped)` : ''}: `
    + `${acked} acked (${codes || 'none'}), ${unackedIds.length} unacked; ${stats.sent} sent (${stats.resent} resent), `
    + `${stats.badAcks} bad ACK(s), ${stats.reconnects} reconnect(s), ${stats.connections} connection(s), ${secs.toFixed(3)} s, `
    + `${summary.acked_per_second.toFixed(1)} acked/s\n`);
  if (unackedIds.length) process.stderr.write(`send: unacked: ${unackedIds.slice(0, 20).join(' ')}${unackedIds.length > 20 ? ' ...' : ''}\n`);
  if (badCodes.length) process.stderr.write(`send: codes not in --expect: ${badCodes.slice(0, 20).join(' ')}\n`);
  if (outFd !== null) fs.closeSync(outFd);
  if (stateFd !== null) fs.closeSync(stateFd);
  process.exit(unackedIds.length === 0 && badCodes.length === 0 && stats.badAcks === 0 ? 0 : 1);
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { process.stderr.write(`send: ${sig}\n`); process.exit(1); });
}
main().catch((e) => { process.stderr.write(`send: ${e.stack || e}\n`); process.exit(1); });
