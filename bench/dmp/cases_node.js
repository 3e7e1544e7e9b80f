// Per-case timings of the reference on the differential spec's texts
// (written by cases.lua): patch_make + patch_toText, patch_fromText +
// patch_apply; median microseconds of REPS runs after a warm-up.
'use strict';
const fs = require('fs');
const G = require('diff-match-patch');
const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const reps = +(process.env.REPS || 15);
function med(f) {
  f();
  const t = [];
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    f();
    t.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  t.sort((x, y) => x - y);
  return t[reps >> 1];
}
const out = cases.map((c) => {
  const d = new G();
  let text = null;
  try { text = d.patch_toText(d.patch_make(c.a, c.b)); } catch (e) { return null; }  // the reference fails
  return {
    make: med(() => d.patch_toText(d.patch_make(c.a, c.b))),
    apply: med(() => d.patch_apply(d.patch_fromText(text), c.a)),
  };
});
console.log(JSON.stringify(out));
