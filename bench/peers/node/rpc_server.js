// W2 server for Node.js: one async function per connection, JSON.parse,
// JSON.stringify, write.
const net = require("net");
const lines = require("./lines");
const server = net.createServer({ noDelay: true }, async (sock) => {
  sock.setEncoding("utf8");
  sock.on("error", () => {});
  try {
    for await (const line of lines(sock)) {
      let msg;
      try { msg = JSON.parse(line); } catch (e) { msg = null; }
      const ok = msg && typeof msg === "object" && msg.name === "patch";
      sock.write(ok ? JSON.stringify({ name: "ack", req_id: msg.req_id }) + "\n" : '{"name":"error","req_id":null}\n');
    }
  } catch (e) {}
  sock.destroy();
});
server.listen({ host: process.env.HOST || "127.0.0.1", port: Number(process.env.PORT || 7001), backlog: 1024 }, () => {
  console.log(`READY port=${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
