// The same benchmark with Node.js's tls module. usage: node node_bench.js CERTDIR [secs] [MiB]
const tls = require('tls'), fs = require('fs');
const dir = process.argv[2], secs = +(process.argv[3] || 3), mib = +(process.argv[4] || 512);
const key = fs.readFileSync(dir + '/server.key'), cert = fs.readFileSync(dir + '/server.pem');
const ca = fs.readFileSync(dir + '/ca.pem');
const secureContext = tls.createSecureContext({ ca });   // built once, as coru's context
const server = tls.createServer({ key, cert }, (s) => {
  let mode = null, n = 0;
  s.on('data', (d) => {
    if (mode === null) { mode = d[0] === 104 ? 'h' : 'b'; if (mode === 'h') { s.write('k'); return; } n += d.length; return; }
    if (mode === 'b') n += d.length;
  });
  s.on('end', () => { if (mode === 'b') s.end(String(n)); else s.end(); });
  s.on('error', () => {});
});
server.listen(0, '127.0.0.1', async () => {
  const port = server.address().port;
  const connect = () => new Promise((res, rej) => {
    const s = tls.connect({ host: '127.0.0.1', servername: 'localhost', port, secureContext }, () => res(s));
    s.on('error', rej);
  });
  let count = 0; const stop = Date.now() + secs * 1000;
  const worker = async () => {
    while (Date.now() < stop) {
      const s = await connect();
      await new Promise((res) => { s.once('data', res); s.write('h'); });
      s.destroy(); count++;
    }
  };
  let t0 = Date.now();
  await Promise.all(Array.from({ length: 16 }, worker));
  const hs = count / ((Date.now() - t0) / 1000);
  const s = await connect();
  const chunk = Buffer.alloc(1024 * 1024, 'x');
  t0 = Date.now();
  let got = '';
  s.on('data', (d) => { got += d; });
  const done = new Promise((res) => s.on('end', res));
  for (let i = 0; i < mib; i++) { if (!s.write(chunk)) await new Promise((r) => s.once('drain', r)); }
  s.end();
  await done;
  const dt = (Date.now() - t0) / 1000;
  if (+got !== mib * 1024 * 1024) throw new Error('got ' + got);
  console.log(`node ${process.version}: ${hs.toFixed(0)} handshakes/s (16 concurrent), bulk ${(mib * 1.048576 / dt).toFixed(0)} MB/s (${mib} MiB)`);
  server.close();
});
