// Lines of a socket as an async iterator: one async function per
// connection reads them sequentially, as the coru and C peers do.
module.exports = async function* lines(sock) {
  let buf = "";
  for await (const chunk of sock) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
};
