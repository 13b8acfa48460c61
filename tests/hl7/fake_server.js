// fake_server.js: a tiny MLLP ACK server to check send.js and raw.js
// without the daemon (node's net module only). Not a model of the plugin.
//
//   node tests/hl7/fake_server.js [options]
//
//   --host H            address to listen on (default 127.0.0.1)
//   --port N            port (default 0: the kernel chooses)
//   --port-file F       write the port to F once listening
//   --log F             one line per message received:
//                       N<TAB>conn<TAB>MSH-10<TAB>action   (action: ack:AA,
//                       drop, swallow); N counts every message received,
//                       retransmissions included, from 1
//   --drop-after N      ACK messages 1..N, then on message N+1 close its
//                       connection without an ACK (once)
//   --drop-at LIST      close without an ACK on these message numbers
//                       (e.g. 5,9,20)
//   --swallow-at LIST   send no ACK for these message numbers and keep the
//                       connection open (to exercise an ACK timeout)
//   --code C            ACK code (default AA; CA when the message has MSH-15)
//   --code-at N=C       ACK code C for message number N (repeatable)
//   --ack-delay MS      wait before each ACK (default 0)
//   --wrong-id-at LIST  MSA-2 = "WRONG" for these message numbers
//   --tls-cert F --tls-key F   listen with TLS (PEM files)
//
// ACK: MSH|^~\&|PORTALMETRICS|PM|<MSH-3>|<MSH-4>|<now>||ACK^<trigger>^ACK|
// A<N>|P|2.5 <CR> MSA|<code>|<MSH-10> <CR>, framed, in one write. Prints
// "fake_server: listening HOST:PORT" on stdout; runs until killed.
'use strict';
const net = require('net');
const fs = require('fs');
const { parseArgs, die, frame, Deframer, hl7Fields } = require('./common');

const { opts } = parseArgs(process.argv.slice(2), {
  '--host': 'string', '--port': 'int', '--port-file': 'string', '--log': 'string', '--drop-after': 'int',
  '--drop-at': 'string', '--swallow-at': 'string', '--code': 'string', '--code-at': 'list', '--ack-delay': 'int',
  '--wrong-id-at': 'string', '--tls-cert': 'string', '--tls-key': 'string',
});
const nums = (s) => new Set((s || '').split(',').filter(Boolean).map((x) => parseInt(x, 10)));
const dropAt = nums(opts.dropAt);
if (opts.dropAfter !== undefined) dropAt.add(opts.dropAfter + 1);
const swallowAt = nums(opts.swallowAt);
const wrongAt = nums(opts.wrongIdAt);
const codeAt = new Map();
for (const c of opts.codeAt || []) {
  const m = /^(\d+)=([A-Z]{2})$/.exec(c);
  if (!m) die(`--code-at N=CODE: ${c}`);
  codeAt.set(parseInt(m[1], 10), m[2]);
}
const logFd = opts.log ? fs.openSync(opts.log, 'a') : null;
const log = (line) => { if (logFd !== null) fs.writeSync(logFd, line + '\n'); };

let n = 0;
let nconn = 0;
const ts = () => new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);

const onConn = (sock) => {
  const k = ++nconn;
  const df = new Deframer();
  let chain = Promise.resolve(); // ACKs in arrival order
  sock.on('error', () => {});
  sock.on('data', (chunk) => {
    for (const item of df.push(chunk)) {
      if (!item.frame) continue;
      const num = ++n;
      const f = hl7Fields(item.frame);
      const id = f.field('MSH', 10);
      if (dropAt.has(num)) {
        log(`${num}\t${k}\t${id}\tdrop`);
        sock.destroy();
        return;
      }
      if (swallowAt.has(num)) {
        log(`${num}\t${k}\t${id}\tswallow`);
        continue;
      }
      const enhanced = f.field('MSH', 15) !== '';
      const code = codeAt.get(num) || opts.code || (enhanced ? 'CA' : 'AA');
      const trig = (f.field('MSH', 9).split(f.csep)[1]) || '';
      const ack = `MSH|^~\\&|PORTALMETRICS|PM|${f.field('MSH', 3)}|${f.field('MSH', 4)}|${ts()}||ACK^${trig}^ACK|A${num}|P|2.5\rMSA|${code}|${wrongAt.has(num) ? 'WRONG' : id}\r`;
      chain = chain.then(async () => {
        if (opts.ackDelay) await new Promise((r) => setTimeout(r, opts.ackDelay));
        if (sock.destroyed) return;
        log(`${num}\t${k}\t${id}\tack:${code}`);
        sock.write(frame(ack));
      });
    }
  });
};
const server = opts.tlsCert
  ? require('tls').createServer({ cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) }, onConn)
  : net.createServer(onConn);
server.listen(opts.port ?? 0, opts.host || '127.0.0.1', () => {
  const a = server.address();
  if (opts.portFile) fs.writeFileSync(opts.portFile, `${a.port}\n`);
  process.stdout.write(`fake_server: listening ${a.address}:${a.port}\n`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
