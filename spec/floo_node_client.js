// A Floobits client that is not ours, for spec/floo_interop_spec.lua: plain
// Node.js with Floobits' npm `dmp` (the diff-match-patch the colab server
// runs). It joins, creates a buffer, patches it, then follows it: applies
// every patch the others send, checks md5_after, and after `follow` patches
// prints the text it has and exits.
// Usage: node floo_node_client.js port user secret owner workspace follow
'use strict';
const net = require('net');
const crypto = require('crypto');
const DMP = require('dmp');

const [port, user, secret, owner, ws, follow] = process.argv.slice(2);
const dmp = new DMP();
const md5 = (s) => crypto.createHash('md5').update(s, 'utf8').digest('hex');
const out = (tag, v) => process.stdout.write(tag + ' ' + JSON.stringify(v) + '\n');

let reqId = 0;
const sock = net.connect(Number(port), '127.0.0.1');
const send = (m) => { m.req_id = ++reqId; sock.write(JSON.stringify(m) + '\n'); return m.req_id; };
const waiting = new Map();   // req_id -> [name, resolve]
const events = [];
let wake = null;

let pending = '';
sock.setEncoding('utf8');
sock.on('data', (chunk) => {
  pending += chunk;
  let i;
  while ((i = pending.indexOf('\n')) >= 0) {
    const m = JSON.parse(pending.slice(0, i));
    pending = pending.slice(i + 1);
    const w = m.res_id !== undefined && waiting.get(m.res_id);
    if (w && (m.name === w[0] || m.name === 'error')) { waiting.delete(m.res_id); w[1](m); continue; }
    events.push(m);
    if (wake) { const f = wake; wake = null; f(); }
  }
});
sock.on('error', (e) => { out('ERROR', String(e)); process.exit(2); });

const request = (m, name) => new Promise((resolve) => { waiting.set(send(m), [name, resolve]); });
async function next(pred) {
  for (;;) {
    const k = events.findIndex(pred);
    if (k >= 0) return events.splice(k, 1)[0];
    await new Promise((r) => { wake = r; });
  }
}

(async () => {
  const info = await request({username: user, secret, room_owner: owner, room: ws, version: 0.11,
                              client: 'node-interop', platform: process.platform}, 'room_info');
  if (info.name !== 'room_info') { out('ERROR', info); process.exit(1); }
  let text = 'from node ✓\n';
  const created = await request({name: 'create_buf', path: 'node/hello.txt', buf: text, encoding: 'utf8'}, 'create_buf');
  if (created.name !== 'create_buf' || created.md5 !== md5(text)) { out('ERROR', created); process.exit(1); }
  const id = created.id;
  const next_text = 'from node ✓ and 🌍, patched\n';
  const patch = dmp.patch_toText(dmp.patch_make(text, next_text));
  const ack = await request({name: 'patch', id, patch, md5_before: md5(text), md5_after: md5(next_text)}, 'ack');
  if (ack.name !== 'ack') { out('ERROR', ack); process.exit(1); }
  text = next_text;
  out('READY', id);
  for (let n = 0; n < Number(follow); n++) {
    const p = await next((m) => m.name === 'patch' && m.id === id);
    if (p.md5_before !== md5(text)) { out('ERROR', 'md5_before mismatch'); process.exit(1); }
    const [result, ok] = dmp.patch_apply(dmp.patch_fromText(p.patch), text);
    if (ok.some((x) => !x) || md5(result) !== p.md5_after) { out('ERROR', 'patch did not apply'); process.exit(1); }
    text = result;
  }
  out('TEXT', text);
  out('MD5', md5(text));
  sock.end();
})();
