// W1 for Node.js: one async function awaiting N operations in sequence.
// loop: setImmediate (one loop iteration with its poll phase per op);
// sched: an already-resolved promise (a microtask: no loop iteration).
const variant = process.argv[2] || "loop";
const N = Number(process.env.N || 1000000);
const ops = {
  loop: () => new Promise((r) => setImmediate(r)),
  sched: () => Promise.resolve(),
};
if (!ops[variant]) {
  console.log(`UNSUPPORTED workload=w1 variant=${variant} reason=unknown-variant`);
  process.exit(0);
}
(async () => {
  const op = ops[variant];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await op();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`RESULT workload=w1 variant=${variant} n=${N} secs=${secs.toFixed(6)} ops_per_s=${(N / secs).toFixed(1)}`);
})();
