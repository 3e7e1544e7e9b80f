// The reference loop of bench/floo: the editing core of a colab-like server
// in Node.js with Floobits' npm `dmp` (what colab runs): JSON lines, auth ->
// room_info, create_buf, patch (md5 checks, apply, md5, broadcast, ack) as
// FLOOBITS-PROTOCOL.md §7 says. No persistence, no permissions: the hot path
// only. Usage: node node_server.js PORT  (prints READY when listening)
'use strict';
const net = require('net');
const crypto = require('crypto');
const DMP = require('dmp');

const dmp = new DMP();
dmp.Match_Threshold = 0.375;
dmp.Match_Distance = 100;
dmp.Patch_DeleteThreshold = 0.375;
const md5 = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex');

const bufs = new Map();
const clients = new Set();
let nextBuf = 1;
let nextConn = 0;

const line = (m) => JSON.stringify(m) + '\n';
const write = (c, m) => c.sock.write(line(m));
function broadcast(except, m) {
  const s = line(m);
  for (const o of clients) if (o !== except && o.joined) o.sock.write(s);
}
const ack = (c, id) => { if (id !== undefined) write(c, {name: 'ack', res_id: id}); };
const getBuf = (c, b, id) => write(c, {name: 'get_buf', id: b.id, path: b.path, buf: b.text, md5: b.md5, encoding: 'utf8', res_id: id});

function handle(c, m) {
  if (!c.joined) {
    c.joined = true;
    c.username = m.username;
    write(c, {name: 'room_info', res_id: m.req_id, user_id: c.id, bufs: {}, tree: {}, users: {}, perms: ['patch']});
    return;
  }
  if (m.name === 'create_buf') {
    const b = {id: nextBuf++, path: m.path, text: m.buf, md5: md5(m.buf)};
    bufs.set(b.id, b);
    const msg = {name: 'create_buf', id: b.id, path: b.path, buf: b.text, md5: b.md5, encoding: 'utf8',
                 user_id: c.id, username: c.username};
    broadcast(c, msg);
    msg.res_id = m.req_id;
    write(c, msg);
  } else if (m.name === 'patch') {
    const b = bufs.get(m.id);
    if (!b) return write(c, {name: 'error', msg: 'no such buffer', res_id: m.req_id});
    if (m.md5_after === b.md5) return ack(c, m.req_id);
    const [text, ok] = dmp.patch_apply(dmp.patch_fromText(m.patch), b.text);
    if (ok.some((x) => !x)) return getBuf(c, b, m.req_id);
    const after = md5(text);
    if (after !== m.md5_after && m.md5_before === b.md5) return getBuf(c, b, m.req_id);
    const before = b.md5;
    b.text = text;
    b.md5 = after;
    broadcast(c, {name: 'patch', id: b.id, path: b.path, patch: m.patch, md5_before: before, md5_after: after,
                  user_id: c.id, username: c.username});
    ack(c, m.req_id);
  } else if (m.name === 'ping') {
    write(c, {name: 'pong', res_id: m.req_id});
  } else {
    ack(c, m.req_id);
  }
}

net.createServer((sock) => {
  sock.setNoDelay(true);
  const c = {sock, id: ++nextConn, joined: false};
  clients.add(c);
  let pending = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    pending += chunk;
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      const l = pending.slice(0, i);
      pending = pending.slice(i + 1);
      let m;
      try { m = JSON.parse(l); } catch (e) { sock.destroy(); return; }
      handle(c, m);
    }
  });
  sock.on('close', () => clients.delete(c));
  sock.on('error', () => {});
}).listen(Number(process.argv[2]), '127.0.0.1', () => process.stdout.write('READY\n'));
