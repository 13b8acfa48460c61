// Helpers shared by the HL7 test scripts in tests/hl7/ (node 20, CommonJS,
// node's standard modules only):
//
//   parseArgs(argv, spec)   a small option parser: spec maps '--name' to
//                           'flag' | 'string' | 'int' | 'float' | 'list'
//                           ('list' options may repeat; the values keep
//                           their order); returns { opts, pos, seq } where
//                           seq is every option in command-line order.
//   frame(buf)              wraps bytes in MLLP: 0x0B ... 0x1C 0x0D
//   Deframer                splits a byte stream into MLLP frames
//   escapeBytes(buf)        printable form of bytes: <VT> <FS> <CR> <LF>,
//                           \xNN for other control and non-ASCII bytes
//   hl7Fields(text)         MSH-10, MSA-1, MSA-2 ... of a message, read with
//                           the field separator its MSH declares
//   loadMessages(inputs)    messages from gen.js output: a JSON array
//                           (strings or objects with .text), a directory of
//                           *.hl7 files (sorted by name), or single files
'use strict';
const fs = require('fs');
const path = require('path');

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

function die(msg, code = 2) {
  process.stderr.write(`${path.basename(process.argv[1] || 'hl7')}: ${msg}\n`);
  process.exit(code);
}

function parseArgs(argv, spec) {
  const opts = {};
  const pos = [];
  const seq = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { pos.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('--') || a === '-') { pos.push(a); continue; }
    let name = a;
    let inline;
    const eq = a.indexOf('=');
    if (eq > 0) { name = a.slice(0, eq); inline = a.slice(eq + 1); }
    const kind = spec[name];
    if (!kind) die(`unknown option ${name}`);
    const key = name.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (kind === 'flag') {
      opts[key] = true;
      seq.push({ name, key, value: true });
      continue;
    }
    let v = inline;
    if (v === undefined) {
      if (i + 1 >= argv.length) die(`option ${name} needs a value`);
      v = argv[++i];
    }
    if (kind === 'int') {
      if (!/^-?\d+$/.test(v)) die(`option ${name}: not an integer: ${v}`);
      v = parseInt(v, 10);
    } else if (kind === 'float') {
      if (!/^-?\d+(\.\d+)?$/.test(v)) die(`option ${name}: not a number: ${v}`);
      v = parseFloat(v);
    }
    if (kind === 'list') (opts[key] = opts[key] || []).push(v);
    else opts[key] = v;
    seq.push({ name, key, value: v });
  }
  return { opts, pos, seq };
}

function frame(buf) {
  if (typeof buf === 'string') buf = Buffer.from(buf, 'utf8');
  return Buffer.concat([Buffer.from([VT]), buf, Buffer.from([FS, CR])]);
}

// Frames are taken from the first 0x0B up to 0x1C 0x0D; bytes outside a
// frame are returned as junk so that a caller can report them.
class Deframer {
  constructor() { this.buf = Buffer.alloc(0); }
  push(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out = [];
    for (;;) {
      const sb = this.buf.indexOf(VT);
      if (sb < 0) {
        if (this.buf.length) out.push({ junk: this.buf });
        this.buf = Buffer.alloc(0);
        break;
      }
      if (sb > 0) { out.push({ junk: this.buf.subarray(0, sb) }); this.buf = this.buf.subarray(sb); }
      let eb = -1;
      for (let i = 1; i + 1 < this.buf.length; i++) {
        if (this.buf[i] === FS && this.buf[i + 1] === CR) { eb = i; break; }
      }
      if (eb < 0) break;
      out.push({ frame: this.buf.subarray(1, eb) });
      this.buf = this.buf.subarray(eb + 2);
    }
    return out;
  }
  pending() { return this.buf.length; }
}

function escapeBytes(buf) {
  let s = '';
  for (const b of buf) {
    if (b === VT) s += '<VT>';
    else if (b === FS) s += '<FS>';
    else if (b === CR) s += '<CR>';
    else if (b === 0x0a) s += '<LF>';
    else if (b === 0x5c) s += '\\\\';
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += '\\x' + b.toString(16).padStart(2, '0');
  }
  return s;
}

// Segments of a message (CR, LF or CRLF separated), each split on the
// field separator that MSH-1 declares. fields('MSH')[10] is MSH-10 (MSH-1
// being the separator itself), fields('MSA')[1] is MSA-1.
function hl7Fields(text) {
  if (Buffer.isBuffer(text)) text = text.toString('latin1');
  const segs = text.split(/\r\n|\r|\n/).filter((s) => s.length > 0);
  const msh = segs.find((s) => s.startsWith('MSH'));
  const fsep = msh && msh.length > 3 ? msh[3] : '|';
  const csep = msh && msh.length > 4 ? msh[4] : '^';
  const get = (name) => {
    const seg = segs.find((s) => s.startsWith(name + fsep) || s === name);
    if (!seg) return null;
    const parts = seg.split(fsep);
    if (name === 'MSH') parts.splice(1, 0, fsep);
    return parts;
  };
  const field = (name, n) => {
    const f = get(name);
    return f && f[n] !== undefined ? f[n] : '';
  };
  return { segs, fsep, csep, get, field };
}

function controlId(text) {
  return hl7Fields(text).field('MSH', 10);
}

// Each message: { id: MSH-10, text: string (latin1-safe bytes as read) }.
function loadMessages(inputs) {
  const out = [];
  const addText = (text, where) => {
    if (!text.startsWith('MSH')) die(`${where}: does not start with MSH`);
    const id = controlId(text);
    if (!id) die(`${where}: no MSH-10`);
    out.push({ id, text });
  };
  for (const inp of inputs) {
    const st = fs.statSync(inp, { throwIfNoEntry: false });
    if (!st) die(`no such file or directory: ${inp}`);
    if (st.isDirectory()) {
      const names = fs.readdirSync(inp).filter((n) => n.endsWith('.hl7')).sort();
      for (const n of names) addText(fs.readFileSync(path.join(inp, n), 'utf8'), path.join(inp, n));
    } else if (inp.endsWith('.json')) {
      const arr = JSON.parse(fs.readFileSync(inp, 'utf8'));
      if (!Array.isArray(arr)) die(`${inp}: not a JSON array`);
      arr.forEach((m, i) => addText(typeof m === 'string' ? m : m.text, `${inp}[${i}]`));
    } else {
      addText(fs.readFileSync(inp, 'utf8'), inp);
    }
  }
  return out;
}

module.exports = {
  VT, FS, CR, die, parseArgs, frame, Deframer, escapeBytes, hl7Fields, controlId, loadMessages,
};
