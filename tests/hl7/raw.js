// raw.js: one raw TCP (or TLS) connection to an MLLP listener for fault
// injection: sends exactly the bytes it is given, in order, and prints every
// byte received (node's net module only: node-hl7-client cannot send junk,
// a message without MSH, a torn frame or one byte at a time).
//
//   node tests/hl7/raw.js HOST PORT STEP... [options]
//
// Steps, run in command-line order:
//   --send-file F      the bytes of F, exactly
//   --send-frame F     the bytes of F inside MLLP framing: 0x0B F 0x1C 0x0D
//   --send-hex HEX     bytes in hex (spaces allowed): "0b 4d 53 48"
//   --send-str S       a string; \r \n \t \\ \xNN and <VT> <FS> <CR> <LF>
//                      are decoded, e.g. "junk<VT>MSH|^~\\&|...<CR><FS><CR>"
//   --pause MS         wait MS ms
//   --wait-frames N    wait until N frames in all were received (bounded
//                      by --timeout)
//   --end              half-close: send FIN, keep reading
//   --reset            abort the connection with RST, and stop
// Options:
//   --slow MS          send steps write one byte every MS ms
//   --timeout SEC      overall limit (default 10); then raw.js closes
//   --idle SEC         after the last step, close when nothing arrived for
//                      SEC (default: wait for the server to close, or
//                      --timeout)
//   --expect-frames N  after the last step, close once N frames in all were
//                      received
//   --local-address A  bind to A first (e.g. 127.0.0.2, for an allow list)
//   --tls              TLS, with --ca F, --cert F, --key F, --servername
//                      NAME, --insecure (no certificate verification)
//   --no-recv-lines    leave out the "recv" lines (frames still printed)
//
// stdout, one event a line (bytes shown by escapeBytes: <VT> <FS> <CR> <LF>,
// \\ for a backslash, \xNN for other bytes):
//   connected LOCAL_ADDR:PORT -> HOST:PORT
//   connect-error CODE                         (then exit 3)
//   sent N (total T)                           after each send step
//   send-error CODE after T bytes              the peer was gone
//   recv N: <bytes>                            each chunk as it arrived
//   frame K: <bytes>                           each complete MLLP frame
//   ack K: MSA-1=<code> MSA-2=<id>             a frame with an MSA segment
//   junk: <bytes>                              received bytes outside frames
//   server-fin                                 the server half-closed
//   end: closed-by=WHO bytes-sent=T bytes-received=R frames=K
//        pending-frame-bytes=P seconds=S
// where WHO is server (FIN), server-reset (RST: ECONNRESET or EPIPE before
// any FIN; what a server that closes with unread input sends), client-timeout,
// client-idle, client-frames (--expect-frames met), client-reset (--reset),
// client-error. Exit 0 (3 when it could not connect, 2 on a usage error).
'use strict';
const net = require('net');
const tlsMod = require('tls');
const fs = require('fs');
const { parseArgs, die, frame, Deframer, escapeBytes, hl7Fields } = require('./common');

const { opts, pos, seq } = parseArgs(process.argv.slice(2), {
  '--send-file': 'list', '--send-frame': 'list', '--send-hex': 'list', '--send-str': 'list', '--pause': 'list',
  '--wait-frames': 'list', '--end': 'flag', '--reset': 'flag',
  '--slow': 'int', '--timeout': 'float', '--idle': 'float', '--expect-frames': 'int', '--local-address': 'string',
  '--tls': 'flag', '--ca': 'string', '--cert': 'string', '--key': 'string', '--servername': 'string',
  '--insecure': 'flag', '--no-recv-lines': 'flag',
});
if (pos.length !== 2 || !/^\d+$/.test(pos[1])) die('usage: raw.js HOST PORT STEP... [options]');
const host = pos[0];
const port = parseInt(pos[1], 10);
const STEP_KEYS = new Set(['sendFile', 'sendFrame', 'sendHex', 'sendStr', 'pause', 'waitFrames', 'end', 'reset']);
const steps = seq.filter((s) => STEP_KEYS.has(s.key));
const timeoutMs = (opts.timeout ?? 10) * 1000;

function decodeStr(s) {
  const out = [];
  for (let i = 0; i < s.length;) {
    const tok = /^<(VT|FS|CR|LF)>/.exec(s.slice(i));
    if (tok) { out.push({ VT: 0x0b, FS: 0x1c, CR: 0x0d, LF: 0x0a }[tok[1]]); i += tok[0].length; continue; }
    if (s[i] === '\\' && i + 1 < s.length) {
      const c = s[i + 1];
      if (c === 'r') { out.push(0x0d); i += 2; continue; }
      if (c === 'n') { out.push(0x0a); i += 2; continue; }
      if (c === 't') { out.push(0x09); i += 2; continue; }
      if (c === '\\') { out.push(0x5c); i += 2; continue; }
      if (c === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) { out.push(parseInt(s.slice(i + 2, i + 4), 16)); i += 4; continue; }
    }
    for (const b of Buffer.from(s[i], 'utf8')) out.push(b);
    i++;
  }
  return Buffer.from(out);
}
function stepBytes(s) {
  switch (s.key) {
    case 'sendFile': return fs.readFileSync(s.value);
    case 'sendFrame': return frame(fs.readFileSync(s.value));
    case 'sendHex': {
      const h = s.value.replace(/\s+/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(h)) die(`--send-hex: not hex: ${s.value}`);
      return Buffer.from(h, 'hex');
    }
    case 'sendStr': return decodeStr(s.value);
    default: return null;
  }
}
// read every file up front: a missing file is a usage error, not a test result
const prepared = steps.map((s) => ({ ...s, bytes: stepBytes(s) }));

process.stdout.on('error', () => {}); // a reader that stopped early (| head)
const out = (line) => process.stdout.write(line + '\n');
const t0 = Date.now();
let bytesSent = 0;
let bytesRecv = 0;
let frames = 0;
let lastRecvAt = Date.now();
let serverFin = false;
let closed = false;
let closedBy = null;
let sockErr = null;
const df = new Deframer();
const frameWaiters = [];

const connectOpts = { host, port };
if (opts.localAddress) connectOpts.localAddress = opts.localAddress;
let sock;
if (opts.tls) {
  const t = { ...connectOpts, rejectUnauthorized: !opts.insecure };
  if (opts.ca) t.ca = fs.readFileSync(opts.ca);
  if (opts.cert) t.cert = fs.readFileSync(opts.cert);
  if (opts.key) t.key = fs.readFileSync(opts.key);
  t.servername = opts.servername || (net.isIP(host) ? undefined : host);
  sock = tlsMod.connect(t);
} else {
  sock = net.connect(connectOpts);
}
sock.setNoDelay(true);

function finish(who) {
  if (closed) return;
  closed = true;
  closedBy = closedBy || who;
  clearTimeout(overall);
  out(`end: closed-by=${closedBy} bytes-sent=${bytesSent} bytes-received=${bytesRecv} frames=${frames} `
    + `pending-frame-bytes=${df.pending()} seconds=${((Date.now() - t0) / 1000).toFixed(3)}`);
  sock.destroy();
  process.exitCode = 0;
  setImmediate(() => process.exit(0));
}
const overall = setTimeout(() => finish('client-timeout'), timeoutMs);

let connected = false;
sock.on('error', (e) => {
  sockErr = e.code || e.message;
  if (!connected) {
    out(`connect-error ${sockErr}`);
    process.exit(3);
  }
});
sock.on('data', (chunk) => {
  bytesRecv += chunk.length;
  lastRecvAt = Date.now();
  if (!opts.noRecvLines) out(`recv ${chunk.length}: ${escapeBytes(chunk)}`);
  for (const item of df.push(chunk)) {
    if (item.junk) { out(`junk: ${escapeBytes(item.junk)}`); continue; }
    frames++;
    out(`frame ${frames}: ${escapeBytes(item.frame)}`);
    const f = hl7Fields(item.frame);
    if (f.get('MSA')) out(`ack ${frames}: MSA-1=${f.field('MSA', 1)} MSA-2=${f.field('MSA', 2)}`);
  }
  while (frameWaiters.length && frames >= frameWaiters[0].n) frameWaiters.shift().resolve();
});
sock.on('end', () => { serverFin = true; out('server-fin'); });
sock.on('close', () => {
  for (const w of frameWaiters.splice(0)) w.resolve();
  let who = 'server';
  if (!serverFin && (sockErr === 'ECONNRESET' || sockErr === 'EPIPE')) who = 'server-reset';
  else if (!serverFin && sockErr) who = `client-error(${sockErr})`;
  if (!closed) finish(who);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const gone = () => closed || sock.destroyed || !sock.writable;

function writeAll(buf) {
  return new Promise((resolve) => {
    if (gone()) { resolve(false); return; }
    sock.write(buf, (err) => {
      if (err) { sockErr = sockErr || err.code || err.message; resolve(false); return; }
      bytesSent += buf.length;
      resolve(true);
    });
  });
}

async function sendBytes(buf) {
  if (opts.slow) {
    for (let i = 0; i < buf.length; i++) {
      if (!(await writeAll(buf.subarray(i, i + 1)))) return false;
      if (i + 1 < buf.length) await sleep(opts.slow);
    }
    return true;
  }
  for (let i = 0; i < buf.length; i += 65536) {
    if (!(await writeAll(buf.subarray(i, i + 65536)))) return false;
  }
  return true;
}

async function run() {
  for (const s of prepared) {
    if (closed) return;
    if (s.bytes) {
      if (!(await sendBytes(s.bytes))) {
        out(`send-error ${sockErr || (serverFin ? 'server-fin' : 'closed')} after ${bytesSent} bytes`);
        return; // the close (or the timeout) ends it
      }
      out(`sent ${s.bytes.length} (total ${bytesSent})`);
    } else if (s.key === 'pause') {
      await sleep(parseInt(s.value, 10));
    } else if (s.key === 'waitFrames') {
      const n = parseInt(s.value, 10);
      if (frames < n && !sock.destroyed) await new Promise((resolve) => frameWaiters.push({ n, resolve }));
    } else if (s.key === 'end') {
      sock.end();
    } else if (s.key === 'reset') {
      closedBy = 'client-reset';
      sock.resetAndDestroy();
      finish('client-reset');
      return;
    }
  }
  if (opts.expectFrames !== undefined) {
    if (frames < opts.expectFrames) await new Promise((resolve) => frameWaiters.push({ n: opts.expectFrames, resolve }));
    if (!closed && frames >= opts.expectFrames) finish('client-frames');
    return;
  }
  if (opts.idle !== undefined) {
    const idleMs = opts.idle * 1000;
    lastRecvAt = Math.max(lastRecvAt, Date.now());
    for (;;) {
      if (closed) return;
      const left = lastRecvAt + idleMs - Date.now();
      if (left <= 0) { finish('client-idle'); return; }
      await sleep(Math.min(left, 50));
    }
  }
}

sock.once(opts.tls ? 'secureConnect' : 'connect', () => {
  connected = true;
  out(`connected ${sock.localAddress}:${sock.localPort} -> ${host}:${port}`);
  run().catch((e) => { out(`error ${e.message}`); finish('client-error'); });
});
