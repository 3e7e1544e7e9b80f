// W3 server for Node.js: one async function per connection waiting for lines.
const net = require("net");
const lines = require("./lines");
const server = net.createServer(async (sock) => {
  sock.setEncoding("utf8");
  sock.on("error", () => {});
  try {
    for await (const line of lines(sock)) if (line === "hello") sock.write("ok\n");
  } catch (e) {}
  sock.destroy();
});
server.listen({ host: process.env.HOST || "127.0.0.1", port: Number(process.env.PORT || 7002), backlog: 1024 }, () => {
  console.log(`READY port=${server.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
