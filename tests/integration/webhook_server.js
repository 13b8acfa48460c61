// A webhook receiver for test_notifiers.sh (node's http module only).
//
//   node webhook_server.js DIR
//
// Listens on 127.0.0.1, a free port chosen by the kernel, written to
// DIR/port once listening. Request N (from 1) is recorded before it is
// answered: DIR/reqN.head ("METHOD URL" then one "Name: value" line per
// header, as received) and DIR/reqN.body (the body, byte for byte); then
// DIR/count holds N. The last path segment of the URL picks the answer:
//   .../200       200 with a body (the default for any other segment)
//   .../500       500 with a body
//   .../302       a redirect to .../200 (must not be followed)
//   .../hang      no answer ever (the connection stays open)
//   .../close     a 200 head promising 100 bytes, 7 sent, connection reset
// A file DIR/mode, when present, overrides the URL's choice (its first
// line is one of the segments above), so a test can switch a running
// daemon's endpoint between answers.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: node webhook_server.js DIR\n');
  process.exit(2);
}
let n = 0;
const hanging = [];

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const i = ++n;
    let head = `${req.method} ${req.url}\n`;
    for (let k = 0; k < req.rawHeaders.length; k += 2)
      head += `${req.rawHeaders[k]}: ${req.rawHeaders[k + 1]}\n`;
    fs.writeFileSync(path.join(dir, `req${i}.body`), Buffer.concat(chunks));
    fs.writeFileSync(path.join(dir, `req${i}.head`), head);
    fs.writeFileSync(path.join(dir, 'count.tmp'), `${i}\n`);
    fs.renameSync(path.join(dir, 'count.tmp'), path.join(dir, 'count'));
    let mode = req.url.split('?')[0].split('/').pop();
    try {
      mode = fs.readFileSync(path.join(dir, 'mode'), 'utf8').split('\n')[0].trim();
    } catch (e) {
      // no override
    }
    switch (mode) {
      case '500':
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error\n');
        break;
      case '302':
        res.writeHead(302, { Location: '/200' });
        res.end();
        break;
      case 'hang':
        hanging.push(res); // never answered
        break;
      case 'close':
        res.socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
        res.socket.destroy();
        break;
      default:
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('accepted\n'.repeat(2000)); // a body the client discards
    }
  });
});
server.requestTimeout = 0; // let hanging requests hang
server.listen(0, '127.0.0.1', () => {
  const tmp = path.join(dir, 'port.tmp');
  fs.writeFileSync(tmp, `${server.address().port}\n`);
  fs.renameSync(tmp, path.join(dir, 'port'));
});
process.on('SIGTERM', () => process.exit(0));
